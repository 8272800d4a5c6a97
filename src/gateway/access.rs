//! Who may talk to the gateway and what they may reach: CORS for browser
//! clients, the OAuth metadata endpoints, the 401/403 challenges, and the
//! per-tool checks on the way to a backend. The policy itself is in `auth`.

use super::auth::{self, AsMetadata, Authn, Grants, AS_METADATA_PATHS};
use super::error::GatewayError;
use super::exchange::{Call, Exchange, FanOp, FanOut, State};
use super::host::{CallResponse, HeadersAction, Host, Level, LocalResponse, Outbound};
use super::stats::ErrorKind;
use crate::protocol::http::path_only;

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
                                token,
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

    /// May the caller use backend `i` for the current request? `Err` is the
    /// 403 step-up answer. Tool calls are checked by tool, everything else by
    /// backend.
    pub(super) fn authorize(&mut self, host: &dyn Host, i: usize) -> Result<(), LocalResponse> {
        let (Some(auth), Some(p)) = (self.gw.cfg.auth.as_ref(), self.req.principal.as_ref()) else {
            return Ok(());
        };
        let Some(b) = self.gw.cfg.backends.get(i) else {
            return Ok(());
        };
        let sep = &self.gw.cfg.separator;
        let grants = Grants::new(auth, p);
        let tool = self.req.tool.as_deref();
        let ok = match tool {
            Some(t) => grants.tool(&b.name, t),
            None => grants.backend(&b.name, sep),
        };
        if ok {
            return Ok(());
        }
        let scope = grants.step_up_scope(&b.name, tool, sep, &p.scopes);
        let what = match tool {
            Some(t) => format!("tool {t} is not allowed for this token"),
            None => format!("backend {} is not allowed for this token", b.name),
        };
        host.log(Level::Info, &format!("403 for {}: {what}", p.subject));
        self.req.stats.error.get_or_insert(ErrorKind::Forbidden);
        let r = auth.forbidden(
            self.req.request_id.as_deref(),
            scope.as_deref(),
            &what,
            &self.req.cors,
        );
        Err(self.respond(r))
    }

    /// The list filter for the caller: a tool by its visible name, or (for
    /// prompts, resources and templates) the backend.
    pub(super) fn visible(&self, backend: &str, tool: Option<&str>) -> bool {
        let (Some(auth), Some(p)) = (self.gw.cfg.auth.as_ref(), self.req.principal.as_ref()) else {
            return true;
        };
        let grants = Grants::new(auth, p);
        match tool {
            Some(t) => grants.tool(backend, t),
            None => grants.backend(backend, &self.gw.cfg.separator),
        }
    }
}
