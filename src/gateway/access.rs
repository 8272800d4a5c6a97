//! Who may talk to the gateway and what they may reach: CORS for browser
//! clients, the OAuth metadata endpoints, the 401/403 challenges, and the
//! policy decision applied on the way to a backend and to every list. The
//! tokens are in `auth`, the decision in `policy`.

use super::auth::{self, AsMetadata, Authn, AS_METADATA_PATHS};
use super::error::GatewayError;
use super::exchange::{Call, Exchange, FanOp, FanOut, State};
use super::host::{CallResponse, HeadersAction, Host, Level, LocalResponse, Outbound};
use super::policy::{Access, Caller, Decision, Resource};
use super::stats::ErrorKind;
use crate::protocol::http::path_only;
use crate::protocol::jsonrpc::{error_json, INVALID_REQUEST};

const AS_CACHE_KEY: &str = "mcpgw.as_metadata";
const ALLOW_HEADERS: &str =
    "authorization, content-type, accept, mcp-session-id, mcp-protocol-version, last-event-id, mcp-method, mcp-name";
const EXPOSE_HEADERS: &str = "mcp-session-id, mcp-protocol-version, www-authenticate";

impl Exchange {
    /// CORS headers for a request from an allowed browser origin.
    pub(super) fn cors_for(&mut self, origin: &str) {
        self.req.cors = vec![
            ("access-control-allow-origin".into(), origin.to_string()),
            (
                "access-control-expose-headers".into(),
                EXPOSE_HEADERS.into(),
            ),
            ("vary".into(), "Origin".into()),
        ];
    }

    /// Answer a CORS preflight for the MCP endpoint.
    pub(super) fn preflight(&mut self) -> LocalResponse {
        let mut r = LocalResponse::empty(204)
            .with_header("access-control-allow-methods", "GET, POST, DELETE, OPTIONS")
            .with_header("access-control-allow-headers", ALLOW_HEADERS)
            .with_header("access-control-max-age", "86400");
        r.headers.extend(self.req.cors.iter().cloned());
        self.respond(r)
    }

    /// The OAuth discovery documents (RFC 9728, and RFC 8414 / OIDC for
    /// 2025-03-26 clients). `None` when `path` is not one of them.
    pub(super) fn well_known(
        &mut self,
        host: &mut dyn Host,
        method: &str,
        path: &str,
    ) -> Option<HeadersAction> {
        let auth = self.gw.cfg.auth.as_ref()?;
        let p = path_only(path);
        let prm = auth.serves_metadata(p);
        let as_md = AS_METADATA_PATHS.contains(&p) && auth.as_metadata.is_some();
        if !prm && !as_md {
            return None;
        }
        let origin = auth.metadata_cors_origin.clone();
        let r = match method {
            "OPTIONS" => LocalResponse::empty(204)
                .with_header("access-control-allow-origin", origin)
                .with_header("access-control-allow-methods", "GET, OPTIONS")
                .with_header("access-control-allow-headers", "*")
                .with_header("access-control-max-age", "86400"),
            "GET" if prm => auth.metadata_response(),
            "GET" => return Some(self.as_metadata(host)),
            _ => GatewayError::metadata_method_not_allowed().response(None),
        };
        Some(HeadersAction::Respond(self.respond(r)))
    }

