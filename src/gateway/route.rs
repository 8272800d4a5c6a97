//! Requests that go to exactly one backend: found by tool or prompt name, by
//! resource URI, by completion reference, or by the sealed id of a request the
//! backend sent. Envoy carries them; the answer is rewritten as it streams back.

use super::config::{Rewrite, RATE_LIMIT_HEADERS};
use super::error::GatewayError;
use super::exchange::{replace_member, Exchange, FanOp, Mode, NameKind, Routed, State};
use super::host::LocalResponse;
use super::host::{
    header, Attribute, BodyAction, HeaderOp, Host, Level, LogField, ResponseBodyAction,
    ResponseHeadersAction,
};
use super::naming::{Naming, Resolved};
use super::policy::{Access, Resource};
use super::session::Session;
use super::stats::ErrorKind;
use super::stream::{self, SseRewrite, StreamCtx};
use super::tokens::Wrapped;
use crate::protocol::http::{self as h, media_type};
use crate::protocol::jsonrpc::{json_string, raw_str, Message, RawObject};
use serde_json::value::RawValue;
use std::sync::Arc;

impl Exchange {
    // ----- upstream requests --------------------------------------------------

    /// Header changes that send the client's request to backend `i`.
    pub(super) fn upstream_headers(&self, session: &Session, i: usize) -> Vec<HeaderOp> {
        let cfg = &self.gw.cfg;
        let Some(b) = cfg.backends.get(i) else {
            return Vec::new();
        };
        let bs = session.backend(&b.name);
        let mut ops = Vec::with_capacity(10 + b.headers.len());
        ops.push(HeaderOp::Set(cfg.route_header.clone(), b.cluster.clone()));
        match cfg.rewrite {
            Rewrite::Filter => {
                ops.push(HeaderOp::Set(":path".into(), b.path.clone()));
                if let Some(a) = &b.authority {
                    ops.push(HeaderOp::Set(":authority".into(), a.clone()));
                }
            }
            // The route rewrites both; Envoy keeps the query string through
            // a path rewrite, so the client's is dropped here (the route's
            // path match ignores it either way).
            Rewrite::Route if self.req.query => {
                ops.push(HeaderOp::Set(":path".into(), cfg.path.clone()));
            }
            Rewrite::Route => {}
        }
        // Removals only for headers the client sent: each is a host call.
        let present = |name: &str| self.req.present.contains(&name);
        let remove = |ops: &mut Vec<HeaderOp>, name: &str| {
            if present(name) {
                ops.push(HeaderOp::Remove(name.to_string()));
            }
        };
        match bs.and_then(|s| s.session_id.clone()) {
            Some(id) => ops.push(HeaderOp::Set(h::SESSION_ID.into(), id)),
            None => remove(&mut ops, h::SESSION_ID),
        }
        match bs {
            Some(s) => ops.push(HeaderOp::Set(
                h::PROTOCOL_VERSION.into(),
                s.version.as_str().into(),
            )),
            None => remove(&mut ops, h::PROTOCOL_VERSION),
        }
        if !b.forward_authorization {
            remove(&mut ops, h::AUTHORIZATION);
        }
        if let Some(a) = cfg.auth.as_ref().filter(|_| present("jwt-payload")) {
            ops.push(HeaderOp::Remove(a.payload_header.clone()));
        }
        remove(&mut ops, "cookie");
        remove(&mut ops, h::ORIGIN);
        for (k, v) in b.headers.iter().chain(&self.req.meta_trace) {
            ops.push(HeaderOp::Set(k.clone(), v.clone()));
        }
        if cfg.rate_limit_headers {
            let [backend, tool, caller] = RATE_LIMIT_HEADERS;
            ops.push(HeaderOp::Set(backend.into(), b.name.clone()));
            match &self.req.tool {
                Some(t) => ops.push(HeaderOp::Set(tool.into(), t.clone())),
                None => ops.push(HeaderOp::Remove(tool.into())),
            }
            let who = self
                .req
                .principal
                .as_ref()
                .map_or("anonymous", |p| p.subject.as_str());
            ops.push(HeaderOp::Set(caller.into(), who.to_string()));
        }
        ops
    }

