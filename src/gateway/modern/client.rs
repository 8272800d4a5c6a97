//! A 2026-07-28 request through the gateway, in the terms of an
//! [`Exchange`]: routed from its headers when the body needs nothing, else
//! validated against its headers and served without a session, over the
//! same list, routing and rewriting steps as the session path, after the
//! backends it needs have been learned (see `eras`).

use super::super::config::Backend;
use super::super::error::GatewayError;
use super::super::exchange::{Call, Exchange, FanOp, FanOut, Mode, NameKind, Routed, State};
use super::super::host::{
    BodyAction, HeaderOp, HeadersAction, Host, Level, LocalResponse, LogField,
};
use super::super::merge::BackendInit;
use super::super::naming::{Naming, Resolved};
use super::super::policy::{Access, Resource};
use super::super::session::{caps, BackendSession, Session};
use super::super::stream::StreamCtx;
use super::super::token_exchange::Sent;
use super::super::tokens::Wrapped;
use super::cache::CacheHint;
use super::discover::{discover_result, server_info_member};
use super::eras::{self, BackendInfo, Held, Learned, Probe, Status};
use super::listen::{self, Candidate, Filter, ListenCtx};
use super::state::{args_digest, RequestState};
use super::validate;
use super::{ModernReq, Seal, StreamEra};
use crate::protocol::http as h;
use crate::protocol::jsonrpc::{self, json_string, Kind, Message, RawObject};
use crate::protocol::mcp::{Request, Version};
use crate::protocol::modern;
use serde_json::value::RawValue;
use serde_json::{Map, Value};
use std::sync::Arc;

/// What to do once the backends a request needs have been learned.
pub(in crate::gateway) enum Then {
    /// Serve the 2026-07-28 request kept in the exchange.
    Modern,
    /// Finish a 2025-era `initialize` some backends refused (they may speak
    /// only 2026-07-28).
    Initialize {
        negotiated: Version,
        calls: Vec<Call>,
    },
}

/// One learning call.
pub(in crate::gateway) enum Step {
    Discover,
    Initialize,
    Initialized { held: Held, info: BackendInfo },
}

pub(in crate::gateway) struct Learn {
    /// What each call asked, by backend (one call per backend).
    steps: Vec<(usize, Step)>,
    then: Then,
}

impl Learn {
    /// Nothing to learn (tests of what the fan-outs are called).
    #[cfg(test)]
    pub(in crate::gateway) fn nothing() -> Learn {
        Learn {
            steps: Vec::new(),
            then: Then::Modern,
        }
    }
}

impl Exchange {
    fn modern_req(&self) -> Option<&ModernReq> {
        self.req.modern.as_deref()
    }

    /// Lists and reads differ per caller when an authorization policy applies.
    pub(in crate::gateway) fn per_caller(&self) -> bool {
        self.gw.cfg.authorization.is_some()
    }

    /// The request's era from its version header (set before any other check).
    pub(in crate::gateway) fn choose_era(&mut self, headers: &[(String, String)]) -> bool {
        let modern =
            validate::era_of(header_value(headers, h::PROTOCOL_VERSION)) == validate::Era::Modern;
        if modern {
            self.req.modern = Some(Box::new(ModernReq {
                headers: validate::ModernHeaders::read(headers),
                ..Default::default()
            }));
        }
        modern
    }

    /// How the gateway's own errors look to this client.
    pub(in crate::gateway) fn error_era(&self) -> ErrorEra {
        ErrorEra {
            modern: self.modern_req().is_some(),
            header_routed: self.modern_req().is_some_and(|m| m.header_routed),
        }
    }

    /// The gateway's error `e` as this client gets it.
    pub(in crate::gateway) fn era_error(&self, e: GatewayError) -> GatewayError {
        self.error_era().apply(e)
    }

    /// GET and DELETE have no meaning in 2026-07-28.
    pub(in crate::gateway) fn modern_not_allowed(&mut self) -> LocalResponse {
        self.fail(GatewayError::modern_method_not_allowed())
    }

    // ----- request headers --------------------------------------------------

    /// A 2026-07-28 POST whose headers passed the transport checks.
    pub(in crate::gateway) fn modern_headers(
        &mut self,
        host: &mut dyn Host,
        end_of_stream: bool,
    ) -> HeadersAction {
        let scope = self.principal_digest().unwrap_or([0; 16]);
        if let Some(m) = self.req.modern.as_deref_mut() {
            m.now_ms = host.now_ms();
            m.scope = scope;
        }
        if end_of_stream {
            return HeadersAction::Respond(self.fail(GatewayError::empty_body()));
        }
        if let Some(ops) = self.header_route(host) {
            return HeadersAction::Continue(ops);
        }
        self.state = State::AwaitBody;
        HeadersAction::NeedBody
    }

