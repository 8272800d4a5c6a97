//! One client request through the gateway: classify it, then answer it here,
//! fan it out and merge, or route it to one backend and rewrite the answer as
//! it streams back. The adapter calls the `on_*` methods in order and applies
//! the returned actions; nothing here touches the proxy directly.

use super::config::{Backend, Config};
use super::crypto::NONCE_LEN;
use super::host::{
    header, BodyAction, CallResponse, HeaderOp, HeadersAction, Host, Level, LocalResponse,
    Outbound, ResponseBodyAction, ResponseHeadersAction,
};
use super::merge::{self, ListPage};
use super::naming::{Naming, Resolved};
use super::revocation::Revocations;
use super::session::{caps, BackendSession, Session, SessionError};
use super::stream::{self, SseRewrite, StreamCtx};
use super::tokens::{ListCursor, Wrapped};
use crate::protocol::http::{self as h, accepts, media_type, path_only};
use crate::protocol::jsonrpc::{
    self, error_json, json_string, raw_str, result_json, Kind, Message, RawObject, BACKEND_ERROR,
    INTERNAL_ERROR, INVALID_PARAMS, INVALID_REQUEST, METHOD_NOT_FOUND,
};
use crate::protocol::mcp::{self, ListKind, Notification, Request, Version};
use serde_json::value::RawValue;
use std::sync::Arc;

/// The compiled configuration plus process-wide helpers; one per plugin config.
pub struct Gateway {
    pub cfg: Config,
    pub revocations: Revocations,
}

impl Gateway {
    pub fn new(cfg: Config) -> Gateway {
        let revocations = Revocations::new(cfg.session_ttl_ms);
        Gateway { cfg, revocations }
    }
}

/// Headers copied from the client onto fan-out calls so traces join up.
const PROPAGATED: &[&str] = &["traceparent", "tracestate", "baggage", "x-request-id"];
const CALL_ACCEPT: &str = "application/json, text/event-stream";

#[derive(Default)]
struct RequestCtx {
    authority: String,
    authorization: Option<String>,
    propagate: Vec<(String, String)>,
    /// `MCP-Protocol-Version` as sent (validated), if any.
    header_version: Option<String>,
    session: Option<Session>,
    /// Raw JSON id of the client's request.
    request_id: Option<String>,
    method: Option<String>,
}

enum State {
    Start,
    /// Not an MCP request for this gateway: untouched.
    NotOurs,
    AwaitBody,
    FanOut(FanOut),
    Routed(Box<Routed>),
    /// Answered locally; our own reply passes through the response path.
    Answered,
}

struct Call {
    token: u32,
    backend: usize,
    response: Option<CallResponse>,
}

enum FanOp {
    Initialize { negotiated: Version },
    List { kind: ListKind },
    SetLevel,
    Notify,
    Delete,
}

struct FanOut {
    op: FanOp,
    calls: Vec<Call>,
}

enum Mode {
    /// Waiting for the response headers.
    Pending,
    PassThrough,
    Json,
    Sse(SseRewrite),
    /// Upstream body discarded (its replacement was already sent).
    Drop,
}

struct Routed {
    ctx: StreamCtx,
    expects_response: bool,
    mode: Mode,
}

pub struct Exchange {
    gw: Arc<Gateway>,
    state: State,
    req: RequestCtx,
}

fn json_error(status: u16, id: Option<&str>, code: i64, message: &str) -> LocalResponse {
    let raw = id.and_then(|i| RawValue::from_string(i.to_string()).ok());
    LocalResponse::json(status, error_json(raw.as_deref(), code, message, None))
}

impl Exchange {
    pub fn new(gw: Arc<Gateway>) -> Exchange {
        Exchange {
            gw,
            state: State::Start,
            req: RequestCtx::default(),
        }
    }

    fn cfg(&self) -> &Config {
        &self.gw.cfg
    }

    fn respond(&mut self, r: LocalResponse) -> LocalResponse {
        self.state = State::Answered;
        r
    }

    /// A JSON-RPC error for the current request (HTTP `status`).
    fn error(&mut self, status: u16, code: i64, message: &str) -> LocalResponse {
        let r = json_error(status, self.req.request_id.as_deref(), code, message);
        self.respond(r)
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

    pub fn on_request_headers(
        &mut self,
        host: &mut dyn Host,
        headers: &[(String, String)],
        end_of_stream: bool,
    ) -> HeadersAction {
        let strip_route = HeaderOp::Remove(self.cfg().route_header.clone());
        let path = header(headers, ":path").unwrap_or("");
        if path_only(path) != self.cfg().path {
            self.state = State::NotOurs;
            return HeadersAction::Continue(vec![strip_route]);
        }
        let method = header(headers, ":method").unwrap_or("").to_string();
        self.req.authority = header(headers, ":authority").unwrap_or("").to_string();
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
                return HeadersAction::Respond(self.error(
                    403,
                    INVALID_REQUEST,
                    "Forbidden: Origin not allowed",
                ));
            }
        }

