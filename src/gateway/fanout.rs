//! Requests answered by asking several backends at once: `initialize`, the
//! `*/list` methods, notifications, `logging/setLevel`, `DELETE`, and the
//! look-ups that find which unprefixed backend owns a bare name.

use super::config::Backend;
use super::crypto::NONCE_LEN;
use super::error::GatewayError;
use super::exchange::{
    result_json_str, Call, Exchange, FanOp, FanOut, Lookup, NameKind, State, CALL_ACCEPT,
};
use super::host::{
    BodyAction, CallId, CallResponse, Host, Level, LocalResponse, LogField, Outbound,
};
use super::merge;
use super::policy::Resource;
use super::session::{caps, session_tag, BackendSession, Session};
use super::stream::{self, StreamCtx};
use super::tokens::ListCursor;
use crate::protocol::http as h;
use crate::protocol::jsonrpc::{self, json_string, raw_array, raw_str, Message, RawObject};
use crate::protocol::mcp::{self, ListKind, Version};

impl Exchange {
    /// A side call to backend `i` (fan-out), with its credentials and session.
    pub(super) fn call(
        &self,
        session: &Session,
        i: usize,
        method: &str,
        body: Vec<u8>,
    ) -> Option<Outbound> {
        let b = self.gw.cfg.backends.get(i)?;
        let bs = session.backend(&b.name);
        self.call_to(b, bs, method, body)
    }

    pub(super) fn call_to(
        &self,
        b: &Backend,
        bs: Option<&BackendSession>,
        method: &str,
        body: Vec<u8>,
    ) -> Option<Outbound> {
        let authority = b.authority.clone().unwrap_or_else(|| {
            if self.req.authority.is_empty() {
                b.cluster.clone()
            } else {
                self.req.authority.clone()
            }
        });
        // A held session is shared by every 2026-07-28 client of this worker.
        let held_id = (self.client_is_modern() && bs.is_some_and(|s| !s.version.is_modern()))
            .then(|| self.gw.next_held_id());
        let (body, era_headers) = super::modern::upstream::for_call(
            self.client_is_modern(),
            bs,
            body,
            held_id.as_deref(),
        );
        let mut headers = vec![
            (":method".to_string(), method.to_string()),
            (":path".to_string(), b.path.clone()),
            (":authority".to_string(), authority),
            ("accept".to_string(), CALL_ACCEPT.to_string()),
        ];
        headers.extend(era_headers);
        if !body.is_empty() {
            headers.push(("content-type".into(), h::JSON.into()));
        }
        if let Some(bs) = bs {
            if let Some(id) = &bs.session_id {
                headers.push((h::SESSION_ID.into(), id.clone()));
            }
            headers.push((h::PROTOCOL_VERSION.into(), bs.version.as_str().into()));
        }
        if b.forward_authorization {
            if let Some(a) = &self.req.authorization {
                headers.push((h::AUTHORIZATION.into(), a.clone()));
            }
        }
        headers.extend(b.headers.iter().cloned());
        headers.extend(self.req.propagate.iter().cloned());
        Some(Outbound {
            cluster: b.cluster.clone(),
            headers,
            body,
            timeout_ms: b.timeout_ms,
        })
    }

    pub(super) fn fan_out(
        &mut self,
        host: &mut dyn Host,
        session: &Session,
        op: FanOp,
        targets: &[usize],
        body_for: impl Fn(usize) -> Option<Vec<u8>>,
    ) -> BodyAction {
        // The fan-out state first: calls that wait for a credential join it.
        self.state = State::FanOut(FanOut {
            op,
            calls: Vec::with_capacity(targets.len()),
        });
        self.req.fanout_started_ms = host.now_ms();
        for &i in targets {
            let Some(body) = body_for(i) else { continue };
            let Some(call) = self.call(session, i, "POST", body) else {
                continue;
            };
            let sent = self.send_call(host, i, call);
            self.add_call(i, sent);
        }
        match self.maybe_finish(host) {
            Some(a) => a,
            None => BodyAction::Wait,
        }
    }

