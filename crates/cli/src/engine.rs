//! The two builds of the filter the command carries (see build.rs), which one
//! a gateway runs (`--engine`), and where `run` and `render` keep them.
//!
//! - `module`: the Envoy dynamic module `libmcpgw.so`, native code in Envoy's
//!   own threads; the faster one (bench/results.md), and the only one that
//!   merges several backends' GET streams. The default.
//! - `wasm`: `mcpgw.wasm` in Envoy's V8; sandboxed, portable across Envoy
//!   builds that load proxy-wasm filters.

use std::path::{Path, PathBuf};

/// The proxy-wasm build, embedded.
pub static WASM: &[u8] = include_bytes!(env!("MCPGW_EMBEDDED_WASM"));
/// The dynamic-module build, embedded.
pub static MODULE: &[u8] = include_bytes!(env!("MCPGW_EMBEDDED_MODULE"));

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Engine {
    /// The Envoy dynamic module (libmcpgw.so).
    Module,
    /// The proxy-wasm filter (mcpgw.wasm) in Envoy's V8.
    Wasm,
}

/// What `run` and `render` use without `--engine`: the module, which the
/// benchmark shows faster (bench/results.md: Envoy executes about 1.35x fewer
/// instructions per tools/call with it than with the wasm, 1.28x fewer per
/// 2,000-tool list; wall-clock figures on the shared machine were too noisy
/// to rank them).
pub const DEFAULT: Engine = Engine::Module;

impl Engine {
    pub fn bytes(self) -> &'static [u8] {
        match self {
            Engine::Module => MODULE,
            Engine::Wasm => WASM,
        }
    }

    /// The name of the HTTP filter that runs this build in Envoy (also the
    /// key that disables it on a route).
    pub fn envoy_filter(self) -> &'static str {
        match self {
            Engine::Module => "envoy.filters.http.dynamic_modules",
            Engine::Wasm => "envoy.filters.http.wasm",
        }
    }

    /// The build's file name.
    pub fn file_name(self) -> &'static str {
        match self {
            Engine::Module => mcpgw_module::names::LIBRARY_FILE,
            Engine::Wasm => "mcpgw.wasm",
        }
    }

    /// Hex sha256 of the embedded build.
    pub fn sha256(self) -> String {
        use sha2::Digest;
        let d = sha2::Sha256::digest(self.bytes());
        d.iter().map(|b| format!("{b:02x}")).collect()
    }

    /// Where `run` keeps the build: content-addressed in the user's cache dir
    /// (`$XDG_CACHE_HOME/mcpgw/mcpgw-<sha>.wasm`, `libmcpgw-<sha>.so`).
    pub fn cache_path(self) -> PathBuf {
        let base = match crate::env_var("XDG_CACHE_HOME").filter(|x| !x.is_empty()) {
            Some(x) => PathBuf::from(x),
            None => match crate::env_var("HOME").filter(|h| !h.is_empty()) {
                Some(h) => PathBuf::from(h).join(".cache"),
                None => std::env::temp_dir(),
            },
        };
        let sha = self.sha256();
        let sha = sha.get(..16).unwrap_or(&sha);
        let file = match self {
            Engine::Module => format!("libmcpgw-{sha}.so"),
            Engine::Wasm => format!("mcpgw-{sha}.wasm"),
        };
        base.join("mcpgw").join(file)
    }

    /// Write the embedded build to `path` (atomically) unless it is already there.
    pub fn write(self, path: &Path) -> Result<(), String> {
        let bytes = self.bytes();
        if std::fs::read(path).is_ok_and(|b| b == bytes) {
            return Ok(());
        }
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir)
                .map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
        }
        let tmp = path.with_extension(format!("tmp{}", std::process::id()));
        std::fs::write(&tmp, bytes).map_err(|e| format!("cannot write {}: {e}", tmp.display()))?;
        std::fs::rename(&tmp, path).map_err(|e| format!("cannot write {}: {e}", path.display()))
    }

    /// The access-log fields this build publishes, as (JSON key, format).
    pub fn access_log_fields(self) -> &'static [(&'static str, &'static str)] {
        match self {
            Engine::Module => &mcpgw_module::names::ACCESS_LOG_FIELDS,
            Engine::Wasm => &mcpgw_proxy_wasm::names::ACCESS_LOG_FIELDS,
        }
    }

    /// The audit record's fields in this build, as (JSON key, format).
    pub fn audit_log_fields(self) -> Vec<(&'static str, String)> {
        match self {
            Engine::Module => mcpgw_module::names::audit_log_fields(),
            Engine::Wasm => mcpgw_proxy_wasm::names::audit_log_fields(),
        }
    }

    /// The CEL access-log filter that keeps only requests with an audit
    /// record, in this build's filter-state names.
    pub fn audit_log_filter(self) -> String {
        match self {
            Engine::Module => mcpgw_module::names::audit_log_filter(),
            Engine::Wasm => mcpgw_proxy_wasm::names::audit_log_filter(),
        }
    }
}

/// The build a rendered configuration runs, and where Envoy finds it.
#[derive(Debug, Clone)]
pub struct Filter {
    pub engine: Engine,
    pub path: PathBuf,
}