    /// Route a call from `Mcp-Method` / `Mcp-Name` alone, when nothing the
    /// gateway decides depends on the body: the backend speaks 2026-07-28
    /// (it checks the headers against the body itself and refuses a
    /// mismatch), its names are not prefixed (nothing to rewrite), and
    /// neither its name filter nor per-caller authorization looks at the
    /// name. Else `None`: the body is read.
    fn header_route(&mut self, host: &mut dyn Host) -> Option<Vec<HeaderOp>> {
        let m = self.modern_req()?;
        let hd = &m.headers;
        if hd.duplicate.is_some() || !hd.supported() {
            return None;
        }
        let method = hd.method.clone()?;
        let name = hd.decoded_name()?;
        // Resolved against every configured backend: a prefixed backend
        // this worker has not learned yet must not fall to an unprefixed one.
        let every = self.every_backend_session();
        let naming = Naming::new(&self.gw.cfg);
        let (resolved, what) = match method.as_str() {
            "tools/call" => (naming.resolve(&every, &name), Some(NameKind::Tool)),
            "prompts/get" => (naming.resolve(&every, &name), Some(NameKind::Prompt)),
            "resources/read" => (naming.resolve_uri(&every, &name), None),
            _ => return None,
        };
        let Resolved::Backend(i, original) = resolved else {
            return None;
        };
        let session = self.stateless_session(host);
        let b = self.gw.cfg.backends.get(i)?;
        let bs = session.backend(&b.name)?;
        // The policy may read the arguments, and an audited tool's argument
        // values are recorded: both need the body.
        let name_free = !self.per_caller()
            && match what {
                Some(NameKind::Tool) => {
                    b.tools.allows_all() && !self.gw.cfg.audit.keeps_values_of(&b.name, &name)
                }
                Some(NameKind::Prompt) => b.prompts.allows_all(),
                None => true,
            };
        if original != name || !bs.version.is_modern() || !name_free {
            return None;
        }
        let backend_name = b.name.clone();
        // No policy (above): the audit record's decision, as a read body would have it.
        let resource = match what {
            Some(NameKind::Tool) => Resource::tool(&backend_name, &original),
            Some(NameKind::Prompt) => Resource::prompt(&backend_name, &original),
            None => Resource::uri(&backend_name, &original),
        };
        let access = Access {
            resource,
            method: &method,
            params: None,
        };
        if self.authorize(host, access).is_err() {
            return None;
        }
        if matches!(what, Some(NameKind::Tool)) {
            self.req.tool = Some(name);
        }
        if let Some(m) = self.req.modern.as_deref_mut() {
            m.header_routed = true;
        }
        self.req.method = Some(method.clone());
        self.req.stats.method = Some(method.clone());
        self.publish(host, LogField::Method, &method);
        self.req.stats.backend = Some(backend_name);
        let mut ops = self.upstream_headers(&session, i);
        let (_, era_ops) = self.era_forward(&session, i, None);
        ops.extend(era_ops);
        let era = self.stream_era(&session, i);
        self.state = State::Routed(Box::new(Routed {
            ctx: StreamCtx {
                backend: i,
                sid: session.sid,
                method: Some(method),
                request_id: None,
                era,
            },
            expects_response: true,
            ended: false,
            mode: Mode::Pending,
        }));
        self.req.session = Some(Arc::new(session));
        Some(ops)
    }

    // ----- request body -----------------------------------------------------

    /// A 2026-07-28 body: validated against the headers, then served.
    pub(in crate::gateway) fn modern_body(
        &mut self,
        host: &mut dyn Host,
        msg: &Message<'_>,
        body: &[u8],
    ) -> BodyAction {
        let headers = self
            .modern_req()
            .map(|m| m.headers.clone())
            .unwrap_or_default();
        match msg.kind {
            Kind::Notification => match validate::check_notification(&headers) {
                // 2026-07-28 defines no client notifications over HTTP (a
                // client cancels by closing its stream): accepted, dropped.
                Ok(()) => BodyAction::Respond(self.respond(LocalResponse::empty(202))),
                Err(e) => BodyAction::Respond(self.fail(e)),
            },
            Kind::Response | Kind::Error => {
                BodyAction::Respond(self.fail(GatewayError::modern_response_refused()))
            }
            Kind::Request if msg.method.as_deref() == Some("initialize") => {
                // `initialize` selects the handshake era, whatever the header said.
                self.req.modern = None;
                self.initialize(host, msg, body)
            }
            Kind::Request => match validate::check_request(&headers, msg) {
                Err(e) => BodyAction::Respond(self.fail(e)),
                Ok(envelope) => {
                    if let Some(m) = self.req.modern.as_deref_mut() {
                        m.envelope = envelope;
                    }
                    self.req.body = Some(body.to_vec());
                    self.modern_continue(host)
                }
            },
        }
    }

