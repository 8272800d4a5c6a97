//! The dynamic module against the pinned Envoy: the guard against ABI drift.
//!
//! Envoy's dynamic-module ABI changes between releases, and the module
//! declares the part it uses itself (`crates/dynamic-module/src/abi.rs`).
//! This checks, for the Envoy in `$ENVOY_BIN`:
//! - every callback the module calls is exported by the binary, and the
//!   module exports every hook it defines (`nm -D`);
//! - Envoy loads the module and accepts its configuration (`envoy --mode
//!   validate`: the ABI version matches, every callback resolves);
//! - one live session passes through each hook the module uses: request
//!   headers and body, a buffered side call's answer (`initialize`, a list),
//!   response headers and body (a routed call answered as an event stream),
//!   streaming side calls' headers, data and end, a streamed reply and the
//!   stream's end (a merged GET stream, closed by the client), a streaming
//!   side call that fails (a backend that is down), the end of every stream.

use mcpgw_e2e::backends::{self, Kind};
use mcpgw_e2e::client::Raw;
use mcpgw_e2e::envoy::{envoy_bin, module_path, render, Cluster, Engine, Envoy};
use mcpgw_e2e::stack::SESSION_KEY;
use serde_json::json;
use std::process::Command;
use std::time::Duration;

fn dynamic_symbols(path: &std::path::Path) -> Vec<String> {
    let out = Command::new("nm")
        .args(["-D", "--defined-only"])
        .arg(path)
        .output()
        .expect("nm (binutils) lists dynamic symbols");
    assert!(out.status.success(), "nm {}", path.display());
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| l.split_whitespace().last().map(str::to_string))
        .collect()
}

#[test]
fn every_declared_symbol_exists_on_both_sides() {
    let envoy = dynamic_symbols(&envoy_bin());
    let missing: Vec<&&str> = mcpgw_module::abi::CALLBACKS
        .iter()
        .filter(|c| !envoy.iter().any(|s| s == **c))
        .collect();
    assert!(
        missing.is_empty(),
        "{} does not export {missing:?}: the ABI moved; update crates/dynamic-module/src/abi.rs against this Envoy's abi.h",
        envoy_bin().display()
    );
    let module = dynamic_symbols(&module_path());
    for hook in mcpgw_module::abi::HOOKS {
        let name = format!("envoy_dynamic_module_on_{hook}");
        assert!(module.contains(&name), "libmcpgw.so does not export {name}");
    }
}

#[test]
fn envoy_loads_the_module_and_its_configuration() {
    let yaml = render(
        Engine::Module,
        &json!({"session": {"key": SESSION_KEY}, "backends": [{"name": "a", "cluster": "a"}]})
            .to_string(),
        &[Cluster {
            name: "a".into(),
            port: 9,
        }],
        &[],
    )
    .replace(mcpgw_e2e::envoy::ACCESS_LOG_PLACEHOLDER, "/dev/null");
    let dir = tempfile::tempdir().expect("dir");
    let cfg = dir.path().join("envoy.yaml");
    std::fs::write(&cfg, yaml).expect("write");
    let out = Command::new(envoy_bin())
        .args(["--mode", "validate", "-l", "info", "-c"])
        .arg(&cfg)
        .output()
        .expect("envoy");
    let text =
        String::from_utf8_lossy(&out.stdout).to_string() + &String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success() && text.contains("OK"),
        "envoy --mode validate:\n{text}"
    );
    assert!(
        text.contains(&format!(
            "Dynamic module ABI version {} matched",
            mcpgw_module::abi::ABI_VERSION.to_string_lossy()
        )),
        "{text}"
    );
    assert!(text.contains("mcpgw 0.1.0 configured"), "{text}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_session_passes_through_every_hook() {
    let one = backends::spawn(Kind::Alpha).await;
    let two = backends::spawn(Kind::Alpha).await;
    let cfg = json!({
        "session": {"key": SESSION_KEY},
        "backends": [{"name": "one", "cluster": "one"}, {"name": "two", "cluster": "two"}]
    });
    let clusters = [("one", one.port()), ("two", two.port())].map(|(n, port)| Cluster {
        name: n.into(),
        port,
    });
    let yaml = render(Engine::Module, &cfg.to_string(), &clusters, &[]);
    let envoy = tokio::task::spawn_blocking(move || Envoy::start(&yaml))
        .await
        .expect("envoy");
    let raw = Raw::new(&envoy.url());
    // Request headers and body; buffered side calls (initialize, tools/list).
    let sid = raw.session().await;
    let list = raw
        .post(
            Some(&sid),
            &json!({"jsonrpc":"2.0","id":1,"method":"tools/list"}),
        )
        .await;
    assert_eq!(
        list.json()["result"]["tools"].as_array().map(Vec::len),
        Some(16)
    );
    // Response headers and body: a routed call answered as an event stream.
    let call = raw
        .post(
            Some(&sid),
            &json!({"jsonrpc":"2.0","id":2,"method":"tools/call","params":{"name":"one__echo","arguments":{"text":"hook"}}}),
        )
        .await;
    assert_eq!(
        call.messages()
            .last()
            .map(|m| m["result"]["content"][0]["text"].clone()),
        Some(json!("alpha: hook")),
        "{}",
        call.body
    );
    // Streaming side calls and a streamed reply: the merged GET stream.
    let http = reqwest::Client::new();
    let get = http
        .get(envoy.url())
        .header("accept", "text/event-stream")
        .header("mcp-session-id", &sid)
        .header("mcp-protocol-version", "2025-11-25")
        .send()
        .await
        .expect("GET");
    assert_eq!(get.status(), 200);
    raw.post(
        Some(&sid),
        &json!({"jsonrpc":"2.0","id":3,"method":"tools/call","params":{"name":"two__announce","arguments":{"text":"on the stream"}}}),
    )
    .await;
    let mut body = get;
    let mut seen = String::new();
    while !seen.contains("on the stream") {
        let chunk = tokio::time::timeout(Duration::from_secs(10), body.chunk())
            .await
            .expect("an event in time")
            .expect("stream")
            .expect("more of the stream");
        seen.push_str(&String::from_utf8_lossy(&chunk));
    }
    // The client leaves: the stream ends, its side calls are closed.
    drop(body);
    // A streaming side call that fails: one backend is down.
    drop(one);
    let get = http
        .get(envoy.url())
        .header("accept", "text/event-stream")
        .header("mcp-session-id", &sid)
        .header("mcp-protocol-version", "2025-11-25")
        .send()
        .await
        .expect("GET");
    assert_eq!(get.status(), 200, "the other backend's stream still opens");
    drop(get);
    let logged =
        mcpgw_e2e::faulty::wait_log(&envoy, &["backend one: its event stream failed"]).await;
    assert!(logged.is_some(), "{}", envoy.filter_log().join("\n"));
    envoy.assert_log_clean();
}
