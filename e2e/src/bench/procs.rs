//! The processes a benchmark runs: backends (this binary re-executed as
//! `__backend`) and Envoys (plain router, native `mcp_router`, mcpgw as the
//! dynamic module or the wasm filter), each with its generated configuration. Every child is killed when its handle
//! drops, and also when the benchmark itself dies (`PR_SET_PDEATHSIG`).

use super::backend;
use crate::envoy::Engine;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// The session key every mcpgw instance of the benchmark uses (32 bytes, base64).
pub const SESSION_KEY: &str = "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=";

fn die_with_parent(cmd: &mut Command) {
    use std::os::unix::process::CommandExt;
    // SAFETY: prctl is async-signal-safe; nothing else runs between fork and exec.
    unsafe {
        cmd.pre_exec(|| {
            libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
            Ok(())
        });
    }
}

/// A running benchmark backend.
pub struct Backend {
    child: Child,
    pub name: String,
    pub port: u16,
}

impl Backend {
    /// Start `exe __backend <opts>` and wait for its `listening` line.
    pub fn start(exe: &Path, opts: &backend::Options) -> Result<Backend, String> {
        let mut cmd = Command::new(exe);
        cmd.arg("__backend")
            .args(opts.to_args())
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit());
        die_with_parent(&mut cmd);
        let mut child = cmd
            .spawn()
            .map_err(|e| format!("start backend {}: {e}", opts.name))?;
        let mut line = String::new();
        if let Some(out) = child.stdout.take() {
            let _ = BufReader::new(out).read_line(&mut line);
        }
        let port = line
            .trim()
            .strip_prefix("listening ")
            .and_then(|a| a.rsplit(':').next())
            .and_then(|p| p.parse().ok());
        match port {
            Some(port) => Ok(Backend {
                child,
                name: opts.name.clone(),
                port,
            }),
            None => {
                let _ = child.kill();
                let _ = child.wait();
                Err(format!(
                    "backend {} did not start (said {line:?})",
                    opts.name
                ))
            }
        }
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }
}

