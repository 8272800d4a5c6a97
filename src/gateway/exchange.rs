//! One client request through the gateway: classify it, then answer it here,
//! fan it out and merge, or route it to one backend and rewrite the answer as
//! it streams back. Adapters drive it through the hooks in `hooks.rs`; the
//! `on_*` steps here return decisions the hooks apply. Nothing here touches
//! the proxy directly.

use super::config::Config;
use super::error::GatewayError;
use super::host::{
    header, Attribute, BodyAction, CallId, CallResponse, HeaderOp, HeadersAction, Host, Level,
    LocalResponse, LogField, ResponseBodyAction,
};
use super::instance::Gateway;
use super::modern::client::Learn;
use super::modern::ModernReq;
use super::naming::Resolved;
use super::session::{caps, session_tag, BackendSession, Session, SessionError};
use super::stats::{ErrorKind, RequestStats};
use super::stream::{SseRewrite, StreamCtx};
use super::tokens::{StreamCursor, Wrapped};
use crate::protocol::http::{self as h, accepts, media_type, path_only};
use crate::protocol::jsonrpc::{
    self, error_json, result_json, Kind, Message, RawObject, INTERNAL_ERROR,
};
use crate::protocol::mcp::{ListKind, Notification, Request, Version};
use serde_json::value::RawValue;
use std::sync::Arc;

/// Headers copied from the client onto fan-out calls so traces join up.
pub(super) const PROPAGATED: &[&str] = &["traceparent", "tracestate", "baggage", "x-request-id"];
pub(super) const CALL_ACCEPT: &str = "application/json, text/event-stream";

#[derive(Default)]
pub(super) struct RequestCtx {
    pub authority: String,
    /// The client's `:path` has a query string (or fragment).
    pub query: bool,
    pub http_method: String,
    pub path: String,
    /// Request headers, kept only when the policy's CEL reads them.
    pub headers: Vec<(String, String)>,
    /// The audit record's decision part.
    pub audit: super::audit::Audit,
    pub authorization: Option<String>,
    pub propagate: Vec<(String, String)>,
    /// Trace context found only in `params._meta`: added as headers upstream.
    pub meta_trace: Vec<(String, String)>,
    /// `MCP-Protocol-Version` as sent (validated), if any.
    pub header_version: Option<String>,
    pub session: Option<Arc<Session>>,
    /// Raw JSON id of the client's request.
    pub request_id: Option<String>,
    pub method: Option<String>,
    /// The client-visible tool name of a `tools/call`.
    pub tool: Option<String>,
    /// The authenticated caller (with `auth` configured).
    pub principal: Option<super::auth::Principal>,
    /// CORS headers for every answer to an allowed browser origin.
    pub cors: Vec<(String, String)>,
    /// The client ranks SSE first: the gateway's own answers use it too.
    pub prefer_sse: bool,
    /// Request headers that upstream requests must not carry, when present.
    pub present: Vec<&'static str>,
    /// What the request's metrics and access-log fields will say.
    pub stats: RequestStats,
    /// When the current fan-out started (for its latency histogram).
    pub fanout_started_ms: u64,
    /// The 2026-07-28 request, when the client speaks that revision.
    pub modern: Option<Box<ModernReq>>,
    /// The client's body, kept when a later step needs it again (a request
    /// served after learning backends; one adapted to a backend's era).
    pub body: Option<Vec<u8>>,
}

pub(super) enum State {
    Start,
    /// Not an MCP request for this gateway: untouched.
    NotOurs,
    AwaitBody,
    FanOut(FanOut),
    Routed(Box<Routed>),
    /// Several backends' event streams merged into our own streamed reply
    /// (`fanin.rs`).
    Merged(Box<super::fanin::FanIn>),
    /// Answered locally; our own reply passes through the response path.
    Answered,
}

pub(super) struct Call {
    /// `None` for a call that was never sent (see [`Call::failed`]).
    pub token: Option<CallId>,
    pub backend: usize,
    pub response: Option<CallResponse>,
}

impl Call {
    /// A call to `backend` that could not be sent: its answer is a failure
    /// saying `why` (status 0 with the reason as body).
    pub(super) fn failed(backend: usize, why: String) -> Call {
        Call {
            token: None,
            backend,
            response: Some(CallResponse {
                status: 0,
                headers: Vec::new(),
                body: why.into_bytes(),
            }),
        }
    }
}

pub(super) enum FanOp {
    Initialize {
        negotiated: Version,
    },
    List {
        kind: ListKind,
    },
    SetLevel,
    Notify,
    Delete,
    /// Which unprefixed backend lists this bare name?
    Lookup(Box<Lookup>),
    /// The request went to every candidate backend; one answer must succeed.
    FirstSuccess,
    /// The issuer's metadata, fetched for 2025-03-26 clients.
    AsMetadata,
    /// Learning backends' eras before a request can be served.
    Learn(Box<Learn>),
}