    fn as_metadata(&mut self, host: &mut dyn Host) -> HeadersAction {
        let Some(auth) = self.gw.cfg.auth.as_ref() else {
            return HeadersAction::Continue(Vec::new());
        };
        let cors = auth.metadata_cors_origin.clone();
        let doc = |body: Vec<u8>| {
            LocalResponse {
                status: 200,
                headers: vec![("content-type".into(), "application/json".into())],
                body,
            }
            .with_header("access-control-allow-origin", cors.clone())
        };
        match &auth.as_metadata {
            Some(AsMetadata::Inline(json)) => {
                let r = doc(json.clone().into_bytes());
                HeadersAction::Respond(self.respond(r))
            }
            Some(AsMetadata::Fetch {
                cluster,
                path,
                authority,
                ..
            }) => {
                // A copy shared by all workers, fetched again when stale.
                if let (Some(v), _) = host.shared_get(AS_CACHE_KEY) {
                    let fresh = v
                        .get(..8)
                        .and_then(|b| <[u8; 8]>::try_from(b).ok())
                        .is_some_and(|e| u64::from_be_bytes(e) > host.now_ms());
                    if fresh {
                        let r = doc(v.get(8..).unwrap_or_default().to_vec());
                        return HeadersAction::Respond(self.respond(r));
                    }
                }
                let call = Outbound {
                    cluster: cluster.clone(),
                    headers: vec![
                        (":method".into(), "GET".into()),
                        (":path".into(), path.clone()),
                        (":authority".into(), authority.clone()),
                        ("accept".into(), "application/json".into()),
                    ],
                    body: Vec::new(),
                    timeout_ms: 10_000,
                };
                match host.dispatch(&call) {
                    Ok(token) => {
                        self.state = State::FanOut(FanOut {
                            op: FanOp::AsMetadata,
                            calls: vec![Call {
                                token: Some(token),
                                backend: usize::MAX,
                                response: None,
                            }],
                        });
                        HeadersAction::Wait
                    }
                    Err(_) => {
                        host.log(
                            Level::Error,
                            &format!(
                                "cannot fetch authorization server metadata: no cluster {cluster}"
                            ),
                        );
                        let r = GatewayError::as_metadata_unavailable().response(None);
                        HeadersAction::Respond(self.respond(r))
                    }
                }
            }
            None => HeadersAction::Continue(Vec::new()),
        }
    }

    /// The fetched issuer metadata: cache it and answer.
    pub(super) fn finish_as_metadata(
        &mut self,
        host: &mut dyn Host,
        response: CallResponse,
    ) -> LocalResponse {
        let Some(auth) = self.gw.cfg.auth.as_ref() else {
            return LocalResponse::empty(404);
        };
        let valid = response.status == 200
            && serde_json::from_slice::<serde_json::Value>(&response.body)
                .is_ok_and(|v| v.is_object());
        if !valid {
            host.log(
                Level::Warn,
                &format!(
                    "authorization server metadata fetch failed: HTTP {}",
                    response.status
                ),
            );
            return GatewayError::as_metadata_unavailable().response(None);
        }
        if let Some(AsMetadata::Fetch { cache_ms, .. }) = &auth.as_metadata {
            let mut v = host
                .now_ms()
                .saturating_add(*cache_ms)
                .to_be_bytes()
                .to_vec();
            v.extend_from_slice(&response.body);
            let _ = host.shared_set(AS_CACHE_KEY, &v, 0);
        }
        LocalResponse {
            status: 200,
            headers: vec![("content-type".into(), "application/json".into())],
            body: response.body,
        }
        .with_header(
            "access-control-allow-origin",
            auth.metadata_cors_origin.clone(),
        )
    }

    /// With `auth` configured: establish the caller or answer 401.
    pub(super) fn authenticate(
        &mut self,
        host: &mut dyn Host,
        headers: &[(String, String)],
    ) -> Result<(), LocalResponse> {
        let Some(auth) = self.gw.cfg.auth.as_ref() else {
            return Ok(());
        };
        match auth::authenticate(auth, headers, host) {
            Authn::Ok(p) => {
                self.req.principal = Some(p);
                Ok(())
            }
            Authn::Missing => {
                self.req.stats.error.get_or_insert(ErrorKind::Unauthorized);
                let r = auth.unauthorized(false, &self.req.cors);
                Err(self.respond(r))
            }
            Authn::Invalid(why) => {
                host.log(Level::Info, &format!("401: {why}"));
                self.req.stats.error.get_or_insert(ErrorKind::Unauthorized);
                let r = auth.unauthorized(true, &self.req.cors);
                Err(self.respond(r))
            }
        }
    }

