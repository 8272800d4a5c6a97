//! End-to-end tests of the `mcpgw` command: `mcpgw run` with real Envoy in
//! front of the rmcp test backends, a stdio server and an https backend (a
//! local TLS server whose test CA is passed with --ca-file), driven by the
//! rmcp client; two gateways sharing a session key; rendered configs checked
//! with `envoy --mode validate`.
//!
//! The binary is `<workspace>/target/debug/mcpgw`; `./build.sh test` builds it
//! (`cargo build -p mcpgw`) before these tests.

use mcpgw_e2e::backends::{self, Beta, Kind};
use mcpgw_e2e::client::{self, Raw};
use mcpgw_e2e::envoy::{envoy_bin, workspace_root};
use mcpgw_e2e::mcpgw_run::{mcpgw_bin, Gateway};
use rmcp::transport::streamable_http_server::{
    session::never::NeverSessionManager, StreamableHttpServerConfig, StreamableHttpService,
};
use serde_json::json;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

const KEY: &str = "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=";

// ---------------------------------------------------------------------------
// A TLS backend: the `beta` test server over https with a test CA
// ---------------------------------------------------------------------------

async fn spawn_tls_backend() -> mcpgw_e2e::tls::TlsServer {
    mcpgw_e2e::tls::serve(|_| {
        let service = StreamableHttpService::new(
            || Ok(Beta::new()),
            Arc::new(NeverSessionManager::default()),
            StreamableHttpServerConfig::default()
                .disable_allowed_hosts()
                .with_legacy_session_mode(false)
                .with_json_response(true),
        );
        axum::Router::new().route_service("/mcp", service)
    })
    .await
}

fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
    let p = dir.join(name);
    std::fs::write(&p, text).expect("write");
    p
}

fn tool_names(tools: &[rmcp::model::Tool]) -> Vec<String> {
    let mut v: Vec<String> = tools.iter().map(|t| t.name.to_string()).collect();
    v.sort();
    v
}

// ---------------------------------------------------------------------------
// Tests
// ---------------------------------------------------------------------------

/// `mcpgw run --mcp-config` with two HTTP test backends, a stdio server and
/// an https backend, driven by the rmcp client.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn run_mcp_config_with_http_stdio_and_https_backends() {
    let alpha = backends::spawn(Kind::Alpha).await;
    let beta = backends::spawn(Kind::Beta).await;
    let tls = spawn_tls_backend().await;
    let dir = tempfile::tempdir().expect("dir");
    let ca = write(dir.path(), "ca.pem", &tls.ca_pem);
    let stdio = env!("CARGO_BIN_EXE_mcp-stdio-server");
    let cfg = write(
        dir.path(),
        "mcp.json",
        &json!({"mcpServers": {
            "alpha": {"type": "http", "url": alpha.url(),
                      "headers": {"Authorization": "Bearer ${ALPHA_TOKEN}"},
                      "excludeTools": ["admin_reset"]},
            "beta": {"url": beta.url(), "tools": ["echo", "whoami", "multiply"]},
            "secure": {"type": "streamable-http", "url": format!("https://localhost:{}/mcp", tls.port)},
            "local": {"command": stdio, "env": {"GREETING": "hello ${ALPHA_TOKEN}"}},
            "legacy": {"type": "sse", "url": "http://127.0.0.1:1/sse"}
        }})
        .to_string(),
    );
    let mut gw = tokio::task::spawn_blocking({
        let cfg = cfg.display().to_string();
        let ca = ca.display().to_string();
        move || {
            Gateway::start(
                &["--mcp-config", &cfg, "--ca-file", &ca],
                &[("ALPHA_TOKEN", "alpha-secret")],
            )
        }
    })
    .await
    .expect("start");
    let log = gw.log();
    assert!(log.contains("mcpServers.legacy: skipped"), "{log}");
    assert!(log.contains("legacy HTTP+SSE transport"), "{log}");

    // The startup probe names every backend that answered.
    tokio::task::block_in_place(|| gw.wait_for("backend local: answered", Duration::from_secs(60)));
    let log = gw.log();
    for b in ["alpha", "beta", "secure"] {
        assert!(
            log.contains(&format!("backend {b}: answered")),
            "{b}:\n{log}"
        );
    }
    assert!(
        log.contains("[local] mcp-stdio-server"),
        "stdio stderr in the log:\n{log}"
    );

    let (_rec, c) = client::connect(&gw.url(), &[]).await;
    let tools = tool_names(&c.list_all_tools().await.expect("tools/list"));
    for want in [
        "alpha__echo",
        "beta__multiply",
        "secure__echo",
        "local__echo",
        "local__pid",
    ] {
        assert!(tools.contains(&want.to_string()), "{want} in {tools:?}");
    }
    assert!(!tools.contains(&"alpha__admin_reset".to_string()));
    assert!(!tools.contains(&"beta__count".to_string()));

    let r = client::call(&c, "alpha__whoami", json!({}))
        .await
        .expect("whoami");
    let who: serde_json::Value = serde_json::from_str(&client::text(&r)).expect("json");
    assert_eq!(who["authorization"], "Bearer alpha-secret");
    let r = client::call(&c, "secure__multiply", json!({"a": 6, "b": 7}))
        .await
        .expect("https");
    assert_eq!(client::text(&r), "42");
    let r = client::call(&c, "local__echo", json!({"text": "hi"}))
        .await
        .expect("stdio");
    assert_eq!(client::text(&r), "stdio: hi");
    let r = client::call(&c, "local__env", json!({"name": "GREETING"}))
        .await
        .expect("env");
    assert_eq!(client::text(&r), "hello alpha-secret");
    // Progress from the stdio server reaches the client through the bridge.
    let r = c
        .call_tool(
            rmcp::model::CallToolRequestParams::new("local__count")
                .with_arguments(client::args(json!({"n": 3, "delay_ms": 10}))),
        )
        .await
        .expect("count");
    assert_eq!(client::text(&r), "counted to 3");

    // One process per session: another client gets its own.
    let pid1 = client::text(
        &client::call(&c, "local__pid", json!({}))
            .await
            .expect("pid"),
    );
    let (_rec2, c2) = client::connect(&gw.url(), &[]).await;
    let pid2 = client::text(
        &client::call(&c2, "local__pid", json!({}))
            .await
            .expect("pid"),
    );
    assert_ne!(pid1, pid2);

    // A process that exits is restarted (with backoff) and re-initialized;
    // the session goes on.
    let _ = client::call(&c, "local__exit", json!({})).await;
    let deadline = Instant::now() + Duration::from_secs(20);
    let pid3 = loop {
        tokio::time::sleep(Duration::from_millis(300)).await;
        if let Ok(r) = client::call(&c, "local__pid", json!({})).await {
            if !r.is_error.unwrap_or(false) {
                break client::text(&r);
            }
        }
        assert!(Instant::now() < deadline, "no restart:\n{}", gw.log());
    };
    assert_ne!(pid3, pid1);
    assert!(
        gw.log().contains("[local] restarted and re-initialized"),
        "{}",
        gw.log()
    );

    let _ = c.cancel().await;
    let _ = c2.cancel().await;
    // SIGTERM stops Envoy, the bridges and their processes, and exits 0.
    let status = tokio::task::block_in_place(|| gw.stop());
    assert!(status.success(), "{status}:\n{}", gw.log());
    assert!(gw.log().contains("mcpgw: stopped"));
    let alive = Command::new("kill")
        .args(["-0", pid2.trim()])
        .stderr(Stdio::null())
        .status()
        .map(|s| s.success())
        .unwrap_or(false);
    assert!(
        !alive,
        "stdio process {pid2} still running after mcpgw stopped"
    );
    assert!(
        std::net::TcpStream::connect(("127.0.0.1", gw.admin_port)).is_err(),
        "Envoy still up"
    );
}