/// Finding the owner of a bare tool or prompt name among several unprefixed
/// backends (side-effect-free: only their lists are read).
pub(super) struct Lookup {
    pub what: NameKind,
    pub name: String,
    /// The request's `params` (for the policy's conditions).
    pub params: Option<String>,
    pub found: Vec<usize>,
}

pub(super) struct FanOut {
    pub op: FanOp,
    pub calls: Vec<Call>,
}

impl FanOp {
    /// The `method` label of its latency histogram (one of `stats::FANOUT_METHODS`).
    pub(super) fn label(&self) -> &'static str {
        match self {
            FanOp::Initialize { .. } => "initialize",
            FanOp::List { kind } => kind.method(),
            FanOp::SetLevel => "logging/setLevel",
            FanOp::Notify => "notification",
            FanOp::Delete => "http.delete",
            FanOp::Lookup(_) => "lookup",
            FanOp::FirstSuccess => "first_success",
            FanOp::AsMetadata => "authorization_server_metadata",
            FanOp::Learn(_) => "learn",
        }
    }
}

pub(super) enum Mode {
    /// Waiting for the response headers.
    Pending,
    PassThrough,
    Json,
    Sse(Box<SseRewrite>),
    /// Upstream body discarded (its replacement was already sent).
    Drop,
}

pub(super) struct Routed {
    pub ctx: StreamCtx,
    pub expects_response: bool,
    pub mode: Mode,
    /// The response reached its end (or was judged already).
    pub ended: bool,
}

pub struct Exchange {
    pub(super) gw: Arc<Gateway>,
    pub(super) state: State,
    pub(super) req: RequestCtx,
    /// What the hooks remember between host events.
    pub(super) hooks: super::hooks::HookState,
    /// Upstream credentials from token exchanges (`token_exchange`).
    pub(super) upstream: super::token_exchange::Waits,
}

impl Exchange {
    pub fn new(gw: Arc<Gateway>) -> Exchange {
        Exchange {
            gw,
            state: State::Start,
            req: RequestCtx::default(),
            hooks: Default::default(),
            upstream: Default::default(),
        }
    }

    pub(super) fn cfg(&self) -> &Config {
        &self.gw.cfg
    }

    pub(super) fn respond(&mut self, mut r: LocalResponse) -> LocalResponse {
        self.state = State::Answered;
        let answers_request = self.req.request_id.is_some() && self.req.method.is_some();
        if self.req.prefer_sse
            && answers_request
            && r.status == 200
            && header(&r.headers, h::CONTENT_TYPE) == Some(h::JSON)
        {
            let text = String::from_utf8_lossy(&r.body).into_owned();
            let mut body = Vec::with_capacity(r.body.len() + 24);
            crate::protocol::sse::Event {
                event: Some("message".into()),
                ..crate::protocol::sse::Event::data(text)
            }
            .write(&mut body);
            r.body = body;
            for (k, v) in r.headers.iter_mut() {
                if k.eq_ignore_ascii_case(h::CONTENT_TYPE) {
                    *v = h::EVENT_STREAM.into();
                }
            }
            r.headers.push(("cache-control".into(), "no-cache".into()));
        }
        for (k, v) in &self.req.cors {
            if header(&r.headers, k).is_none() {
                r.headers.push((k.clone(), v.clone()));
            }
        }
        r
    }

    /// Answer the current request with the gateway's error `e` (its kind is
    /// recorded unless an earlier failure was).
    pub(super) fn fail(&mut self, e: GatewayError) -> LocalResponse {
        if self.req.stats.error.is_none() {
            self.req.stats.error = e.kind;
        }
        let e = self.era_error(e);
        let r = e.response(self.req.request_id.as_deref());
        self.respond(r)
    }

    /// Record the kind of a failure (the first one recorded wins).
    pub(super) fn note(&mut self, kind: ErrorKind) {
        self.req.stats.error.get_or_insert(kind);
    }

    /// Publish an access-log field (when the config asks for them).
    pub(super) fn publish(&self, host: &dyn Host, field: LogField, value: &str) {
        if self.gw.cfg.access_log_fields {
            host.set_log_field(field, value);
        }
    }

    /// W3C trace context in `params._meta` (where MCP clients without HTTP
    /// access put it) counts like the headers, unless the headers have it.
    fn trace_from_meta(&mut self, msg: &Message<'_>) {
        let Some(params) = msg.params.filter(|p| p.get().contains("\"_meta\"")) else {
            return;
        };
        let Some(meta) = RawObject::parse(params)
            .ok()
            .and_then(|p| p.get("_meta"))
            .and_then(|m| RawObject::parse(m).ok())
        else {
            return;
        };
        for name in ["traceparent", "tracestate", "baggage"] {
            if self.req.propagate.iter().any(|(k, _)| k == name) {
                continue;
            }
            if let Some(v) = meta
                .get_str(name)
                .filter(|v| h::is_safe_header_value(v) && v.len() <= 8192)
            {
                self.req.propagate.push((name.to_string(), v.to_string()));
                self.req.meta_trace.push((name.to_string(), v.into_owned()));
            }
        }
    }

