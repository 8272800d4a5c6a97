//! `mcpgw run`: bridges for the stdio servers, Envoy with the filter, a
//! startup probe of every backend, and a clean stop on Ctrl-C / SIGTERM.

use crate::mcp_config::EnvCheck;
use crate::model::{SecretValue, Target};
use crate::{bridge, envoy_bin, keys, mcproute, plugin, render_envoy, RunArgs};
use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};
use tokio_util::sync::CancellationToken;

fn log(msg: impl std::fmt::Display) {
    eprintln!("mcpgw: {msg}");
}

pub fn main(a: RunArgs) -> Result<(), String> {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|e| format!("cannot start the runtime: {e}"))?;
    rt.block_on(run(a))
}

/// A private directory for the generated envoy.yaml, removed on exit.
struct StateDir(PathBuf);

impl StateDir {
    fn create() -> Result<StateDir, String> {
        let base = crate::env_var("XDG_RUNTIME_DIR")
            .filter(|x| !x.is_empty() && Path::new(x).is_dir())
            .map(PathBuf::from)
            .unwrap_or_else(std::env::temp_dir);
        let mut bytes = [0u8; 6];
        getrandom::fill(&mut bytes).map_err(|e| e.to_string())?;
        let suffix: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
        let dir = base.join(format!("mcpgw-{}-{suffix}", std::process::id()));
        let mut b = std::fs::DirBuilder::new();
        #[cfg(unix)]
        {
            use std::os::unix::fs::DirBuilderExt;
            b.mode(0o700);
        }
        b.create(&dir)
            .map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
        Ok(StateDir(dir))
    }
}

impl Drop for StateDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn port_free(address: std::net::IpAddr, port: u16, what: &str, flag: &str) -> Result<(), String> {
    match std::net::TcpListener::bind((address, port)) {
        Ok(_) => Ok(()),
        Err(e) => Err(format!(
            "{what} port {address}:{port} is not available ({e}); pass {flag} PORT (another mcpgw or Envoy may be running)"
        )),
    }
}