    // ----- routing to one backend ------------------------------------------------

    pub(super) fn forward(
        &mut self,
        session: &Session,
        backend: usize,
        body: Option<Vec<u8>>,
        expects_response: bool,
    ) -> BodyAction {
        let mut headers = self.upstream_headers(session, backend);
        let (body, era_ops) = self.era_forward(session, backend, body);
        headers.extend(era_ops);
        if let Some(b) = self.gw.cfg.backends.get(backend) {
            self.req.stats.backend = Some(b.name.clone());
        }
        if let Some(b) = &body {
            headers.push(HeaderOp::Set(h::CONTENT_LENGTH.into(), b.len().to_string()));
        }
        let era = self.stream_era(session, backend);
        self.state = State::Routed(Box::new(Routed {
            ctx: StreamCtx {
                backend,
                sid: session.sid,
                method: self.req.method.clone(),
                request_id: self.req.request_id.clone(),
                era,
            },
            expects_response,
            ended: false,
            mode: Mode::Pending,
        }));
        BodyAction::Forward { headers, body }
    }

    /// Forward `body` with one top-level member replaced.
    pub(super) fn forward_with(
        &mut self,
        session: &Session,
        backend: usize,
        body: &[u8],
        member: &str,
        value: &str,
        expects_response: bool,
    ) -> BodyAction {
        match replace_member(body, member, value) {
            Some(b) => self.forward(session, backend, Some(b), expects_response),
            None => BodyAction::Respond(self.fail(GatewayError::invalid_request())),
        }
    }

    pub(super) fn route_by_name(
        &mut self,
        host: &mut dyn Host,
        session: &Session,
        msg: &Message<'_>,
        body: &[u8],
        what: NameKind,
    ) -> BodyAction {
        let params = msg.params.and_then(|p| RawObject::parse(p).ok());
        let name = params.as_ref().and_then(|p| p.get_str("name"));
        let (Some(params), Some(name)) = (params, name) else {
            let m = format!(
                "Invalid params: {} needs params.name",
                self.req.method.as_deref().unwrap_or("")
            );
            return BodyAction::Respond(self.fail(GatewayError::invalid_params(m)));
        };
        let unknown = what.unknown(&name);
        let naming = Naming::new(&self.gw.cfg);
        let (i, original) = match naming.resolve(session, &name) {
            Resolved::Backend(i, o) => (i, o.into_owned()),
            Resolved::Ambiguous(candidates) => {
                if matches!(what, NameKind::Tool) {
                    self.req.tool = Some(name.to_string());
                }
                let params = msg.params.map(|p| p.get().to_string());
                return self.lookup(host, session, what, &name, params, &candidates);
            }
            Resolved::Unknown => {
                return BodyAction::Respond(self.fail(GatewayError::unknown_name(unknown)));
            }
        };
        let Some(b) = self.gw.cfg.backends.get(i) else {
            return BodyAction::Respond(self.fail(GatewayError::invalid_params(unknown)));
        };
        if matches!(what, NameKind::Tool) {
            self.req.tool = Some(name.to_string());
        }
        if !what.allows(b, &original) {
            host.log(
                Level::Info,
                &format!("refused hidden {} {name}", what.label()),
            );
            return BodyAction::Respond(self.fail(GatewayError::unknown_name(unknown)));
        }
        if let Err(r) = self.check_name(host, i, what, &original, msg.params) {
            return BodyAction::Respond(r);
        }
        self.forward_renamed(host, session, i, &params, body, ("name", &name, &original))
    }

    /// Forward to backend `i` (the caller's permission already checked),
    /// `member` of the params set to the backend's own name or URI when it
    /// differs from the client's (`rename`: member, client's, backend's).
    fn forward_renamed(
        &mut self,
        host: &mut dyn Host,
        session: &Session,
        i: usize,
        params: &RawObject<'_>,
        body: &[u8],
        rename: (&str, &str, &str),
    ) -> BodyAction {
        let (member, client, original) = rename;
        let renamed = json_string(original);
        let replace: &[(&str, &str)] = if original == client {
            &[]
        } else {
            &[(member, &renamed)]
        };
        match self.routed_params(host, session, i, params, replace) {
            Err(r) => BodyAction::Respond(r),
            Ok(None) => self.forward(session, i, None, true),
            Ok(Some(p)) => self.forward_with(session, i, body, "params", &p, true),
        }
    }

