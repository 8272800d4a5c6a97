//! A real Envoy 1.40 with the built filter (mcpgw.wasm or the dynamic module
//! libmcpgw.so, see [`Engine`]), started per test.
//!
//! Envoy binds port 0 for both the listener and the admin interface and
//! reports the real ports (admin address file, `/listeners`), so parallel
//! tests never race for ports (a test that must know its listener port before
//! start, see [`RenderOpts`], retries instead). The process is killed when
//! the handle drops, including when a test fails.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// The workspace root (the parent of this crate).
pub fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_else(|| PathBuf::from("."))
}

/// The Envoy binary: `$ENVOY_BIN`, else the venv `./build.sh envoy` makes.
pub fn envoy_bin() -> PathBuf {
    if let Ok(p) = std::env::var("ENVOY_BIN") {
        return PathBuf::from(p);
    }
    let venv = workspace_root().join(".venv/bin/envoy");
    if venv.exists() {
        return venv;
    }
    panic!("no Envoy: set ENVOY_BIN or run ./build.sh envoy");
}

/// The built filter. Tests do not build it; `./build.sh test` does first.
pub fn wasm_path() -> PathBuf {
    let p = workspace_root().join("target/wasm32-wasip1/release/mcpgw.wasm");
    assert!(
        p.exists(),
        "{} is missing: run ./build.sh wasm",
        p.display()
    );
    p
}

/// The built dynamic module. Tests do not build it; `./build.sh test` does
/// first.
pub fn module_path() -> PathBuf {
    let p = workspace_root().join("target/dynamic-module/libmcpgw.so");
    assert!(
        p.exists(),
        "{} is missing: run ./build.sh module",
        p.display()
    );
    p
}

/// Which build of mcpgw Envoy runs. Every e2e suite runs with both
/// ([`crate::per_engine`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Engine {
    /// `mcpgw.wasm` in Envoy's V8 (`envoy.filters.http.wasm`).
    Wasm,
    /// `libmcpgw.so` (`envoy.filters.http.dynamic_modules`).
    Module,
}

impl Engine {
    pub const ALL: [Engine; 2] = [Engine::Wasm, Engine::Module];

    pub fn name(self) -> &'static str {
        match self {
            Engine::Wasm => "wasm",
            Engine::Module => "module",
        }
    }

    /// The access-log format fields of this build's MCP values.
    pub fn access_log_format(self) -> String {
        let fields: &[(&str, &str)] = match self {
            Engine::Wasm => &mcpgw_proxy_wasm::names::ACCESS_LOG_FIELDS,
            Engine::Module => &mcpgw_module::names::ACCESS_LOG_FIELDS,
        };
        let mut s = String::from("{start_time: \"%START_TIME%\", method: \"%REQ(:METHOD)%\", path: \"%REQ(:PATH)%\", status: \"%RESPONSE_CODE%\", duration_ms: \"%DURATION%\", upstream_cluster: \"%UPSTREAM_CLUSTER%\"");
        for (k, v) in fields {
            s.push_str(&format!(", {k}: \"{v}\""));
        }
        s.push_str(", traceparent: \"%REQ(TRACEPARENT)%\"}");
        s
    }

    /// The HTTP filter entry (YAML list item at the `http_filters`
    /// indentation, 10 spaces) running mcpgw with `plugin_json`; `env_keys`
    /// name the environment variables the configuration reads.
    pub fn filter_yaml(self, plugin_json: &str, env_keys: &[&str]) -> String {
        let code = match self {
            Engine::Wasm => wasm_path(),
            Engine::Module => module_path(),
        };
        self.filter_yaml_at(plugin_json, env_keys, &code)
    }

    /// [`Engine::filter_yaml`] with the build at `code`.
    pub fn filter_yaml_at(self, plugin_json: &str, env_keys: &[&str], code: &Path) -> String {
        let json = serde_json::to_string(plugin_json).unwrap_or_default();
        let code = code.display();
        match self {
            Engine::Wasm => {
                let env = if env_keys.is_empty() {
                    String::new()
                } else {
                    format!(
                        "\n                  environment_variables: {{host_env_keys: [{}]}}",
                        env_keys.join(", ")
                    )
                };
                format!(
                    r#"          - name: envoy.filters.http.wasm
            typed_config:
              "@type": type.googleapis.com/envoy.extensions.filters.http.wasm.v3.Wasm
              config:
                name: mcpgw
                root_id: mcpgw
                allow_on_headers_stop_iteration: true
                failure_policy: FAIL_RELOAD
                configuration:
                  "@type": type.googleapis.com/google.protobuf.StringValue
                  value: {json}
                vm_config:
                  runtime: envoy.wasm.runtime.v8
                  vm_id: mcpgw
                  code: {{local: {{filename: {code}}}}}{env}
"#
                )
            }
            // The module reads `${VAR}`s from Envoy's own environment.
            Engine::Module => format!(
                r#"          - name: envoy.filters.http.dynamic_modules
            typed_config:
              "@type": type.googleapis.com/envoy.extensions.filters.http.dynamic_modules.v3.DynamicModuleFilter
              dynamic_module_config:
                name: {module}
                module: {{local: {{filename: {code}}}}}
              filter_name: {filter}
              filter_config:
                "@type": type.googleapis.com/google.protobuf.StringValue
                value: {json}
"#,
                module = mcpgw_module::names::MODULE_NAME,
                filter = mcpgw_module::names::FILTER_NAME,
            ),
        }
    }
}