    /// Serve the kept request (again, after learning backends).
    fn modern_continue(&mut self, host: &mut dyn Host) -> BodyAction {
        let Some(body) = self.req.body.take() else {
            return BodyAction::Respond(self.fail(GatewayError::internal("request body lost")));
        };
        let action = self.modern_dispatch(host, &body);
        self.req.body = Some(body);
        action
    }

    fn modern_dispatch(&mut self, host: &mut dyn Host, body: &[u8]) -> BodyAction {
        let msg = match jsonrpc::parse(body) {
            Ok(m) => m,
            Err(e) => return BodyAction::Respond(self.fail(GatewayError::parse(&e))),
        };
        let method = msg.method.as_deref().unwrap_or("");
        let needed = self.backends_needed(method);
        if let [i] = needed.as_slice() {
            // Its one backend could not be learned for want of a credential:
            // the answer a routed request gets for that failure.
            if let Some(r) = self.fanout_credential_failed(host, *i) {
                return BodyAction::Respond(r);
            }
        }
        let steps = self.learning_steps(host, &needed);
        if !steps.is_empty() {
            // A refused use does not even make the gateway learn its backend.
            if let Some(r) = self.refused_before_learning(host, &msg) {
                return BodyAction::Respond(r);
            }
            return self.learn(host, steps, Then::Modern);
        }
        let session = Arc::new(self.stateless_session(host));
        self.req.session = Some(Arc::clone(&session));
        match Request::classify(method) {
            Request::Discover => {
                let r = self.discover(host);
                BodyAction::Respond(self.respond(r))
            }
            Request::List(kind) => self.list(host, &session, kind, &msg),
            Request::CallTool => self.route_by_name(host, &session, &msg, body, NameKind::Tool),
            Request::GetPrompt => self.route_by_name(host, &session, &msg, body, NameKind::Prompt),
            Request::ReadResource => self.route_by_uri(host, &session, &msg, body),
            Request::Complete => self.route_completion(host, &session, &msg, body),
            Request::Task => self.route_task(host, &session, &msg, body),
            Request::Listen => self.listen(host, &session, &msg, body),
            _ => BodyAction::Respond(self.fail(GatewayError::method_not_found(method))),
        }
    }

    /// The policy's refusal of a call, get or read whose name or URI names
    /// its backend (the same check `route` makes once the backend is known).
    fn refused_before_learning(
        &mut self,
        host: &dyn Host,
        msg: &Message<'_>,
    ) -> Option<LocalResponse> {
        self.gw.cfg.authorization.as_ref()?;
        let params = msg.params.and_then(|p| RawObject::parse(p).ok())?;
        let every = self.every_backend_session();
        let naming = Naming::new(&self.gw.cfg);
        let (what, key) = match msg.method.as_deref()? {
            "tools/call" => (Some(NameKind::Tool), "name"),
            "prompts/get" => (Some(NameKind::Prompt), "name"),
            "resources/read" => (None, "uri"),
            _ => return None,
        };
        let name = params.get_str(key)?;
        let resolved = match what {
            Some(_) => naming.resolve(&every, &name),
            None => naming.resolve_uri(&every, &name),
        };
        let Resolved::Backend(i, original) = resolved else {
            return None;
        };
        let original = original.into_owned();
        // A name the backend's own filter hides stays unknown (`route`).
        let hidden = what
            .zip(self.gw.cfg.backends.get(i))
            .is_some_and(|(w, b)| !w.allows(b, &original));
        if hidden {
            return None;
        }
        let checked = match what {
            Some(w) => self.check_name(host, i, w, &original, msg.params),
            None => self.check_uri(host, i, &original, false, msg.params),
        };
        checked.err()
    }

    /// The backends a request needs to know: its target when the name says
    /// which, every backend otherwise.
    fn backends_needed(&self, method: &str) -> Vec<usize> {
        let all: Vec<usize> = (0..self.gw.cfg.backends.len()).collect();
        let every = self.every_backend_session();
        let naming = Naming::new(&self.gw.cfg);
        let name = self.modern_req().and_then(|m| m.envelope.name.clone());
        let resolved = match (method, name) {
            ("tools/call" | "prompts/get", Some(n)) => {
                naming.resolve(&every, &n).into_owned_parts_or_candidates()
            }
            ("resources/read", Some(u)) => naming
                .resolve_uri(&every, &u)
                .into_owned_parts_or_candidates(),
            ("tasks/get" | "tasks/update" | "tasks/cancel", Some(t)) => {
                let scope = self.modern_req().map_or([0; 16], |m| m.scope);
                return Wrapped::open_task_id(&self.gw.cfg.keys, &t, &scope)
                    .and_then(|w| self.gw.cfg.backend(&w.backend).map(|(i, _)| vec![i]))
                    .unwrap_or_default();
            }
            _ => return all,
        };
        match resolved {
            Some(Ok((i, _))) => vec![i],
            Some(Err(candidates)) => candidates,
            None => Vec::new(),
        }
    }