/// An MCPRoute with `hostnames` run locally: the filter names the backend and
/// the route rewrites path and host (`rewrite: route`), so the route is
/// re-resolved on the client's own host and every call reaches its backend at
/// the backend's path (with the API key query the MCPRoute adds), never with
/// the client's query string. A host the route does not list gets 404.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn run_mcproute_with_hostnames_routes_every_call() {
    let alpha = backends::spawn(Kind::Alpha).await;
    let beta = backends::spawn(Kind::Beta).await;
    let dir = tempfile::tempdir().expect("dir");
    let route = write(
        dir.path(),
        "route.yaml",
        &format!(
            r#"apiVersion: aigateway.envoyproxy.io/v1alpha1
kind: MCPRoute
metadata: {{name: hosts, namespace: default}}
spec:
  parentRefs: [{{name: gw}}]
  hostnames: [localhost]
  backendRefs:
    - {{name: alpha, kind: Backend, group: gateway.envoyproxy.io}}
    - name: beta
      kind: Backend
      group: gateway.envoyproxy.io
      securityPolicy: {{apiKey: {{inline: k-1, queryParam: key}}}}
---
apiVersion: gateway.envoyproxy.io/v1alpha1
kind: Backend
metadata: {{name: alpha, namespace: default}}
spec: {{endpoints: [{{ip: {{address: 127.0.0.1, port: {}}}}}]}}
---
apiVersion: gateway.envoyproxy.io/v1alpha1
kind: Backend
metadata: {{name: beta, namespace: default}}
spec: {{endpoints: [{{ip: {{address: 127.0.0.1, port: {}}}}}]}}
"#,
            alpha.port(),
            beta.port()
        ),
    );
    let gw = tokio::task::spawn_blocking({
        let route = route.display().to_string();
        move || Gateway::start(&[&route, "--no-probe"], &[])
    })
    .await
    .expect("start");

    let other = Raw::new(&gw.url());
    let a = other
        .post(None, &json!({"jsonrpc":"2.0","id":0,"method":"ping"}))
        .await;
    assert_eq!(a.status, 404, "a host the route does not list: {}", a.body);

    let raw = Raw::new(&format!("http://localhost:{}/mcp?client=q", gw.port));
    let sid = raw.session().await;
    for (i, (tool, port, path)) in [
        ("alpha__whoami", alpha.port(), "/mcp"),
        ("beta__whoami", beta.port(), "/mcp?key=k-1"),
    ]
    .into_iter()
    .enumerate()
    {
        let a = raw
            .post(
                Some(&sid),
                &json!({"jsonrpc":"2.0","id":i + 1,"method":"tools/call","params":{"name":tool,"arguments":{}}}),
            )
            .await;
        assert_eq!(a.status, 200, "{tool}: {}", a.body);
        let text = a.json()["result"]["content"][0]["text"]
            .as_str()
            .unwrap_or_default()
            .to_string();
        let who: serde_json::Value = serde_json::from_str(&text).expect("whoami JSON");
        assert_eq!(who["host"], format!("127.0.0.1:{port}"), "{tool}: {who}");
        assert_eq!(who["path"], path, "{tool}: {who}");
    }
}