/// Replaced by the per-instance access log path when Envoy starts.
pub const ACCESS_LOG_PLACEHOLDER: &str = "__MCPGW_ACCESS_LOG__";

/// An upstream cluster for the generated config.
#[derive(Clone, Debug)]
pub struct Cluster {
    pub name: String,
    pub port: u16,
}

/// Generate an Envoy config: one listener on port 0 with the mcpgw filter
/// built as `engine` (`plugin_json` as its configuration) and a STATIC
/// cluster per upstream.
pub fn render(
    engine: Engine,
    plugin_json: &str,
    clusters: &[Cluster],
    env_keys: &[&str],
) -> String {
    render_with(engine, plugin_json, clusters, env_keys, "")
}

/// [`render`], with extra HTTP filters (YAML list items at the `http_filters`
/// indentation, 10 spaces) placed before mcpgw, e.g. `jwt_authn`.
pub fn render_with(
    engine: Engine,
    plugin_json: &str,
    clusters: &[Cluster],
    env_keys: &[&str],
    filters_before: &str,
) -> String {
    render_opts(
        plugin_json,
        clusters,
        env_keys,
        filters_before,
        &RenderOpts {
            engine: Some(engine),
            ..RenderOpts::default()
        },
    )
}

/// Less common settings for [`render_opts`].
#[derive(Clone, Debug, Default)]
pub struct RenderOpts {
    /// The build of mcpgw (`None`: wasm).
    pub engine: Option<Engine>,
    /// The listener's port; 0 (the default) lets the OS choose. A fixed port
    /// is for configs that must name their own URL (an OAuth `resource`); get
    /// one from [`free_port`] and start with [`Envoy::try_start`], retrying
    /// on a bind failure.
    pub listener_port: u16,
    /// HTTP filters after mcpgw (before the router), e.g. a rate limit.
    pub filters_after: String,
    /// Add mcpgw's audit log (see [`Envoy::audit_log`]).
    pub audit_log: bool,
}

/// Replaced by the path of the audit log in the Envoy's temp dir.
pub const AUDIT_LOG_PLACEHOLDER: &str = "__MCPGW_AUDIT_LOG__";