    /// Every configured backend as if joined (for resolving names before
    /// anything is known about them).
    fn every_backend_session(&self) -> Session {
        Session {
            sid: [0; 16],
            created_ms: 0,
            version: Version::V2026_07_28,
            principal: None,
            backends: self
                .gw
                .cfg
                .backends
                .iter()
                .map(|b| BackendSession {
                    name: b.name.clone(),
                    version: Version::V2026_07_28,
                    session_id: None,
                    caps: 0,
                })
                .collect(),
        }
    }

    /// The "session" a 2026-07-28 request is served in: every backend this
    /// worker can speak to, each in its own era, bound to the caller's scope.
    pub(in crate::gateway) fn stateless_session(&self, host: &dyn Host) -> Session {
        let backends = self
            .gw
            .cfg
            .backends
            .iter()
            .enumerate()
            .filter_map(|(i, b)| {
                let l = self.gw.eras.learned(i)?;
                let bits = super::super::fanout::caps_bits(&l.info.capabilities);
                if l.modern {
                    Some(BackendSession {
                        name: b.name.clone(),
                        version: Version::V2026_07_28,
                        session_id: None,
                        caps: bits,
                    })
                } else {
                    let held = l.held.as_ref()?;
                    Some(BackendSession {
                        name: b.name.clone(),
                        version: held.version,
                        session_id: held.session_id.clone(),
                        // 2025-11-25 tasks are not the 2026-07-28 extension.
                        caps: bits & !(caps::TASKS | caps::TASK_LIST),
                    })
                }
            })
            .collect();
        Session {
            sid: self.modern_req().map_or([0; 16], |m| m.scope),
            created_ms: host.now_ms(),
            version: Version::V2026_07_28,
            principal: self.principal_digest(),
            backends,
        }
    }

    /// How the answer from backend `i` is rewritten for this client.
    pub(in crate::gateway) fn stream_era(
        &self,
        session: &Session,
        i: usize,
    ) -> Option<Arc<StreamEra>> {
        let backend_modern = self
            .session_backend(session, i)
            .is_some_and(|bs| bs.version.is_modern());
        let m = self.modern_req();
        if m.is_none() && !backend_modern {
            return None;
        }
        Some(Arc::new(StreamEra {
            client_modern: m.is_some(),
            backend_modern,
            log_level: m.and_then(|m| m.envelope.log_level),
            any_id: m.is_some_and(|m| m.header_routed),
            scope: m.map_or([0; 16], |m| m.scope),
            seal: m.and_then(|m| m.seal.clone()),
            listen: m.and_then(|m| m.listen.clone()),
            per_caller: self.per_caller(),
            now_ms: m.map_or(0, |m| m.now_ms),
            held_id: m.and_then(|m| m.held_id.clone()),
        }))
    }

    /// The params a routed request goes to backend `i` with: `replace`d
    /// members, and for an MRTR retry to a prefixed backend the gateway's
    /// sealed `requestState` checked and swapped for the backend's own.
    /// `Ok(None)`: the body goes unchanged.
    pub(in crate::gateway) fn routed_params(
        &mut self,
        host: &dyn Host,
        session: &Session,
        i: usize,
        params: &RawObject<'_>,
        replace: &[(&str, &str)],
    ) -> Result<Option<String>, LocalResponse> {
        let plain =
            |replace: &[(&str, &str)]| (!replace.is_empty()).then(|| params.write_with(replace));
        let method = self.req.method.clone().unwrap_or_default();
        let (Some(m), Some(b)) = (self.modern_req(), self.gw.cfg.backends.get(i)) else {
            return Ok(plain(replace));
        };
        let backend_modern = session
            .backend(&b.name)
            .is_some_and(|bs| bs.version.is_modern());
        if !b.prefixed(self.gw.cfg.backends.len())
            || !backend_modern
            || !modern::allows_input_required(&method)
        {
            // The backend's own state goes back and forth untouched (it
            // protects it itself, as the specification requires).
            return Ok(plain(replace));
        }
        let target = m.envelope.name.clone().unwrap_or_default();
        let args = args_digest(params.get("arguments").map(RawValue::get));
        let echoed = m.envelope.request_state.clone();
        let scope = m.scope;
        let backend = b.name.clone();
        if let Some(m) = self.req.modern.as_deref_mut() {
            m.seal = Some(Seal {
                method: method.clone(),
                target: target.clone(),
                args,
                backend: backend.clone(),
            });
        }
        let Some(token) = echoed else {
            return Ok(plain(replace));
        };
        let opened = RequestState::open(&self.gw.cfg.keys, &token, host.now_ms())
            .and_then(|s| s.check(&scope, &method, &target, &args).map(|()| s));
        let state = match opened {
            Ok(s) if s.backend == backend => s,
            Ok(_) => return Err(self.refuse_state(host, "minted for another backend")),
            Err(e) => return Err(self.refuse_state(host, e.reason())),
        };
        let mut rep = replace.to_vec();
        Ok(Some(match &state.original {
            Some(o) => {
                let q = json_string(o);
                rep.push(("requestState", &q));
                params.write_with(&rep)
            }
            None => params.write_without(&["requestState"], &rep),
        }))
    }

