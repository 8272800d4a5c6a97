//! A backend's messages rewritten for a client of the other era, or for a
//! 2026-07-28 client at all:
//!
//! - every result carries `resultType` (added when a backend omits it);
//!   `resources/read` results carry cache hints (an earlier-era backend's:
//!   stale and private), private whenever answers differ per caller;
//! - an `input_required` result's `requestState` is wrapped in the
//!   gateway's sealed state when the backend's names are prefixed (the
//!   retry needs the body rewritten anyway, and is checked before it
//!   reaches the backend), and resource URIs in its input requests get the
//!   backend's namespace;
//! - a backend's `-32002` (resource not found) is `-32602` for 2026-07-28
//!   clients;
//! - `notifications/message` only for requests that asked, at or above the
//!   asked level;
//! - a handshake-era backend's request to a 2026-07-28 client is held back
//!   and refused on the client's behalf (`Refused`);
//! - listen streams: every frame tagged with the subscription id, only the
//!   kinds acknowledged;
//! - a 2026-07-28 backend's `input_required` for a 2025-era client becomes
//!   an error saying why.

use super::super::exchange::Exchange;
use super::super::host::{Host, Level};
use super::super::instance::Gateway;
use super::super::naming::Naming;
use super::super::stream::{self, expose_content_uris, Answer, StreamCtx};
use super::state::{RequestState, TTL_MS};
use super::StreamEra;
use crate::protocol::jsonrpc::{
    self, error_json, Kind, RawObject, BACKEND_ERROR, INVALID_PARAMS, RESOURCE_NOT_FOUND,
};
use crate::protocol::modern::LogLevel;
use serde_json::value::RawValue;
use serde_json::{Map, Value};

/// What becomes of one message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    Keep,
    Replace(String),
    /// Not for this client (and not the answer).
    Drop,
}

/// A backend's request held back from a 2026-07-28 client.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refused {
    /// Its raw JSON id.
    pub id: String,
    pub method: String,
}

fn keep_or(new: Option<String>) -> Outcome {
    new.map_or(Outcome::Keep, Outcome::Replace)
}

/// Rewrite one message of a routed answer (see the module comment).
pub fn rewrite(
    gw: &Gateway,
    ctx: &StreamCtx,
    era: &StreamEra,
    text: &str,
    answer: &mut Answer,
    refused: &mut Vec<Refused>,
) -> Outcome {
    let Ok(msg) = jsonrpc::parse(text.as_bytes()) else {
        return Outcome::Keep;
    };
    let legacy = |answer: &mut Answer| keep_or(stream::rewrite_legacy(gw, ctx, text, answer));
    match msg.kind {
        Kind::Request if era.client_modern => {
            if let Some(id) = msg.id {
                refused.push(Refused {
                    id: id.get().to_string(),
                    method: msg.method.as_deref().unwrap_or("").to_string(),
                });
            }
            Outcome::Drop
        }
        Kind::Request => legacy(answer),
        Kind::Notification => {
            let method = msg.method.as_deref().unwrap_or("");
            if let Some(listen) = &era.listen {
                let Some(backend) = gw.cfg.backends.get(ctx.backend) else {
                    return Outcome::Drop;
                };
                let naming = Naming::new(&gw.cfg);
                let expose = |u: &str| naming.expose_uri(backend, u).into_owned();
                let mut params: Value = msg
                    .params
                    .and_then(|p| serde_json::from_str(p.get()).ok())
                    .unwrap_or(Value::Null);
                if method == "notifications/resources/updated" {
                    if let Some(u) = params.get_mut("uri") {
                        if let Some(s) = u.as_str() {
                            *u = Value::String(expose(s));
                        }
                    }
                }
                return match listen.notification(method, params, &expose) {
                    None => Outcome::Drop,
                    Some(p) => {
                        Outcome::Replace(jsonrpc::notification_json(method, Some(&p.to_string())))
                    }
                };
            }
            // Routed from headers, the request's logLevel is unknown: the
            // backend (2026-07-28, bound by the same rule) filters.
            if era.client_modern
                && !era.any_id
                && method == "notifications/message"
                && !wants_log(era.log_level, msg.params)
            {
                return Outcome::Drop;
            }
            legacy(answer)
        }
        Kind::Response | Kind::Error => {
            // Through a held session the answer carries the gateway's id.
            let want = era.held_id.as_ref().or(ctx.request_id.as_ref());
            let is_answer = match (want, msg.id) {
                (Some(want), Some(id)) => want == id.get(),
                (None, Some(_)) => era.any_id,
                _ => false,
            };
            if !is_answer {
                return legacy(answer);
            }
            answer.seen = true;
            answer.error = msg.kind == Kind::Error;
            let out = match (msg.kind, msg.result, msg.error) {
                (Kind::Response, Some(result), _) => result_outcome(gw, ctx, era, text, result),
                (_, _, Some(error)) if era.client_modern => error_outcome(text, error),
                _ => Outcome::Keep,
            };
            match (&era.held_id, &ctx.request_id) {
                (Some(_), Some(client_id)) => with_id(out, text, client_id),
                _ => out,
            }
        }
    }
}