impl Drop for Backend {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// What an Envoy instance runs in front of its upstreams.
#[derive(Debug, Clone)]
pub enum Proxy {
    /// The HTTP router alone, everything to the first upstream.
    Plain,
    /// Envoy's own `envoy.filters.http.mcp` + `envoy.filters.http.mcp_router`.
    Native,
    /// mcpgw (the given build) with this plugin configuration (JSON) and the
    /// router.
    Mcpgw { engine: Engine, plugin: String },
    /// mcpgw loaded but never matching (its `path` is another one): the
    /// router sends everything to the first upstream, like [`Proxy::Plain`].
    /// What any filter of that kind costs (V8 for the wasm build), before
    /// mcpgw does any work.
    Idle { engine: Engine, plugin: String },
}

impl Proxy {
    /// The build of mcpgw this proxy runs, if any.
    pub fn engine(&self) -> Option<Engine> {
        match self {
            Proxy::Mcpgw { engine, .. } | Proxy::Idle { engine, .. } => Some(*engine),
            Proxy::Plain | Proxy::Native => None,
        }
    }
}

/// mcpgw's plugin configuration for these backends (cluster = name).
/// `backend_extra` is merged into every backend object; `top_extra` into the top level.
pub fn mcpgw_plugin(
    backends: &[&Backend],
    backend_extra: &serde_json::Value,
    top_extra: &serde_json::Value,
) -> String {
    let list: Vec<serde_json::Value> = backends
        .iter()
        .map(|b| {
            let mut o = serde_json::json!({
                "name": b.name, "cluster": b.name, "path": "/mcp",
                "authority": format!("127.0.0.1:{}", b.port),
            });
            merge(&mut o, backend_extra);
            o
        })
        .collect();
    let mut cfg = serde_json::json!({
        "path": "/mcp",
        "session": {"key": SESSION_KEY, "ttl": "24h"},
        "backends": list,
    });
    merge(&mut cfg, top_extra);
    cfg.to_string()
}

fn merge(into: &mut serde_json::Value, extra: &serde_json::Value) {
    if let (Some(o), Some(e)) = (into.as_object_mut(), extra.as_object()) {
        for (k, v) in e {
            o.insert(k.clone(), v.clone());
        }
    }
}

/// The whole Envoy configuration for `proxy` in front of `backends`: one
/// listener on 127.0.0.1 (port chosen by the OS), no access log, the same
/// buffer limits and timeouts for every kind of proxy. `code` is the build
/// of mcpgw the proxy loads (`mcpgw.wasm` or `libmcpgw.so`), if it loads one.
pub fn render(proxy: &Proxy, backends: &[&Backend], code: &Path) -> String {
    let mut clusters = String::new();
    for b in backends {
        clusters.push_str(&format!(
            r#"  - name: {name}
    type: STATIC
    connect_timeout: 2s
    per_connection_buffer_limit_bytes: 33554432
    load_assignment:
      cluster_name: {name}
      endpoints: [{{lb_endpoints: [{{endpoint: {{address: {{socket_address: {{address: 127.0.0.1, port_value: {port}}}}}}}}}]}}]
"#,
            name = b.name,
            port = b.port
        ));
    }
    let first = backends.first().map(|b| b.name.as_str()).unwrap_or("none");
    let (routes, filters) = match proxy {
        Proxy::Plain => (
            format!("              - match: {{prefix: \"/\"}}\n                route: {{cluster: {first}, timeout: 0s}}\n"),
            String::new(),
        ),
        Proxy::Native => {
            let mut servers = String::new();
            for b in backends {
                servers.push_str(&format!(
                    "                - name: {n}\n                  mcp_cluster: {{cluster: {n}, path: /mcp, timeout: 30s}}\n",
                    n = b.name
                ));
            }
            (
                // mcp_router is terminal and ignores the route; one must still match.
                format!("              - match: {{prefix: \"/\"}}\n                route: {{cluster: {first}, timeout: 0s}}\n"),
                format!(
                    r#"          - name: envoy.filters.http.mcp
            typed_config:
              "@type": type.googleapis.com/envoy.extensions.filters.http.mcp.v3.Mcp
          - name: envoy.filters.http.mcp_router
            typed_config:
              "@type": type.googleapis.com/envoy.extensions.filters.http.mcp_router.v3.McpRouter
              servers:
{servers}"#
                ),
            )
        }
        Proxy::Mcpgw { engine, plugin } | Proxy::Idle { engine, plugin } => (
            if matches!(proxy, Proxy::Idle { .. }) {
                format!("              - match: {{prefix: \"/\"}}\n                route: {{cluster: {first}, timeout: 0s}}\n")
            } else {
                "              - match: {prefix: \"/\", headers: [{name: x-mcpgw-cluster, present_match: true}]}\n                route: {cluster_header: x-mcpgw-cluster, timeout: 0s}\n              - match: {prefix: \"/\"}\n                direct_response: {status: 404, body: {inline_string: \"not found\"}}\n".to_string()
            },
            engine.filter_yaml_at(plugin, &[], code),
        ),
    };
    // The router is terminal except with mcp_router, which replaces it.
    let router = if matches!(proxy, Proxy::Native) {
        ""
    } else {
        "          - name: envoy.filters.http.router\n            typed_config:\n              \"@type\": type.googleapis.com/envoy.extensions.filters.http.router.v3.Router\n"
    };
    format!(
        r#"admin:
  address: {{socket_address: {{address: 127.0.0.1, port_value: 0}}}}
static_resources:
  listeners:
  - name: mcp
    address: {{socket_address: {{address: 127.0.0.1, port_value: 0}}}}
    per_connection_buffer_limit_bytes: 8388608
    filter_chains:
    - filters:
      - name: envoy.filters.network.http_connection_manager
        typed_config:
          "@type": type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager
          stat_prefix: mcp
          stream_idle_timeout: 300s
          route_config:
            virtual_hosts:
            - name: mcp
              domains: ["*"]
              routes:
{routes}          http_filters:
{filters}{router}  clusters:
{clusters}"#
    )
}

/// A running Envoy.
pub struct Envoy {
    child: Child,
    pub label: String,
    pub dir: tempfile::TempDir,
    pub port: u16,
    pub admin_port: u16,
}

impl Envoy {
    /// Check a configuration with `envoy --mode validate`.
    pub fn validate(bin: &Path, yaml: &str) -> Result<(), String> {
        let dir = tempfile::tempdir().map_err(|e| e.to_string())?;
        let cfg = dir.path().join("envoy.yaml");
        std::fs::write(&cfg, yaml).map_err(|e| e.to_string())?;
        let out = Command::new(bin)
            .arg("--mode")
            .arg("validate")
            .arg("-c")
            .arg(&cfg)
            .args(["-l", "error", "--disable-hot-restart"])
            .output()
            .map_err(|e| format!("run {}: {e}", bin.display()))?;
        if out.status.success() {
            Ok(())
        } else {
            Err(format!(
                "{}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            ))
        }
    }

    /// Start Envoy with `yaml`; wait (30 s at most) until its listener is live.
    pub fn start(bin: &Path, label: &str, yaml: &str, concurrency: usize) -> Result<Envoy, String> {
        Self::start_with(bin, label, yaml, concurrency, &[], Duration::from_secs(30))
    }

    /// [`Envoy::start`] under `wrapper` (e.g. `valgrind --tool=callgrind`;
    /// it must exec Envoy in its own process), waiting up to `ready_within`.
    pub fn start_with(
        bin: &Path,
        label: &str,
        yaml: &str,
        concurrency: usize,
        wrapper: &[String],
        ready_within: Duration,
    ) -> Result<Envoy, String> {
        let dir = tempfile::tempdir().map_err(|e| e.to_string())?;
        let cfg = dir.path().join("envoy.yaml");
        std::fs::write(&cfg, yaml).map_err(|e| e.to_string())?;
        let admin_file = dir.path().join("admin");
        let log = std::fs::File::create(dir.path().join("envoy.log")).map_err(|e| e.to_string())?;
        let log2 = log.try_clone().map_err(|e| e.to_string())?;
        let mut cmd = match wrapper.split_first() {
            Some((w, args)) => {
                let mut c = Command::new(w);
                c.args(args).arg(bin);
                c
            }
            None => Command::new(bin),
        };
        cmd.arg("-c")
            .arg(&cfg)
            .arg("--admin-address-path")
            .arg(&admin_file)
            .arg("--concurrency")
            .arg(concurrency.to_string())
            .args(["--disable-hot-restart", "-l", "warn"])
            .stdin(Stdio::null())
            .stdout(log)
            .stderr(log2);
        die_with_parent(&mut cmd);
        let child = cmd
            .spawn()
            .map_err(|e| format!("start {}: {e}", bin.display()))?;
        let mut envoy = Envoy {
            child,
            label: label.to_string(),
            dir,
            port: 0,
            admin_port: 0,
        };
        let deadline = Instant::now() + ready_within;
        loop {
            if let Ok(Some(status)) = envoy.child.try_wait() {
                return Err(format!(
                    "envoy ({label}) exited ({status}) during startup:\n{}",
                    envoy.log_tail(30)
                ));
            }
            if let Some(port) = crate::envoy::poll_ready(&admin_file, &mut envoy.admin_port) {
                envoy.port = port;
                return Ok(envoy);
            }
            if Instant::now() >= deadline {
                return Err(format!(
                    "envoy ({label}) did not become ready:\n{}",
                    envoy.log_tail(30)
                ));
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// GET on the admin interface.
    pub fn admin_get(&self, path: &str) -> Option<String> {
        crate::envoy::admin_get(self.admin_port, path)
    }

    pub fn log_path(&self) -> PathBuf {
        self.dir.path().join("envoy.log")
    }

    pub fn log_tail(&self, n: usize) -> String {
        crate::envoy::tail(
            &std::fs::read_to_string(self.log_path()).unwrap_or_default(),
            n,
        )
    }
}

impl Drop for Envoy {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