/// The audit access log at the `access_log` list's indentation.
fn audit_log_yaml(engine: Engine) -> String {
    let (fields, filter) = match engine {
        Engine::Wasm => (
            mcpgw_proxy_wasm::names::audit_log_fields(),
            mcpgw_proxy_wasm::names::audit_log_filter(),
        ),
        Engine::Module => (
            mcpgw_module::names::audit_log_fields(),
            mcpgw_module::names::audit_log_filter(),
        ),
    };
    let fields: Vec<String> = fields
        .iter()
        .map(|(k, v)| format!("{k}: \"{v}\""))
        .collect();
    format!(
        r#"          - name: envoy.access_loggers.file
            filter:
              extension_filter:
                name: envoy.access_loggers.extension_filters.cel
                typed_config:
                  "@type": type.googleapis.com/envoy.extensions.access_loggers.filters.cel.v3.ExpressionFilter
                  expression: "{filter}"
            typed_config:
              "@type": type.googleapis.com/envoy.extensions.access_loggers.file.v3.FileAccessLog
              path: {AUDIT_LOG_PLACEHOLDER}
              log_format:
                json_format: {{{fields}}}
"#,
        fields = fields.join(", ")
    )
}

/// A loopback port that was free a moment ago (bound to port 0, read,
/// released). Another process may take it before Envoy binds it: callers
/// retry when [`Envoy::try_start`] fails.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind(("127.0.0.1", 0))
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("bind a loopback port")
}

/// [`render_with`], with [`RenderOpts`].
pub fn render_opts(
    plugin_json: &str,
    clusters: &[Cluster],
    env_keys: &[&str],
    filters_before: &str,
    opts: &RenderOpts,
) -> String {
    let engine = opts.engine.unwrap_or(Engine::Wasm);
    let filter = engine.filter_yaml(plugin_json, env_keys);
    let access_log_format = engine.access_log_format();
    let mut clusters_yaml = String::new();
    for c in clusters {
        clusters_yaml.push_str(&format!(
            r#"  - name: {name}
    type: STATIC
    connect_timeout: 2s
    load_assignment:
      cluster_name: {name}
      endpoints: [{{lb_endpoints: [{{endpoint: {{address: {{socket_address: {{address: 127.0.0.1, port_value: {port}}}}}}}}}]}}]
"#,
            name = c.name,
            port = c.port
        ));
    }
    let stats_config = mcpgw_core::gateway::stats::envoy_stats_config_yaml();
    format!(
        r#"admin:
  address: {{socket_address: {{address: 127.0.0.1, port_value: 0}}}}
# Histograms merge when /stats is read, so tests see them at once.
stats_flush_on_admin: true
{stats_config}static_resources:
  listeners:
  - name: mcp
    address: {{socket_address: {{address: 127.0.0.1, port_value: {listener_port}}}}}
    filter_chains:
    - filters:
      - name: envoy.filters.network.http_connection_manager
        typed_config:
          "@type": type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager
          stat_prefix: mcp
          stream_idle_timeout: 300s
          access_log:
          - name: envoy.access_loggers.file
            typed_config:
              "@type": type.googleapis.com/envoy.extensions.access_loggers.file.v3.FileAccessLog
              path: {ACCESS_LOG_PLACEHOLDER}
              log_format:
                json_format: {access_log_format}
{audit_log}          route_config:
            virtual_hosts:
            - name: mcp
              domains: ["*"]
              routes:
              - match: {{prefix: "/", headers: [{{name: x-mcpgw-cluster, present_match: true}}]}}
                route: {{cluster_header: x-mcpgw-cluster, timeout: 0s}}
              - match: {{prefix: "/"}}
                direct_response: {{status: 404, body: {{inline_string: "not found"}}}}
          http_filters:
{filters_before}{filter}{filters_after}          - name: envoy.filters.http.router
            typed_config:
              "@type": type.googleapis.com/envoy.extensions.filters.http.router.v3.Router
  clusters:
{clusters_yaml}"#,
        listener_port = opts.listener_port,
        filters_after = opts.filters_after,
        audit_log = if opts.audit_log {
            audit_log_yaml(engine)
        } else {
            String::new()
        },
    )
}

pub struct Envoy {
    child: Child,
    pub dir: tempfile::TempDir,
    pub port: u16,
    pub admin_port: u16,
    /// The build of mcpgw in its configuration (read from the YAML).
    pub engine: Engine,
}

