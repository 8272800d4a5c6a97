//! The stdio options of `mcpgw run`, with one gateway in front of three
//! stdio servers:
//!
//! * `stubborn`: the published `mcp-server-time` (Python SDK) under a shell
//!   that ignores SIGTERM and outlives its stdin, with `"maxProcesses": 1`;
//! * `shared`: the rmcp test server with `"sharedProcess": true`;
//! * `local`: the rmcp test server, one process per session;
//! * `fs`: the published `server-filesystem`, which asks the client for its
//!   roots outside any call.
//!
//! A second session past the limit is admitted without a process and gets
//! the documented JSON-RPC error on its calls; ending the first session stops
//! its process (stdin closed, SIGTERM ignored, killed after the grace of
//! `--stdio-kill-grace`), which frees the slot, and the waiting session's
//! next call starts its own process. Both sessions see the one shared
//! process and their own `local` processes; the log reports each process's
//! memory. A server request that cannot reach the client is refused to the
//! server after the bridge's hold, with an error naming it.

use mcpgw_e2e::client::Raw;
use mcpgw_e2e::mcpgw_run::Gateway;
use mcpgw_e2e::peers::{node_bin, node_package, venv_program};
use serde_json::{json, Value};
use std::time::{Duration, Instant};

async fn call(raw: &Raw, sid: &str, id: u64, name: &str) -> Value {
    let arguments = if name.starts_with("stubborn__") {
        json!({"timezone": "UTC"})
    } else {
        json!({})
    };
    let a = raw
        .post(
            Some(sid),
            &json!({"jsonrpc":"2.0","id":id,"method":"tools/call","params":{"name":name,"arguments":arguments}}),
        )
        .await;
    assert_eq!(a.status, 200, "{name}: {}", a.body);
    a.json()
}

fn text(answer: &Value) -> String {
    answer["result"]["content"][0]["text"]
        .as_str()
        .unwrap_or_default()
        .to_string()
}

fn alive(pid: &str) -> bool {
    std::process::Command::new("kill")
        .args(["-0", pid])
        .stderr(std::process::Stdio::null())
        .status()
        .map(|s| s.success())
        .unwrap_or(false)
}