/// Whether a log message passes the request's `logLevel`.
fn wants_log(level: Option<LogLevel>, params: Option<&RawValue>) -> bool {
    let Some(want) = level else {
        return false;
    };
    let theirs = params
        .and_then(|p| RawObject::parse(p).ok())
        .and_then(|p| p.get_str("level").and_then(|l| LogLevel::parse(&l)));
    // A level the client would not recognise is passed: its severity is unknown.
    theirs.is_none_or(|l| l >= want)
}

/// A backend's error for a 2026-07-28 client: `-32002` is `-32602` now.
fn error_outcome(text: &str, error: &RawValue) -> Outcome {
    let Ok(err) = RawObject::parse(error) else {
        return Outcome::Keep;
    };
    if err.get("code").map(RawValue::get) != Some(&RESOURCE_NOT_FOUND.to_string()) {
        return Outcome::Keep;
    }
    let new_err = err.write_with(&[("code", &INVALID_PARAMS.to_string())]);
    match RawObject::parse_str(text.trim()) {
        Ok(o) => Outcome::Replace(o.write_with(&[("error", &new_err)])),
        Err(_) => Outcome::Keep,
    }
}

fn result_outcome(
    gw: &Gateway,
    ctx: &StreamCtx,
    era: &StreamEra,
    text: &str,
    result: &RawValue,
) -> Outcome {
    let Some(backend) = gw.cfg.backends.get(ctx.backend) else {
        return Outcome::Keep;
    };
    let method = ctx.method.as_deref().unwrap_or("");
    let rewritten = stream::rewrite_result(gw, &ctx.sid, backend, method, result.get());
    let Ok(mut v) = serde_json::from_str::<Value>(rewritten.as_deref().unwrap_or(result.get()))
    else {
        return Outcome::Keep;
    };
    let mut changed = rewritten.is_some();
    let result_type = v
        .get("resultType")
        .and_then(Value::as_str)
        .map(str::to_string);
    if !era.client_modern {
        if result_type.as_deref() == Some("input_required") {
            let m = format!(
                "backend {} needs more input from the client (a 2026-07-28 multi-round-trip request), which a 2025-era session cannot give through the gateway; connect with protocol 2026-07-28",
                backend.name
            );
            let id = ctx
                .request_id
                .as_deref()
                .and_then(|i| RawValue::from_string(i.to_string()).ok());
            return Outcome::Replace(error_json(id.as_deref(), BACKEND_ERROR, &m, None));
        }
        return match rewritten {
            Some(r) => replace_result(text, &r),
            None => Outcome::Keep,
        };
    }
    let Some(obj) = v.as_object_mut() else {
        return Outcome::Keep;
    };
    match result_type.as_deref() {
        None => {
            obj.insert("resultType".into(), Value::String("complete".into()));
            changed = true;
        }
        Some("input_required") => {
            changed |= input_required(gw, ctx, era, obj);
        }
        _ => {}
    }
    let complete = obj.get("resultType").and_then(Value::as_str) == Some("complete");
    if complete && method == "resources/read" {
        if !obj.contains_key("ttlMs") {
            obj.insert("ttlMs".into(), Value::from(0));
            changed = true;
        }
        let scope = obj.get("cacheScope").and_then(Value::as_str);
        let private = era.per_caller || !matches!(scope, Some("public" | "private"));
        if private && scope != Some("private") {
            obj.insert("cacheScope".into(), Value::String("private".into()));
            changed = true;
        }
    }
    if let Some(listen) = &era.listen {
        listen.tag(&mut v);
        changed = true;
    }
    if changed {
        replace_result(text, &v.to_string())
    } else {
        Outcome::Keep
    }
}