/// Two `mcpgw run` (two Envoys, as behind a load balancer) with the same key
/// serve each other's sessions, one with each build of the filter (the
/// dynamic module and mcpgw.wasm share sealed ids and revocations' format).
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_gateways_with_one_key_share_sessions() {
    let alpha = backends::spawn(Kind::Alpha).await;
    let beta = backends::spawn(Kind::Beta).await;
    let dir = tempfile::tempdir().expect("dir");
    let cfg = write(
        dir.path(),
        "mcp.json",
        &json!({"servers": {"alpha": {"url": alpha.url()}, "beta": {"type": "http", "url": beta.url()}}})
            .to_string(),
    );
    let key_file = write(dir.path(), "session.key", KEY);
    let start = |args: Vec<String>, env: Vec<(&'static str, &'static str)>| {
        tokio::task::spawn_blocking(move || {
            let a: Vec<&str> = args.iter().map(String::as_str).collect();
            Gateway::start(&a, &env)
        })
    };
    let cfg_s = cfg.display().to_string();
    let a = start(
        vec![
            "--mcp-config".into(),
            cfg_s.clone(),
            "--session-key-file".into(),
            key_file.display().to_string(),
            "--no-probe".into(),
            "--engine".into(),
            "module".into(),
        ],
        vec![],
    );
    let b = start(
        vec![cfg_s, "--no-probe".into(), "--engine".into(), "wasm".into()],
        vec![("MCPGW_SESSION_KEY", KEY)],
    );
    let (a, b) = (a.await.expect("a"), b.await.expect("b"));
    assert!(a.log().contains("session key from"), "{}", a.log());
    assert!(a.log().contains("(dynamic module "), "{}", a.log());
    assert!(b.log().contains("(wasm filter "), "{}", b.log());
    assert!(
        b.log().contains("session key from $MCPGW_SESSION_KEY"),
        "{}",
        b.log()
    );

    let ra = Raw::new(&a.url());
    let rb = Raw::new(&b.url());
    let sid = ra.session().await;
    let call = |id: u64, name: &str, args: serde_json::Value| json!({"jsonrpc": "2.0", "id": id, "method": "tools/call", "params": {"name": name, "arguments": args}});
    let r = rb
        .post(Some(&sid), &call(1, "alpha__echo", json!({"text": "x"})))
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.json()["result"]["content"][0]["text"], "alpha: x");
    let r = rb
        .post(
            Some(&sid),
            &call(2, "beta__multiply", json!({"a": 2, "b": 3})),
        )
        .await;
    assert_eq!(r.json()["result"]["content"][0]["text"], "6", "{}", r.body);
    let r = rb
        .send(
            reqwest::Method::DELETE,
            &[
                ("mcp-session-id", sid.as_str()),
                ("mcp-protocol-version", "2025-11-25"),
            ],
            None,
        )
        .await;
    assert!(
        r.status == 204 || r.status == 200,
        "DELETE: {} {}",
        r.status,
        r.body
    );
    let r = rb
        .post(Some(&sid), &call(3, "alpha__echo", json!({"text": "x"})))
        .await;
    assert_eq!(r.status, 404, "after DELETE: {}", r.body);

    // A gateway with another key does not accept the session.
    drop(a);
    let other_key = "BBECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=";
    let c = tokio::task::spawn_blocking({
        let cfg = cfg.display().to_string();
        move || {
            Gateway::start(
                &["--mcp-config", &cfg, "--no-probe"],
                &[("MCPGW_SESSION_KEY", other_key)],
            )
        }
    })
    .await
    .expect("c");
    let sid2 = rb.session().await;
    let r = Raw::new(&c.url())
        .post(Some(&sid2), &call(4, "alpha__echo", json!({"text": "x"})))
        .await;
    assert_eq!(r.status, 404, "{}", r.body);

    // If Envoy dies, mcpgw says so and exits non-zero.
    let mut c = c;
    {
        use std::io::Write;
        let mut s = std::net::TcpStream::connect(("127.0.0.1", c.admin_port)).expect("admin");
        let _ = s.write_all(b"POST /quitquitquit HTTP/1.1\r\nHost: a\r\nContent-Length: 0\r\n\r\n");
    }
    let status = tokio::task::block_in_place(|| {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if let Ok(Some(s)) = c.child.try_wait() {
                break s;
            }
            assert!(
                Instant::now() < deadline,
                "mcpgw still running:\n{}",
                c.log()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    });
    assert!(!status.success());
    assert!(
        c.log().contains("mcpgw: error: Envoy exited unexpectedly"),
        "{}",
        c.log()
    );
}