    fn refuse_state(&mut self, host: &dyn Host, why: &str) -> LocalResponse {
        host.log(Level::Info, &format!("refused an MRTR requestState: {why}"));
        self.fail(GatewayError::invalid_request_state())
    }

    /// The members a list result carries for a 2026-07-28 client (none for
    /// a 2025-era one): `resultType`, cache hints (private when lists
    /// differ per caller), the gateway's identity.
    pub(in crate::gateway) fn list_result_members(&self, hint: CacheHint) -> String {
        if self.modern_req().is_none() {
            return String::new();
        }
        format!(
            ",\"resultType\":\"complete\",{},\"_meta\":{{{}}}",
            hint.per_caller(self.per_caller()).members(),
            server_info_member(&self.gw.cfg)
        )
    }

    /// A handshake-era backend ended the session this worker held for
    /// 2026-07-28 clients: forget it (the next request opens a new one); the
    /// error telling the client to retry. `None` for a 2025-era client (its
    /// own session ended).
    pub(in crate::gateway) fn held_session_ended(
        &mut self,
        host: &dyn Host,
        i: usize,
    ) -> Option<GatewayError> {
        self.modern_req()?;
        self.gw.eras.forget(i);
        let e = GatewayError::held_session_ended(self.gw.backend_name(i));
        host.log(Level::Info, &e.message);
        Some(e)
    }

    // ----- server/discover --------------------------------------------------

    fn discover(&mut self, host: &mut dyn Host) -> LocalResponse {
        let now = host.now_ms();
        let learned: Vec<(usize, Arc<Learned>)> = (0..self.gw.cfg.backends.len())
            .filter_map(|i| match self.gw.eras.status(i, now) {
                Status::Fresh(l) | Status::Stale(l) if l.ready() => Some((i, l)),
                _ => None,
            })
            .collect();
        let parts: Vec<(&Backend, &Learned)> = learned
            .iter()
            .filter_map(|(i, l)| self.gw.cfg.backends.get(*i).map(|b| (b, l.as_ref())))
            .collect();
        let result = discover_result(&self.gw.cfg, &parts);
        let id = self.req.request_id.clone().unwrap_or_else(|| "null".into());
        LocalResponse::json(200, super::super::exchange::result_json_str(&id, &result))
    }

    // ----- subscriptions/listen ---------------------------------------------

    fn listen(
        &mut self,
        host: &mut dyn Host,
        session: &Session,
        msg: &Message<'_>,
        body: &[u8],
    ) -> BodyAction {
        let params = msg.params.and_then(|p| RawObject::parse(p).ok());
        let filter = match Filter::parse(params.as_ref()) {
            Ok(f) => f,
            Err(m) => return BodyAction::Respond(self.fail(GatewayError::invalid_meta(m))),
        };
        let filter = self.subscribable(host, session, filter);
        // List changes carry nothing but the fact (the lists that follow are
        // filtered per caller): every 2026-07-28 backend may deliver them.
        let candidates: Vec<Candidate> = self
            .joined(session)
            .filter(|(_, bs)| bs.version.is_modern())
            .filter_map(|(i, _)| {
                let l = self.gw.eras.learned(i)?;
                Some(Candidate::of_capabilities(i, &l.info.capabilities))
            })
            .collect();
        let naming = Naming::new(&self.gw.cfg);
        let owner = |u: &str| match naming.resolve_uri(session, u) {
            Resolved::Backend(i, own) => Some((i, own.into_owned())),
            _ => None,
        };
        let id = self.req.request_id.clone().unwrap_or_else(|| "null".into());
        if host.can_stream() {
            let plans = listen::plan_each(&filter, &candidates, owner);
            if plans.len() > 1 {
                return self.listen_merged(host, session, params.as_ref(), body, plans, id);
            }
        }
        let plan = listen::plan(&filter, &candidates, owner);
        let ctx = ListenCtx {
            id,
            honoured: plan.honoured.clone(),
            merged: false,
        };
        let Some(b) = plan.backend else {
            return self.listen_nothing(host, &ctx);
        };
        if let Some(m) = self.req.modern.as_deref_mut() {
            m.listen = Some(ctx);
        }
        let Some(params) = params else {
            return BodyAction::Respond(self.fail(GatewayError::invalid_meta("Invalid params")));
        };
        let p = params.write_with(&[("notifications", &plan.upstream.to_value().to_string())]);
        self.forward_with(session, b, body, "params", &p, true)
    }