/// `out` (or the kept `text`) answering with the client's own `id`.
fn with_id(out: Outcome, text: &str, id: &str) -> Outcome {
    let current = match &out {
        Outcome::Drop => return out,
        Outcome::Keep => text,
        Outcome::Replace(t) => t.as_str(),
    };
    match RawObject::parse_str(current.trim()) {
        Ok(o) => Outcome::Replace(o.write_with(&[("id", id)])),
        Err(_) => out,
    }
}

fn replace_result(text: &str, result: &str) -> Outcome {
    match RawObject::parse_str(text.trim()) {
        Ok(o) => Outcome::Replace(o.write_with(&[("result", result)])),
        Err(_) => Outcome::Keep,
    }
}

/// Wrap the backend's `requestState` (when sealing applies) and namespace
/// the resource URIs its sampling requests carry. Whether anything changed.
fn input_required(
    gw: &Gateway,
    ctx: &StreamCtx,
    era: &StreamEra,
    obj: &mut Map<String, Value>,
) -> bool {
    let Some(backend) = gw.cfg.backends.get(ctx.backend) else {
        return false;
    };
    let mut changed = false;
    let naming = Naming::new(&gw.cfg);
    if let Some(Value::Object(requests)) = obj.get_mut("inputRequests") {
        for r in requests.values_mut() {
            if r.get("method").and_then(Value::as_str) != Some("sampling/createMessage") {
                continue;
            }
            let Some(msgs) = r
                .get_mut("params")
                .and_then(|p| p.get_mut("messages"))
                .and_then(Value::as_array_mut)
            else {
                continue;
            };
            for m in msgs {
                match m.get_mut("content") {
                    Some(Value::Array(blocks)) => blocks
                        .iter_mut()
                        .for_each(|c| expose_content_uris(&naming, backend, c)),
                    Some(c) => expose_content_uris(&naming, backend, c),
                    None => {}
                }
            }
            changed = true;
        }
    }
    if let Some(seal) = &era.seal {
        let state = RequestState {
            scope: era.scope,
            expires_ms: era.now_ms.saturating_add(TTL_MS),
            method: seal.method.clone(),
            target: seal.target.clone(),
            args: seal.args,
            backend: seal.backend.clone(),
            original: obj
                .get("requestState")
                .and_then(Value::as_str)
                .map(str::to_string),
        };
        // Unique per round without a random source: the backend's state and
        // the time it was minted feed the nonce.
        let nonce = gw.cfg.keys.synthetic_nonce(&[
            b"request-state",
            &era.scope,
            seal.target.as_bytes(),
            state.original.as_deref().unwrap_or("").as_bytes(),
            &era.now_ms.to_be_bytes(),
        ]);
        obj.insert(
            "requestState".into(),
            Value::String(state.seal(&gw.cfg.keys, &nonce)),
        );
        changed = true;
    }
    changed
}