    // ----- initialize ---------------------------------------------------------

    pub(super) fn initialize(
        &mut self,
        host: &mut dyn Host,
        msg: &Message<'_>,
        _body: &[u8],
    ) -> BodyAction {
        let params = msg.params.and_then(|p| RawObject::parse(p).ok());
        let requested = params.as_ref().and_then(|p| p.get_str("protocolVersion"));
        let (Some(params), Some(requested)) = (params, requested) else {
            return BodyAction::Respond(self.fail(GatewayError::invalid_params(
                "Invalid params: initialize needs params.protocolVersion",
            )));
        };
        let negotiated = Version::negotiate(&requested);
        let params = params.write_with(&[("protocolVersion", &json_string(negotiated.as_str()))]);
        let id = msg.id.map(|i| i.get()).unwrap_or("0");
        let body = jsonrpc::request_json(id, "initialize", Some(&params)).into_bytes();
        // A client may re-initialize while holding an old session: that one is not reused.
        self.req.session = None;
        let empty = Session {
            sid: [0; 16],
            created_ms: 0,
            version: negotiated,
            principal: None,
            backends: Vec::new(),
        };
        let targets: Vec<usize> = (0..self.cfg().backends.len()).collect();
        self.fan_out(
            host,
            &empty,
            FanOp::Initialize { negotiated },
            &targets,
            |_| Some(body.clone()),
        )
    }

    /// The session from the backends' `initialize` answers, and `modern`:
    /// 2026-07-28 backends joined from what they said in `server/discover`.
    pub(super) fn finish_initialize(
        &mut self,
        host: &mut dyn Host,
        negotiated: Version,
        calls: Vec<Call>,
        modern: Vec<(usize, merge::BackendInit)>,
    ) -> LocalResponse {
        let max = self.cfg().max_response_bytes;
        let mut joined: Vec<(usize, merge::BackendInit, Option<String>)> = Vec::new();
        let mut failures = Vec::new();
        for c in calls {
            if modern.iter().any(|(i, _)| *i == c.backend) {
                continue;
            }
            let Some(b) = self.gw.cfg.backends.get(c.backend) else {
                continue;
            };
            let resp = c.response.unwrap_or_default();
            let outcome = merge::response_message(&resp, max)
                .and_then(|m| merge::result_of(&m).map(str::to_string))
                .and_then(|r| merge::parse_initialize(&r));
            let session_id = resp.header(h::SESSION_ID).map(|s| s.trim().to_string());
            match (outcome, session_id) {
                (Ok(_), Some(sid)) if !h::is_valid_session_id(&sid) => {
                    failures.push(format!("{}: invalid Mcp-Session-Id", b.name));
                }
                (Ok(init), sid) => joined.push((c.backend, init, sid)),
                (Err(e), _) => failures.push(format!("{}: {e}", b.name)),
            }
            if !joined.iter().any(|(i, _, _)| *i == c.backend) {
                self.gw.meters.init_failure(host, c.backend);
            }
        }
        joined.extend(modern.into_iter().map(|(i, init)| (i, init, None)));
        joined.sort_by_key(|(i, _, _)| *i);
        for f in &failures {
            host.log(
                Level::Warn,
                &format!("initialize: backend {f}; left out of the session"),
            );
        }
        if joined.is_empty() {
            let m = format!("no backend could be initialized ({})", failures.join("; "));
            return self.fail(GatewayError::backend(m));
        }
        let mut sid = [0u8; 16];
        let mut nonce = [0u8; NONCE_LEN];
        if host.random(&mut sid).is_err() || host.random(&mut nonce).is_err() {
            return self.fail(GatewayError::internal(
                "no randomness available for a session id",
            ));
        }
        let session = Session {
            sid,
            created_ms: host.now_ms(),
            version: negotiated,
            principal: self.principal_digest(),
            backends: joined
                .iter()
                .filter_map(|(i, init, sid)| {
                    let b = self.gw.cfg.backends.get(*i)?;
                    Some(BackendSession {
                        name: b.name.clone(),
                        version: init.version,
                        session_id: sid.clone(),
                        caps: caps_bits(&init.capabilities),
                    })
                })
                .collect(),
        };
        let parts: Vec<(&Backend, &merge::BackendInit)> = joined
            .iter()
            .filter_map(|(i, init, _)| self.gw.cfg.backends.get(*i).map(|b| (b, init)))
            .collect();
        let result = merge::initialize_result(&self.gw.cfg, negotiated, &parts);
        let token = session.seal(&self.gw.cfg.keys, &nonce);
        self.gw.meters.session_created(host);
        self.publish(
            host,
            LogField::Session,
            &session_tag(&self.gw.cfg.keys, &session.sid),
        );
        let names: Vec<&str> = parts.iter().map(|(b, _)| b.name.as_str()).collect();
        host.log(
            Level::Info,
            &format!("session started with backends: {}", names.join(", ")),
        );
        let id = self.req.request_id.clone().unwrap_or_else(|| "null".into());
        let r = LocalResponse::json(200, result_json_str(&id, &result))
            .with_header(h::SESSION_ID, token);
        self.respond(r)
    }