    /// The response is starting (ours or a backend's): publish the access-log
    /// fields while Envoy can still log them (its access loggers run before
    /// the filter's end-of-stream callback).
    pub fn on_response_start(&mut self, host: &mut dyn Host) {
        if matches!(self.state, State::Start | State::NotOurs) {
            return;
        }
        if let Some(b) = &self.req.stats.backend {
            self.publish(host, LogField::Backend, b);
        }
        if let Some(t) = &self.req.tool {
            self.publish(host, LogField::Tool, t);
        }
        if let Some(e) = self.req.stats.error {
            self.publish(host, LogField::Error, e.label());
        }
        self.publish_audit(host);
    }

    /// The audit record's fields (see `audit`), when this request has one.
    fn publish_audit(&self, host: &dyn Host) {
        let a = &self.req.audit;
        if !a.active {
            return;
        }
        self.publish(host, LogField::Audit, "1");
        self.publish(host, LogField::AuditKind, a.kind);
        self.publish(host, LogField::AuditBackend, &a.backend);
        self.publish(host, LogField::AuditResource, &a.resource);
        self.publish(host, LogField::AuditDecision, a.decision);
        self.publish(host, LogField::AuditRule, &a.rule);
        if let Some(args) = &a.arguments {
            self.publish(host, LogField::AuditArguments, args);
        }
        if let Some(p) = &self.req.principal {
            self.publish(host, LogField::CallerIssuer, &p.issuer);
            self.publish(host, LogField::CallerSubject, &p.subject);
            let client = ["client_id", "azp"]
                .iter()
                .find_map(|c| p.claims.get(*c).and_then(serde_json::Value::as_str));
            if let Some(c) = client {
                self.publish(host, LogField::CallerClientId, c);
            }
        }
        self.publish_outcome(host);
    }

    /// `ok`, `denied`, or the error kind; published again once a routed
    /// answer has been read to its end.
    pub(super) fn publish_outcome(&self, host: &dyn Host) {
        if !self.req.audit.active {
            return;
        }
        let outcome = if self.req.audit.decision == "deny" {
            "denied"
        } else if let Some(e) = self.req.stats.error {
            e.label()
        } else if self.req.stats.backend_error {
            "tool_error"
        } else {
            "ok"
        };
        self.publish(host, LogField::AuditOutcome, outcome);
    }

    /// The request is over: report its metrics.
    pub fn on_done(&mut self, host: &mut dyn Host) {
        self.check_cut_stream(host);
        for id in self.close_fan_in() {
            host.close_stream(id);
        }
        let meters = &self.gw.meters;
        if self.req.stats.reported
            || !meters.enabled()
            || matches!(self.state, State::Start | State::NotOurs)
        {
            return;
        }
        self.req.stats.reported = true;
        let method = self.req.stats.method.as_deref().unwrap_or("invalid");
        let failed = self.req.stats.error.is_some() || self.req.stats.backend_error;
        meters.request(host, method, failed);
        if let Some(kind) = self.req.stats.error {
            meters.error(host, kind);
        }
        if let (Some(tool), Some(backend)) = (&self.req.tool, &self.req.stats.backend) {
            let tool = self.gw.cardinality.tool_label(tool);
            meters.tool_call(host, backend, &tool, failed);
        }
    }

    /// A routed event stream that ended before the client's answer, not at its
    /// end but by the backend resetting the connection (Envoy could only reset
    /// the client's stream): the backend's failure, named and counted. A
    /// client that hung up is not one.
    fn check_cut_stream(&mut self, host: &mut dyn Host) {
        let State::Routed(r) = &mut self.state else {
            return;
        };
        let Mode::Sse(rw) = &r.mode else { return };
        if !r.expects_response || rw.answer.seen || rw.resumable || r.ended {
            return;
        }
        let details = host
            .attribute(Attribute::ResponseCodeDetails)
            .unwrap_or_default();
        if !details.starts_with("upstream_reset") {
            return;
        }
        let backend = r.ctx.backend;
        r.ended = true;
        self.log_backend(
            host,
            backend,
            &format!("reset its event stream before answering ({details})"),
        );
        self.req
            .stats
            .error
            .get_or_insert(ErrorKind::BackendFailure);
        self.count_backend_failure(host, backend);
    }

    /// Whether the adapter should hand over the request body.
    pub fn wants_request_body(&self) -> bool {
        matches!(self.state, State::AwaitBody)
    }

    /// While the body is still arriving: refuse it as soon as it is too big.
    pub fn check_request_size(&mut self, size: usize) -> Option<LocalResponse> {
        if matches!(self.state, State::AwaitBody) && size > self.cfg().max_request_bytes {
            return Some(self.too_large());
        }
        None
    }

    /// Whether the upstream response concerns us (a routed request).
    pub fn wants_response(&self) -> bool {
        match &self.state {
            State::Routed(r) => !matches!(r.mode, Mode::PassThrough),
            _ => false,
        }
    }