    pub(super) fn route_by_uri(
        &mut self,
        host: &mut dyn Host,
        session: &Session,
        msg: &Message<'_>,
        body: &[u8],
    ) -> BodyAction {
        let params = msg.params.and_then(|p| RawObject::parse(p).ok());
        let uri = params.as_ref().and_then(|p| p.get_str("uri"));
        let (Some(params), Some(uri)) = (params, uri) else {
            let e = GatewayError::invalid_params("Invalid params: params.uri is required");
            return BodyAction::Respond(self.fail(e));
        };
        let (i, original) = match Naming::new(&self.gw.cfg).resolve_uri(session, &uri) {
            Resolved::Backend(i, o) => (i, o.into_owned()),
            // Bare URIs of several backends: reads are side-effect free, so ask
            // each; exactly one may know the URI.
            Resolved::Ambiguous(candidates) => {
                let allowed = match self.permitted(host, &candidates, &uri, false, msg.params) {
                    Ok(a) => a,
                    Err(r) => return BodyAction::Respond(r),
                };
                return self.fan_out(host, session, FanOp::FirstSuccess, &allowed, |_| {
                    Some(body.to_vec())
                });
            }
            Resolved::Unknown => {
                return BodyAction::Respond(self.fail(GatewayError::resource_not_found(&uri)));
            }
        };
        if let Err(r) = self.check_uri(host, i, &original, false, msg.params) {
            return BodyAction::Respond(r);
        }
        self.forward_renamed(host, session, i, &params, body, ("uri", &uri, &original))
    }

    /// `completion/complete` goes where its reference (a prompt or a resource
    /// template) lives, with the reference un-prefixed.
    pub(super) fn route_completion(
        &mut self,
        host: &mut dyn Host,
        session: &Session,
        msg: &Message<'_>,
        body: &[u8],
    ) -> BodyAction {
        let params = msg.params.and_then(|p| RawObject::parse(p).ok());
        let reference = params
            .as_ref()
            .and_then(|p| p.get("ref"))
            .and_then(|r| RawObject::parse(r).ok());
        let (Some(params), Some(reference)) = (params, reference) else {
            let e = GatewayError::invalid_params("Invalid params: params.ref is required");
            return BodyAction::Respond(self.fail(e));
        };
        let naming = Naming::new(&self.gw.cfg);
        let kind = reference.get_str("type");
        let (field, value, resolved) = match kind.as_deref() {
            Some("ref/prompt") => match reference.get_str("name") {
                Some(n) => {
                    let r = naming.resolve(session, &n).into_owned_parts_or_candidates();
                    ("name", n.into_owned(), r)
                }
                None => ("", String::new(), None),
            },
            Some("ref/resource") => match reference.get_str("uri") {
                Some(u) => {
                    let r = naming
                        .resolve_uri(session, &u)
                        .into_owned_parts_or_candidates();
                    ("uri", u.into_owned(), r)
                }
                None => ("", String::new(), None),
            },
            _ => ("", String::new(), None),
        };
        let unknown = "Invalid params: unknown completion reference";
        match resolved {
            Some(Ok((i, original))) => {
                let hidden = field == "name"
                    && self
                        .gw
                        .cfg
                        .backends
                        .get(i)
                        .is_some_and(|b| !b.prompts.allows(&original));
                if hidden {
                    return BodyAction::Respond(self.fail(GatewayError::invalid_params(unknown)));
                }
                let checked = if field == "name" {
                    self.check_name(host, i, NameKind::Prompt, &original, msg.params)
                } else {
                    self.check_uri(host, i, &original, true, msg.params)
                };
                if let Err(r) = checked {
                    return BodyAction::Respond(r);
                }
                let new_ref = reference.write_with(&[(field, &json_string(&original))]);
                let p = params.write_with(&[("ref", &new_ref)]);
                self.forward_with(session, i, body, "params", &p, true)
            }
            Some(Err(candidates)) if field == "name" => {
                let params = msg.params.map(|p| p.get().to_string());
                self.lookup(host, session, NameKind::Prompt, &value, params, &candidates)
            }
            Some(Err(candidates)) => {
                let allowed = match self.permitted(host, &candidates, &value, true, msg.params) {
                    Ok(a) => a,
                    Err(r) => return BodyAction::Respond(r),
                };
                self.fan_out(host, session, FanOp::FirstSuccess, &allowed, |_| {
                    Some(body.to_vec())
                })
            }
            None => BodyAction::Respond(self.fail(GatewayError::invalid_params(unknown))),
        }
    }

