//! Where a request waits for its upstream credentials, and how it goes on.
//!
//! The hooks ask for a credential at two points: a routed request about to
//! be forwarded ([`Exchange::with_credential`]) and each fan-out call about
//! to be sent ([`Exchange::send_call`]). A cached token is attached at once;
//! otherwise the request leads an exchange (its answer comes back through
//! `call_done`) or follows another request's (it is woken). What waited
//! ([`Then`]) goes on when the credential is known: the routed request is
//! forwarded or answered with the failure; a fan-out call is sent, or counts
//! as that backend's failure while the other backends answer.

use super::assertion::{self, Claims};
use super::cache::{reuse_ms, Key, Lookup};
use super::codec::{self, Failure};
use super::config::{Actor, TokenExchange};
use crate::gateway::error::GatewayError;
use crate::gateway::exchange::{Call, Exchange, State};
use crate::gateway::host::{
    BodyAction, CallId, CallResponse, HeaderOp, HeadersAction, Host, Level, LocalResponse, Outbound,
};
use crate::gateway::stats::ErrorKind;
use crate::protocol::http::AUTHORIZATION;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use std::sync::Arc;

/// A request's credential bookkeeping.
#[derive(Default)]
pub struct Waits {
    /// Exchanges this request leads: call id, key, when it started.
    leading: Vec<(CallId, Key, u64)>,
    /// Keys of other requests' exchanges this request waits for.
    following: Vec<Key>,
    /// What waits for a backend's credential.
    then: Vec<Then>,
    /// Credentials this request already has, by backend.
    resolved: Vec<(usize, Arc<str>)>,
    /// Backends whose fan-out credential failed in this request.
    failed: Vec<(usize, Failure)>,
    /// The routed request carries its credential (or needs none).
    attached: bool,
    /// The routed request's decision once its credential is known.
    resolved_forward: Option<BodyAction>,
}

enum Then {
    /// The routed request: forward it with these changes.
    Forward {
        backend: usize,
        headers: Vec<HeaderOp>,
        body: Option<Vec<u8>>,
    },
    /// A fan-out call to send.
    Dispatch { backend: usize, call: Outbound },
}

impl Then {
    fn backend(&self) -> usize {
        match self {
            Then::Forward { backend, .. } | Then::Dispatch { backend, .. } => *backend,
        }
    }
}

enum Credential {
    Ready(Arc<str>),
    Wait,
    Failed(Failure),
}

/// How a fan-out call went.
pub(crate) enum Sent {
    Call(CallId),
    /// Sent once its credential is known.
    Deferred,
    /// Not sent: why (the backend's failure in the merged answer).
    Failed(String),
    /// Not sent and left out: the host refused it (logged).
    Dropped,
}

impl Exchange {
    fn token_exchange(&self, i: usize) -> Option<&TokenExchange> {
        self.gw.cfg.backends.get(i)?.token_exchange.as_deref()
    }

    /// Whether calls or the routed request still wait for credentials.
    pub(crate) fn awaiting_credentials(&self) -> bool {
        !self.upstream.then.is_empty()
    }

    /// Whether side call `id` is a token exchange this request leads.
    pub(crate) fn leads_exchange(&self, id: CallId) -> bool {
        self.upstream.leading.iter().any(|(c, _, _)| *c == id)
    }

    // ----- the two points that need credentials ---------------------------------

    /// A routed request about to go upstream: attach its backend's credential,
    /// or hold it until the credential is known.
    pub(crate) fn with_credential(
        &mut self,
        host: &mut dyn Host,
        action: BodyAction,
    ) -> BodyAction {
        let BodyAction::Forward { mut headers, body } = action else {
            return action;
        };
        let State::Routed(r) = &self.state else {
            return BodyAction::Forward { headers, body };
        };
        let backend = r.ctx.backend;
        if self.upstream.attached || self.token_exchange(backend).is_none() {
            self.upstream.attached = true;
            return BodyAction::Forward { headers, body };
        }
        match self.credential(host, backend) {
            Credential::Ready(v) => {
                self.upstream.attached = true;
                headers.push(self.credential_header(backend, &v));
                BodyAction::Forward { headers, body }
            }
            Credential::Wait => {
                self.upstream.then.push(Then::Forward {
                    backend,
                    headers,
                    body,
                });
                BodyAction::Wait
            }
            Credential::Failed(f) => BodyAction::Respond(self.credential_failed(host, backend, &f)),
        }
    }