    /// Whether the response body is rewritten as a whole at its end.
    pub fn buffers_response(&self) -> bool {
        matches!(&self.state, State::Routed(r) if matches!(r.mode, Mode::Json))
    }

    /// A buffered response grew to `size` bytes: keep buffering, or give up
    /// rewriting it (over `max_response_bytes`) and let it pass.
    pub fn on_response_body_pending(
        &mut self,
        host: &mut dyn Host,
        size: usize,
    ) -> ResponseBodyAction {
        let max = self.cfg().max_response_bytes;
        if let State::Routed(r) = &mut self.state {
            if matches!(r.mode, Mode::Json) && size > max {
                host.log(
                    Level::Warn,
                    "JSON answer over max_response_bytes; passing it unmodified",
                );
                r.mode = Mode::PassThrough;
                return ResponseBodyAction::Continue;
            }
        }
        ResponseBodyAction::Buffer
    }

    // ----- request headers ---------------------------------------------------

    /// Whether a request for `path` is none of the gateway's business: not
    /// its path, nor a metadata document it serves. Decided from `:path`
    /// alone, before the other headers are read.
    pub fn passes_by(&self, path: &str) -> bool {
        let p = path_only(path);
        p != self.cfg().path
            && !self.gw.cfg.auth.as_ref().is_some_and(|a| {
                a.serves_metadata(p)
                    || (a.as_metadata.is_some() && super::auth::AS_METADATA_PATHS.contains(&p))
            })
    }

    /// Let a request that is not the gateway's go on, without the headers
    /// only the gateway may set (`present`: whether the request has one).
    pub fn not_ours(&mut self, mut present: impl FnMut(&str) -> bool) -> HeadersAction {
        self.state = State::NotOurs;
        let mut ops = vec![HeaderOp::Remove(self.cfg().route_header.clone())];
        if self.cfg().rate_limit_headers {
            ops.extend(
                super::config::RATE_LIMIT_HEADERS
                    .iter()
                    .filter(|n| present(n))
                    .map(|n| HeaderOp::Remove(n.to_string())),
            );
        }
        HeadersAction::Continue(ops)
    }

    pub fn on_request_headers(
        &mut self,
        host: &mut dyn Host,
        headers: &[(String, String)],
        end_of_stream: bool,
    ) -> HeadersAction {
        let path = header(headers, ":path").unwrap_or("");
        let method = header(headers, ":method").unwrap_or("").to_string();
        self.req.stats.method = Some(format!("http.{}", method.to_ascii_lowercase()));
        if let Some(action) = self.well_known(host, &method, path) {
            return action;
        }
        if path_only(path) != self.cfg().path {
            return self.not_ours(|n| header(headers, n).is_some());
        }
        self.req.authority = header(headers, ":authority").unwrap_or("").to_string();
        self.req.query = path.len() != path_only(path).len();
        self.req.http_method = method.clone();
        self.req.path = path.to_string();
        if self
            .gw
            .cfg
            .authorization
            .as_ref()
            .is_some_and(|p| p.uses_cel())
        {
            self.req.headers = headers
                .iter()
                .map(|(k, v)| (k.to_ascii_lowercase(), v.clone()))
                .collect();
        }
        let payload_header = self.gw.cfg.auth.as_ref().map(|a| a.payload_header.as_str());
        for (k, _) in headers {
            let known = [
                h::AUTHORIZATION,
                "cookie",
                h::ORIGIN,
                h::SESSION_ID,
                h::PROTOCOL_VERSION,
                h::LAST_EVENT_ID,
            ];
            if let Some(n) = known.iter().find(|n| k.eq_ignore_ascii_case(n)) {
                self.req.present.push(n);
            } else if payload_header.is_some_and(|p| k.eq_ignore_ascii_case(p)) {
                self.req.present.push("jwt-payload");
            }
        }
        self.req.authorization = header(headers, h::AUTHORIZATION).map(str::to_string);
        self.req.propagate = PROPAGATED
            .iter()
            .filter_map(|n| header(headers, n).map(|v| (n.to_string(), v.to_string())))
            .filter(|(_, v)| h::is_safe_header_value(v))
            .collect();

        if let Some(origin) = header(headers, h::ORIGIN) {
            if !self.origin_allowed(origin) {
                host.log(
                    Level::Warn,
                    &format!("refused Origin {origin:?} (not in allowed_origins)"),
                );
                return HeadersAction::Respond(self.fail(GatewayError::origin_refused()));
            }
            self.cors_for(origin);
        }
        if method == "OPTIONS" {
            return HeadersAction::Respond(self.preflight());
        }
        if let Err(r) = self.authenticate(host, headers) {
            return HeadersAction::Respond(r);
        }

        let modern = self.choose_era(headers);
        if let Some(v) = header(headers, h::PROTOCOL_VERSION) {
            let v = v.trim();
            let served = Version::parse(v).is_some_and(|p| Version::SERVED.contains(&p));
            if !served && !modern {
                let e = GatewayError::unsupported_version(v, &supported_list());
                return HeadersAction::Respond(self.fail(e));
            }
            self.req.header_version = Some(v.to_string());
        }

        let accept = header(headers, h::ACCEPT).unwrap_or("");
        self.req.prefer_sse = h::prefers_event_stream(accept);
        match method.as_str() {
            "POST" => {
                if !(accepts(accept, h::JSON) && accepts(accept, h::EVENT_STREAM)) {
                    return HeadersAction::Respond(self.fail(GatewayError::not_acceptable_post()));
                }
                if let Some(ct) = header(headers, h::CONTENT_TYPE) {
                    if media_type(ct) != h::JSON {
                        let e = GatewayError::unsupported_media_type();
                        return HeadersAction::Respond(self.fail(e));
                    }
                }
                // u64, not usize: on wasm32 a usize cannot hold every length.
                let max = u64::try_from(self.cfg().max_request_bytes).unwrap_or(u64::MAX);
                let too_long = header(headers, h::CONTENT_LENGTH)
                    .map(|l| l.trim().parse::<u64>().map_or(true, |l| l > max))
                    .unwrap_or(false);
                if too_long {
                    return HeadersAction::Respond(self.too_large());
                }
                if modern {
                    return self.modern_headers(host, end_of_stream);
                }
                if let Err(r) = self.load_session(host, headers) {
                    return HeadersAction::Respond(r);
                }
                if end_of_stream {
                    return HeadersAction::Respond(self.fail(GatewayError::empty_body()));
                }
                self.state = State::AwaitBody;
                HeadersAction::NeedBody
            }
            "GET" | "DELETE" if modern => {
                self.req.stats.method = Some(format!("http.{}", method.to_ascii_lowercase()));
                HeadersAction::Respond(self.modern_not_allowed())
            }
            "GET" => {
                self.req.stats.method = Some("http.get".into());
                self.open_stream(host, headers, accept)
            }
            "DELETE" => {
                self.req.stats.method = Some("http.delete".into());
                self.delete(host, headers)
            }
            _ => HeadersAction::Respond(self.fail(GatewayError::method_not_allowed())),
        }
    }