    /// `tasks/get`, `tasks/result`, `tasks/cancel`: the sealed task id names
    /// the backend; it gets its own id back.
    pub(super) fn route_task(
        &mut self,
        host: &mut dyn Host,
        session: &Session,
        msg: &Message<'_>,
        body: &[u8],
    ) -> BodyAction {
        let params = msg.params.and_then(|p| RawObject::parse(p).ok());
        let task = params.as_ref().and_then(|p| p.get_str("taskId"));
        let target = task.as_ref().and_then(|t| {
            let w = Wrapped::open_task_id(&self.gw.cfg.keys, t, &session.sid)?;
            let (i, _) = self.gw.cfg.backend(&w.backend)?;
            session.backend(&w.backend)?;
            Some((i, w.original))
        });
        let (Some(params), Some((i, original))) = (params, target) else {
            let e = GatewayError::invalid_params("Invalid params: unknown taskId");
            return BodyAction::Respond(self.fail(e));
        };
        let gw = Arc::clone(&self.gw);
        let method = self.req.method.clone().unwrap_or_default();
        let access = Access {
            resource: Resource::task(gw.backend_name(i)),
            method: &method,
            params: msg.params,
        };
        if let Err(r) = self.authorize(host, access) {
            return BodyAction::Respond(r);
        }
        let p = params.write_with(&[("taskId", &json_string(&original))]);
        self.forward_with(session, i, body, "params", &p, true)
    }

    /// A client's answer to a server-to-client request: back to that backend,
    /// with the backend's own id restored exactly.
    pub(super) fn route_reply(
        &mut self,
        host: &mut dyn Host,
        session: &Session,
        msg: &Message<'_>,
        body: &[u8],
    ) -> BodyAction {
        let wrapped = msg
            .id
            .and_then(raw_str)
            .and_then(|id| Wrapped::open_request_id(&self.gw.cfg.keys, &id, &session.sid));
        let target = wrapped.and_then(|w| {
            let (i, _) = self.gw.cfg.backend(&w.backend)?;
            session.backend(&w.backend)?;
            Some((i, w.original))
        });
        let Some((i, original)) = target else {
            host.log(
                Level::Info,
                "dropped a response whose id this session did not issue",
            );
            let r = GatewayError::unknown_reply_id().response(None);
            return BodyAction::Respond(self.respond(r));
        };
        self.forward_with(session, i, body, "id", &original, false)
    }

    // ----- the routed response --------------------------------------------------