    // ----- lists ----------------------------------------------------------------

    pub(super) fn list(
        &mut self,
        host: &mut dyn Host,
        session: &Session,
        kind: ListKind,
        msg: &Message<'_>,
    ) -> BodyAction {
        let params = match msg.params.map(RawObject::parse) {
            None => RawObject::default(),
            Some(Ok(p)) => p,
            Some(Err(_)) => {
                let e = GatewayError::invalid_params("Invalid params: expected an object");
                return BodyAction::Respond(self.fail(e));
            }
        };
        let cap = match kind {
            ListKind::Tasks => caps::TASK_LIST,
            _ => caps::bit(kind.capability()),
        };
        let targets: Vec<(usize, Option<String>)> = match params.get("cursor") {
            Some(c) => {
                let cursor = raw_str(c)
                    .and_then(|c| ListCursor::open(&self.gw.cfg.keys, &c, &session.sid, kind));
                let Some(cursor) = cursor else {
                    let e =
                        GatewayError::invalid_params("Invalid params: unknown or expired cursor");
                    return BodyAction::Respond(self.fail(e));
                };
                cursor
                    .pending
                    .into_iter()
                    .filter_map(|(name, c)| {
                        let (i, _) = self.gw.cfg.backend(&name)?;
                        session.backend(&name)?;
                        Some((i, Some(c)))
                    })
                    .collect()
            }
            None => self
                .with_cap(session, cap)
                .into_iter()
                .map(|i| (i, None))
                .collect(),
        };
        if targets.is_empty() {
            let id = self.req.request_id.clone().unwrap_or_else(|| "null".into());
            let hints = self.list_result_members(super::modern::cache::CacheHint::LOCAL);
            let r = LocalResponse::json(
                200,
                result_json_str(&id, &format!("{{\"{}\":[]{hints}}}", kind.items_key())),
            );
            return BodyAction::Respond(self.respond(r));
        }
        let id = msg.id.map(|i| i.get()).unwrap_or("0").to_string();
        let bodies: Vec<(usize, Vec<u8>)> = targets
            .iter()
            .map(|(i, c)| {
                let p = match c {
                    Some(c) => params.write_with(&[("cursor", &json_string(c))]),
                    None => params.write_without(&["cursor"], &[]),
                };
                (
                    *i,
                    jsonrpc::request_json(&id, kind.method(), Some(&p)).into_bytes(),
                )
            })
            .collect();
        let idx: Vec<usize> = targets.iter().map(|(i, _)| *i).collect();
        self.fan_out(host, session, FanOp::List { kind }, &idx, |i| {
            bodies
                .iter()
                .find(|(b, _)| *b == i)
                .map(|(_, body)| body.clone())
        })
    }