    /// `filter` without the resource subscriptions the policy refuses the
    /// caller: the decision a 2025-era `resources/subscribe` of the same URI
    /// gets. A refused URI is left out of the acknowledgement (never asked of
    /// a backend).
    fn subscribable(&self, host: &dyn Host, session: &Session, mut filter: Filter) -> Filter {
        let Some(policy) = self.gw.cfg.authorization.as_ref() else {
            return filter;
        };
        let naming = Naming::new(&self.gw.cfg);
        let caller = self.caller();
        filter.uris.retain(|u| {
            let Resolved::Backend(i, own) = naming.resolve_uri(session, u) else {
                return true;
            };
            // As the client would send it in `resources/subscribe`.
            let params = serde_json::json!({ "uri": u }).to_string();
            let params = RawValue::from_string(params).ok();
            let access = Access {
                resource: Resource::uri(self.gw.backend_name(i), &own),
                method: "resources/subscribe",
                params: params.as_deref(),
            };
            let allowed = policy.authorize(&caller, &access).allowed();
            if !allowed {
                host.log(
                    Level::Info,
                    &format!(
                        "subscriptions/listen: {u} is not allowed for this caller; not honoured"
                    ),
                );
            }
            allowed
        });
        filter
    }

    /// Nothing can be honoured: acknowledged empty and ended at once.
    fn listen_nothing(&mut self, host: &dyn Host, ctx: &ListenCtx) -> BodyAction {
        host.log(
            Level::Info,
            "subscriptions/listen: no backend can deliver what was asked; acknowledged empty and closed",
        );
        let (ack, end) = ctx.local_stream();
        let mut out = Vec::with_capacity(ack.len() + end.len() + 64);
        for data in [ack, end] {
            crate::protocol::sse::Event {
                event: Some("message".into()),
                ..crate::protocol::sse::Event::data(data)
            }
            .write(&mut out);
        }
        let r = LocalResponse {
            status: 200,
            headers: vec![
                (h::CONTENT_TYPE.into(), h::EVENT_STREAM.into()),
                ("cache-control".into(), "no-cache".into()),
            ],
            body: out,
        };
        BodyAction::Respond(self.respond(r))
    }

    /// Several backends serve what was asked, on a host that merges
    /// streams: one listen stream per backend, asked for what it serves,
    /// merged into the client's (`fanin.rs`). The candidates are the
    /// backends the caller may see.
    fn listen_merged(
        &mut self,
        host: &mut dyn Host,
        session: &Session,
        params: Option<&RawObject<'_>>,
        body: &[u8],
        plans: Vec<listen::Plan>,
        id: String,
    ) -> BodyAction {
        let Some(params) = params else {
            return BodyAction::Respond(self.fail(GatewayError::invalid_meta("Invalid params")));
        };
        let mut calls = Vec::with_capacity(plans.len());
        for plan in plans {
            let Some(b) = plan.backend else {
                continue;
            };
            let p = params.write_with(&[("notifications", &plan.upstream.to_value().to_string())]);
            let Some(call) = super::super::exchange::replace_member(body, "params", &p)
                .and_then(|upstream| self.call(session, b, "POST", upstream))
            else {
                continue;
            };
            let mut era = self
                .stream_era(session, b)
                .map(|e| (*e).clone())
                .unwrap_or_default();
            era.listen = Some(ListenCtx {
                id: id.clone(),
                honoured: plan.honoured,
                merged: true,
            });
            let ctx = StreamCtx {
                backend: b,
                sid: session.sid,
                method: Some("subscriptions/listen".into()),
                request_id: self.req.request_id.clone(),
                era: Some(Arc::new(era)),
            };
            calls.push((ctx, call));
        }
        let ctx = ListenCtx {
            id,
            honoured: Filter::default(),
            merged: false,
        };
        if calls.is_empty() {
            return self.listen_nothing(host, &ctx);
        }
        match self.open_listen_fan_in(host, session.sid, calls, ctx) {
            Some(()) => BodyAction::Wait,
            None => {
                let e = GatewayError::backend_failed(
                    "no backend listen stream could be opened".into(),
                    true,
                );
                BodyAction::Respond(self.fail(e))
            }
        }
    }

    // ----- learning backends --------------------------------------------------

    /// What to ask each of `needed` before serving a 2026-07-28 request.
    fn learning_steps(&self, host: &dyn Host, needed: &[usize]) -> Vec<(usize, Step)> {
        let now = host.now_ms();
        needed
            .iter()
            // A backend whose credential failed in this request is not asked again.
            .filter(|&&i| !self.credential_failed_in_fanout(i))
            .filter_map(|&i| match self.gw.eras.status(i, now) {
                Status::Unknown | Status::Stale(_) => Some((i, Step::Discover)),
                Status::Fresh(l) if !l.ready() => Some((i, Step::Initialize)),
                Status::Fresh(_) | Status::Unreachable => None,
            })
            .collect()
    }