        if let Some(v) = header(headers, h::PROTOCOL_VERSION) {
            let v = v.trim();
            let served = Version::parse(v).is_some_and(|p| Version::SERVED.contains(&p));
            if !served && !mcp::is_modern_version(v) {
                let msg = format!(
                    "Bad Request: unsupported MCP-Protocol-Version \"{}\"; supported: {}",
                    v.chars().take(40).collect::<String>(),
                    supported_list()
                );
                return HeadersAction::Respond(self.error(400, INVALID_REQUEST, &msg));
            }
            self.req.header_version = Some(v.to_string());
        }

        let accept = header(headers, h::ACCEPT).unwrap_or("");
        match method.as_str() {
            "POST" => {
                if !(accepts(accept, h::JSON) && accepts(accept, h::EVENT_STREAM)) {
                    return HeadersAction::Respond(self.error(
                        406,
                        INVALID_REQUEST,
                        "Not Acceptable: Accept must include application/json and text/event-stream",
                    ));
                }
                if let Some(ct) = header(headers, h::CONTENT_TYPE) {
                    if media_type(ct) != h::JSON {
                        return HeadersAction::Respond(self.error(
                            415,
                            INVALID_REQUEST,
                            "Unsupported Media Type: POST a JSON-RPC message as application/json",
                        ));
                    }
                }
                let too_long = header(headers, h::CONTENT_LENGTH)
                    .and_then(|l| l.trim().parse::<usize>().ok())
                    .is_some_and(|l| l > self.cfg().max_request_bytes);
                if too_long {
                    return HeadersAction::Respond(self.too_large());
                }
                if let Err(r) = self.load_session(host, headers) {
                    return HeadersAction::Respond(r);
                }
                if end_of_stream {
                    return HeadersAction::Respond(self.error(
                        400,
                        jsonrpc::PARSE_ERROR,
                        "Parse error: empty body; POST one JSON-RPC message",
                    ));
                }
                self.state = State::AwaitBody;
                HeadersAction::NeedBody
            }
            "GET" => self.open_stream(host, headers, accept),
            "DELETE" => self.delete(host, headers),
            _ => {
                let r = self
                    .error(
                        405,
                        INVALID_REQUEST,
                        "Method Not Allowed: use POST, GET or DELETE",
                    )
                    .with_header("allow", "GET, POST, DELETE");
                HeadersAction::Respond(r)
            }
        }
    }

    fn too_large(&mut self) -> LocalResponse {
        let msg = format!(
            "Payload Too Large: the limit is {} bytes (max_request_bytes)",
            self.cfg().max_request_bytes
        );
        self.error(413, INVALID_REQUEST, &msg)
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
        let cfg = &self.gw.cfg;
        let now = host.now_ms();
        match Session::open(&cfg.keys, token.trim(), now, cfg.session_ttl_ms) {
            Ok(s) => {
                if self
                    .gw
                    .revocations
                    .is_revoked(host, &s.sid, s.expires_ms(cfg.session_ttl_ms))
                {
                    return Err(self.error(
                        404,
                        INVALID_REQUEST,
                        "Not Found: session was deleted; initialize a new one",
                    ));
                }
                self.req.session = Some(s);
                Ok(())
            }
            Err(SessionError::Expired) => Err(self.error(
                404,
                INVALID_REQUEST,
                "Not Found: session expired; initialize a new one",
            )),
            Err(SessionError::Invalid) => Err(self.error(
                404,
                INVALID_REQUEST,
                "Not Found: unknown session; initialize a new one",
            )),
        }
    }

    fn require_session(
        &mut self,
        host: &dyn Host,
        headers: &[(String, String)],
    ) -> Result<Session, LocalResponse> {
        self.load_session(host, headers)?;
        match self.req.session.clone() {
            Some(s) => Ok(s),
            None => Err(self.error(
                400,
                INVALID_REQUEST,
                "Bad Request: Mcp-Session-Id header is required",
            )),
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
            return HeadersAction::Respond(self.error(
                406,
                INVALID_REQUEST,
                "Not Acceptable: Accept must include text/event-stream",
            ));
        }
        if self
            .req
            .header_version
            .as_deref()
            .is_some_and(mcp::is_modern_version)
        {
            return HeadersAction::Respond(self.legacy_only());
        }
        let session = match self.require_session(host, headers) {
            Ok(s) => s,
            Err(r) => return HeadersAction::Respond(r),
        };
        // Resuming a stream: the event id names its backend.
        let resume = header(headers, h::LAST_EVENT_ID)
            .and_then(|id| Wrapped::open_event_id(&self.gw.cfg.keys, id.trim(), &session.sid))
            .and_then(|w| {
                self.gw
                    .cfg
                    .backend(&w.backend)
                    .map(|(i, _)| (i, w.original))
            })
            .filter(|(i, _)| self.session_backend(&session, *i).is_some());
        let target = match resume {
            Some((i, original)) => Some((i, Some(original))),
            None => {
                let joined: Vec<usize> = self
                    .gw
                    .cfg
                    .backends
                    .iter()
                    .enumerate()
                    .filter(|(_, b)| session.backend(&b.name).is_some())
                    .map(|(i, _)| i)
                    .collect();
                match joined.as_slice() {
                    [only] => Some((*only, None)),
                    _ => None,
                }
            }
        };
        let Some((backend, last_event_id)) = target else {
            // Several backends' streams cannot be merged here; per spec, say so.
            let r = self
                .error(405, INVALID_REQUEST, "Method Not Allowed: this gateway multiplexes several servers and offers no standalone GET stream; server messages arrive on POST response streams")
                .with_header("allow", "POST, DELETE");
            return HeadersAction::Respond(r);
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
            },
            expects_response: false,
            mode: Mode::Pending,
        }));
        HeadersAction::Continue(ops)
    }

    // ----- DELETE ---------------------------------------------------------------

    fn delete(&mut self, host: &mut dyn Host, headers: &[(String, String)]) -> HeadersAction {
        let session = match self.require_session(host, headers) {
            Ok(s) => s,
            Err(r) => return HeadersAction::Respond(r),
        };
        let expires = session.expires_ms(self.cfg().session_ttl_ms);
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
        let mut calls = Vec::new();
        for i in targets {
            if let Some(call) = self.call(&session, i, "DELETE", Vec::new()) {
                match host.dispatch(&call) {
                    Ok(token) => calls.push(Call {
                        token,
                        backend: i,
                        response: None,
                    }),
                    Err(_) => self.log_backend(host, i, "could not dispatch DELETE"),
                }
            }
        }
        if calls.is_empty() {
            return HeadersAction::Respond(self.respond(LocalResponse::empty(204)));
        }
        self.state = State::FanOut(FanOut {
            op: FanOp::Delete,
            calls,
        });
        HeadersAction::Wait
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
            Err(e) => return BodyAction::Respond(self.error(400, e.code(), &e.message())),
        };
        self.req.request_id = msg.id.map(|i| i.get().to_string());
        self.req.method = msg.method.as_deref().map(str::to_string);
        let modern = self
            .req
            .header_version
            .as_deref()
            .is_some_and(mcp::is_modern_version);
        match msg.kind {
            Kind::Request => {
                let method = msg.method.as_deref().unwrap_or("");
                let req = Request::classify(method);
                if req == Request::Discover || modern {
                    return BodyAction::Respond(self.legacy_only());
                }
                if req == Request::Initialize {
                    return self.initialize(host, &msg, body);
                }
                let Some(session) = self.req.session.clone() else {
                    return BodyAction::Respond(self.error(
                        400,
                        INVALID_REQUEST,
                        "Bad Request: Mcp-Session-Id header is required; send initialize first",
                    ));
                };
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
                        self.route_by_uri(&session, &msg, body)
                    }
                    Request::Complete => self.route_completion(&session, &msg, body),
                    Request::SetLogLevel => {
                        let targets = self.with_cap(&session, caps::LOGGING);
                        self.fan_out(host, &session, FanOp::SetLevel, &targets, |_| {
                            Some(body.to_vec())
                        })
                    }
                    Request::Initialize | Request::Discover | Request::Unknown => {
                        let m = format!("Method not found: {method}");
                        BodyAction::Respond(self.error(200, METHOD_NOT_FOUND, &m))
                    }
                }
            }
            Kind::Notification => {
                let Some(session) = self.req.session.clone() else {
                    return BodyAction::Respond(self.error(
                        400,
                        INVALID_REQUEST,
                        "Bad Request: Mcp-Session-Id header is required",
                    ));
                };
                let method = msg.method.as_deref().unwrap_or("");
                if Notification::classify(method) == Notification::Other {
                    host.log(
                        Level::Debug,
                        &format!("relaying unknown notification {method}"),
                    );
                }
                // Every backend of the session gets client notifications; a
                // backend ignores a cancellation or progress for ids it does not know.
                let targets: Vec<usize> = self.joined(&session).map(|(i, _)| i).collect();
                self.fan_out(host, &session, FanOp::Notify, &targets, |_| {
                    Some(body.to_vec())
                })
            }
            Kind::Response | Kind::Error => {
                let Some(session) = self.req.session.clone() else {
                    return BodyAction::Respond(self.error(
                        400,
                        INVALID_REQUEST,
                        "Bad Request: Mcp-Session-Id header is required",
                    ));
                };
                self.route_reply(host, &session, &msg, body)
            }
        }
    }

    /// The answer 2026-07-28 clients probe for: HTTP 400 with a JSON-RPC error
    /// that is not a modern-era error, so they fall back to `initialize`.
    fn legacy_only(&mut self) -> LocalResponse {
        let msg = format!(
            "Method not found: this MCP endpoint does not support protocol 2026-07-28 or server/discover; it speaks {} and starts sessions with initialize",
            supported_list()
        );
        self.error(400, METHOD_NOT_FOUND, &msg)
    }

    fn session_backend<'s>(&self, session: &'s Session, i: usize) -> Option<&'s BackendSession> {
        let b = self.gw.cfg.backends.get(i)?;
        session.backend(&b.name)
    }

    /// Backends of the session that still exist in the configuration.
    fn joined<'a>(
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

    fn with_cap(&self, session: &Session, cap: u8) -> Vec<usize> {
        self.joined(session)
            .filter(|(_, bs)| bs.caps & cap != 0)
            .map(|(i, _)| i)
            .collect()
    }

    fn log_backend(&self, host: &dyn Host, i: usize, what: &str) {
        let name = self
            .gw
            .cfg
            .backends
            .get(i)
            .map(|b| b.name.as_str())
            .unwrap_or("?");
        host.log(Level::Warn, &format!("backend {name}: {what}"));
    }

    // ----- upstream requests --------------------------------------------------

    /// Header changes that send the client's request to backend `i`.
    fn upstream_headers(&self, session: &Session, i: usize) -> Vec<HeaderOp> {
        let cfg = &self.gw.cfg;
        let Some(b) = cfg.backends.get(i) else {
            return Vec::new();
        };
        let bs = session.backend(&b.name);
        let mut ops = Vec::with_capacity(10 + b.headers.len());
        ops.push(HeaderOp::Set(cfg.route_header.clone(), b.cluster.clone()));
        ops.push(HeaderOp::Set(":path".into(), b.path.clone()));
        if let Some(a) = &b.authority {
            ops.push(HeaderOp::Set(":authority".into(), a.clone()));
        }
        match bs.and_then(|s| s.session_id.clone()) {
            Some(id) => ops.push(HeaderOp::Set(h::SESSION_ID.into(), id)),
            None => ops.push(HeaderOp::Remove(h::SESSION_ID.into())),
        }
        match bs {
            Some(s) => ops.push(HeaderOp::Set(
                h::PROTOCOL_VERSION.into(),
                s.version.as_str().into(),
            )),
            None => ops.push(HeaderOp::Remove(h::PROTOCOL_VERSION.into())),
        }
        if !b.forward_authorization {
            ops.push(HeaderOp::Remove(h::AUTHORIZATION.into()));
        }
        ops.push(HeaderOp::Remove("cookie".into()));
        ops.push(HeaderOp::Remove(h::ORIGIN.into()));
        for (k, v) in &b.headers {
            ops.push(HeaderOp::Set(k.clone(), v.clone()));
        }
        ops
    }

    /// A side call to backend `i` (fan-out), with its credentials and session.
    fn call(&self, session: &Session, i: usize, method: &str, body: Vec<u8>) -> Option<Outbound> {
        let b = self.gw.cfg.backends.get(i)?;
        let bs = session.backend(&b.name);
        self.call_to(b, bs, method, body)
    }

    fn call_to(
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
        let mut headers = vec![
            (":method".to_string(), method.to_string()),
            (":path".to_string(), b.path.clone()),
            (":authority".to_string(), authority),
            ("accept".to_string(), CALL_ACCEPT.to_string()),
        ];
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

    fn fan_out(
        &mut self,
        host: &mut dyn Host,
        session: &Session,
        op: FanOp,
        targets: &[usize],
        body_for: impl Fn(usize) -> Option<Vec<u8>>,
    ) -> BodyAction {
        let mut calls = Vec::with_capacity(targets.len());
        for &i in targets {
            let Some(body) = body_for(i) else { continue };
            let Some(call) = self.call(session, i, "POST", body) else {
                continue;
            };
            match host.dispatch(&call) {
                Ok(token) => calls.push(Call {
                    token,
                    backend: i,
                    response: None,
                }),
                Err(_) => self.log_backend(
                    host,
                    i,
                    "could not dispatch a call (is its cluster defined?)",
                ),
            }
        }
        self.state = State::FanOut(FanOut { op, calls });
        match self.maybe_finish(host) {
            Some(a) => a,
            None => BodyAction::Wait,
        }
    }

    // ----- initialize ---------------------------------------------------------

    fn initialize(&mut self, host: &mut dyn Host, msg: &Message<'_>, _body: &[u8]) -> BodyAction {
        let params = msg.params.and_then(|p| RawObject::parse(p).ok());
        let requested = params.as_ref().and_then(|p| p.get_str("protocolVersion"));
        let (Some(params), Some(requested)) = (params, requested) else {
            return BodyAction::Respond(self.error(
                200,
                INVALID_PARAMS,
                "Invalid params: initialize needs params.protocolVersion",
            ));
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

    fn finish_initialize(
        &mut self,
        host: &mut dyn Host,
        negotiated: Version,
        calls: Vec<Call>,
    ) -> LocalResponse {
        let max = self.cfg().max_response_bytes;
        let mut joined: Vec<(usize, merge::BackendInit, Option<String>)> = Vec::new();
        let mut failures = Vec::new();
        for c in calls {
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
        }
        for f in &failures {
            host.log(
                Level::Warn,
                &format!("initialize: backend {f}; left out of the session"),
            );
        }
        if joined.is_empty() {
            let m = format!("no backend could be initialized ({})", failures.join("; "));
            return self.error(200, BACKEND_ERROR, &m);
        }
        let mut sid = [0u8; 16];
        let mut nonce = [0u8; NONCE_LEN];
        if host.random(&mut sid).is_err() || host.random(&mut nonce).is_err() {
            return self.error(
                200,
                INTERNAL_ERROR,
                "no randomness available for a session id",
            );
        }
        let session = Session {
            sid,
            created_ms: host.now_ms(),
            version: negotiated,
            principal: None,
            backends: joined
                .iter()
                .filter_map(|(i, init, sid)| {
                    let b = self.gw.cfg.backends.get(*i)?;
                    Some(BackendSession {
                        name: b.name.clone(),
                        version: init.version,
                        session_id: sid.clone(),
                        caps: init
                            .capabilities
                            .keys()
                            .fold(0, |acc, k| acc | caps::bit(k)),
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

    fn list(
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
                return BodyAction::Respond(self.error(
                    200,
                    INVALID_PARAMS,
                    "Invalid params: expected an object",
                ))
            }
        };
        let cap = caps::bit(kind.capability());
        let targets: Vec<(usize, Option<String>)> = match params.get("cursor") {
            Some(c) => {
                let cursor = raw_str(c)
                    .and_then(|c| ListCursor::open(&self.gw.cfg.keys, &c, &session.sid, kind));
                let Some(cursor) = cursor else {
                    return BodyAction::Respond(self.error(
                        200,
                        INVALID_PARAMS,
                        "Invalid params: unknown or expired cursor",
                    ));
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
            let r = LocalResponse::json(
                200,
                result_json_str(&id, &format!("{{\"{}\":[]}}", kind.items_key())),
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
        let mut results: Vec<(usize, String)> = Vec::new();
        let mut failures = Vec::new();
        for c in calls {
            let name = self
                .gw
                .cfg
                .backends
                .get(c.backend)
                .map(|b| b.name.clone())
                .unwrap_or_default();
            let resp = c.response.unwrap_or_default();
            if resp.status == 404 {
                return self.error(
                    404,
                    INVALID_REQUEST,
                    &format!("Not Found: backend {name} ended its session; initialize a new one"),
                );
            }
            match merge::response_message(&resp, max)
                .and_then(|m| merge::result_of(&m).map(str::to_string))
            {
                Ok(r) => results.push((c.backend, r)),
                Err(e) => failures.push(format!("{name}: {e}")),
            }
        }
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
            return self.error(200, BACKEND_ERROR, &m);
        }
        let pages: Vec<ListPage<'_>> = results
            .iter()
            .map(|(i, r)| ListPage {
                backend: *i,
                result: r,
            })
            .collect();
        let merged = match merge::merge_list(&self.gw.cfg, kind, &pages) {
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
                return self.error(200, INTERNAL_ERROR, &m);
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
        let mut result = String::with_capacity(merged.items.len() + 64);
        result.push_str("{\"");
        result.push_str(kind.items_key());
        result.push_str("\":");
        result.push_str(&merged.items);
        if !merged.next.is_empty() {
            let Some(session) = self.req.session.as_ref() else {
                return self.error(200, INTERNAL_ERROR, "session lost");
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
                return self.error(200, INTERNAL_ERROR, "no randomness available for a cursor");
            }
            let token = ListCursor::new(session.sid, kind, pending).seal(&self.gw.cfg.keys, &nonce);
            result.push_str(",\"nextCursor\":");
            result.push_str(&json_string(&token));
        }
        result.push('}');
        let id = self.req.request_id.clone().unwrap_or_else(|| "null".into());
        let r = LocalResponse::json(200, result_json_str(&id, &result));
        self.respond(r)
    }

    // ----- routing to one backend ------------------------------------------------

    fn forward(
        &mut self,
        session: &Session,
        backend: usize,
        body: Option<Vec<u8>>,
        expects_response: bool,
    ) -> BodyAction {
        let mut headers = self.upstream_headers(session, backend);
        if let Some(b) = &body {
            headers.push(HeaderOp::Set(h::CONTENT_LENGTH.into(), b.len().to_string()));
        }
        self.state = State::Routed(Box::new(Routed {
            ctx: StreamCtx {
                backend,
                sid: session.sid,
                method: self.req.method.clone(),
                request_id: self.req.request_id.clone(),
            },
            expects_response,
            mode: Mode::Pending,
        }));
        BodyAction::Forward { headers, body }
    }

    /// Forward `body` with one top-level member replaced.
    fn forward_with(
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
            None => BodyAction::Respond(self.error(400, INVALID_REQUEST, "Invalid Request")),
        }
    }

    fn route_by_name(
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
            return BodyAction::Respond(self.error(200, INVALID_PARAMS, &m));
        };
        let unknown = match what {
            NameKind::Tool => format!("Unknown tool: {name}"),
            NameKind::Prompt => format!("Invalid prompt name: {name}"),
        };
        let naming = Naming::new(&self.gw.cfg);
        let (i, original) = match naming.resolve(session, &name) {
            Resolved::Backend(i, o) => (i, o.into_owned()),
            Resolved::Ambiguous(_) | Resolved::Unknown => {
                return BodyAction::Respond(self.error(200, INVALID_PARAMS, &unknown));
            }
        };
        let Some(b) = self.gw.cfg.backends.get(i) else {
            return BodyAction::Respond(self.error(200, INVALID_PARAMS, &unknown));
        };
        let visible = match what {
            NameKind::Tool => b.tools.allows(&original),
            NameKind::Prompt => b.prompts.allows(&original),
        };
        if !visible {
            host.log(
                Level::Info,
                &format!("refused hidden {} {name}", what.label()),
            );
            return BodyAction::Respond(self.error(200, INVALID_PARAMS, &unknown));
        }
        if original == *name {
            return self.forward(session, i, None, true);
        }
        let p = params.write_with(&[("name", &json_string(&original))]);
        self.forward_with(session, i, body, "params", &p, true)
    }

    fn route_by_uri(&mut self, session: &Session, msg: &Message<'_>, body: &[u8]) -> BodyAction {
        let params = msg.params.and_then(|p| RawObject::parse(p).ok());
        let uri = params.as_ref().and_then(|p| p.get_str("uri"));
        let (Some(params), Some(uri)) = (params, uri) else {
            return BodyAction::Respond(self.error(
                200,
                INVALID_PARAMS,
                "Invalid params: params.uri is required",
            ));
        };
        let (i, original) = match Naming::new(&self.gw.cfg).resolve_uri(session, &uri) {
            Resolved::Backend(i, o) => (i, o.into_owned()),
            _ => {
                let m = format!("Resource not found: {uri}");
                return BodyAction::Respond(self.error(200, -32002, &m));
            }
        };
        if original == *uri {
            return self.forward(session, i, None, true);
        }
        let p = params.write_with(&[("uri", &json_string(&original))]);
        self.forward_with(session, i, body, "params", &p, true)
    }

    fn route_completion(
        &mut self,
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
            return BodyAction::Respond(self.error(
                200,
                INVALID_PARAMS,
                "Invalid params: params.ref is required",
            ));
        };
        let naming = Naming::new(&self.gw.cfg);
        let (field, resolved) = match reference.get_str("type").as_deref() {
            Some("ref/prompt") => (
                "name",
                reference
                    .get_str("name")
                    .map(|n| naming.resolve(session, &n).into_owned_parts()),
            ),
            Some("ref/resource") => (
                "uri",
                reference
                    .get_str("uri")
                    .map(|u| naming.resolve_uri(session, &u).into_owned_parts()),
            ),
            _ => ("", None),
        };
        let Some(Some((i, original))) = resolved else {
            return BodyAction::Respond(self.error(
                200,
                INVALID_PARAMS,
                "Invalid params: unknown completion reference",
            ));
        };
        let new_ref = reference.write_with(&[(field, &json_string(&original))]);
        let p = params.write_with(&[("ref", &new_ref)]);
        self.forward_with(session, i, body, "params", &p, true)
    }

    /// A client's answer to a server-to-client request: back to that backend,
    /// with the backend's own id restored exactly.
    fn route_reply(
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
            let r = json_error(
                400,
                None,
                INVALID_REQUEST,
                "Bad Request: response to an unknown request id",
            );
            return BodyAction::Respond(self.respond(r));
        };
        self.forward_with(session, i, body, "id", &original, false)
    }

    // ----- side-call answers --------------------------------------------------

    /// The answer to a call dispatched earlier.
    pub fn on_call_response(
        &mut self,
        host: &mut dyn Host,
        token: u32,
        response: CallResponse,
    ) -> BodyAction {
        let State::FanOut(f) = &mut self.state else {
            return BodyAction::Wait;
        };
        if let Some(c) = f.calls.iter_mut().find(|c| c.token == token) {
            c.response = Some(response);
        }
        self.maybe_finish(host).unwrap_or(BodyAction::Wait)
    }

    fn maybe_finish(&mut self, host: &mut dyn Host) -> Option<BodyAction> {
        let State::FanOut(f) = &self.state else {
            return None;
        };
        if f.calls.iter().any(|c| c.response.is_none()) {
            return None;
        }
        let State::FanOut(f) = std::mem::replace(&mut self.state, State::Answered) else {
            return None;
        };
        for c in &f.calls {
            let status = c.response.as_ref().map_or(0, |r| r.status);
            if !(200..300).contains(&status)
                && !matches!(f.op, FanOp::List { .. } | FanOp::Initialize { .. })
            {
                self.log_backend(host, c.backend, &format!("answered HTTP {status}"));
            }
        }
        let r = match f.op {
            FanOp::Initialize { negotiated } => self.finish_initialize(host, negotiated, f.calls),
            FanOp::List { kind } => self.finish_list(host, kind, f.calls),
            FanOp::SetLevel => {
                let id = self.req.request_id.clone().unwrap_or_else(|| "null".into());
                LocalResponse::json(200, result_json_str(&id, "{}"))
            }
            FanOp::Notify => LocalResponse::empty(202),
            FanOp::Delete => LocalResponse::empty(204),
        };
        Some(BodyAction::Respond(self.respond(r)))
    }

    // ----- the routed response --------------------------------------------------

    pub fn on_response_headers(
        &mut self,
        host: &mut dyn Host,
        headers: &[(String, String)],
    ) -> ResponseHeadersAction {
        let State::Routed(r) = &mut self.state else {
            return ResponseHeadersAction::Continue(Vec::new());
        };
        let status: u16 = header(headers, ":status")
            .and_then(|s| s.parse().ok())
            .unwrap_or(0);
        let ct = media_type(header(headers, h::CONTENT_TYPE).unwrap_or(""));
        let name = self
            .gw
            .cfg
            .backends
            .get(r.ctx.backend)
            .map(|b| b.name.clone())
            .unwrap_or_default();
        let mut ops = vec![
            HeaderOp::Remove(h::SESSION_ID.into()),
            HeaderOp::Remove("www-authenticate".into()),
            HeaderOp::Remove("set-cookie".into()),
        ];
        let ok = (200..300).contains(&status);
        if ok && ct == h::EVENT_STREAM {
            ops.push(HeaderOp::Remove(h::CONTENT_LENGTH.into()));
            r.mode = Mode::Sse(SseRewrite::new(self.gw.cfg.max_response_bytes));
            return ResponseHeadersAction::Continue(ops);
        }
        if ct == h::JSON
            && r.expects_response
            && (ok
                || (400..500).contains(&status) && status != 401 && status != 403 && status != 404)
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
        let is_get = r.ctx.method.is_none() && r.ctx.request_id.is_none();
        let reply = if status == 404 {
            host.log(
                Level::Info,
                &format!("backend {name} answered 404: its session ended"),
            );
            json_error(
                404,
                None,
                INVALID_REQUEST,
                &format!("Not Found: backend {name} ended its session; initialize a new one"),
            )
        } else if status == 405 && is_get {
            json_error(
                405,
                None,
                INVALID_REQUEST,
                &format!("Method Not Allowed: backend {name} offers no GET stream"),
            )
            .with_header("allow", "POST, DELETE")
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
            let m = format!("backend {name} failed: {what}");
            if expects {
                json_error(200, self.req.request_id.as_deref(), BACKEND_ERROR, &m)
            } else {
                json_error(502, None, BACKEND_ERROR, &m)
            }
        };
        ResponseHeadersAction::Replace(reply)
    }

    pub fn on_response_body(
        &mut self,
        host: &mut dyn Host,
        body: &[u8],
        end_of_stream: bool,
    ) -> ResponseBodyAction {
        let gw = Arc::clone(&self.gw);
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
                let Ok(text) = std::str::from_utf8(body) else {
                    return ResponseBodyAction::Continue;
                };
                let mut answered = false;
                match stream::rewrite_message(&gw, &r.ctx, text, &mut answered) {
                    Some(new) => ResponseBodyAction::Replace(new.into_bytes()),
                    None => ResponseBodyAction::Continue,
                }
            }
            Mode::Sse(rw) => {
                let mut out = Vec::with_capacity(body.len() + 128);
                if let Err(e) = rw.feed(&gw, host, &r.ctx, body, &mut out) {
                    let name = gw
                        .cfg
                        .backends
                        .get(r.ctx.backend)
                        .map(|b| b.name.as_str())
                        .unwrap_or("?");
                    host.log(
                        Level::Warn,
                        &format!("backend {name}: broken event stream ({e}); closing it"),
                    );
                    if r.expects_response {
                        append_error_event(
                            &mut out,
                            r.ctx.request_id.as_deref(),
                            &format!("backend {name} sent a broken event stream: {e}"),
                        );
                    }
                    r.mode = Mode::Drop;
                    return ResponseBodyAction::Replace(out);
                }
                if end_of_stream {
                    let cut = rw.finish();
                    if r.expects_response && !rw.answered && !rw.resumable {
                        let name = gw
                            .cfg
                            .backends
                            .get(r.ctx.backend)
                            .map(|b| b.name.as_str())
                            .unwrap_or("?");
                        let why = if cut {
                            "cut its event stream mid-event"
                        } else {
                            "closed its event stream without answering"
                        };
                        host.log(Level::Warn, &format!("backend {name} {why}"));
                        append_error_event(
                            &mut out,
                            r.ctx.request_id.as_deref(),
                            &format!("backend {name} {why}"),
                        );
                    }
                }
                ResponseBodyAction::Replace(out)
            }
        }
    }
}

#[derive(Clone, Copy)]
enum NameKind {
    Tool,
    Prompt,
}

impl NameKind {
    fn label(self) -> &'static str {
        match self {
            NameKind::Tool => "tool",
            NameKind::Prompt => "prompt",
        }
    }
}

impl Resolved<'_> {
    fn into_owned_parts(self) -> Option<(usize, String)> {
        match self {
            Resolved::Backend(i, o) => Some((i, o.into_owned())),
            _ => None,
        }
    }
}

fn supported_list() -> String {
    Version::SERVED
        .iter()
        .map(|v| v.as_str())
        .collect::<Vec<_>>()
        .join(", ")
}

fn result_json_str(id: &str, result: &str) -> String {
    match RawValue::from_string(id.to_string()) {
        Ok(raw) => result_json(&raw, result),
        Err(_) => error_json(None, INTERNAL_ERROR, "bad id", None),
    }
}

/// The message `body` with the top-level `member` replaced (raw JSON text);
/// every other member is kept byte for byte.
fn replace_member(body: &[u8], member: &str, value: &str) -> Option<Vec<u8>> {
    let text = std::str::from_utf8(body).ok()?;
    let obj = RawObject::parse_str(text.trim_start_matches('\u{feff}').trim()).ok()?;
    Some(obj.write_with(&[(member, value)]).into_bytes())
}

fn append_error_event(out: &mut Vec<u8>, id: Option<&str>, message: &str) {
    let raw = id.and_then(|i| RawValue::from_string(i.to_string()).ok());
    let e =
        crate::protocol::sse::Event::data(error_json(raw.as_deref(), BACKEND_ERROR, message, None));
    e.write(out);
}

#[cfg(test)]
#[path = "exchange_tests.rs"]
mod tests;
