//! Regression tests for what fuzzing found (`e2e/fuzz`, `e2e/fuzz/run.sh`).
//!
//! Each crashing input is inlined as found and replayed natively through the
//! same harness the fuzz targets use (`e2e/fuzz/src/harness.rs`, included
//! below). The seed corpora are replayed too, so the harness cannot drift
//! from the gateway's API unnoticed.

#[allow(dead_code)]
#[path = "../fuzz/src/harness.rs"]
mod harness;

use mcpgw_core::gateway::exchange::Exchange;
use mcpgw_core::gateway::host::{BodyAction, HeadersAction};
use serde_json::Value;

/// `exchange` target, crash-bcaf739db246880dcd2d5d6b55436bdd2c82f025: a bare
/// resource URI (two unprefixed backends, so the read goes to both); one
/// answers `200 application/json` with text that is not JSON, the other a
/// proper "Resource not found" error. The gateway answered the client with
/// the first backend's garbage, verbatim, as its own `200 application/json`.
const BARE_URI_GARBAGE: &[u8] = b"plain\n\
:method: POST\n\
:path: /mcp\n\
:authority: localhost:1975\n\
accept: application/json, text/event-stream\n\
content-type: application/json\n\
mcp-session-id: {SID}\n\
mcp-protocol-version: 2025-11-25\n\
\n\
--\n\
{\"jsonrpc\": \"2.0\", \"id\": 3, \"method\": \"resources/read\", \"params\": {\"uri\": \"file:///a.txt\"}}\n\
--\n\
200\n\
content-type: application/json\n\
\n\
{\"\"tasks\":jsonrpc\": \"2.0\", \"id\": 7, \"result\": {\"contents\": [{\"uri\": \"file:///a.txt\", \"mimeType\": \"text/plain\", \"text\": \"A\"}]}}\n\
--\n\
200\n\
content-type: application/json\n\
\n\
{\"jsonrpc\": \"2.0\", \"id\": 3, \"error\": {\"code\": -32002, \"message\": \"Resource not found\"}}";

/// `exchange` target, crash-7e3beb1919fd5047cea7c30653230b2cd45bae0b: the same
/// with an empty body from the first backend (its header block has no blank
/// line): the client got an empty `200 application/json`.
const BARE_URI_EMPTY: &[u8] = b"plain\n\
:method: POST\n\
:path: /mcp\n\
:authority: localhost:1975\n\
accept: application/json, text/event-stream\n\
content-type: application/json\n\
mcp-session-id: {SID}\n\
mcp-protocol-version: 2025-11-25\n\
\n\
--\n\
{\"jsonrpc\": \"2.0\", \"id\": 3, \"method\": \"resources/read\", \"params\": {\"uri\": \"file:///a.txt\"}}\n\
--\n\
200\n\
content-type: application/json\n\
\"{\n\
jsonrpc\": \"2.0\", \"id\": 7, \"result\": {\"contents\": [{\"uri\": \"file:///a.txt\", \"mimeType\": \"text/plain\", \"text\": \"A\"}]}}\n\
--\n\
200\n\
content-type: application/json\n\
\n\
{\"jsonrpc\": \"2.0\", \"id\": 3, \"error\": {\"code\": -32002, \"message\": \"Resource not found\"}}";

#[test]
fn bare_uri_read_with_a_garbage_answer_replays_cleanly() {
    harness::exchange(BARE_URI_GARBAGE);
}

#[test]
fn bare_uri_read_with_an_empty_answer_replays_cleanly() {
    harness::exchange(BARE_URI_EMPTY);
}

/// The same bug spelled out on the public API: `resources/read` of a bare
/// URI, `gamma` answers garbage (or nothing, or another request's answer),
/// `delta` "Resource not found". The client must get a JSON-RPC error for
/// its request (id 3): `delta`'s, or the gateway's naming the backends.
#[test]
fn bare_uri_read_answers_with_json_rpc_whatever_the_backends_send() {
    let not_an_answer: [&[u8]; 3] = [
        b"<html>oops",
        b"",
        br#"{"jsonrpc":"2.0","id":99,"error":{"code":-1,"message":"not yours"}}"#,
    ];
    for garbage in not_an_answer {
        let gw = harness::gateway(false);
        let mut host = harness::FuzzHost::default();
        let mut ex = Exchange::new(gw.clone());
        let headers = harness::post_headers(&harness::session_id(&gw, false));
        assert!(matches!(
            ex.on_request_headers(&mut host, &headers, false),
            HeadersAction::NeedBody
        ));
        let body =
            br#"{"jsonrpc":"2.0","id":3,"method":"resources/read","params":{"uri":"file:///a.txt"}}"#;
        assert_eq!(ex.on_request_body(&mut host, body), BodyAction::Wait);
        let calls = std::mem::take(&mut host.calls);
        let clusters: Vec<&str> = calls.iter().map(|(_, c)| c.cluster.as_str()).collect();
        assert_eq!(clusters, ["c_gamma", "c_delta"]);
        let mut last = BodyAction::Wait;
        for (token, call) in &calls {
            let answer = if call.cluster == "c_gamma" {
                garbage.to_vec()
            } else {
                br#"{"jsonrpc":"2.0","id":3,"error":{"code":-32002,"message":"Resource not found"}}"#
                    .to_vec()
            };
            last = ex.on_call_response(&mut host, *token, harness::json_answer(200, answer));
        }
        let BodyAction::Respond(r) = last else {
            panic!("no answer: {last:?}")
        };
        let v: Value = serde_json::from_slice(&r.body).unwrap_or_else(|e| {
            panic!(
                "{:?} from gamma: the client got {:?} ({e})",
                String::from_utf8_lossy(garbage),
                String::from_utf8_lossy(&r.body)
            )
        });
        assert_eq!(
            v["id"],
            3,
            "{:?} from gamma: {v}",
            String::from_utf8_lossy(garbage)
        );
        assert!(v["error"]["code"].is_i64(), "{v}");
    }
}