    /// Send the learning calls, then `then`. Each goes with its backend's
    /// credential, as any side call (`token_exchange`).
    pub(in crate::gateway) fn learn(
        &mut self,
        host: &mut dyn Host,
        steps: Vec<(usize, Step)>,
        then: Then,
    ) -> BodyAction {
        let name = self.gw.cfg.server_name.clone();
        self.req.fanout_started_ms = host.now_ms();
        // The fan-out state first: calls that wait for a credential join it.
        self.state = State::FanOut(FanOut {
            op: FanOp::Learn(Box::new(Learn {
                steps: Vec::with_capacity(steps.len()),
                then,
            })),
            calls: Vec::with_capacity(steps.len()),
        });
        for (i, step) in steps {
            let Some(b) = self.gw.cfg.backends.get(i) else {
                continue;
            };
            let call = match &step {
                Step::Discover => self
                    .call_to(b, None, "POST", eras::discover_body(&name))
                    .map(|mut c| {
                        c.headers.push((
                            h::PROTOCOL_VERSION.into(),
                            Version::V2026_07_28.as_str().into(),
                        ));
                        c.headers
                            .push((modern::METHOD_HEADER.into(), "server/discover".into()));
                        c
                    }),
                Step::Initialize => self.call_to(b, None, "POST", eras::initialize_body(&name)),
                Step::Initialized { held, .. } => {
                    let bs = BackendSession {
                        name: b.name.clone(),
                        version: held.version,
                        session_id: held.session_id.clone(),
                        caps: 0,
                    };
                    let body = jsonrpc::notification_json("notifications/initialized", None);
                    self.call_to(b, Some(&bs), "POST", body.into_bytes())
                }
            };
            let sent = match call {
                Some(c) => self.send_call(host, i, c),
                None => {
                    self.log_backend(
                        host,
                        i,
                        "could not dispatch a call (is its cluster defined?)",
                    );
                    Sent::Dropped
                }
            };
            if matches!(sent, Sent::Dropped) {
                self.gw.eras.set_unreachable(i, host.now_ms());
                continue;
            }
            if let State::FanOut(FanOut {
                op: FanOp::Learn(l),
                ..
            }) = &mut self.state
            {
                l.steps.push((i, step));
            }
            self.add_call(i, sent);
        }
        let nothing = matches!(&self.state, State::FanOut(f) if f.calls.is_empty());
        if nothing && !self.awaiting_credentials() {
            if let State::FanOut(FanOut {
                op: FanOp::Learn(l),
                ..
            }) = std::mem::replace(&mut self.state, State::Answered)
            {
                return self.after_learning(host, l.then);
            }
        }
        self.maybe_finish(host).unwrap_or(BodyAction::Wait)
    }

    /// The learning calls answered: record what they say, go on.
    pub(in crate::gateway) fn finish_learn(
        &mut self,
        host: &mut dyn Host,
        learn: Learn,
        calls: Vec<Call>,
    ) -> BodyAction {
        let now = host.now_ms();
        let max = self.gw.cfg.max_response_bytes;
        let need_held = matches!(learn.then, Then::Modern);
        let mut next = Vec::new();
        let mut steps = learn.steps;
        for call in calls {
            let i = call.backend;
            let Some(pos) = steps.iter().position(|(b, _)| *b == i) else {
                continue;
            };
            let (_, step) = steps.swap_remove(pos);
            if call.token.is_none() {
                // No credential for this caller (logged with the failure):
                // says nothing of the backend's era; left out of this request.
                continue;
            }
            let resp = call.response.unwrap_or_default();
            match step {
                Step::Discover => match eras::classify_discover(&resp, max) {
                    Probe::Modern { info, legacy_too } => {
                        host.log(
                            Level::Info,
                            &format!("backend {} speaks 2026-07-28", self.gw.backend_name(i)),
                        );
                        self.gw.eras.set_learned(
                            i,
                            Learned {
                                modern: true,
                                legacy: legacy_too,
                                info,
                                learned_ms: now,
                                held: None,
                            },
                        );
                    }
                    Probe::Legacy if need_held => next.push((i, Step::Initialize)),
                    Probe::Legacy => self.gw.eras.set_learned(
                        i,
                        Learned {
                            modern: false,
                            legacy: true,
                            info: BackendInfo::default(),
                            learned_ms: now,
                            held: None,
                        },
                    ),
                    Probe::Unreachable(why) => {
                        self.log_backend(
                            host,
                            i,
                            &format!("server/discover: {why}; left out for now"),
                        );
                        self.count_backend_failure(host, i);
                        self.gw.eras.set_unreachable(i, now);
                    }
                },
                Step::Initialize => match eras::classify_initialize(&resp, max) {
                    Ok((held, info)) => next.push((i, Step::Initialized { held, info })),
                    Err(e) => {
                        self.log_backend(
                            host,
                            i,
                            &format!("initialize (session for 2026-07-28 clients): {e}"),
                        );
                        self.count_backend_failure(host, i);
                        self.gw.eras.set_unreachable(i, now);
                    }
                },
                Step::Initialized { held, info } => {
                    if (200..300).contains(&resp.status) {
                        host.log(
                            Level::Info,
                            &format!(
                                "backend {} speaks {}: holding a session for 2026-07-28 clients",
                                self.gw.backend_name(i),
                                held.version.as_str()
                            ),
                        );
                        self.gw.eras.set_learned(
                            i,
                            Learned {
                                modern: false,
                                legacy: true,
                                info,
                                learned_ms: now,
                                held: Some(held),
                            },
                        );
                    } else {
                        self.log_backend(
                            host,
                            i,
                            &format!("notifications/initialized: HTTP {}", resp.status),
                        );
                        self.gw.eras.set_unreachable(i, now);
                    }
                }
            }
        }
        if !next.is_empty() {
            return self.learn(host, next, learn.then);
        }
        self.after_learning(host, learn.then)
    }