    /// The same for a routed request decided on its headers (a GET stream).
    pub(crate) fn with_credential_headers(
        &mut self,
        host: &mut dyn Host,
        action: HeadersAction,
    ) -> HeadersAction {
        let HeadersAction::Continue(ops) = action else {
            return action;
        };
        if !matches!(self.state, State::Routed(_)) {
            return HeadersAction::Continue(ops);
        }
        match self.with_credential(
            host,
            BodyAction::Forward {
                headers: ops,
                body: None,
            },
        ) {
            BodyAction::Forward { headers, .. } => HeadersAction::Continue(headers),
            BodyAction::Wait => HeadersAction::Wait,
            BodyAction::Respond(r) => HeadersAction::Respond(r),
        }
    }

    /// Send fan-out call `call` to backend `i`, with its credential.
    pub(crate) fn send_call(&mut self, host: &mut dyn Host, i: usize, mut call: Outbound) -> Sent {
        if self.token_exchange(i).is_some() {
            match self.credential(host, i) {
                Credential::Ready(v) => {
                    if let HeaderOp::Set(k, v) = self.credential_header(i, &v) {
                        call.headers.push((k, v));
                    }
                }
                Credential::Wait => {
                    self.upstream.then.push(Then::Dispatch { backend: i, call });
                    return Sent::Deferred;
                }
                Credential::Failed(f) => {
                    let why = failure_reason(&f);
                    self.upstream.failed.push((i, f));
                    return Sent::Failed(why);
                }
            }
        }
        match host.dispatch(&call) {
            Ok(id) => Sent::Call(id),
            Err(_) => {
                self.log_backend(
                    host,
                    i,
                    "could not dispatch a call (is its cluster defined?)",
                );
                Sent::Dropped
            }
        }
    }

    /// Whether backend `i`'s credential failed in this request's fan-out.
    pub(crate) fn credential_failed_in_fanout(&self, i: usize) -> bool {
        self.upstream.failed.iter().any(|(b, _)| *b == i)
    }

    /// The client's answer when the request needs backend `i` alone and its
    /// credential failed in this request's fan-out (learning it): what a
    /// routed request gets for the same failure.
    pub(crate) fn fanout_credential_failed(
        &mut self,
        host: &dyn Host,
        i: usize,
    ) -> Option<LocalResponse> {
        let (_, f) = self.upstream.failed.iter().find(|(b, _)| *b == i)?;
        let f = f.clone();
        Some(self.credential_failed(host, i, &f))
    }

    /// Backend `i`'s credential header for a call that cannot wait for an
    /// exchange (a stream opened at once, an answer to a backend's request):
    /// `Some(None)` when it needs none, `None` when it is not at hand (this
    /// request's own, or a fresh one in the cache).
    pub(crate) fn credential_at_hand(
        &self,
        host: &dyn Host,
        i: usize,
    ) -> Option<Option<(String, String)>> {
        if self.token_exchange(i).is_none() {
            return Some(None);
        }
        let value = match self.upstream.resolved.iter().find(|(b, _)| *b == i) {
            Some((_, v)) => Arc::clone(v),
            None => {
                let key = self.key(i)?;
                self.gw.tokens.cache(i)?.peek(&key, host.now_ms())?
            }
        };
        match self.credential_header(i, &value) {
            HeaderOp::Set(k, v) => Some(Some((k, v))),
            _ => None,
        }
    }

    fn credential_header(&self, i: usize, value: &str) -> HeaderOp {
        let name = self
            .token_exchange(i)
            .map_or(AUTHORIZATION, |te| te.header.as_str());
        HeaderOp::Set(name.to_string(), value.to_string())
    }

    // ----- finding a credential -----------------------------------------------------

    fn credential(&mut self, host: &mut dyn Host, i: usize) -> Credential {
        if let Some((_, v)) = self.upstream.resolved.iter().find(|(b, _)| *b == i) {
            return Credential::Ready(Arc::clone(v));
        }
        let Some(key) = self.key(i) else {
            return Credential::Failed(Failure::Refused {
                error: "unauthenticated".into(),
                description: "no verified caller to exchange a token for".into(),
            });
        };
        if self.upstream.following.contains(&key)
            || self.upstream.leading.iter().any(|(_, k, _)| *k == key)
        {
            return Credential::Wait;
        }
        self.look_up(host, key)
    }

    fn key(&self, i: usize) -> Option<Key> {
        let p = self.req.principal.as_ref()?;
        Some(Key::new(i, &p.issuer, &p.subject, &p.scopes))
    }