impl Envoy {
    /// Start Envoy with `yaml` and wait until its listener is up.
    pub fn start(yaml: &str) -> Envoy {
        Self::start_with_env(yaml, &[])
    }

    pub fn start_with_env(yaml: &str, env: &[(&str, &str)]) -> Envoy {
        Self::try_start_with_env(yaml, env).unwrap_or_else(|e| panic!("{e}"))
    }

    /// [`Envoy::start`], returning startup failures (e.g. the listener port
    /// was taken) instead of panicking.
    pub fn try_start(yaml: &str) -> Result<Envoy, String> {
        Self::try_start_with_env(yaml, &[])
    }

    /// [`Envoy::start_with_env`], returning startup failures instead of
    /// panicking.
    pub fn try_start_with_env(yaml: &str, env: &[(&str, &str)]) -> Result<Envoy, String> {
        Self::try_start_workers(yaml, env, 2)
    }

    /// [`Envoy::try_start_with_env`] with `workers` worker threads (one makes
    /// per-worker state, such as mcpgw's token cache, deterministic).
    pub fn try_start_workers(
        yaml: &str,
        env: &[(&str, &str)],
        workers: u32,
    ) -> Result<Envoy, String> {
        let dir = tempfile::tempdir().expect("temp dir");
        let cfg = dir.path().join("envoy.yaml");
        let access_log = dir.path().join("access.log");
        let yaml = yaml
            .replace(ACCESS_LOG_PLACEHOLDER, &access_log.display().to_string())
            .replace(
                AUDIT_LOG_PLACEHOLDER,
                &dir.path().join("audit.log").display().to_string(),
            );
        std::fs::write(&cfg, &yaml).expect("write envoy.yaml");
        let admin_file = dir.path().join("admin");
        let log = std::fs::File::create(dir.path().join("envoy.log")).expect("log file");
        let engine = if yaml.contains("envoy.filters.http.dynamic_modules") {
            Engine::Module
        } else {
            Engine::Wasm
        };
        let mut cmd = Command::new(envoy_bin());
        cmd.arg("-c")
            .arg(&cfg)
            .arg("--admin-address-path")
            .arg(&admin_file)
            .args(["--disable-hot-restart", "-l", "info"])
            .args(["--concurrency", &workers.to_string()])
            .args(["--component-log-level", "wasm:debug,dynamic_modules:debug"])
            // Access-log lines reach the file quickly (tests read them).
            .args(["--file-flush-interval-msec", "100"])
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("log"))
            .stderr(log);
        for (k, v) in env {
            cmd.env(k, v);
        }
        #[cfg(unix)]
        {
            use std::os::unix::process::CommandExt;
            cmd.process_group(0);
        }
        let child = cmd.spawn().expect("start envoy");
        let mut envoy = Envoy {
            child,
            dir,
            port: 0,
            admin_port: 0,
            engine,
        };
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Ok(Some(status)) = envoy.child.try_wait() {
                return Err(format!(
                    "envoy exited ({status}) during startup:\n{}",
                    envoy.log_tail(40)
                ));
            }
            if let Some(port) = poll_ready(&admin_file, &mut envoy.admin_port) {
                envoy.port = port;
                return Ok(envoy);
            }
            if Instant::now() >= deadline {
                return Err(format!(
                    "envoy did not become ready:\n{}",
                    envoy.log_tail(40)
                ));
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// GET on the admin interface.
    pub fn admin_get(&self, path: &str) -> Option<String> {
        admin_get(self.admin_port, path)
    }

    /// Fail if the log shows that the wasm VM crashed or the filter panicked.
    pub fn assert_log_clean(&self) {
        let log = self.log();
        for bad in FILTER_TROUBLE {
            assert!(!log.contains(bad), "filter trouble ({bad}):\n{log}");
        }
    }

    /// The last lines of the log, for failure messages.
    pub fn log_tail(&self, n: usize) -> String {
        tail(&self.log(), n)
    }

    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}/mcp", self.port)
    }

    /// Everything Envoy logged so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("envoy.log")).unwrap_or_default()
    }

    /// The audit records written so far (see [`RenderOpts::audit_log`]).
    pub fn audit_log(&self) -> Vec<serde_json::Value> {
        std::fs::read_to_string(self.dir.path().join("audit.log"))
            .unwrap_or_default()
            .lines()
            .filter_map(|l| serde_json::from_str(l).ok())
            .collect()
    }

    /// Lines logged by the filter (either build).
    pub fn filter_log(&self) -> Vec<String> {
        self.log()
            .lines()
            .filter(|l| l.contains("wasm log") || l.contains("[dynamic_modules]"))
            .map(str::to_string)
            .collect()
    }
}