    pub(super) fn too_large(&mut self) -> LocalResponse {
        self.fail(GatewayError::too_large(self.cfg().max_request_bytes))
    }

    /// DNS-rebinding protection. Browsers always send `Origin`; a page that
    /// rebinds a name to this gateway is "same-origin" from the browser's view,
    /// so only an explicit list (or a local page talking to a local gateway)
    /// is trusted.
    fn origin_allowed(&self, origin: &str) -> bool {
        let list = &self.cfg().allowed_origins;
        if list
            .iter()
            .any(|o| o == "*" || o.eq_ignore_ascii_case(origin))
        {
            return true;
        }
        if !list.is_empty() {
            return false;
        }
        let Some((_, o_authority)) = h::origin_host(origin) else {
            return false;
        };
        let o_host = h::authority_host(&o_authority);
        let r_host = h::authority_host(&self.req.authority);
        h::is_loopback_host(&o_host) && h::is_loopback_host(&r_host)
    }

    /// Decode `Mcp-Session-Id` if present. Unknown, damaged, expired or ended -> 404.
    fn load_session(
        &mut self,
        host: &dyn Host,
        headers: &[(String, String)],
    ) -> Result<(), LocalResponse> {
        let Some(token) = header(headers, h::SESSION_ID) else {
            return Ok(());
        };
        let gw = Arc::clone(&self.gw);
        let cfg = &gw.cfg;
        let now = host.now_ms();
        let opened = gw
            .sessions
            .open(&cfg.keys, token.trim(), now, cfg.session_ttl_ms, |s| {
                session_tag(&cfg.keys, &s.sid)
            });
        match opened {
            Ok((s, tag)) => {
                if cfg.auth.is_some() && s.principal != self.principal_digest() {
                    host.log(
                        Level::Warn,
                        "refused a session id presented by another principal",
                    );
                    return Err(self.fail(GatewayError::unknown_session()));
                }
                if self
                    .gw
                    .revocations
                    .is_revoked(host, &s.sid, s.expires_ms(cfg.session_ttl_ms))
                {
                    return Err(self.fail(GatewayError::deleted_session()));
                }
                self.publish(host, LogField::Session, &tag);
                self.req.session = Some(s);
                Ok(())
            }
            Err(SessionError::Expired) => Err(self.fail(GatewayError::expired_session())),
            Err(SessionError::Invalid) => Err(self.fail(GatewayError::unknown_session())),
        }
    }

    fn require_session(
        &mut self,
        host: &dyn Host,
        headers: &[(String, String)],
    ) -> Result<Arc<Session>, LocalResponse> {
        self.load_session(host, headers)?;
        match self.req.session.clone() {
            Some(s) => Ok(s),
            None => Err(self.fail(GatewayError::missing_session())),
        }
    }

    // ----- GET: server-to-client stream ---------------------------------------