    pub fn on_response_headers(
        &mut self,
        host: &mut dyn Host,
        headers: &[(String, String)],
    ) -> ResponseHeadersAction {
        let status: u16 = header(headers, ":status")
            .and_then(|s| s.parse().ok())
            .unwrap_or(0);
        if let (429, State::Routed(r)) = (status, &self.state) {
            let name = self.gw.backend_name(r.ctx.backend).to_string();
            if let Some(reply) = self.rate_limited(host, headers, &name) {
                return ResponseHeadersAction::Replace(reply);
            }
        }
        let State::Routed(r) = &mut self.state else {
            return ResponseHeadersAction::Continue(Vec::new());
        };
        let ct = media_type(header(headers, h::CONTENT_TYPE).unwrap_or(""));
        let name = self
            .gw
            .cfg
            .backends
            .get(r.ctx.backend)
            .map(|b| b.name.clone())
            .unwrap_or_default();
        // What a backend must not tell the client (only if it said it).
        let mut ops: Vec<HeaderOp> = [h::SESSION_ID, "www-authenticate", "set-cookie"]
            .iter()
            .filter(|n| header(headers, n).is_some())
            .map(|n| HeaderOp::Remove(n.to_string()))
            .collect();
        ops.extend(
            self.req
                .cors
                .iter()
                .map(|(k, v)| HeaderOp::Set(k.clone(), v.clone())),
        );
        let ok = (200..300).contains(&status);
        if ok && ct == h::EVENT_STREAM {
            ops.push(HeaderOp::Remove(h::CONTENT_LENGTH.into()));
            r.mode = Mode::Sse(Box::new(SseRewrite::new(self.gw.cfg.max_response_bytes)));
            return ResponseHeadersAction::Continue(ops);
        }
        // A 2026-07-28 backend has no sessions: its 404 is a JSON-RPC
        // error (method not found) like any other 4xx.
        let stateless = r.ctx.era.as_ref().is_some_and(|e| e.backend_modern);
        if ct == h::JSON
            && r.expects_response
            && (ok
                || (400..500).contains(&status)
                    && status != 401
                    && status != 403
                    && (status != 404 || stateless))
        {
            ops.push(HeaderOp::Remove(h::CONTENT_LENGTH.into()));
            r.mode = Mode::Json;
            return ResponseHeadersAction::Buffer(ops);
        }
        if ok && !r.expects_response {
            r.mode = Mode::PassThrough;
            return ResponseHeadersAction::Continue(ops);
        }
        // Anything else is a failure the client must see as MCP, not as the
        // backend's HTTP (its 401 must not start the client's OAuth flow).
        r.mode = Mode::Drop;
        let expects = r.expects_response;
        let routed_to = r.ctx.backend;
        let is_get = r.ctx.method.is_none() && r.ctx.request_id.is_none();
        let backend = r.ctx.backend;
        let held_404 = status == 404 && !stateless && self.client_is_modern();
        let held_ended = if held_404 {
            self.held_session_ended(host, backend)
        } else {
            None
        };
        let reply = if let Some(e) = held_ended {
            // The session this worker held for 2026-07-28 clients ended.
            self.era_error(e).response(self.req.request_id.as_deref())
        } else if status == 404 {
            host.log(
                Level::Info,
                &format!("backend {name} answered 404: its session ended"),
            );
            self.note(ErrorKind::ExpiredSession);
            GatewayError::backend_session_ended(&name).response(None)
        } else if status == 405 && is_get {
            GatewayError::no_get_stream(&name).response(None)
        } else {
            let what = if status == 0 {
                "no answer".to_string()
            } else {
                format!("HTTP {status}")
            };
            host.log(
                Level::Warn,
                &format!("backend {name} failed: {what} ({ct})"),
            );
            let e = self.era_error(GatewayError::backend_failed(
                format!("backend {name} failed: {what}"),
                expects,
            ));
            self.note(ErrorKind::BackendFailure);
            self.count_backend_failure(host, routed_to);
            // What was learned of it may be why: asked again next time.
            self.gw.eras.forget(routed_to);
            e.response(if expects {
                self.req.request_id.as_deref()
            } else {
                None
            })
        };
        let mut reply = reply;
        reply.headers.extend(self.req.cors.iter().cloned());
        ResponseHeadersAction::Replace(reply)
    }

    pub fn on_response_body(
        &mut self,
        host: &mut dyn Host,
        body: &[u8],
        end_of_stream: bool,
    ) -> ResponseBodyAction {
        let action = self.rewrite_response_body(host, body, end_of_stream);
        if end_of_stream {
            // The audit record's outcome, now that the answer has been read.
            self.publish_outcome(host);
        }
        action
    }