    /// Consult the cache for `key`: hit, failure, follow, or lead.
    fn look_up(&mut self, host: &mut dyn Host, key: Key) -> Credential {
        let gw = Arc::clone(&self.gw);
        let (Some(cache), Some(te)) = (
            gw.tokens.cache(key.backend),
            self.token_exchange(key.backend),
        ) else {
            return Credential::Failed(Failure::BadResponse("no token exchange configured".into()));
        };
        let now = host.now_ms();
        let me = host.stream_id();
        let meters = &gw.tokens.meters;
        match cache.lookup(&key, now, me, te.timeout_ms) {
            Lookup::Hit(v) => {
                meters.lookup(host, key.backend, "hit");
                self.upstream.resolved.push((key.backend, Arc::clone(&v)));
                Credential::Ready(v)
            }
            Lookup::Failed(f) => {
                meters.lookup(host, key.backend, "failed");
                Credential::Failed(f)
            }
            Lookup::Follow { deadline_ms } => {
                meters.lookup(host, key.backend, "shared");
                self.upstream.following.push(key);
                if let Some(me) = me {
                    host.wake(me, Some(deadline_ms));
                }
                Credential::Wait
            }
            Lookup::Lead => {
                meters.lookup(host, key.backend, "miss");
                match self.start_exchange(host, key) {
                    Ok(()) => Credential::Wait,
                    Err(f) => {
                        self.log_failure(host, key.backend, &f);
                        meters.exchange(host, key.backend, f.outcome(), 0);
                        for id in cache.complete(&key, now, Err(f.clone())) {
                            host.wake(id, None);
                        }
                        Credential::Failed(f)
                    }
                }
            }
        }
    }

    /// Send the exchange request for `key`.
    fn start_exchange(&mut self, host: &mut dyn Host, key: Key) -> Result<(), Failure> {
        let gw = Arc::clone(&self.gw);
        let Some(te) = gw
            .cfg
            .backends
            .get(key.backend)
            .and_then(|b| b.token_exchange.as_deref())
        else {
            return Err(Failure::BadResponse("no token exchange configured".into()));
        };
        let subject = self.subject_token().ok_or_else(|| Failure::Refused {
            error: "invalid_request".into(),
            description: "the request's bearer token is not the verified one".into(),
        })?;
        let now = host.now_ms();
        let actor = match &te.actor {
            None => None,
            Some(Actor::Static { token, .. }) => Some(token.clone()),
            Some(Actor::Assertion(a)) => {
                let claims = Claims {
                    issuer: &a.issuer,
                    subject: &a.subject,
                    audience: &a.audience,
                    key_id: a.key_id.as_deref(),
                    now_ms: now,
                    lifetime_ms: a.lifetime_ms,
                };
                let signed = assertion::sign(&a.key, &claims, host).ok_or_else(|| {
                    Failure::Unavailable("no randomness to sign the actor assertion".into())
                })?;
                Some(signed)
            }
        };
        let call = codec::request(te, &subject, actor.as_deref());
        let id = host.dispatch(&call).map_err(|_| {
            Failure::Unavailable(format!(
                "cannot call cluster {} (is it defined?)",
                te.cluster
            ))
        })?;
        self.upstream.leading.push((id, key, now));
        Ok(())
    }

    /// The client's bearer token, if it is the one jwt_authn verified (its
    /// issuer and subject are the principal's).
    fn subject_token(&self) -> Option<String> {
        let p = self.req.principal.as_ref()?;
        let v = self.req.authorization.as_deref()?.trim();
        let token = v
            .get(..7)
            .filter(|s| s.eq_ignore_ascii_case("bearer "))
            .and_then(|_| v.get(7..))?
            .trim();
        let payload = token.split('.').nth(1)?;
        let bytes = URL_SAFE_NO_PAD.decode(payload.trim_end_matches('=')).ok()?;
        let claims: serde_json::Value = serde_json::from_slice(&bytes).ok()?;
        let same = claims.get("iss").and_then(|v| v.as_str()) == Some(p.issuer.as_str())
            && claims.get("sub").and_then(|v| v.as_str()) == Some(p.subject.as_str());
        same.then(|| token.to_string())
    }

    // ----- when a credential is known -------------------------------------------------