    fn open_stream(
        &mut self,
        host: &mut dyn Host,
        headers: &[(String, String)],
        accept: &str,
    ) -> HeadersAction {
        if !accepts(accept, h::EVENT_STREAM) {
            return HeadersAction::Respond(self.fail(GatewayError::not_acceptable_get()));
        }
        let session = match self.require_session(host, headers) {
            Ok(s) => s,
            Err(r) => return HeadersAction::Respond(r),
        };
        let last_event_id = header(headers, h::LAST_EVENT_ID).map(str::trim);
        // Resuming one backend's stream: the event id names it.
        let resume = last_event_id
            .and_then(|id| Wrapped::open_event_id(&self.gw.cfg.keys, id, &session.sid))
            .and_then(|w| {
                self.gw
                    .cfg
                    .backend(&w.backend)
                    .map(|(i, _)| (i, w.original))
            })
            .filter(|(i, _)| self.session_backend(&session, *i).is_some());
        // Only backends holding a session can push messages outside a POST.
        let joined: Vec<(usize, bool)> = self
            .joined(&session)
            .map(|(i, bs)| (i, bs.session_id.is_some()))
            .collect();
        let stateful: Vec<usize> = joined.iter().filter(|(_, s)| *s).map(|(i, _)| *i).collect();
        let pushers: Vec<usize> = stateful
            .iter()
            .copied()
            .filter(|i| {
                self.gw
                    .cfg
                    .backends
                    .get(*i)
                    .is_some_and(|b| b.standalone_stream)
            })
            .collect();
        if resume.is_none() && host.can_stream() {
            // Resuming a merged stream: the cursor holds every backend's position.
            let cursor = last_event_id
                .and_then(|id| StreamCursor::open(&self.gw.cfg.keys, id, &session.sid));
            if pushers.len() > 1 || (cursor.is_some() && !pushers.is_empty()) {
                let positions = cursor.map(|c| c.positions).unwrap_or_default();
                return self.open_merged(host, &session, &pushers, positions);
            }
        }
        let target = match resume {
            Some((i, original)) => Some((i, Some(original))),
            None => {
                // If exactly one backend can push, its stream is the whole
                // stream. Backends that need no GET stream (`standalone_stream:
                // false`, the stdio bridges) give way to the one that does.
                match (joined.as_slice(), pushers.as_slice(), stateful.as_slice()) {
                    ([(only, _)], _, _) | (_, [only], _) | (_, [], [only]) => Some((*only, None)),
                    _ => None,
                }
            }
        };
        let Some((backend, last_event_id)) = target else {
            // Several stateful backends' streams cannot be merged here; per spec, say so.
            return HeadersAction::Respond(self.fail(GatewayError::streams_not_mergeable()));
        };
        let mut ops = self.upstream_headers(&session, backend);
        match last_event_id {
            Some(id) => ops.push(HeaderOp::Set(h::LAST_EVENT_ID.into(), id)),
            None => ops.push(HeaderOp::Remove(h::LAST_EVENT_ID.into())),
        }
        self.state = State::Routed(Box::new(Routed {
            ctx: StreamCtx {
                backend,
                sid: session.sid,
                method: None,
                request_id: None,
                era: None,
            },
            expects_response: false,
            ended: false,
            mode: Mode::Pending,
        }));
        HeadersAction::Continue(ops)
    }

    /// The GET stream of several backends, merged (`fanin.rs`); `positions`
    /// is the cursor the client resumes from.
    fn open_merged(
        &mut self,
        host: &mut dyn Host,
        session: &Session,
        targets: &[usize],
        positions: Vec<(String, String)>,
    ) -> HeadersAction {
        let mut calls = Vec::with_capacity(targets.len());
        for &i in targets {
            let Some(b) = self.gw.cfg.backends.get(i) else {
                continue;
            };
            let Some(mut call) = self.call(session, i, "GET", Vec::new()) else {
                continue;
            };
            for (k, v) in call.headers.iter_mut() {
                if k == "accept" {
                    *v = h::EVENT_STREAM.to_string();
                }
            }
            if let Some((_, id)) = positions.iter().find(|(n, _)| *n == b.name) {
                call.headers
                    .push((h::LAST_EVENT_ID.to_string(), id.clone()));
            }
            call.timeout_ms = 0;
            calls.push((i, call));
        }
        let positions = positions
            .into_iter()
            .filter(|(n, _)| {
                targets
                    .iter()
                    .any(|i| self.gw.backend_name(*i) == n.as_str())
            })
            .collect();
        match self.open_fan_in(host, session.sid, calls, positions) {
            Some(()) => HeadersAction::Wait,
            None => {
                let e = GatewayError::backend_failed(
                    "no backend event stream could be opened".into(),
                    false,
                );
                HeadersAction::Respond(self.fail(e))
            }
        }
    }

    // ----- DELETE ---------------------------------------------------------------