async fn run(a: RunArgs) -> Result<(), String> {
    let loaded = crate::load_input(
        &a.input,
        EnvCheck::Require,
        mcproute::Mode::Local,
        &crate::env_var,
    )?;
    crate::warn_all(&loaded.diags);
    let mut gateway = loaded.gateway;
    gateway.limits = a.listen.limits()?;
    crate::discover_jwks(&mut gateway, a.listen.ca_file.as_deref()).await?;
    render_envoy::preflight(&gateway)?;
    let keys = keys::resolve(
        a.keys.session_key_file.as_deref(),
        a.keys.previous_session_key_file.as_deref(),
        &crate::env_var,
    )?;
    let idle_ms = mcpgw_core::gateway::config::parse_duration(&a.stdio_idle_timeout)
        .map_err(|e| format!("--stdio-idle-timeout: {e}"))?;
    let grace_ms = mcpgw_core::gateway::config::parse_duration(&a.stdio_kill_grace)
        .map_err(|e| format!("--stdio-kill-grace: {e}"))?;
    for n in &a.stdio_shared {
        let known = gateway
            .backends
            .iter()
            .any(|b| b.name == *n && matches!(b.target, Target::Stdio(_)));
        if !known {
            return Err(format!(
                "--stdio-shared {n}: no stdio server of that name in {} (names are the keys of \"mcpServers\")",
                gateway.source
            ));
        }
    }
    let ca = if render_envoy::needs_ca(&gateway) {
        envoy_bin::ca_file(a.listen.ca_file.as_deref())?
    } else {
        a.listen.ca_file.clone().unwrap_or_default()
    };
    let envoy = envoy_bin::find(
        a.envoy.as_deref(),
        &crate::env_var,
        std::env::current_exe().ok(),
        std::env::current_dir().ok(),
    )?;
    port_free(a.listen.address, a.listen.port, "the listener", "--port")?;
    port_free(
        a.listen.address,
        a.listen.admin_port,
        "the admin",
        "--admin-port",
    )?;

    // Environment for Envoy: the keys and the Secret values. Variables from
    // the servers file are already in mcpgw's environment, which Envoy inherits.
    let mut envoy_env: BTreeMap<String, String> = BTreeMap::new();
    envoy_env.insert(plugin::SESSION_KEY_VAR.into(), keys.current.clone());
    if let Some(p) = &keys.previous {
        envoy_env.insert(plugin::PREVIOUS_SESSION_KEY_VAR.into(), p.clone());
    }
    for s in &gateway.secret_env {
        if let SecretValue::Literal(v) = &s.value {
            envoy_env.insert(s.var.clone(), v.clone());
        }
    }

    let ct = CancellationToken::new();
    let mut bridges = Vec::new();
    let filter = crate::engine::Filter {
        engine: a.engine,
        path: a.engine.cache_path(),
    };
    let mut opts = crate::render_options(&a.listen, filter, ca, keys.previous.is_some());
    for b in &gateway.backends {
        if let Target::Stdio(cmd) = &b.target {
            let bopts = bridge::Options {
                idle: Duration::from_millis(idle_ms),
                max_processes: cmd
                    .max_processes
                    .unwrap_or(usize::try_from(a.stdio_max_processes).unwrap_or(16)),
                shared: cmd.shared || a.stdio_shared.contains(&b.name),
                grace: Duration::from_millis(grace_ms),
            };
            let how = if bopts.shared {
                "one process shared by every session".to_string()
            } else {
                format!("one process per session, at most {}", bopts.max_processes)
            };
            let br = bridge::start(&b.name, cmd.clone(), bopts, &ct)
                .await
                .map_err(|e| format!("server \"{}\": cannot start its bridge: {e}", b.name))?;
            log(format!(
                "[{}] stdio server `{} {}` bridged at http://127.0.0.1:{}/mcp ({how})",
                b.name,
                cmd.command,
                cmd.args.join(" "),
                br.port
            ));
            opts.bridge_ports.insert(b.name.clone(), br.port);
            bridges.push(br);
        }
    }
    let mut warnings = Vec::new();
    let served = render_envoy::served(&gateway, &opts, &mut warnings);
    for w in &warnings {
        log(format!("warning: {w}"));
    }
    let yaml = render_envoy::render(&served, &opts);
    let json = plugin::plugin_json(&served, keys.previous.is_some(), &|_, b| {
        render_envoy::upstream(b, &opts).unwrap_or_else(|| plugin::Upstream {
            cluster: b.name.clone(),
            authority: None,
            path: "/mcp".into(),
            timeout: None,
        })
    });
    let env_for_filter = |name: &str| {
        envoy_env
            .get(name)
            .cloned()
            .or_else(|| crate::env_var(name))
    };
    plugin::validate(&served, &json, &env_for_filter)?;

    opts.filter.engine.write(&opts.filter.path)?;
    let state = StateDir::create()?;
    let cfg = state.0.join("envoy.yaml");
    std::fs::write(&cfg, &yaml).map_err(|e| format!("cannot write {}: {e}", cfg.display()))?;
    log(format!("session key from {}", keys.origin));
    log(format!(
        "Envoy {} with {} ({} {})",
        envoy.display(),
        cfg.display(),
        match opts.filter.engine {
            crate::engine::Engine::Module => "dynamic module",
            crate::engine::Engine::Wasm => "wasm filter",
        },
        opts.filter.path.display()
    ));

    // The filter logs at info or the chosen level, whichever is more verbose.
    let filter_level = match a.log_level.as_str() {
        "trace" | "debug" => a.log_level.clone(),
        _ => "info".into(),
    };
    let mut cmd = tokio::process::Command::new(&envoy);
    cmd.arg("-c")
        .arg(&cfg)
        .args(["--disable-hot-restart", "-l", &a.log_level])
        .args([
            "--component-log-level",
            &format!("wasm:{filter_level},dynamic_modules:{filter_level}"),
        ])
        .envs(&envoy_env)
        .stdin(std::process::Stdio::null())
        .kill_on_drop(true);
    #[cfg(unix)]
    cmd.process_group(0);
    // Signals first: a Ctrl-C during startup must stop Envoy too.
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .map_err(|e| e.to_string())?;
    let mut int = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::interrupt())
        .map_err(|e| e.to_string())?;
    let mut child = cmd
        .spawn()
        .map_err(|e| format!("cannot start Envoy {}: {e}", envoy.display()))?;
    let pid = child.id();

    // Ready?
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if let Ok(Some(status)) = child.try_wait() {
            stop_all(&ct, bridges).await;
            return Err(format!(
                "Envoy exited during startup ({status}); see its log above (config: {})",
                cfg.display()
            ));
        }
        if admin_get(&a.listen.address.to_string(), a.listen.admin_port, "/ready")
            .is_some_and(|r| r.trim() == "LIVE")
        {
            break;
        }
        if Instant::now() > deadline {
            terminate(pid, &mut child).await;
            stop_all(&ct, bridges).await;
            return Err("Envoy did not become ready within 60s".into());
        }
        let stop = tokio::select! {
            _ = tokio::time::sleep(Duration::from_millis(100)) => false,
            _ = int.recv() => true,
            _ = term.recv() => true,
        };
        if stop {
            log("stopping");
            terminate(pid, &mut child).await;
            stop_all(&ct, bridges).await;
            return Ok(());
        }
    }
    let address = a.listen.address.to_string();
    let url = format!(
        "http://{}:{}{}",
        display_host(&address),
        a.listen.port,
        served.path
    );
    log(format!(
        "serving {url} ({} backends)",
        served.backends.len()
    ));
    if !a.no_probe {
        let probe_url = format!(
            "http://{}:{}{}",
            a.listen.address, a.listen.port, served.path
        );
        let names: Vec<String> = served.backends.iter().map(|b| b.name.clone()).collect();
        let admin = (address.clone(), a.listen.admin_port);
        tokio::spawn(async move { probe(&probe_url, &names, &admin).await });
    }

    let result = tokio::select! {
        status = child.wait() => {
            Err(format!("Envoy exited unexpectedly ({}); see its log above", status.map(|s| s.to_string()).unwrap_or_else(|e| e.to_string())))
        }
        _ = int.recv() => { log("interrupted; stopping"); terminate(pid, &mut child).await; Ok(()) }
        _ = term.recv() => { log("terminated; stopping"); terminate(pid, &mut child).await; Ok(()) }
    };
    stop_all(&ct, bridges).await;
    drop(state);
    if result.is_ok() {
        log("stopped");
    }
    result
}