fn validate_with_envoy(yaml: &str, env: &[(&str, &str)]) {
    let dir = tempfile::tempdir().expect("dir");
    let p = write(dir.path(), "envoy.yaml", yaml);
    let mut cmd = Command::new(envoy_bin());
    cmd.args(["--mode", "validate", "-c"])
        .arg(&p)
        .stdin(Stdio::null());
    for (k, v) in env {
        cmd.env(k, v);
    }
    let out = cmd.output().expect("envoy");
    let text =
        String::from_utf8_lossy(&out.stdout).to_string() + &String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success() && text.contains("OK"),
        "envoy --mode validate failed:\n{text}\n{yaml}"
    );
}

fn mcpgw(args: &[&str], env: &[(&str, &str)]) -> (bool, String, String) {
    let home = tempfile::tempdir().expect("home");
    let mut cmd = Command::new(mcpgw_bin());
    cmd.args(args)
        .current_dir(workspace_root())
        .env("XDG_CONFIG_HOME", home.path().join("config"))
        .env("XDG_CACHE_HOME", home.path().join("cache"))
        .env_remove("MCPGW_SESSION_KEY")
        .stdin(Stdio::null());
    for (k, v) in env {
        cmd.env(k, v);
    }
    let out = cmd.output().expect("mcpgw");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).to_string(),
        String::from_utf8_lossy(&out.stderr).to_string(),
    )
}

/// `mcpgw render` output passes `envoy --mode validate` (which loads the
/// filter), for both inputs and both builds of the filter.
#[test]
fn rendered_envoy_yaml_passes_envoy_validate() {
    // The default filter path is where `run` keeps it; render writes it there.
    for (engine, file, marker, audit) in [
        (
            "module",
            "libmcpgw-",
            "envoy.filters.http.dynamic_modules",
            "%FILTER_STATE(mcpgw.audit_decision:PLAIN)%",
        ),
        (
            "wasm",
            "mcpgw-",
            "host_env_keys",
            "%FILTER_STATE(wasm.mcpgw.audit_decision:PLAIN)%",
        ),
    ] {
        let cache = tempfile::tempdir().expect("cache");
        let cache_s = cache.path().display().to_string();
        let (ok, yaml, err) = mcpgw(
            &[
                "render",
                "--engine",
                engine,
                "--mcp-config",
                "testdata/cli/mcp-servers.json",
                "--port",
                "0",
                "--admin-port",
                "0",
                "--audit-log",
                "-",
                "--limit-per-caller",
                "60/m",
                "--limit-tool",
                "github__create_issue=10/30s",
            ],
            &[("GITHUB_TOKEN", "x"), ("XDG_CACHE_HOME", &cache_s)],
        );
        assert!(ok, "{engine}: {err}");
        assert!(
            yaml.contains(&format!("filename: {cache_s}/mcpgw/{file}")),
            "{engine}: {yaml}"
        );
        assert!(err.contains("\"filesystem\" is a stdio server"), "{err}");
        assert!(yaml.contains(marker), "{engine}: {yaml}");
        assert!(
            yaml.contains("envoy.filters.http.local_ratelimit")
                && yaml.contains("value: github__create_issue"),
            "{engine}: {yaml}"
        );
        assert!(yaml.contains("\"rate_limit_headers\": true"), "{yaml}");
        // The audit record reads the build's own filter-state names.
        assert!(
            yaml.contains("envoy.access_loggers.extension_filters.cel") && yaml.contains(audit),
            "{engine}: {yaml}"
        );
        assert!(!yaml.contains("ghp_"), "no secret in the file");
        validate_with_envoy(&yaml, &[("MCPGW_SESSION_KEY", KEY), ("GITHUB_TOKEN", "x")]);
    }

    let (ok, yaml, err) = mcpgw(
        &[
            "render",
            "testdata/cli/mcproute-full.yaml",
            "--previous-session-key",
            "--engine",
            "wasm",
            "--wasm",
            "/nonexistent/mcpgw.wasm",
        ],
        &[],
    );
    assert!(ok, "{err}");
    assert!(yaml.contains("/nonexistent/mcpgw.wasm"));
    assert!(yaml.contains("envoy.filters.http.jwt_authn"));
    // validate mode loads the wasm, so point it at the real one.
    let cached = yaml.replace(
        "/nonexistent/mcpgw.wasm",
        &mcpgw_e2e::envoy::wasm_path().display().to_string(),
    );
    validate_with_envoy(
        &cached,
        &[
            ("MCPGW_SESSION_KEY", KEY),
            ("MCPGW_PREVIOUS_SESSION_KEY", KEY),
            ("MCPGW_APIKEY_GITHUB", "ghp_x"),
        ],
    );
}