/// The pid in `[name] session <tag>: pid <pid> started`, the n-th such line.
fn started_pid(log: &str, name: &str, nth: usize) -> Option<String> {
    log.lines()
        .filter(|l| l.contains(&format!("[{name}] session ")) && l.contains(" started (RSS "))
        .nth(nth)
        .and_then(|l| l.split(": pid ").nth(1))
        .and_then(|r| r.split_whitespace().next())
        .map(str::to_string)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn process_limit_shared_process_and_kill_after_grace() {
    let dir = tempfile::tempdir().expect("dir");
    let time = venv_program("mcp-server-time");
    let rmcp_server = env!("CARGO_BIN_EXE_mcp-stdio-server");
    let cfg = dir.path().join("mcp-servers.json");
    std::fs::write(
        &cfg,
        json!({"mcpServers": {
            "stubborn": {
                "command": "sh",
                "args": ["-c", format!("trap '' TERM; {}; exec sleep 300", time.display())],
                "maxProcesses": 1
            },
            "shared": {"command": rmcp_server, "sharedProcess": true},
            "local": {"command": rmcp_server},
            "fs": {"command": node_bin(), "args": [
                node_package("@modelcontextprotocol/server-filesystem/dist/index.js"), dir.path()]}
        }})
        .to_string(),
    )
    .expect("write");
    let cfg = cfg.display().to_string();
    let mut gw = tokio::task::spawn_blocking(move || {
        Gateway::start(
            &[
                "--mcp-config",
                &cfg,
                "--stdio-kill-grace",
                "1s",
                "--no-probe",
            ],
            &[],
        )
    })
    .await
    .expect("start");
    let log = gw.log();
    assert!(
        log.contains("[stubborn] stdio server `sh -c")
            && log.contains("(one process per session, at most 1)"),
        "{log}"
    );
    assert!(
        log.contains("(one process shared by every session)"),
        "{log}"
    );

    let raw = Raw::new(&gw.url());
    let s1 = raw.session().await;
    let first = call(&raw, &s1, 1, "stubborn__get_current_time").await;
    assert!(
        first.get("result").is_some() && first["result"]["isError"] != true,
        "{first}"
    );

    // Past the limit: admitted, but its calls get the documented error.
    let s2 = raw.session().await;
    let refused = call(&raw, &s2, 2, "stubborn__get_current_time").await;
    let message = refused["error"]["message"].as_str().unwrap_or_default();
    assert!(
        message.contains("stdio server stubborn: 1 processes are running, the most allowed")
            && message.contains("maxProcesses")
            && message.contains("--stdio-max-processes"),
        "{refused}"
    );
    assert!(
        gw.log().contains("admitted without a process"),
        "{}",
        gw.log()
    );

    // One shared process for both sessions; a process each otherwise.
    let p1 = text(&call(&raw, &s1, 3, "shared__pid").await);
    let p2 = text(&call(&raw, &s2, 4, "shared__pid").await);
    assert!(!p1.is_empty() && p1 == p2, "{p1} / {p2}");
    let l1 = text(&call(&raw, &s1, 5, "local__pid").await);
    let l2 = text(&call(&raw, &s2, 6, "local__pid").await);
    assert!(!l1.is_empty() && l1 != l2 && l1 != p1, "{l1} / {l2}");
    let log = gw.log();
    assert_eq!(
        log.matches("[shared] pid ").count(),
        1,
        "one shared process:\n{log}"
    );
    assert!(log.contains(&format!(
        "[shared] pid {p1} started, shared by every session (RSS "
    )));
    // Memory of every process, in the log.
    assert!(
        log.lines().any(|l| l.contains("[local] session ")
            && l.contains("started (RSS ")
            && l.contains(" MiB;")),
        "{log}"
    );

    // Ending the first session stops its process: stdin closed, SIGTERM
    // ignored, SIGKILL after the 1s grace. Only then is the slot free.
    let pid = started_pid(&log, "stubborn", 0).expect("stubborn's pid in the log");
    assert!(alive(&pid));
    let ended = Instant::now();
    let d = raw
        .send(
            reqwest::Method::DELETE,
            &[
                ("mcp-session-id", &s1),
                ("mcp-protocol-version", "2025-11-25"),
            ],
            None,
        )
        .await;
    assert_eq!(d.status, 204, "{}", d.body);
    tokio::task::block_in_place(|| {
        gw.wait_for(
            "killed: still running 1000 ms after SIGTERM",
            Duration::from_secs(15),
        )
    });
    assert!(
        ended.elapsed() >= Duration::from_millis(2900),
        "stdin close (2s) and the grace (1s) were waited: {:?}",
        ended.elapsed()
    );
    assert!(!alive(&pid), "pid {pid} still running");
    let log = gw.log();
    assert!(
        log.lines().any(|l| l.contains("[stubborn] session ")
            && l.contains(&format!("ended by DELETE: pid {pid} killed"))
            && l.contains("peak RSS ")),
        "{log}"
    );

    // The waiting session gets its process now.
    let later = call(&raw, &s2, 7, "stubborn__get_current_time").await;
    assert!(later.get("result").is_some(), "{later}");
    let second = started_pid(&gw.log(), "stubborn", 1).expect("a second stubborn process");
    assert_ne!(second, pid);

    // A server's request outside any call, with no stream to the client
    // (several stateful servers: no GET), is refused after the hold, with an
    // error naming the server: server-filesystem asks for the roots right
    // after `initialized` and goes on with its own directory.
    let init = raw
        .post(
            None,
            &json!({"jsonrpc":"2.0","id":0,"method":"initialize","params":{
                "protocolVersion":"2025-11-25","capabilities":{"roots":{}},
                "clientInfo":{"name":"raw","version":"1"}}}),
        )
        .await;
    let s3 = init.header("mcp-session-id").expect("session").to_string();
    let asked = Instant::now();
    raw.post(
        Some(&s3),
        &json!({"jsonrpc":"2.0","method":"notifications/initialized"}),
    )
    .await;
    tokio::task::block_in_place(|| {
        gw.wait_for(
            "[fs] Failed to request initial roots from client: MCP error -32603: mcpgw could not deliver roots/list to the client of stdio server fs",
            Duration::from_secs(20),
        )
    });
    let waited = asked.elapsed();
    assert!(
        waited >= Duration::from_millis(2500) && waited < Duration::from_secs(10),
        "held about 3s, then refused: {waited:?}"
    );
    assert!(
        gw.log()
            .contains("refused roots/list from the server: no stream to the client within 3s"),
        "{}",
        gw.log()
    );
    let allowed = call(&raw, &s3, 8, "fs__list_allowed_directories").await;
    assert!(
        text(&allowed).contains(&dir.path().display().to_string()),
        "{allowed}"
    );

    let status = tokio::task::block_in_place(|| gw.stop());
    assert!(status.success(), "{status}:\n{}", gw.log());
    for p in [second, l2, p1] {
        assert!(!alive(&p), "pid {p} still running after mcpgw stopped");
    }
}