    fn delete(&mut self, host: &mut dyn Host, headers: &[(String, String)]) -> HeadersAction {
        let session = match self.require_session(host, headers) {
            Ok(s) => s,
            Err(r) => return HeadersAction::Respond(r),
        };
        let expires = session.expires_ms(self.cfg().session_ttl_ms);
        self.gw.meters.session_deleted(host);
        if !self.gw.revocations.revoke(host, &session.sid, expires) {
            host.log(
                Level::Error,
                "could not record the session deletion in shared data",
            );
        }
        let targets: Vec<usize> = self
            .joined(&session)
            .filter(|(_, bs)| bs.session_id.is_some())
            .map(|(i, _)| i)
            .collect();
        // The fan-out state first: calls that wait for a credential join it.
        self.state = State::FanOut(FanOut {
            op: FanOp::Delete,
            calls: Vec::new(),
        });
        for i in targets {
            if let Some(call) = self.call(&session, i, "DELETE", Vec::new()) {
                let sent = self.send_call(host, i, call);
                self.add_call(i, sent);
            }
        }
        let nothing = matches!(&self.state, State::FanOut(f) if f.calls.is_empty());
        if nothing && !self.awaiting_credentials() {
            return HeadersAction::Respond(self.respond(LocalResponse::empty(204)));
        }
        match self.maybe_finish(host) {
            Some(BodyAction::Respond(r)) => HeadersAction::Respond(r),
            _ => HeadersAction::Wait,
        }
    }

    // ----- POST body -------------------------------------------------------------

    pub fn on_request_body(&mut self, host: &mut dyn Host, body: &[u8]) -> BodyAction {
        if !matches!(self.state, State::AwaitBody) {
            return BodyAction::Forward {
                headers: Vec::new(),
                body: None,
            };
        }
        if body.len() > self.cfg().max_request_bytes {
            return BodyAction::Respond(self.too_large());
        }
        let msg = match jsonrpc::parse(body) {
            Ok(m) => m,
            Err(e) => {
                self.req.stats.method = Some("invalid".into());
                return BodyAction::Respond(self.fail(GatewayError::parse(&e)));
            }
        };
        self.req.request_id = msg.id.map(|i| i.get().to_string());
        self.req.method = msg.method.as_deref().map(str::to_string);
        self.req.stats.method = Some(match msg.kind {
            Kind::Response | Kind::Error => "jsonrpc.response".to_string(),
            _ => self.req.method.clone().unwrap_or_default(),
        });
        if let Some(m) = &self.req.stats.method {
            self.publish(host, LogField::Method, m);
        }
        if let Some(id) = &self.req.request_id {
            self.publish(host, LogField::JsonRpcId, id);
        }
        self.trace_from_meta(&msg);
        if self.req.modern.is_some() {
            return self.modern_body(host, &msg, body);
        }
        match msg.kind {
            Kind::Request => {
                let method = msg.method.as_deref().unwrap_or("");
                let req = Request::classify(method);
                if req == Request::Discover || req == Request::Listen {
                    let e = GatewayError::modern_request_without_headers(method);
                    return BodyAction::Respond(self.fail(e));
                }
                if req == Request::Initialize {
                    return self.initialize(host, &msg, body);
                }
                let Some(session) = self.req.session.clone() else {
                    let e = GatewayError::missing_session_initialize_first();
                    return BodyAction::Respond(self.fail(e));
                };
                if session.backends.iter().any(|b| b.version.is_modern()) {
                    // 2026-07-28 backends need the request metadata added.
                    self.req.body = Some(body.to_vec());
                }
                match req {
                    Request::Ping => {
                        let id = msg.id.map(|i| i.get()).unwrap_or("null").to_string();
                        let r = LocalResponse::json(200, result_json_str(&id, "{}"));
                        BodyAction::Respond(self.respond(r))
                    }
                    Request::List(kind) => self.list(host, &session, kind, &msg),
                    Request::CallTool => {
                        self.route_by_name(host, &session, &msg, body, NameKind::Tool)
                    }
                    Request::GetPrompt => {
                        self.route_by_name(host, &session, &msg, body, NameKind::Prompt)
                    }
                    Request::ReadResource | Request::Subscribe | Request::Unsubscribe => {
                        self.route_by_uri(host, &session, &msg, body)
                    }
                    Request::Complete => self.route_completion(host, &session, &msg, body),
                    Request::Task => self.route_task(host, &session, &msg, body),
                    Request::SetLogLevel => {
                        // 2026-07-28 backends take the level per request, not per session.
                        let targets: Vec<usize> = self
                            .with_cap(&session, caps::LOGGING)
                            .into_iter()
                            .filter(|i| !self.backend_is_modern(&session, *i))
                            .collect();
                        self.fan_out(host, &session, FanOp::SetLevel, &targets, |_| {
                            Some(body.to_vec())
                        })
                    }
                    Request::Initialize
                    | Request::Discover
                    | Request::Listen
                    | Request::Unknown => {
                        BodyAction::Respond(self.fail(GatewayError::method_not_found(method)))
                    }
                }
            }
            Kind::Notification => {
                let Some(session) = self.req.session.clone() else {
                    return BodyAction::Respond(self.fail(GatewayError::missing_session()));
                };
                let method = msg.method.as_deref().unwrap_or("");
                if Notification::classify(method) == Notification::Other {
                    host.log(
                        Level::Debug,
                        &format!("relaying unknown notification {method}"),
                    );
                }
                // Every backend of the session gets client notifications; a
                // backend ignores a cancellation or progress for ids it does not
                // know. 2026-07-28 backends take none over HTTP.
                let targets: Vec<usize> = self
                    .joined(&session)
                    .filter(|(_, bs)| !bs.version.is_modern())
                    .map(|(i, _)| i)
                    .collect();
                self.fan_out(host, &session, FanOp::Notify, &targets, |_| {
                    Some(body.to_vec())
                })
            }
            Kind::Response | Kind::Error => {
                let Some(session) = self.req.session.clone() else {
                    return BodyAction::Respond(self.fail(GatewayError::missing_session()));
                };
                self.route_reply(host, &session, &msg, body)
            }
        }
    }