    fn rewrite_response_body(
        &mut self,
        host: &mut dyn Host,
        body: &[u8],
        end_of_stream: bool,
    ) -> ResponseBodyAction {
        let gw = Arc::clone(&self.gw);
        let errs = self.error_era();
        let State::Routed(r) = &mut self.state else {
            return ResponseBodyAction::Continue;
        };
        match &mut r.mode {
            Mode::Pending | Mode::PassThrough => ResponseBodyAction::Continue,
            Mode::Drop => ResponseBodyAction::Replace(Vec::new()),
            Mode::Json => {
                if !end_of_stream {
                    return ResponseBodyAction::Buffer;
                }
                // One parse on the way that matters: the answer, rewritten.
                let mut answered = stream::Answer::default();
                let rewritten = std::str::from_utf8(body)
                    .ok()
                    .and_then(|text| stream::rewrite_message(&gw, &r.ctx, text, &mut answered));
                if answered.seen {
                    self.req.stats.backend_error |= answered.error;
                    return match rewritten {
                        Some(new) => ResponseBodyAction::Replace(new.into_bytes()),
                        None => ResponseBodyAction::Continue,
                    };
                }
                // Not the answer: say why (a second look, on the failure path only).
                let want = r.ctx.request_id.clone();
                let what = match stream::judge_answer(body, want.as_deref()) {
                    stream::Verdict::Answer { .. } => return ResponseBodyAction::Continue,
                    stream::Verdict::NullIdError(fixed) => {
                        self.req.stats.backend_error = true;
                        return ResponseBodyAction::Replace(fixed.into_bytes());
                    }
                    stream::Verdict::Not(what) => what,
                };
                r.mode = Mode::Drop;
                let backend = r.ctx.backend;
                let m = format!("backend {} answered with {what}", gw.backend_name(backend));
                host.log(Level::Warn, &m);
                self.note(ErrorKind::BackendFailure);
                self.count_backend_failure(host, backend);
                let e = errs.apply(GatewayError::backend(m));
                ResponseBodyAction::Replace(e.body(want.as_deref()).into_bytes())
            }
            Mode::Sse(rw) => {
                let mut out = Vec::with_capacity(body.len() + 128);
                if let Err(e) = rw.feed(&gw, host, &r.ctx, body, &mut out) {
                    let name = gw.backend_name(r.ctx.backend);
                    host.log(
                        Level::Warn,
                        &format!("backend {name}: broken event stream ({e}); closing it"),
                    );
                    if r.expects_response {
                        let m = format!("backend {name} sent a broken event stream: {e}");
                        errs.apply(GatewayError::backend(m))
                            .write_event(&mut out, r.ctx.request_id.as_deref());
                    }
                    r.mode = Mode::Drop;
                    return ResponseBodyAction::Replace(out);
                }
                self.req.stats.backend_error |= rw.answer.error;
                if end_of_stream {
                    r.ended = true;
                    let cut = rw.finish();
                    if r.expects_response && !rw.answer.seen && !rw.resumable {
                        let name = gw.backend_name(r.ctx.backend);
                        let why = if cut {
                            "cut its event stream mid-event"
                        } else {
                            "closed its event stream without answering"
                        };
                        host.log(Level::Warn, &format!("backend {name} {why}"));
                        self.req
                            .stats
                            .error
                            .get_or_insert(ErrorKind::BackendFailure);
                        gw.meters.backend_failure(host, r.ctx.backend);
                        errs.apply(GatewayError::backend(format!("backend {name} {why}")))
                            .write_event(&mut out, r.ctx.request_id.as_deref());
                    }
                }
                // Requests the client cannot receive: answered for it.
                let refused = std::mem::take(&mut rw.refused);
                let backend = r.ctx.backend;
                if !refused.is_empty() {
                    self.refuse_server_requests(host, backend, refused);
                }
                ResponseBodyAction::Replace(out)
            }
        }
    }