/// `config` target, crash-3840ceba19f9ed1d3205d881ada9b08a1ae7fd69 (reduced
/// by hand to what mattered): `auth.metadata_cors_origin` with a line break
/// was accepted and became an `Access-Control-Allow-Origin` value; a resource
/// URL with one would have reached `WWW-Authenticate`. Both are config errors.
#[test]
fn header_values_from_the_config_cannot_carry_line_breaks() {
    for auth in [
        r#""resource":"https://mcp.example.com/mcp","authorization_servers":["https://auth.example.com"],"metadata_cors_origin":"
*""#,
        r#""resource":"https://mcp.example.com/mcp
x-evil: 1","authorization_servers":["https://auth.example.com"]"#,
    ] {
        let json = format!(
            r#"{{"session":{{"key":"AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8="}},"auth":{{{auth},"jwt":{{"filter":"envoy.filters.http.jwt_authn"}}}},"backends":[{{"name":"a","cluster":"a"}}]}}"#
        );
        harness::config(json.as_bytes());
        let err = mcpgw_core::gateway::compile(json.as_bytes(), &|_| None)
            .err()
            .unwrap_or_else(|| panic!("accepted: {auth}"));
        assert!(err.to_string().contains("auth."), "{err}");
    }
}

/// Every seed input of every target passes the harness (fuzz mode).
#[test]
fn seed_corpora_replay_cleanly() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz/corpus");
    type Target = (&'static str, fn(&[u8]));
    let targets: [Target; 5] = [
        ("jsonrpc", harness::jsonrpc),
        ("sse", harness::sse),
        ("tokens", harness::tokens),
        ("config", harness::config),
        ("exchange", harness::exchange),
    ];
    for (name, run) in targets {
        let dir = root.join(name);
        let mut n = 0;
        let entries = std::fs::read_dir(&dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display()));
        for entry in entries {
            let path = entry.expect("entry").path();
            let data = std::fs::read(&path).expect("seed");
            let result = std::panic::catch_unwind(|| run(&data));
            assert!(result.is_ok(), "seed {} fails", path.display());
            n += 1;
        }
        assert!(n > 0, "no seeds for {name}");
    }
}

/// The harness's check on routed answers: a routed `tools/call` answered `200 application/json`
/// with garbage, or with another request's id, must reach the client as a
/// JSON-RPC answer to its own request. Same bug as
/// `tests/faults.rs::garbage_json_answer_to_a_call_is_a_json_rpc_error` and
/// `a_json_answer_with_another_id_is_a_json_rpc_error`, here without Envoy.
#[test]
fn routed_json_answers_that_are_not_the_answer_replay_cleanly() {
    let head = b"plain\n\
:method: POST\n\
:path: /mcp\n\
:authority: localhost:1975\n\
accept: application/json, text/event-stream\n\
content-type: application/json\n\
mcp-session-id: {SID}\n\
mcp-protocol-version: 2025-11-25\n\
--\n\
{\"jsonrpc\":\"2.0\",\"id\":7,\"method\":\"tools/call\",\"params\":{\"name\":\"alpha__echo\",\"arguments\":{}}}\n\
--\n\
200\n\
content-type: application/json\n\
\n";
    let answers: [&[u8]; 3] = [
        b"<html>oops",
        br#"{"jsonrpc":"2.0","id":999,"result":{"content":[]}}"#,
        b"",
    ];
    let mut failures = Vec::new();
    for answer in answers {
        let input = [&head[..], answer].concat();
        if std::panic::catch_unwind(|| harness::exchange(&input)).is_err() {
            failures.push(String::from_utf8_lossy(answer).into_owned());
        }
    }
    assert!(
        failures.is_empty(),
        "the client got these backend answers verbatim: {failures:?}"
    );
}