impl Exchange {
    /// Answer the requests a backend sent towards a 2026-07-28 client, which
    /// cannot receive them: a `ping` is answered, anything else refused, so
    /// the backend is not left waiting (its tool then fails or goes on
    /// without the input).
    pub(in crate::gateway) fn refuse_server_requests(
        &mut self,
        host: &mut dyn Host,
        backend: usize,
        refused: Vec<Refused>,
    ) {
        let Some(session) = self.req.session.clone() else {
            return;
        };
        for r in refused {
            let Ok(id) = RawValue::from_string(r.id.clone()) else {
                continue;
            };
            let body = if r.method == "ping" {
                jsonrpc::result_json(&id, "{}")
            } else {
                self.log_backend(
                    host,
                    backend,
                    &format!("sent {} to a 2026-07-28 client, which cannot receive server requests; refused", r.method),
                );
                error_json(
                    Some(&id),
                    jsonrpc::METHOD_NOT_FOUND,
                    &format!(
                        "{} is not available: the client speaks MCP 2026-07-28 through mcpgw, where servers ask for input with multi-round-trip results (input_required), not requests",
                        r.method
                    ),
                    None,
                )
            };
            if let Some(mut call) = self.call(&session, backend, "POST", body.into_bytes()) {
                // With the credential the routed request went with.
                let Some(credential) = self.credential_at_hand(host, backend) else {
                    host.log(Level::Warn, "no credential to answer a backend's request");
                    continue;
                };
                call.headers.extend(credential);
                if host.dispatch(&call).is_err() {
                    host.log(Level::Warn, "could not answer a backend's request");
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::gateway::modern::listen::{Filter, ListenCtx};
    use crate::gateway::modern::state::args_digest;
    use crate::gateway::modern::Seal;
    use crate::gateway::testing::gateway;
    use serde_json::json;
    use std::sync::Arc;
    #[cfg(all(target_arch = "wasm32", target_os = "unknown"))]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    const TWO: &str = r#"[{"name":"a","cluster":"a"},{"name":"py","cluster":"py"}]"#;

    fn ctx(method: &str, era: StreamEra) -> StreamCtx {
        StreamCtx {
            backend: 1,
            sid: [2; 16],
            method: Some(method.into()),
            request_id: Some("5".into()),
            era: Some(Arc::new(era)),
        }
    }

    fn modern_era() -> StreamEra {
        StreamEra {
            client_modern: true,
            backend_modern: true,
            scope: [2; 16],
            now_ms: 1_000,
            ..Default::default()
        }
    }

    fn run(gw: &Gateway, c: &StreamCtx, text: &str) -> (Outcome, Answer, Vec<Refused>) {
        let mut a = Answer::default();
        let mut r = Vec::new();
        let era = c.era.clone().unwrap();
        (rewrite(gw, c, &era, text, &mut a, &mut r), a, r)
    }

    fn replaced(o: Outcome) -> Value {
        match o {
            Outcome::Replace(s) => serde_json::from_str(&s).unwrap(),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn results_get_a_result_type_and_read_hints() {
        let gw = gateway(TWO);
        let (o, a, _) = run(
            &gw,
            &ctx("tools/call", modern_era()),
            r#"{"jsonrpc":"2.0","id":5,"result":{"content":[]}}"#,
        );
        assert!(a.seen && !a.error);
        assert_eq!(replaced(o)["result"]["resultType"], "complete");
        // Already complete: byte for byte.
        let (o, _, _) = run(
            &gw,
            &ctx("tools/call", modern_era()),
            r#"{"jsonrpc":"2.0","id":5,"result":{"content":[],"resultType":"complete"}}"#,
        );
        assert_eq!(o, Outcome::Keep);
        let (o, _, _) = run(
            &gw,
            &ctx("resources/read", modern_era()),
            r#"{"jsonrpc":"2.0","id":5,"result":{"contents":[{"uri":"x://1","text":"t"}]}}"#,
        );
        let v = replaced(o);
        assert_eq!(
            (
                v["result"]["ttlMs"].as_u64(),
                v["result"]["cacheScope"].as_str()
            ),
            (Some(0), Some("private"))
        );
        assert_eq!(v["result"]["contents"][0]["uri"], "py+x://1");
        let per_caller = StreamEra {
            per_caller: true,
            ..modern_era()
        };
        let (o, _, _) = run(
            &gw,
            &ctx("resources/read", per_caller),
            r#"{"jsonrpc":"2.0","id":5,"result":{"contents":[],"resultType":"complete","ttlMs":5,"cacheScope":"public"}}"#,
        );
        assert_eq!(replaced(o)["result"]["cacheScope"], "private");
    }

    #[test]
    fn input_required_state_is_sealed_and_uris_namespaced() {
        let gw = gateway(TWO);
        let era = StreamEra {
            seal: Some(Seal {
                method: "tools/call".into(),
                target: "py__confirm".into(),
                args: args_digest(None),
                backend: "py".into(),
            }),
            ..modern_era()
        };
        let text = json!({"jsonrpc":"2.0","id":5,"result":{"resultType":"input_required","requestState":"v1.theirs",
            "inputRequests":{"s":{"method":"sampling/createMessage","params":{"messages":[{"role":"user","content":{"type":"resource_link","uri":"x://doc","name":"d"}}],"maxTokens":5}},
                             "e":{"method":"elicitation/create","params":{"message":"m","requestedSchema":{}}}}}})
        .to_string();
        let v = replaced(run(&gw, &ctx("tools/call", era), &text).0);
        let token = v["result"]["requestState"].as_str().unwrap();
        let s = RequestState::open(&gw.cfg.keys, token, 2_000).unwrap();
        assert_eq!(
            (s.backend.as_str(), s.original.as_deref()),
            ("py", Some("v1.theirs"))
        );
        assert_eq!(s.expires_ms, 1_000 + TTL_MS);
        assert_eq!(
            v["result"]["inputRequests"]["s"]["params"]["messages"][0]["content"]["uri"],
            "py+x://doc"
        );
        assert_eq!(
            v["result"]["inputRequests"]["e"]["params"]["message"], "m",
            "keys and other requests untouched"
        );
        // Without sealing (unprefixed backend), the backend's state passes as is.
        let (o, _, _) = run(
            &gw,
            &ctx("tools/call", modern_era()),
            r#"{"jsonrpc":"2.0","id":5,"result":{"resultType":"input_required","requestState":"v1.theirs"}}"#,
        );
        assert_eq!(o, Outcome::Keep);
    }

    #[test]
    fn legacy_clients_get_an_error_for_input_required() {
        let gw = gateway(TWO);
        let era = StreamEra {
            client_modern: false,
            backend_modern: true,
            ..Default::default()
        };
        let v = replaced(run(&gw, &ctx("tools/call", era), r#"{"jsonrpc":"2.0","id":5,"result":{"resultType":"input_required","inputRequests":{}}}"#).0);
        assert_eq!(v["id"], 5);
        assert_eq!(v["error"]["code"], BACKEND_ERROR);
        assert!(v["error"]["message"]
            .as_str()
            .unwrap()
            .contains("2026-07-28"));
    }

    #[test]
    fn errors_logs_and_server_requests_for_modern_clients() {
        let gw = gateway(TWO);
        let c = ctx("resources/read", modern_era());
        let v = replaced(run(&gw, &c, r#"{"jsonrpc":"2.0","id":5,"error":{"code":-32002,"message":"Resource not found"}}"#).0);
        assert_eq!(v["error"]["code"], -32602);
        assert_eq!(
            run(
                &gw,
                &c,
                r#"{"jsonrpc":"2.0","id":5,"error":{"code":-32603,"message":"x"}}"#
            )
            .0,
            Outcome::Keep
        );
        let log = r#"{"jsonrpc":"2.0","method":"notifications/message","params":{"level":"info","data":"x"}}"#;
        assert_eq!(
            run(&gw, &c, log).0,
            Outcome::Drop,
            "no logLevel: no log messages"
        );
        let warn = ctx(
            "resources/read",
            StreamEra {
                log_level: Some(LogLevel::Warning),
                ..modern_era()
            },
        );
        assert_eq!(run(&gw, &warn, log).0, Outcome::Drop, "below the level");
        let info = ctx(
            "resources/read",
            StreamEra {
                log_level: Some(LogLevel::Info),
                ..modern_era()
            },
        );
        assert_eq!(run(&gw, &info, log).0, Outcome::Keep);
        let (o, a, refused) = run(
            &gw,
            &c,
            r#"{"jsonrpc":"2.0","id":0,"method":"elicitation/create","params":{}}"#,
        );
        assert_eq!(o, Outcome::Drop);
        assert!(!a.seen);
        assert_eq!(
            refused,
            vec![Refused {
                id: "0".into(),
                method: "elicitation/create".into()
            }]
        );
        // Routed from headers: the first response is the answer, whatever its id.
        let any = StreamCtx {
            request_id: None,
            ..ctx(
                "tools/call",
                StreamEra {
                    any_id: true,
                    ..modern_era()
                },
            )
        };
        let (_, a, _) = run(
            &gw,
            &any,
            r#"{"jsonrpc":"2.0","id":"x9","result":{"resultType":"complete"}}"#,
        );
        assert!(a.seen);
    }

    #[test]
    fn listen_frames_are_tagged() {
        let gw = gateway(TWO);
        let era = StreamEra {
            listen: Some(ListenCtx {
                id: "9".into(),
                honoured: Filter {
                    uris: vec!["py+x://1".into()],
                    ..Default::default()
                },
                merged: false,
            }),
            ..modern_era()
        };
        let c = StreamCtx {
            request_id: Some("9".into()),
            ..ctx("subscriptions/listen", era)
        };
        let v = replaced(run(&gw, &c, r#"{"jsonrpc":"2.0","method":"notifications/resources/updated","params":{"uri":"x://1"}}"#).0);
        assert_eq!(v["params"]["uri"], "py+x://1");
        assert_eq!(
            v["params"]["_meta"]["io.modelcontextprotocol/subscriptionId"],
            9
        );
        assert_eq!(
            run(
                &gw,
                &c,
                r#"{"jsonrpc":"2.0","method":"notifications/tools/list_changed"}"#
            )
            .0,
            Outcome::Drop
        );
        let v = replaced(run(&gw, &c, r#"{"jsonrpc":"2.0","id":9,"result":{}}"#).0);
        assert_eq!(
            v["result"]["_meta"]["io.modelcontextprotocol/subscriptionId"],
            9
        );
        assert_eq!(v["result"]["resultType"], "complete");
    }
}