    fn after_learning(&mut self, host: &mut dyn Host, then: Then) -> BodyAction {
        match then {
            Then::Modern => self.modern_continue(host),
            Then::Initialize { negotiated, calls } => {
                let refused = self.refused_initializations(&calls);
                let joins = self.modern_joins(&refused);
                let r = self.finish_initialize(host, negotiated, calls, joins);
                BodyAction::Respond(self.respond(r))
            }
        }
    }

    // ----- 2025-era clients and 2026-07-28-only backends ---------------------

    /// Backends that answered `initialize` with a refusal (not a failure to
    /// answer): they may speak only 2026-07-28. A 2025-era client always gets
    /// the handshake era from a backend that offers it; only a backend that
    /// refuses it is joined statelessly, when it speaks 2026-07-28.
    pub(in crate::gateway) fn refused_initializations(&self, calls: &[Call]) -> Vec<usize> {
        let max = self.gw.cfg.max_response_bytes;
        calls
            .iter()
            .filter(|c| {
                let resp = c.response.clone().unwrap_or_default();
                // Down, overloaded or refusing our credentials: not an era question.
                if !(200..500).contains(&resp.status) || matches!(resp.status, 401 | 403) {
                    return false;
                }
                super::super::merge::response_message(&resp, max)
                    .and_then(|m| super::super::merge::result_of(&m).map(str::to_string))
                    .and_then(|r| super::super::merge::parse_initialize(&r))
                    .is_err()
            })
            .map(|c| c.backend)
            .collect()
    }

    /// What a 2025-era session records for 2026-07-28 backends: their
    /// capabilities without change notifications (those reach no GET stream).
    pub(in crate::gateway) fn modern_joins(&self, backends: &[usize]) -> Vec<(usize, BackendInit)> {
        backends
            .iter()
            .filter_map(|&i| {
                let l = self.gw.eras.learned(i).filter(|l| l.modern)?;
                let mut capabilities: Map<String, Value> = l.info.capabilities.clone();
                for cap in ["tools", "prompts", "resources"] {
                    if let Some(Value::Object(c)) = capabilities.get_mut(cap) {
                        c.remove("listChanged");
                        c.remove("subscribe");
                    }
                }
                Some((
                    i,
                    BackendInit {
                        version: Version::V2026_07_28,
                        capabilities,
                        instructions: l.info.instructions.clone(),
                        server_name: l.info.server_name.clone(),
                    },
                ))
            })
            .collect()
    }
}

fn header_value<'a>(headers: &'a [(String, String)], name: &str) -> Option<&'a str> {
    super::super::host::header(headers, name)
}

/// How the gateway's own errors look to a client (copied out of the
/// exchange, to apply while a routed stream is borrowed).
#[derive(Debug, Clone, Copy)]
pub(in crate::gateway) struct ErrorEra {
    modern: bool,
    /// The request's id is unknown (routed from its headers): an error with
    /// a null id takes an HTTP failure status so the client can still tell
    /// which request failed.
    header_routed: bool,
}

impl ErrorEra {
    pub(in crate::gateway) fn apply(self, e: GatewayError) -> GatewayError {
        if !self.modern {
            return e;
        }
        let mut e = e.for_modern_client();
        if self.header_routed && e.status == 200 {
            e.status = 502;
        }
        e
    }
}

#[cfg(test)]
#[path = "client_tests.rs"]
mod tests;