    /// Whether backend `i` of `session` speaks 2026-07-28.
    pub(super) fn backend_is_modern(&self, session: &Session, i: usize) -> bool {
        self.session_backend(session, i)
            .is_some_and(|bs| bs.version.is_modern())
    }

    pub(super) fn session_backend<'s>(
        &self,
        session: &'s Session,
        i: usize,
    ) -> Option<&'s BackendSession> {
        let b = self.gw.cfg.backends.get(i)?;
        session.backend(&b.name)
    }

    /// Backends of the session that still exist in the configuration.
    pub(super) fn joined<'a>(
        &'a self,
        session: &'a Session,
    ) -> impl Iterator<Item = (usize, &'a BackendSession)> + 'a {
        self.gw
            .cfg
            .backends
            .iter()
            .enumerate()
            .filter_map(move |(i, b)| session.backend(&b.name).map(|bs| (i, bs)))
    }

    pub(super) fn with_cap(&self, session: &Session, cap: u8) -> Vec<usize> {
        self.joined(session)
            .filter(|(_, bs)| bs.caps & cap != 0)
            .map(|(i, _)| i)
            .collect()
    }

    /// Counts a backend failure (`mcpgw.backend_failures_total{backend}`).
    pub(super) fn count_backend_failure(&self, host: &mut dyn Host, i: usize) {
        self.gw.meters.backend_failure(host, i);
    }

    pub(super) fn log_backend(&self, host: &dyn Host, i: usize, what: &str) {
        let name = self.gw.backend_name(i);
        host.log(Level::Warn, &format!("backend {name}: {what}"));
    }
}

#[derive(Clone, Copy)]
pub(super) enum NameKind {
    Tool,
    Prompt,
}

impl NameKind {
    pub(super) fn label(self) -> &'static str {
        match self {
            NameKind::Tool => "tool",
            NameKind::Prompt => "prompt",
        }
    }

    pub(super) fn list_kind(self) -> ListKind {
        match self {
            NameKind::Tool => ListKind::Tools,
            NameKind::Prompt => ListKind::Prompts,
        }
    }

    /// The error a server gives for a name it does not know.
    pub(super) fn unknown(self, name: &str) -> String {
        match self {
            NameKind::Tool => format!("Unknown tool: {name}"),
            NameKind::Prompt => format!("Invalid prompt name: {name}"),
        }
    }

    pub(super) fn allows(self, b: &super::config::Backend, name: &str) -> bool {
        match self {
            NameKind::Tool => b.tools.allows(name),
            NameKind::Prompt => b.prompts.allows(name),
        }
    }
}

impl Resolved<'_> {
    /// `Ok((backend, original))`, `Err(candidates)` when ambiguous, `None` when unknown.
    pub(super) fn into_owned_parts_or_candidates(
        self,
    ) -> Option<Result<(usize, String), Vec<usize>>> {
        match self {
            Resolved::Backend(i, o) => Some(Ok((i, o.into_owned()))),
            Resolved::Ambiguous(c) => Some(Err(c)),
            Resolved::Unknown => None,
        }
    }
}

pub(super) fn supported_list() -> String {
    Version::SERVED
        .iter()
        .map(|v| v.as_str())
        .collect::<Vec<_>>()
        .join(", ")
}

pub(super) fn result_json_str(id: &str, result: &str) -> String {
    match RawValue::from_string(id.to_string()) {
        Ok(raw) => result_json(&raw, result),
        Err(_) => error_json(None, INTERNAL_ERROR, "bad id", None),
    }
}

/// The message `body` with the top-level `member` replaced (raw JSON text);
/// every other member is kept byte for byte.
pub(super) fn replace_member(body: &[u8], member: &str, value: &str) -> Option<Vec<u8>> {
    let text = std::str::from_utf8(body).ok()?;
    let obj = RawObject::parse_str(text.trim_start_matches('\u{feff}').trim()).ok()?;
    Some(obj.write_with(&[(member, value)]).into_bytes())
}

#[cfg(test)]
#[path = "exchange_tests.rs"]
mod tests;