/// Log text that means the filter failed: a wasm VM that trapped or
/// panicked, a module hook that panicked.
pub const FILTER_TROUBLE: [&str; 6] = [
    "panicked at",
    "Wasm VM failed",
    "wasm trap",
    "Function: proxy_on",
    "mcpgw panicked",
    "a filter hook panicked",
];

/// Decode an HTTP/1.1 chunked body.
/// GET on an Envoy admin interface on 127.0.0.1 (plain HTTP/1.1 with
/// `Connection: close`, no client library needed); the body of a 200.
pub fn admin_get(admin_port: u16, path: &str) -> Option<String> {
    use std::io::Write;
    let mut s = std::net::TcpStream::connect(("127.0.0.1", admin_port)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: admin\r\nConnection: close\r\n\r\n"
    )
    .ok()?;
    let mut out = String::new();
    s.read_to_string(&mut out).ok()?;
    let (head, body) = out.split_once("\r\n\r\n")?;
    if !head.starts_with("HTTP/1.1 200") {
        return None;
    }
    if head
        .to_ascii_lowercase()
        .contains("transfer-encoding: chunked")
    {
        return Some(dechunk(body));
    }
    Some(body.to_string())
}

/// One look at a starting Envoy: learns its admin port from the
/// `--admin-address-path` file, and returns the `mcp` listener's port once
/// Envoy is LIVE.
pub fn poll_ready(admin_file: &std::path::Path, admin_port: &mut u16) -> Option<u16> {
    if *admin_port == 0 {
        *admin_port = std::fs::read_to_string(admin_file)
            .ok()
            .and_then(|a| a.trim().rsplit(':').next().and_then(|p| p.parse().ok()))
            .unwrap_or(0);
    }
    if *admin_port == 0 {
        return None;
    }
    let port = listener_port(*admin_port, "mcp")?;
    admin_get(*admin_port, "/ready")
        .is_some_and(|r| r.trim() == "LIVE")
        .then_some(port)
}

/// The port Envoy bound for listener `name` (configured with port 0).
pub fn listener_port(admin_port: u16, name: &str) -> Option<u16> {
    let body = admin_get(admin_port, "/listeners?format=json")?;
    let v: serde_json::Value = serde_json::from_str(&body).ok()?;
    v["listener_statuses"]
        .as_array()?
        .iter()
        .find(|l| l["name"] == name)?["local_address"]["socket_address"]["port_value"]
        .as_u64()
        .and_then(|p| u16::try_from(p).ok())
}

/// The last `n` lines of `log`.
pub fn tail(log: &str, n: usize) -> String {
    let lines: Vec<&str> = log.lines().collect();
    lines
        .get(lines.len().saturating_sub(n)..)
        .unwrap_or_default()
        .join("\n")
}

/// Decode an HTTP/1.1 chunked body.
fn dechunk(mut body: &str) -> String {
    let mut out = String::new();
    while let Some((size, rest)) = body.split_once("\r\n") {
        let Ok(n) = usize::from_str_radix(size.trim(), 16) else {
            break;
        };
        let (Some(chunk), Some(tail)) = (rest.get(..n), rest.get(n..)) else {
            break;
        };
        if n == 0 {
            break;
        }
        out.push_str(chunk);
        body = tail.trim_start_matches("\r\n");
    }
    out
}

impl Drop for Envoy {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if std::thread::panicking() {
            eprintln!("---- envoy log (last 60 lines) ----\n{}", self.log_tail(60));
        }
    }
}