/// `check`, `--version` and the Kubernetes rendering from the command line.
#[test]
fn check_version_and_kubernetes() {
    let (ok, out, err) = mcpgw(&["--version"], &[]);
    assert!(ok, "{err}");
    assert!(out.starts_with("mcpgw 0.1.0 (libmcpgw.so sha256 "), "{out}");
    assert_eq!(
        out.trim().len(),
        "mcpgw 0.1.0 (libmcpgw.so sha256 , mcpgw.wasm sha256 )".len() + 2 * 64,
        "{out}"
    );

    let (ok, out, err) = mcpgw(&["check", "testdata/cli/mcproute-full.yaml"], &[]);
    assert!(ok, "{err}");
    assert!(out.contains("OK: 4 backend(s)"), "{out}");

    // The announcement's MCPRoute: fine for a cluster that has its Backends,
    // not runnable locally without them (and the error says what to add).
    let (ok, _, err) = mcpgw(&["check", "testdata/cli/mcp-announcement.yaml"], &[]);
    assert!(!ok);
    assert!(
        err.contains("Backend \"context7\" is not defined in the input; add a Backend document"),
        "{err}"
    );

    let dir = tempfile::tempdir().expect("dir");
    let bad = write(
        dir.path(),
        "bad.json",
        r#"{"mcpServers": {"gh": {"url": "https://x/mcp", "headers": {"Authorization": "Bearer ${NOT_SET_ANYWHERE}"}}}}"#,
    );
    let (ok, _, err) = mcpgw(&["check", &bad.display().to_string()], &[]);
    assert!(!ok);
    assert!(
        err.contains(
            "mcpServers.gh.headers.Authorization: environment variable NOT_SET_ANYWHERE is not set"
        ),
        "{err}"
    );

    let (ok, out, err) = mcpgw(
        &[
            "render",
            "--kubernetes",
            "testdata/cli/mcproute-full.yaml",
            "--wasm-url",
            "https://example.com/mcpgw.wasm",
        ],
        &[("MCPGW_SESSION_KEY", KEY)],
    );
    assert!(ok, "{err}");
    for kind in [
        "EnvoyExtensionPolicy",
        "HTTPRoute",
        "SecurityPolicy",
        "EnvoyProxy",
        "Secret",
        "Backend",
        "EnvoyPatchPolicy",
    ] {
        assert!(out.contains(&format!("kind: {kind}\n")), "{kind}:\n{out}");
    }
    let (ok, _, err) = mcpgw(
        &["render", "--kubernetes", "testdata/cli/mcproute-full.yaml"],
        &[],
    );
    assert!(!ok);
    assert!(err.contains("--wasm-url URL or --wasm-image REF"), "{err}");
    // The module on Envoy Gateway: the wasm's flags are refused with the
    // module's, naming the fix; with an image for the module, rendered.
    let render_module = |more: &[&str]| {
        let mut args = vec![
            "render",
            "--kubernetes",
            "--engine",
            "module",
            "--mcp-config",
            "testdata/cli/mcp-servers.json",
        ];
        args.extend_from_slice(more);
        mcpgw(&args, &[("MCPGW_SESSION_KEY", KEY), ("GITHUB_TOKEN", "x")])
    };
    let (ok, out, err) = render_module(&["--wasm-url", "https://example.com/mcpgw.wasm"]);
    assert!(!ok && out.is_empty(), "{out}");
    assert!(err.contains("--wasm-url is for the wasm build"), "{err}");
    assert!(err.contains("--module-image REF"), "{err}");
    let digest = format!("ghcr.io/acme/mcpgw-module@sha256:{}", "a".repeat(64));
    let (ok, out, err) = render_module(&[
        "--gateway",
        "infra/eg",
        "--listener",
        "http",
        "--module-image",
        &digest,
    ]);
    assert!(ok, "{err}");
    assert!(
        out.contains("dynamicModule:") && out.contains(&digest),
        "{out}"
    );
    assert!(!out.contains("kind: EnvoyPatchPolicy"), "{out}");

    // What Envoy Gateway would refuse or change, said by `check --kubernetes`
    // exactly as `render --kubernetes` says it.
    let (ok, out, err) = mcpgw(
        &[
            "check",
            "--kubernetes",
            "--gateway",
            "infra/eg",
            "--listener",
            "http",
            "testdata/cli/mcp-servers.json",
        ],
        &[("GITHUB_TOKEN", "x")],
    );
    assert!(ok, "{err}");
    assert!(out.contains("OK: "), "{out}");
    for w in [
        "server \"filesystem\" is a stdio server",
        "server \"local-api\": 127.0.0.1 is a loopback address, which Envoy Gateway refuses",
        "routed calls reach it with Host: docs.internal (Gateway API's URLRewrite cannot carry the port 8080)",
        "Gateway infra/eg is in another namespace",
    ] {
        assert!(err.contains(w), "{w}:\n{err}");
        assert!(err.lines().any(|l| l.starts_with("mcpgw: warning: ") && l.contains(w)));
    }
    let (ok, _, err) = mcpgw(
        &[
            "check",
            "--kubernetes",
            "--deploy-type",
            "GatewayNamespace",
            "testdata/cli/mcproute-full.yaml",
        ],
        &[],
    );
    assert!(ok, "{err}");
    assert!(
        err.contains("BackendTLSPolicy \"github-tls\": written as gateway.networking.k8s.io/v1"),
        "{err}"
    );
    let (ok, _, err) = mcpgw(
        &[
            "check",
            "--kubernetes",
            "--gateway",
            "eg",
            "testdata/cli/mcproute-full.yaml",
        ],
        &[],
    );
    assert!(!ok);
    assert!(
        err.contains("--gateway, --listener and --namespace are for an MCP servers file"),
        "{err}"
    );
    let (ok, out, err) = mcpgw(
        &[
            "render",
            "--kubernetes",
            "testdata/cli/mcproute-full.yaml",
            "--wasm-image",
            "ghcr.io/example/mcpgw:0.1.0",
        ],
        &[("MCPGW_SESSION_KEY", KEY)],
    );
    assert!(ok, "{err}");
    assert!(
        err.contains("--wasm-image ghcr.io/example/mcpgw:0.1.0: not pinned"),
        "{err}"
    );
    assert!(out.contains("(tag, not pinned)"), "{out}");

    for sub in ["run", "render", "check"] {
        let (ok, out, _) = mcpgw(&[sub, "--help"], &[]);
        assert!(ok && out.contains("Usage: mcpgw"), "{sub} --help:\n{out}");
    }
}