    /// The answer to exchange `id` (this request leads it).
    pub(crate) fn on_exchange_response(
        &mut self,
        host: &mut dyn Host,
        id: CallId,
        response: CallResponse,
    ) -> BodyAction {
        let Some(pos) = self.upstream.leading.iter().position(|(c, _, _)| *c == id) else {
            return BodyAction::Wait;
        };
        let (_, key, started) = self.upstream.leading.remove(pos);
        let gw = Arc::clone(&self.gw);
        let (Some(cache), Some(te)) = (
            gw.tokens.cache(key.backend),
            self.token_exchange(key.backend),
        ) else {
            return BodyAction::Wait;
        };
        let now = host.now_ms();
        let outcome = codec::response(&response, te.timeout_ms).map(|issued| {
            let value: Arc<str> = format!("{}{}", te.value_prefix, issued.access_token).into();
            (value, reuse_ms(issued.lifetime_s, te.max_ttl_ms))
        });
        let label = outcome.as_ref().err().map_or("ok", Failure::outcome);
        gw.tokens
            .meters
            .exchange(host, key.backend, label, now.saturating_sub(started));
        if let Err(f) = &outcome {
            self.log_failure(host, key.backend, f);
        }
        let result = outcome
            .as_ref()
            .map(|(v, _)| Arc::clone(v))
            .map_err(Clone::clone);
        for follower in cache.complete(&key, now, outcome) {
            host.wake(follower, None);
        }
        self.resolve(host, key.backend, result);
        self.go_on(host)
    }

    /// Woken: the exchanges this request follows may have ended.
    pub(crate) fn on_woken(&mut self, host: &mut dyn Host) -> BodyAction {
        let following = std::mem::take(&mut self.upstream.following);
        if following.is_empty() {
            return BodyAction::Wait;
        }
        for key in following {
            match self.look_up(host, key) {
                Credential::Ready(v) => self.resolve(host, key.backend, Ok(v)),
                Credential::Failed(f) => self.resolve(host, key.backend, Err(f)),
                Credential::Wait => {}
            }
        }
        self.go_on(host)
    }

    /// Backend `i`'s credential is known: what waited for it goes on.
    fn resolve(&mut self, host: &mut dyn Host, i: usize, result: Result<Arc<str>, Failure>) {
        if let Ok(v) = &result {
            if !self.upstream.resolved.iter().any(|(b, _)| *b == i) {
                self.upstream.resolved.push((i, Arc::clone(v)));
            }
        }
        let (ready, rest): (Vec<Then>, Vec<Then>) = std::mem::take(&mut self.upstream.then)
            .into_iter()
            .partition(|t| t.backend() == i);
        self.upstream.then = rest;
        for t in ready {
            match (t, &result) {
                (Then::Forward { headers, body, .. }, Ok(v)) => {
                    let mut headers = headers;
                    headers.push(self.credential_header(i, v));
                    self.upstream.attached = true;
                    self.upstream.resolved_forward = Some(BodyAction::Forward { headers, body });
                }
                (Then::Forward { .. }, Err(f)) => {
                    let r = self.credential_failed(host, i, f);
                    self.upstream.resolved_forward = Some(BodyAction::Respond(r));
                }
                (Then::Dispatch { call, .. }, Ok(v)) => {
                    let mut call = call;
                    if let HeaderOp::Set(k, v) = self.credential_header(i, v) {
                        call.headers.push((k, v));
                    }
                    let sent = match host.dispatch(&call) {
                        Ok(id) => Sent::Call(id),
                        Err(_) => {
                            self.log_backend(
                                host,
                                i,
                                "could not dispatch a call (is its cluster defined?)",
                            );
                            Sent::Dropped
                        }
                    };
                    self.add_call(i, sent);
                }
                (Then::Dispatch { .. }, Err(f)) => {
                    self.upstream.failed.push((i, f.clone()));
                    self.add_call(i, Sent::Failed(failure_reason(f)))
                }
            }
        }
    }

    /// A deferred fan-out call joins the fan-out.
    pub(crate) fn add_call(&mut self, backend: usize, sent: Sent) {
        let State::FanOut(f) = &mut self.state else {
            return;
        };
        match sent {
            Sent::Call(id) => f.calls.push(Call {
                token: Some(id),
                backend,
                response: None,
            }),
            Sent::Failed(why) => f.calls.push(Call::failed(backend, why)),
            Sent::Deferred | Sent::Dropped => {}
        }
    }

    /// After credentials arrived: the routed request's decision, or the
    /// fan-out's if it is complete now.
    fn go_on(&mut self, host: &mut dyn Host) -> BodyAction {
        if let Some(a) = self.upstream.resolved_forward.take() {
            return a;
        }
        if matches!(self.state, State::FanOut(_)) {
            return self.maybe_finish(host).unwrap_or(BodyAction::Wait);
        }
        BodyAction::Wait
    }