async fn stop_all(ct: &CancellationToken, bridges: Vec<bridge::Bridge>) {
    ct.cancel();
    futures_util::future::join_all(bridges.into_iter().map(bridge::Bridge::stop)).await;
}

fn display_host(address: &str) -> &str {
    if address == "127.0.0.1" {
        "localhost"
    } else {
        address
    }
}

/// SIGTERM to Envoy's process group, then SIGKILL after 10 s.
async fn terminate(pid: Option<u32>, child: &mut tokio::process::Child) {
    #[cfg(unix)]
    if let Some(pid) = pid.and_then(|p| i32::try_from(p).ok()) {
        // SAFETY: kill(2) with a negative pid signals that process group;
        // the group is Envoy's own (process_group(0) at spawn).
        unsafe {
            libc::kill(-pid, libc::SIGTERM);
        }
    }
    if tokio::time::timeout(Duration::from_secs(10), child.wait())
        .await
        .is_err()
    {
        let _ = child.kill().await;
    }
}

/// GET on Envoy's admin interface.
pub fn admin_get(address: &str, port: u16, path: &str) -> Option<String> {
    let mut s = std::net::TcpStream::connect_timeout(
        &std::net::SocketAddr::new(address.parse().ok()?, port),
        Duration::from_secs(2),
    )
    .ok()?;
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
        let mut rest = body;
        let mut plain = String::new();
        while let Some((size, tail)) = rest.split_once("\r\n") {
            let n = usize::from_str_radix(size.trim(), 16).ok()?;
            if n == 0 {
                break;
            }
            plain.push_str(tail.get(..n)?);
            rest = tail.get(n..)?.trim_start_matches("\r\n");
        }
        return Some(plain);
    }
    Some(body.to_string())
}

/// initialize + tools/list through the gateway, then one line per backend:
/// did it answer (Envoy's per-cluster counters) and how many tools it shows.
async fn probe(url: &str, names: &[String], admin: &(String, u16)) {
    use rmcp::ServiceExt;
    let transport = rmcp::transport::StreamableHttpClientTransport::from_uri(url.to_string());
    let client_info = rmcp::model::ClientConfig::default();
    let tools = match tokio::time::timeout(Duration::from_secs(90), async {
        let client = client_info
            .serve(transport)
            .await
            .map_err(|e| format!("initialize failed: {e}"))?;
        let tools = client
            .list_all_tools()
            .await
            .map_err(|e| format!("tools/list failed: {e}"));
        let _ = client.cancel().await;
        tools
    })
    .await
    {
        Ok(Ok(t)) => t,
        Ok(Err(e)) => {
            log(format!("probe: {e}"));
            vec![]
        }
        Err(_) => {
            log("probe: no answer within 90s");
            vec![]
        }
    };
    let stats = tokio::task::spawn_blocking({
        let admin = admin.clone();
        move || {
            admin_get(
                &admin.0,
                admin.1,
                "/stats?filter=upstream_rq_2xx$|upstream_cx_connect_fail$|upstream_rq_[45]xx$",
            )
        }
    })
    .await
    .ok()
    .flatten()
    .unwrap_or_default();
    let stat = |cluster: &str, name: &str| -> u64 {
        let key = format!("cluster.{cluster}.{name}: ");
        stats
            .lines()
            .find_map(|l| l.strip_prefix(&key))
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or(0)
    };
    for name in names {
        let count = if names.len() == 1 {
            tools.len()
        } else {
            let prefix = format!("{name}__");
            tools.iter().filter(|t| t.name.starts_with(&prefix)).count()
        };
        let ok = stat(name, "upstream_rq_2xx");
        if ok > 0 {
            log(format!("backend {name}: answered ({count} tools)"));
        } else {
            let fails = stat(name, "upstream_cx_connect_fail");
            let e4 = stat(name, "upstream_rq_4xx");
            let e5 = stat(name, "upstream_rq_5xx");
            log(format!(
                "backend {name}: did NOT answer (connect failures {fails}, 4xx {e4}, 5xx {e5}); it is left out of sessions until it does, see the Envoy log"
            ));
        }
    }
}