/// The MCPRoute of `testdata/cli/mcproute-authorization.yaml` (Envoy AI
/// Gateway's authorization API, issuer without JWKS) as written: `check`
/// says the JWKS will be discovered, `render --kubernetes` and `run`
/// discover it from a local https issuer (test CA), and `run` enforces the
/// rules with Envoy AI Gateway's semantics, writes the audit log and
/// applies the per-caller limit.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn mcproute_authorization_runs_as_written() {
    use jsonwebtoken::Algorithm;
    use mcpgw_e2e::jwt;
    let tools = backends::spawn(Kind::Alpha).await;
    let issuer = mcpgw_e2e::tls::serve(|port| {
        let origin = format!("https://localhost:{port}");
        let metadata = json!({
            "issuer": origin,
            "authorization_endpoint": format!("{origin}/authorize"),
            "token_endpoint": format!("{origin}/token"),
            "jwks_uri": format!("{origin}/jwks.json"),
        });
        let jwks: serde_json::Value = serde_json::from_str(&jwt::jwks()).expect("jwks");
        axum::Router::new()
            .route(
                "/.well-known/oauth-authorization-server",
                axum::routing::get(move || async move { axum::Json(metadata) }),
            )
            .route(
                "/jwks.json",
                axum::routing::get(move || async move { axum::Json(jwks) }),
            )
    })
    .await;
    let dir = tempfile::tempdir().expect("dir");
    let ca = write(dir.path(), "ca.pem", &issuer.ca_pem);
    let route =
        std::fs::read_to_string(workspace_root().join("testdata/cli/mcproute-authorization.yaml"))
            .expect("testdata")
            .replace("https://auth.example.com", &issuer.origin())
            .replace("port: 9001", &format!("port: {}", tools.port()));
    let file = write(dir.path(), "route.yaml", &route);
    let file_s = file.display().to_string();
    // Envoy Gateway refuses loopback Backends (left out, warned): the cluster
    // copy of the route points at a cluster address.
    let in_cluster = write(
        dir.path(),
        "route-cluster.yaml",
        &route.replace("address: 127.0.0.1", "address: 10.96.0.10"),
    );
    let in_cluster_s = in_cluster.display().to_string();
    let ca_s = ca.display().to_string();

    // check: valid, and says what it will discover (it does not fetch).
    let (ok, out, err) = mcpgw(&["check", "testdata/cli/mcproute-authorization.yaml"], &[]);
    assert!(ok, "{err}");
    assert!(out.contains("OAuth: the JWKS of https://auth.example.com is discovered when the gateway is run or rendered, from https://auth.example.com/.well-known/oauth-authorization-server"), "{out}");
    assert!(
        out.contains("authorization: 4 rule(s), default deny"),
        "{out}"
    );
    // The announcement's MCPRoute (issuer only) is fine for a cluster too.
    let (ok, out, err) = mcpgw(
        &[
            "check",
            "--kubernetes",
            "testdata/cli/mcp-announcement.yaml",
        ],
        &[],
    );
    assert!(ok, "{err}");
    assert!(
        out.contains("JWKS of https://auth-server.example.com is discovered"),
        "{out}"
    );

    // render --kubernetes discovers the JWKS and carries the policy.
    let (ok, out, err) = mcpgw(
        &[
            "render",
            "--kubernetes",
            &in_cluster_s,
            "--wasm-url",
            "https://example.com/mcpgw.wasm",
            "--ca-file",
            &ca_s,
        ],
        &[("MCPGW_SESSION_KEY", KEY)],
    );
    assert!(ok, "{err}");
    assert!(
        err.contains(&format!(
            "JWKS of {}: {}/jwks.json",
            issuer.origin(),
            issuer.origin()
        )),
        "{err}"
    );
    assert!(
        out.contains(&format!("uri: {}/jwks.json", issuer.origin())),
        "{out}"
    );
    assert!(
        out.contains("authorization:") && out.contains("request.headers[\"x-tenant-id\"]"),
        "{out}"
    );
    // Without the issuer's CA the discovery fails, saying how to fix it.
    let (ok, _, err) = mcpgw(
        &["render", &file_s, "--wasm", "/nonexistent/mcpgw.wasm"],
        &[],
    );
    assert!(!ok);
    assert!(
        err.contains("cannot discover the JWKS of issuer") && err.contains("--ca-file"),
        "{err}"
    );

    let audit = dir.path().join("audit.log");
    let audit_s = audit.display().to_string();
    let gw = tokio::task::spawn_blocking({
        let (file_s, ca_s, audit_s) = (file_s.clone(), ca_s.clone(), audit_s.clone());
        move || {
            Gateway::start(
                &[
                    &file_s,
                    "--ca-file",
                    &ca_s,
                    "--audit-log",
                    &audit_s,
                    "--limit-per-caller",
                    "4/10s",
                    "--no-probe",
                ],
                &[],
            )
        }
    })
    .await
    .expect("start");
    let iss = issuer.origin();
    let token = |sub: &str, scope: &str, extra: serde_json::Value| {
        let mut claims = json!({"sub": sub, "scope": scope});
        if let (serde_json::Value::Object(c), serde_json::Value::Object(e)) = (&mut claims, extra) {
            c.extend(e);
        }
        jwt::token(Algorithm::RS256, &iss, "http://localhost:1975/mcp", claims)
    };
    let url = gw.url();
    let post = |t: String,
                sid: Option<String>,
                more: Vec<(&'static str, &'static str)>,
                body: serde_json::Value| {
        let raw = Raw::new(&url);
        async move {
            let auth = format!("Bearer {t}");
            let mut h: Vec<(&str, &str)> = vec![
                ("content-type", "application/json"),
                ("accept", client::ACCEPT_BOTH),
                ("authorization", &auth),
            ];
            if let Some(s) = &sid {
                h.push(("mcp-session-id", s));
                h.push(("mcp-protocol-version", "2025-11-25"));
            }
            h.extend(more);
            raw.send(reqwest::Method::POST, &h, Some(body.to_string()))
                .await
        }
    };
    let init = json!({"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2025-11-25","capabilities":{},"clientInfo":{"name":"t","version":"1"}}});
    // Envoy fetches the discovered JWKS in the background: wait for it.
    let session = |t: String| {
        let init = init.clone();
        async move {
            let deadline = Instant::now() + Duration::from_secs(15);
            loop {
                let a = post(t.clone(), None, vec![], init.clone()).await;
                if a.status == 200 {
                    return a.header("mcp-session-id").expect("sid").to_string();
                }
                assert!(Instant::now() < deadline, "{} {}", a.status, a.body);
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        }
    };
    let call = |id: u64, name: &str, args: serde_json::Value| json!({"jsonrpc":"2.0","id":id,"method":"tools/call","params":{"name":name,"arguments":args}});

    // Scopes and claims: sum with the right tenant and department.
    let t = token(
        "s1",
        "sum",
        json!({"tenant": "acme", "org": {"departments": ["engineering", "operations"]}}),
    );
    let sid = session(t.clone()).await;
    let a = post(
        t.clone(),
        Some(sid.clone()),
        vec![],
        call(2, "add", json!({"a": 41, "b": 1})),
    )
    .await;
    assert_eq!(
        a.json()["result"]["structuredContent"]["sum"],
        42,
        "{}",
        a.body
    );
    // Matching scopes, another department: refused.
    let t = token(
        "s2",
        "sum",
        json!({"tenant": "acme", "org": {"departments": ["hr"]}}),
    );
    let sid = session(t.clone()).await;
    let a = post(
        t.clone(),
        Some(sid.clone()),
        vec![],
        call(3, "add", json!({"a": 1, "b": 1})),
    )
    .await;
    assert_eq!(a.status, 403, "{}", a.body);
    // Only `sum`: echo is refused with a challenge naming the missing scope.
    let a = post(
        t.clone(),
        Some(sid.clone()),
        vec![("x-tenant-id", "t-123")],
        call(4, "echo", json!({"text": "Hello, world!"})),
    )
    .await;
    assert_eq!(a.status, 403, "{}", a.body);
    let www = a.header("www-authenticate").unwrap_or_default().to_string();
    assert!(www.contains("error=\"insufficient_scope\"") && www.contains("scope=\"sum echo\"") && www.contains("resource_metadata=\"http://localhost:1975/.well-known/oauth-protected-resource/mcp\""), "{www}");
    // The CEL condition on arguments and headers.
    let t = token("e1", "echo", json!({}));
    let sid = session(t.clone()).await;
    let tenant = vec![("x-tenant-id", "t-123")];
    let a = post(
        t.clone(),
        Some(sid.clone()),
        tenant.clone(),
        call(5, "echo", json!({"text": "Hello, world!"})),
    )
    .await;
    assert_eq!(
        a.json()["result"]["content"][0]["text"],
        "alpha: Hello, world!",
        "{}",
        a.body
    );
    let a = post(
        t.clone(),
        Some(sid.clone()),
        tenant.clone(),
        call(6, "echo", json!({"text": "hello, world!"})),
    )
    .await;
    assert_eq!(a.status, 403, "{}", a.body);
    let a = post(
        t.clone(),
        Some(sid.clone()),
        vec![],
        call(7, "echo", json!({"text": "Hello, world!"})),
    )
    .await;
    assert_eq!(a.status, 403, "{}", a.body);
    // The list shows echo when some call could pass (the header matches).
    let list = json!({"jsonrpc":"2.0","id":8,"method":"tools/list"});
    let names = |a: &client::Answer| {
        let mut v: Vec<String> = a.json()["result"]["tools"]
            .as_array()
            .expect("tools")
            .iter()
            .map(|t| t["name"].as_str().unwrap_or_default().to_string())
            .collect();
        v.sort();
        v
    };
    let a = post(t.clone(), Some(sid.clone()), tenant.clone(), list.clone()).await;
    assert_eq!(names(&a), ["count", "echo"], "{}", a.body);
    let a = post(t.clone(), Some(sid.clone()), vec![], list.clone()).await;
    assert_eq!(names(&a), ["count"], "{}", a.body);
    // No source: anyone may count; all-access reaches everything.
    let t = token("n1", "not-a-real-scope", json!({}));
    let sid = session(t.clone()).await;
    let a = post(
        t.clone(),
        Some(sid.clone()),
        vec![],
        call(9, "count", json!({"n": 2, "delay_ms": 1})),
    )
    .await;
    assert_eq!(a.status, 200, "{}", a.body);
    assert!(a.body.contains("counted to 2"), "{}", a.body);
    let t = token("a1", "all-access", json!({}));
    let sid = session(t.clone()).await;
    let a = post(
        t.clone(),
        Some(sid.clone()),
        vec![],
        call(10, "add", json!({"a": 2, "b": 3})),
    )
    .await;
    assert_eq!(
        a.json()["result"]["structuredContent"]["sum"],
        5,
        "{}",
        a.body
    );
    // --limit-per-caller 4/10s: this caller's fifth call is limited.
    let mut limited = None;
    for i in 0..5 {
        let a = post(
            t.clone(),
            Some(sid.clone()),
            vec![],
            call(20 + i, "echo", json!({"text": "x"})),
        )
        .await;
        if a.json()["error"]["code"] == -32029 {
            limited = Some(a);
            break;
        }
        assert_eq!(a.status, 200, "{}", a.body);
    }
    let limited = limited.expect("the per-caller limit trips");
    assert!(
        limited.json()["error"]["data"]["retryAfter"]
            .as_u64()
            .is_some_and(|r| r >= 1),
        "{}",
        limited.body
    );
    // Another caller is not limited.
    let other = token("a2", "all-access", json!({}));
    let osid = session(other.clone()).await;
    let a = post(
        other,
        Some(osid),
        vec![],
        call(30, "echo", json!({"text": "y"})),
    )
    .await;
    assert_eq!(a.status, 200, "{}", a.body);
    assert!(a.json()["result"].is_object(), "{}", a.body);

    // The audit log (--audit-log): the allowed add and the refused echo.
    let deadline = Instant::now() + Duration::from_secs(10);
    let records: Vec<serde_json::Value> = loop {
        let text = std::fs::read_to_string(&audit).unwrap_or_default();
        let r: Vec<serde_json::Value> = text
            .lines()
            .filter_map(|l| serde_json::from_str(l).ok())
            .collect();
        if r.iter().any(|x| x["jsonrpc_id"] == "30") {
            break r;
        }
        assert!(Instant::now() < deadline, "audit log: {text}\n{}", gw.log());
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let add = records
        .iter()
        .find(|r| r["jsonrpc_id"] == "2" && r["caller_subject"] == "s1")
        .expect("add record");
    assert_eq!(
        (
            &add["decision"],
            &add["rule"],
            &add["resource"],
            &add["backend"],
            &add["outcome"]
        ),
        (
            &json!("allow"),
            &json!("rules[1]"),
            &json!("add"),
            &json!("tools"),
            &json!("ok")
        )
    );
    assert_eq!(add["caller_issuer"], iss);
    let refused = records
        .iter()
        .find(|r| r["jsonrpc_id"] == "6")
        .expect("refused echo");
    assert_eq!(
        (&refused["decision"], &refused["rule"], &refused["status"]),
        (&json!("deny"), &json!("default"), &json!(403))
    );
    assert!(
        records.iter().any(|r| r["outcome"] == "rate_limited"),
        "{records:#?}"
    );
    drop(gw);
}