    /// Envoy's local or global rate limit refused the routed request (its 429,
    /// not a backend's): a JSON-RPC error with a retry hint, counted.
    fn rate_limited(
        &mut self,
        host: &mut dyn Host,
        headers: &[(String, String)],
        backend: &str,
    ) -> Option<LocalResponse> {
        let details = host
            .attribute(Attribute::ResponseCodeDetails)
            .unwrap_or_default();
        if details != "local_rate_limited" && details != "request_rate_limited" {
            return None;
        }
        // `x-ratelimit-reset` (draft 03 headers) or `retry-after`, in seconds.
        let retry = ["x-ratelimit-reset", "retry-after"]
            .iter()
            .find_map(|n| header(headers, n).and_then(|v| v.trim().parse::<u64>().ok()))
            .unwrap_or(1)
            .max(1);
        if let State::Routed(r) = &mut self.state {
            r.mode = Mode::Drop;
        }
        self.note(ErrorKind::RateLimited);
        let tool = self.req.tool.clone().unwrap_or_default();
        let label = self.gw.cardinality.tool_label(&tool);
        self.gw.meters.rate_limited(host, backend, &label);
        self.publish(host, LogField::Error, ErrorKind::RateLimited.label());
        self.publish_outcome(host);
        let what = match &self.req.tool {
            Some(t) => format!("tool {t}"),
            None => format!("backend {backend}"),
        };
        let data = format!("{{\"retryAfter\":{retry}}}");
        let raw_id = self
            .req
            .request_id
            .as_deref()
            .and_then(|i| RawValue::from_string(i.to_string()).ok());
        let body = crate::protocol::jsonrpc::error_json(
            raw_id.as_deref(),
            crate::protocol::jsonrpc::RATE_LIMITED,
            &format!("Rate limit exceeded for {what}: retry in {retry} s"),
            Some(&data),
        );
        let mut reply =
            LocalResponse::json(200, body).with_header("retry-after", retry.to_string());
        reply.headers.extend(self.req.cors.iter().cloned());
        Some(reply)
    }

    /// The policy check of a tool or prompt of backend `i` (by its own
    /// name); a tool call's arguments go to the audit record.
    pub(super) fn check_name(
        &mut self,
        host: &dyn Host,
        i: usize,
        what: NameKind,
        name: &str,
        params: Option<&RawValue>,
    ) -> Result<(), LocalResponse> {
        let gw = Arc::clone(&self.gw);
        let backend = gw.backend_name(i);
        let resource = match what {
            NameKind::Tool => Resource::tool(backend, name),
            NameKind::Prompt => Resource::prompt(backend, name),
        };
        let method = self.req.method.clone().unwrap_or_default();
        if matches!(what, NameKind::Tool) {
            self.req
                .audit
                .arguments(&gw.cfg.audit, backend, name, params);
        }
        self.authorize(
            host,
            Access {
                resource,
                method: &method,
                params,
            },
        )
    }

    /// The policy check of a URI of backend `i` (by its own URI): a
    /// resource, or with `template` a template (completion references).
    pub(super) fn check_uri(
        &mut self,
        host: &dyn Host,
        i: usize,
        uri: &str,
        template: bool,
        params: Option<&RawValue>,
    ) -> Result<(), LocalResponse> {
        let gw = Arc::clone(&self.gw);
        let method = self.req.method.clone().unwrap_or_default();
        self.authorize(
            host,
            Access {
                resource: uri_resource(gw.backend_name(i), uri, template),
                method: &method,
                params,
            },
        )
    }

    /// The candidates of a bare URI the caller may use; none allowed is the
    /// first one's denial.
    fn permitted(
        &mut self,
        host: &dyn Host,
        candidates: &[usize],
        uri: &str,
        template: bool,
        params: Option<&RawValue>,
    ) -> Result<Vec<usize>, LocalResponse> {
        let gw = Arc::clone(&self.gw);
        let Some(policy) = gw.cfg.authorization.as_ref() else {
            return Ok(candidates.to_vec());
        };
        let method = self.req.method.clone().unwrap_or_default();
        let allowed: Vec<usize> = candidates
            .iter()
            .copied()
            .filter(|i| {
                let access = Access {
                    resource: uri_resource(gw.backend_name(*i), uri, template),
                    method: &method,
                    params,
                };
                policy.authorize(&self.caller(), &access).allowed()
            })
            .collect();
        match (allowed.is_empty(), candidates.first()) {
            (true, Some(first)) => {
                self.check_uri(host, *first, uri, template, params)?;
                Ok(vec![*first])
            }
            _ => Ok(allowed),
        }
    }
}

/// A completion reference names a template when it has an expression.
fn uri_resource<'a>(backend: &'a str, uri: &'a str, template: bool) -> Resource<'a> {
    if template && uri.contains('{') {
        Resource::template(backend, uri)
    } else {
        Resource::uri(backend, uri)
    }
}