    fn finish_list(
        &mut self,
        host: &mut dyn Host,
        kind: ListKind,
        calls: Vec<Call>,
    ) -> LocalResponse {
        let max = self.cfg().max_response_bytes;
        let responses: Vec<(usize, CallResponse)> = calls
            .into_iter()
            .map(|c| (c.backend, c.response.unwrap_or_default()))
            .collect();
        // A 404 is a session the backend ended (a 2026-07-28 backend has none).
        let session_404 = responses
            .iter()
            .find(|(i, r)| {
                r.status == 404
                    && self
                        .req
                        .session
                        .as_ref()
                        .is_some_and(|s| !self.backend_is_modern(s, *i))
            })
            .map(|(i, _)| *i);
        if let Some(i) = session_404 {
            let e = self
                .held_session_ended(host, i)
                .unwrap_or_else(|| GatewayError::backend_session_ended(self.gw.backend_name(i)));
            return self.fail(e);
        }
        let name_of = |i: usize| {
            self.gw
                .cfg
                .backends
                .get(i)
                .map(|b| b.name.clone())
                .unwrap_or_default()
        };
        // Borrowed all the way: a large list is parsed once and copied once.
        let mut messages: Vec<(usize, std::borrow::Cow<'_, str>)> = Vec::new();
        let mut failures = Vec::new();
        for (i, resp) in &responses {
            match merge::response_message(resp, max) {
                Ok(m) => messages.push((*i, m)),
                Err(e) => failures.push((*i, e)),
            }
        }
        // One parse per answer: envelope and items together.
        let mut results: Vec<(usize, merge::PageItems<'_>)> = Vec::new();
        for (i, m) in &messages {
            match merge::parse_page(m, true) {
                Ok(items) => results.push((*i, items)),
                Err(e) => failures.push((*i, e)),
            }
        }
        let failures: Vec<String> = failures
            .into_iter()
            .map(|(i, e)| {
                self.gw.meters.backend_failure(host, i);
                // What was learned of it may be why: asked again next time.
                self.gw.eras.forget(i);
                format!("{}: {e}", name_of(i))
            })
            .collect();
        for f in &failures {
            host.log(
                Level::Warn,
                &format!(
                    "{}: backend {f}; its items are missing from this answer",
                    kind.method()
                ),
            );
        }
        if results.is_empty() {
            let m = format!(
                "no backend answered {} ({})",
                kind.method(),
                failures.join("; ")
            );
            return self.fail(GatewayError::backend(m));
        }
        let sid = self.req.session.as_ref().map(|s| s.sid).unwrap_or_default();
        let gw = std::sync::Arc::clone(&self.gw);
        let seal = |b: &Backend, id: &str| stream::wrap_task_id(&gw, &sid, b, id);
        let allowed = |r: Resource<'_>| self.visible(r);
        let opts = merge::ListOptions {
            seal_task: &seal,
            allowed: &allowed,
        };
        // The whole JSON-RPC answer is built in the merge's buffer.
        let id = self.req.request_id.clone().unwrap_or_else(|| "null".into());
        let prefix = format!(
            "{{\"jsonrpc\":\"2.0\",\"id\":{id},\"result\":{{\"{}\":",
            kind.items_key()
        );
        let merged = match merge::merge_pages(&prefix, &self.gw.cfg, kind, results, &opts) {
            Ok(m) => m,
            Err(merge::MergeError::Collision {
                name,
                first,
                second,
            }) => {
                let m = format!(
                    "name collision: \"{name}\" is offered by backends {first} and {second}; set their prefix mode to prefix names (e.g. \"prefix\": \"always\")"
                );
                host.log(Level::Error, &m);
                return self.fail(GatewayError::collision(m));
            }
        };
        for (i, why) in &merged.broken {
            self.log_backend(host, *i, &format!("{}: {why}", kind.method()));
        }
        for n in &merged.overlong {
            host.log(
                Level::Warn,
                &format!("tool name \"{n}\" is longer than {} characters after prefixing; some clients reject it", mcp::MAX_TOOL_NAME),
            );
        }
        let mut result = merged.items;
        if !merged.next.is_empty() {
            let Some(session) = self.req.session.as_ref() else {
                return self.fail(GatewayError::internal("session lost"));
            };
            let pending: Vec<(String, String)> = merged
                .next
                .iter()
                .filter_map(|(i, c)| {
                    self.gw
                        .cfg
                        .backends
                        .get(*i)
                        .map(|b| (b.name.clone(), c.clone()))
                })
                .collect();
            let mut nonce = [0u8; NONCE_LEN];
            if host.random(&mut nonce).is_err() {
                let e = GatewayError::internal("no randomness available for a cursor");
                return self.fail(e);
            }
            let token = ListCursor::new(session.sid, kind, pending).seal(&self.gw.cfg.keys, &nonce);
            result.push_str(",\"nextCursor\":");
            result.push_str(&json_string(&token));
        }
        result.push_str(&self.list_result_members(merged.cache));
        result.push_str("}}");
        self.respond(LocalResponse::json(200, result))
    }

    // ----- side-call answers --------------------------------------------------

    /// The answer to a call dispatched earlier.
    pub fn on_call_response(
        &mut self,
        host: &mut dyn Host,
        token: CallId,
        response: CallResponse,
    ) -> BodyAction {
        let State::FanOut(f) = &mut self.state else {
            return BodyAction::Wait;
        };
        if let Some(c) = f.calls.iter_mut().find(|c| c.token == Some(token)) {
            c.response = Some(response);
        }
        self.maybe_finish(host).unwrap_or(BodyAction::Wait)
    }

    pub(super) fn maybe_finish(&mut self, host: &mut dyn Host) -> Option<BodyAction> {
        let State::FanOut(f) = &self.state else {
            return None;
        };
        if f.calls.iter().any(|c| c.response.is_none()) || self.awaiting_credentials() {
            return None;
        }
        let State::FanOut(f) = std::mem::replace(&mut self.state, State::Answered) else {
            return None;
        };
        for c in &f.calls {
            let status = c.response.as_ref().map_or(0, |r| r.status);
            if !(200..300).contains(&status)
                && !matches!(
                    f.op,
                    FanOp::List { .. } | FanOp::Initialize { .. } | FanOp::Learn(_)
                )
            {
                self.log_backend(host, c.backend, &format!("answered HTTP {status}"));
            }
        }
        let elapsed = host.now_ms().saturating_sub(self.req.fanout_started_ms);
        self.gw.meters.fanout(host, f.op.label(), elapsed);
        let r = match f.op {
            FanOp::Initialize { negotiated } => {
                // A backend that refused the handshake may speak only 2026-07-28.
                let refused = self.refused_initializations(&f.calls);
                let probe: Vec<usize> = refused
                    .iter()
                    .copied()
                    .filter(|i| self.gw.eras.learned(*i).is_none())
                    .collect();
                if !probe.is_empty() {
                    let steps = probe
                        .into_iter()
                        .map(|i| (i, super::modern::client::Step::Discover))
                        .collect();
                    let then = super::modern::client::Then::Initialize {
                        negotiated,
                        calls: f.calls,
                    };
                    return Some(self.learn(host, steps, then));
                }
                let joins = self.modern_joins(&refused);
                self.finish_initialize(host, negotiated, f.calls, joins)
            }
            FanOp::Learn(l) => return Some(self.finish_learn(host, *l, f.calls)),
            FanOp::List { kind } => self.finish_list(host, kind, f.calls),
            FanOp::SetLevel => {
                let id = self.req.request_id.clone().unwrap_or_else(|| "null".into());
                LocalResponse::json(200, result_json_str(&id, "{}"))
            }
            FanOp::Notify => LocalResponse::empty(202),
            FanOp::Delete => LocalResponse::empty(204),
            FanOp::Lookup(l) => return Some(self.finish_lookup(host, *l, f.calls)),
            FanOp::FirstSuccess => self.finish_first_success(host, f.calls),
            FanOp::AsMetadata => {
                let resp = f
                    .calls
                    .into_iter()
                    .next()
                    .and_then(|c| c.response)
                    .unwrap_or_default();
                self.finish_as_metadata(host, resp)
            }
        };
        Some(BodyAction::Respond(self.respond(r)))
    }

    // ----- bare names among several unprefixed backends -------------------------

    /// Ask `candidates` for their tool (or prompt) list to find who owns `name`.
    pub(super) fn lookup(
        &mut self,
        host: &mut dyn Host,
        session: &Session,
        what: NameKind,
        name: &str,
        params: Option<String>,
        candidates: &[usize],
    ) -> BodyAction {
        let pages: Vec<(usize, Option<String>)> = candidates.iter().map(|i| (*i, None)).collect();
        let lookup = Lookup {
            what,
            name: name.to_string(),
            params,
            found: Vec::new(),
        };
        self.lookup_pages(host, session, lookup, &pages)
    }

    fn lookup_pages(
        &mut self,
        host: &mut dyn Host,
        session: &Session,
        lookup: Lookup,
        pages: &[(usize, Option<String>)],
    ) -> BodyAction {
        let method = lookup.what.list_kind().method();
        let bodies: Vec<(usize, Vec<u8>)> = pages
            .iter()
            .map(|(i, cursor)| {
                let params = cursor
                    .as_ref()
                    .map(|c| format!("{{\"cursor\":{}}}", json_string(c)));
                let body = jsonrpc::request_json("\"mcpgw-lookup\"", method, params.as_deref());
                (*i, body.into_bytes())
            })
            .collect();
        let targets: Vec<usize> = pages.iter().map(|(i, _)| *i).collect();
        self.fan_out(
            host,
            session,
            FanOp::Lookup(Box::new(lookup)),
            &targets,
            |i| {
                bodies
                    .iter()
                    .find(|(b, _)| *b == i)
                    .map(|(_, body)| body.clone())
            },
        )
    }

    fn finish_lookup(
        &mut self,
        host: &mut dyn Host,
        mut l: Lookup,
        calls: Vec<Call>,
    ) -> BodyAction {
        let max = self.cfg().max_response_bytes;
        let key = l.what.list_kind().items_key();
        let mut next: Vec<(usize, Option<String>)> = Vec::new();
        for c in calls {
            let Some(b) = self.gw.cfg.backends.get(c.backend) else {
                continue;
            };
            let resp = c.response.unwrap_or_default();
            let result = merge::response_message(&resp, max)
                .and_then(|m| merge::result_of(&m).map(str::to_string));
            let result = match result {
                Ok(r) => r,
                Err(e) => {
                    self.log_backend(host, c.backend, &format!("looking up {}: {e}", l.name));
                    continue;
                }
            };
            let Ok(obj) = RawObject::parse_str(&result) else {
                continue;
            };
            let owns = obj.get(key).and_then(raw_array).is_some_and(|items| {
                items.iter().any(|item| {
                    RawObject::parse(item)
                        .ok()
                        .and_then(|o| o.get_str("name"))
                        .is_some_and(|n| *n == *l.name)
                })
            });
            if owns && l.what.allows(b, &l.name) && !l.found.contains(&c.backend) {
                l.found.push(c.backend);
            } else if let Some(cursor) = obj.get_str("nextCursor").filter(|c| !c.is_empty()) {
                next.push((c.backend, Some(cursor.into_owned())));
            }
        }
        let Some(session) = self.req.session.clone() else {
            return BodyAction::Respond(self.fail(GatewayError::internal("session lost")));
        };
        match l.found.as_slice() {
            [only] => {
                let only = *only;
                let params = l
                    .params
                    .as_deref()
                    .and_then(|p| serde_json::value::RawValue::from_string(p.to_string()).ok());
                if let Err(r) = self.check_name(host, only, l.what, &l.name, params.as_deref()) {
                    return BodyAction::Respond(r);
                }
                self.forward(&session, only, None, true)
            }
            [] if !next.is_empty() => self.lookup_pages(host, &session, l, &next),
            [] => {
                let e = GatewayError::unknown_name(l.what.unknown(&l.name));
                BodyAction::Respond(self.fail(e))
            }
            many => {
                let names: Vec<&str> = many
                    .iter()
                    .filter_map(|i| self.gw.cfg.backends.get(*i).map(|b| b.name.as_str()))
                    .collect();
                let m = format!(
                    "name collision: {} \"{}\" is offered by backends {}; set their prefix mode to prefix names",
                    l.what.label(),
                    l.name,
                    names.join(" and ")
                );
                host.log(Level::Error, &m);
                BodyAction::Respond(self.fail(GatewayError::collision(m)))
            }
        }
    }

    /// A URI request sent to every unprefixed candidate: exactly one may succeed.
    fn finish_first_success(&mut self, host: &mut dyn Host, calls: Vec<Call>) -> LocalResponse {
        let max = self.cfg().max_response_bytes;
        let mut ok: Vec<(usize, String)> = Vec::new();
        let mut first_error: Option<String> = None;
        let want = self.req.request_id.clone();
        for c in calls {
            let resp = c.response.unwrap_or_default();
            let failure = match merge::response_message(&resp, max) {
                Ok(m) => match stream::judge_answer(m.as_bytes(), want.as_deref()) {
                    stream::Verdict::Answer { error: false } => {
                        ok.push((c.backend, m.into_owned()));
                        continue;
                    }
                    // The backends' own error (e.g. "Resource not found").
                    stream::Verdict::Answer { error: true } => {
                        first_error.get_or_insert(m.into_owned());
                        continue;
                    }
                    stream::Verdict::NullIdError(fixed) => {
                        first_error.get_or_insert(fixed);
                        continue;
                    }
                    stream::Verdict::Not(what) => format!("answered with {what}"),
                },
                Err(e) => e,
            };
            self.log_backend(host, c.backend, &failure);
            self.count_backend_failure(host, c.backend);
        }
        match ok.as_slice() {
            [(i, text)] => {
                let era = self
                    .req
                    .session
                    .as_ref()
                    .and_then(|s| self.stream_era(s, *i));
                let ctx = StreamCtx {
                    backend: *i,
                    sid: self.req.session.as_ref().map(|s| s.sid).unwrap_or_default(),
                    method: self.req.method.clone(),
                    request_id: self.req.request_id.clone(),
                    era,
                };
                let mut answered = stream::Answer::default();
                let body = stream::rewrite_message(&self.gw, &ctx, text, &mut answered)
                    .unwrap_or_else(|| text.clone());
                LocalResponse::json(200, body)
            }
            [] => match first_error {
                Some(e) => LocalResponse::json(200, e),
                None => self.fail(GatewayError::backend("no backend answered")),
            },
            many => {
                let names: Vec<&str> = many
                    .iter()
                    .filter_map(|(i, _)| self.gw.cfg.backends.get(*i).map(|b| b.name.as_str()))
                    .collect();
                let m = format!(
                    "URI collision: backends {} all serve it; set their prefix mode to namespace URIs",
                    names.join(" and ")
                );
                host.log(Level::Error, &m);
                self.fail(GatewayError::internal(m))
            }
        }
    }
}

/// The capability bits kept in the session for a backend.
pub(super) fn caps_bits(c: &serde_json::Map<String, serde_json::Value>) -> u8 {
    let mut bits = c.keys().fold(0, |acc, k| acc | caps::bit(k));
    if c.get("tasks").and_then(|t| t.get("list")).is_some() {
        bits |= caps::TASK_LIST;
    }
    bits
}