    /// The request ended: exchanges it leads are handed to their followers,
    /// and it follows nothing any more.
    pub(crate) fn release_credentials(&mut self, host: &mut dyn Host) {
        let gw = Arc::clone(&self.gw);
        for (_, key, _) in std::mem::take(&mut self.upstream.leading) {
            if let Some(cache) = gw.tokens.cache(key.backend) {
                for id in cache.abandon(&key) {
                    host.wake(id, None);
                }
            }
        }
        // Only a request that waited on another has a stream id to drop:
        // asking for one makes it (a scheduler and a shared-map entry).
        let following = std::mem::take(&mut self.upstream.following);
        if let Some(me) = (!following.is_empty()).then(|| host.stream_id()).flatten() {
            for key in following {
                if let Some(cache) = gw.tokens.cache(key.backend) {
                    cache.unfollow(&key, me);
                }
            }
        }
        self.upstream.then.clear();
    }

    // ----- failures ---------------------------------------------------------------------

    fn log_failure(&self, host: &dyn Host, i: usize, f: &Failure) {
        let who = self
            .req
            .principal
            .as_ref()
            .map(|p| codec::sanitize(&p.subject, 64))
            .unwrap_or_default();
        let level = match f {
            Failure::Refused { .. } => Level::Info,
            Failure::ClientRejected { .. } => Level::Error,
            Failure::Unavailable(_) | Failure::BadResponse(_) => Level::Warn,
        };
        let hint = match f {
            Failure::ClientRejected { .. } => {
                "; check client_auth (client_id, client_secret, method)"
            }
            _ => "",
        };
        let name = self.gw.backend_name(i);
        host.log(
            level,
            &format!(
                "backend {name}: token exchange for {who} failed ({}): {}{hint}",
                f.outcome(),
                f.describe()
            ),
        );
    }

    /// The client's answer when the routed request's credential failed.
    fn credential_failed(&mut self, host: &dyn Host, i: usize, f: &Failure) -> LocalResponse {
        self.note(ErrorKind::TokenExchange);
        let expects = match &self.state {
            State::Routed(r) => r.expects_response,
            _ => true,
        };
        let name = self.gw.backend_name(i).to_string();
        if let Failure::Refused { error, .. } = f {
            if let Some(r) = self.step_up(host, i, error) {
                return self.respond(r);
            }
            return self.fail(GatewayError::credential_refused(&name, error, expects));
        }
        self.fail(GatewayError::credential_unavailable(
            &name,
            &failure_reason(f),
            expects,
        ))
    }

    /// A 403 with an `insufficient_scope` challenge, when the backend names
    /// the scopes its exchange needs and the client's token lacks some.
    fn step_up(&mut self, host: &dyn Host, i: usize, error: &str) -> Option<LocalResponse> {
        let te = self.token_exchange(i)?;
        let auth = self.gw.cfg.auth.as_ref()?;
        let p = self.req.principal.as_ref()?;
        if te.step_up_scopes.is_empty() || te.step_up_scopes.iter().all(|s| p.scopes.contains(s)) {
            return None;
        }
        let mut scopes = p.scopes.clone();
        for s in &te.step_up_scopes {
            if !scopes.contains(s) {
                scopes.push(s.clone());
            }
        }
        let name = self.gw.backend_name(i);
        let what = format!("the token service refused a token for backend {name} ({error}); more scopes are needed");
        host.log(Level::Info, &format!("403 for {}: {what}", p.subject));
        self.req.stats.error.get_or_insert(ErrorKind::Forbidden);
        Some(crate::gateway::access::forbidden(
            Some(auth.metadata_url.as_str()),
            self.req.request_id.as_deref(),
            Some(&scopes.join(" ")),
            &what,
            &self.req.cors,
        ))
    }
}

/// What a failed credential means for its backend's call.
fn failure_reason(f: &Failure) -> String {
    match f {
        Failure::Refused { error, .. } => {
            format!("the token service refused a token for this user ({error})")
        }
        Failure::ClientRejected { error, .. } => {
            format!("the token service rejected the gateway's client credentials ({error})")
        }
        Failure::Unavailable(s) => format!("token exchange failed: {s}"),
        Failure::BadResponse(s) => format!("token exchange failed: {s}"),
    }
}