    /// The digest the session must carry, when callers are authenticated.
    pub(super) fn principal_digest(&self) -> Option<[u8; 16]> {
        self.req
            .principal
            .as_ref()
            .map(|p| auth::principal_digest(&self.gw.cfg.keys, p))
    }

    /// The caller as the policy sees it.
    pub(super) fn caller(&self) -> Caller<'_> {
        Caller {
            principal: self.req.principal.as_ref(),
            http_method: &self.req.http_method,
            path: &self.req.path,
            host: &self.req.authority,
            headers: &self.req.headers,
        }
    }

    /// The policy's decision for `access`, recorded for the audit log. `Err`
    /// is the 403 answer (with the step-up challenge when more scopes would
    /// allow it); nothing denied reaches a backend.
    pub(super) fn authorize(
        &mut self,
        host: &dyn Host,
        access: Access<'_>,
    ) -> Result<(), LocalResponse> {
        let gw = std::sync::Arc::clone(&self.gw);
        let Some(policy) = gw.cfg.authorization.as_ref() else {
            self.req
                .audit
                .decided(&access.resource, access.method, true, "none");
            return Ok(());
        };
        let decision = policy.authorize(&self.caller(), &access);
        let rule = policy.rule_name(decision.rule()).to_string();
        self.req
            .audit
            .decided(&access.resource, access.method, decision.allowed(), &rule);
        let Decision::Deny { step_up, .. } = decision else {
            return Ok(());
        };
        let r = access.resource;
        let what = match r.kind {
            super::policy::Kind::Task => format!("tasks of backend {} are not allowed", r.backend),
            _ => format!(
                "{} {} of backend {} is not allowed",
                r.kind_label(),
                r.label(),
                r.backend
            ),
        };
        let who = self
            .req
            .principal
            .as_ref()
            .map(|p| p.subject.clone())
            .unwrap_or_else(|| "an anonymous caller".into());
        host.log(Level::Info, &format!("403 for {who}: {what} (rule {rule})"));
        self.req.stats.error.get_or_insert(ErrorKind::Forbidden);
        // Keep what the token holds so the new one does not lose it.
        let scope = step_up.filter(|s| !s.is_empty()).map(|missing| {
            let mut all: Vec<String> = self
                .req
                .principal
                .as_ref()
                .map(|p| p.scopes.clone())
                .unwrap_or_default();
            for s in missing {
                if !all.contains(&s) {
                    all.push(s);
                }
            }
            all.join(" ")
        });
        let r = forbidden(
            gw.cfg.auth.as_ref().map(|a| a.metadata_url.as_str()),
            self.req.request_id.as_deref(),
            scope.as_deref(),
            &what,
            &self.req.cors,
        );
        Err(self.respond(r))
    }

    /// The list filter: whether some use of `resource` could be allowed.
    pub(super) fn visible(&self, resource: Resource<'_>) -> bool {
        match self.gw.cfg.authorization.as_ref() {
            Some(p) => p.may_use(&self.caller(), resource),
            None => true,
        }
    }
}

/// 403 with an `insufficient_scope` challenge (RFC 6750 section 3.1; MCP
/// "Scope Challenge Handling") and a JSON-RPC error body.
pub(super) fn forbidden(
    metadata_url: Option<&str>,
    id: Option<&str>,
    scope: Option<&str>,
    what: &str,
    cors: &[(String, String)],
) -> LocalResponse {
    let mut challenge = String::from("Bearer error=\"insufficient_scope\"");
    if let Some(s) = scope {
        challenge.push_str(&format!(", scope=\"{s}\""));
    }
    if let Some(u) = metadata_url {
        challenge.push_str(&format!(", resource_metadata=\"{u}\""));
    }
    let raw = id.and_then(|i| serde_json::value::RawValue::from_string(i.to_string()).ok());
    let body = error_json(
        raw.as_deref(),
        INVALID_REQUEST,
        &format!("Forbidden: {what}"),
        None,
    );
    let mut r = LocalResponse::json(403, body).with_header("www-authenticate", challenge);
    r.headers.extend(cors.iter().cloned());
    r
}
