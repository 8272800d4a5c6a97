//! Kubernetes-style YAML (one or more files, many documents each) ->
//! [`Gateway`]: an Envoy AI Gateway `MCPRoute` (`aigateway.envoyproxy.io`
//! `v1alpha1` or `v1beta1`, which have the same shape), the Envoy Gateway
//! `Backend`s it references (`gateway.envoyproxy.io/v1alpha1`), their
//! `BackendTLSPolicy`s (`gateway.networking.k8s.io`), and `Secret` /
//! `ConfigMap` documents holding API keys, CA certificates and JWKS.
//!
//! Field names and nesting follow the Go API types exactly; an unknown or
//! misspelled field is an error naming the document, the field and the fix.
//! Other kinds (Gateway, GatewayClass, ...) are skipped with a warning.

use crate::mcp_config::{Env, EnvCheck};
use crate::model::{
    escape_dollars, Backend, CaSource, Diagnostics, Gateway, Host, HttpTarget, Jwks, KubeMeta,
    NameFilter, OAuth, ParentRef, ProtectedResource, SecretEnv, SecretValue, Target, Tls,
};
use base64::Engine;
use serde::de::IgnoredAny;
use serde::Deserialize;
use serde_norway::Value;
use std::collections::BTreeMap;
use std::path::PathBuf;

/// What the input will be used for: `run`/`render` need every referenced
/// document; `render --kubernetes` accepts references to objects that exist
/// only in the cluster.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    Local,
    Kubernetes,
}

/// A loaded MCPRoute file set.
#[derive(Debug)]
pub struct Loaded {
    pub gateway: Gateway,
    /// `Backend` and `BackendTLSPolicy` documents as written, for
    /// `render --kubernetes` to pass on.
    pub passthrough: Vec<Value>,
}

// ---------------------------------------------------------------------------
// The API types (only what the documents may contain; unknown = error)
// ---------------------------------------------------------------------------

#[allow(dead_code)]
#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct ObjectMeta {
    #[serde(default)]
    name: String,
    #[serde(default)]
    namespace: Option<String>,
    #[serde(default)]
    labels: BTreeMap<String, String>,
    #[serde(default)]
    annotations: BTreeMap<String, String>,
    // Present in `kubectl get -o yaml` output; not used.
    #[serde(default)]
    uid: IgnoredAny,
    #[serde(default)]
    resource_version: IgnoredAny,
    #[serde(default)]
    generation: IgnoredAny,
    #[serde(default)]
    creation_timestamp: IgnoredAny,
    #[serde(default)]
    managed_fields: IgnoredAny,
    #[serde(default)]
    finalizers: IgnoredAny,
    #[serde(default)]
    owner_references: IgnoredAny,
    #[serde(default)]
    generate_name: IgnoredAny,
}

#[allow(dead_code)]
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct Doc<S> {
    #[allow(dead_code)]
    api_version: String,
    #[allow(dead_code)]
    kind: String,
    #[serde(default)]
    metadata: ObjectMeta,
    spec: S,
    #[serde(default)]
    #[allow(dead_code)]
    status: IgnoredAny,
}

#[allow(dead_code)]
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct McpRouteSpec {
    parent_refs: Vec<ParentReference>,
    #[serde(default)]
    path: Option<String>,
    #[serde(default)]
    headers: Vec<HttpHeaderMatch>,
    #[serde(default)]
    hostnames: Vec<String>,
    backend_refs: Vec<McpBackendRef>,
    #[serde(default)]
    security_policy: Option<RouteSecurityPolicy>,
    #[serde(default)]
    backend_selector: Option<IgnoredAny>,
}

#[allow(dead_code)]
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct ParentReference {
    #[serde(default)]
    group: Option<String>,
    #[serde(default)]
    kind: Option<String>,
    #[serde(default)]
    namespace: Option<String>,
    name: String,
    #[serde(default)]
    section_name: Option<String>,
    #[serde(default)]
    port: Option<u16>,
}

#[allow(dead_code)]
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct HttpHeaderMatch {
    #[serde(default, rename = "type")]
    #[allow(dead_code)]
    ty: Option<String>,
    #[allow(dead_code)]
    name: String,
    #[allow(dead_code)]
    value: String,
}

#[allow(dead_code)]
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct McpBackendRef {
    #[serde(default)]
    group: Option<String>,
    #[serde(default)]
    kind: Option<String>,
    name: String,
    #[serde(default)]
    namespace: Option<String>,
    #[serde(default)]
    port: Option<u16>,
    #[serde(default)]
    path: Option<String>,
    #[serde(default)]
    tool_selector: Option<ToolSelector>,
    #[serde(default)]
    security_policy: Option<BackendSecurityPolicy>,
    #[serde(default)]
    forward_headers: Vec<HeaderForward>,
}

#[allow(dead_code)]
#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct ToolSelector {
    #[serde(default)]
    include: Vec<String>,
    #[serde(default)]
    include_regex: Vec<String>,
    #[serde(default)]
    exclude: Vec<String>,
    #[serde(default)]
    exclude_regex: Vec<String>,
}

#[allow(dead_code)]
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct HeaderForward {
    name: String,
    #[serde(default)]
    backend_header: Option<String>,
}

#[allow(dead_code)]
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct BackendSecurityPolicy {
    #[serde(default)]
    api_key: Option<ApiKey>,
    /// Checked field by field in `token_exchange::parse`.
    #[serde(default)]
    token_exchange: Option<serde_json::Value>,
}

#[allow(dead_code)]
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct ApiKey {
    #[serde(default)]
    secret_ref: Option<SecretObjectReference>,
    #[serde(default)]
    inline: Option<String>,
    #[serde(default)]
    header: Option<String>,
    #[serde(default)]
    query_param: Option<String>,
}

#[allow(dead_code)]
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct SecretObjectReference {
    #[serde(default)]
    group: Option<String>,
    #[serde(default)]
    kind: Option<String>,
    name: String,
    #[serde(default)]
    namespace: Option<String>,
}

#[allow(dead_code)]
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct LocalObjectReference {
    #[serde(default)]
    group: Option<String>,
    #[serde(default)]
    kind: Option<String>,
    name: String,
}

#[allow(dead_code)]
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct RouteSecurityPolicy {
    #[serde(default)]
    oauth: Option<RouteOAuth>,
    #[serde(default)]
    api_key_auth: Option<IgnoredAny>,
    #[serde(default)]
    ext_auth: Option<IgnoredAny>,
    #[serde(default)]
    authorization: Option<RouteAuthorization>,
}

/// `securityPolicy.authorization` (Envoy AI Gateway's MCPRouteAuthorization).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct RouteAuthorization {
    #[serde(default)]
    default_action: Option<String>,
    #[serde(default)]
    rules: Vec<AuthorizationRule>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct AuthorizationRule {
    #[serde(default)]
    source: Option<AuthorizationSource>,
    #[serde(default)]
    target: Option<AuthorizationTarget>,
    #[serde(default)]
    cel: Option<String>,
    #[serde(default)]
    action: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct AuthorizationSource {
    jwt: JwtSource,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct JwtSource {
    #[serde(default)]
    scopes: Vec<String>,
    #[serde(default)]
    claims: Vec<JwtClaim>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct JwtClaim {
    name: String,
    #[serde(default)]
    value_type: Option<String>,
    values: Vec<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct AuthorizationTarget {
    tools: Vec<ToolCall>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct ToolCall {
    backend: String,
    tool: String,
}

#[allow(dead_code)]
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct RouteOAuth {
    issuer: String,
    #[serde(default)]
    audiences: Vec<String>,
    #[serde(default)]
    jwks: Option<JwksSpec>,
    protected_resource_metadata: ProtectedResourceMetadata,
    #[serde(default)]
    claim_to_headers: Vec<ClaimToHeader>,
}

#[allow(dead_code)]
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct JwksSpec {
    #[serde(default, rename = "remoteJWKS")]
    remote_jwks: Option<RemoteJwks>,
    #[serde(default, rename = "localJWKS")]
    local_jwks: Option<LocalJwks>,
}

#[allow(dead_code)]
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct RemoteJwks {
    uri: String,
    #[serde(default)]
    cache_duration: Option<String>,
    #[serde(default)]
    failed_refetch_duration: Option<String>,
    #[serde(default)]
    backend_ref: Option<IgnoredAny>,
    #[serde(default)]
    backend_refs: Option<IgnoredAny>,
    #[serde(default)]
    backend_settings: Option<IgnoredAny>,
}

#[allow(dead_code)]
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct LocalJwks {
    #[serde(rename = "type", default)]
    ty: Option<String>,
    #[serde(default)]
    inline: Option<String>,
    #[serde(default)]
    value_ref: Option<LocalObjectReference>,
}

#[allow(dead_code)]
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct ProtectedResourceMetadata {
    resource: String,
    #[serde(default)]
    resource_name: Option<String>,
    #[serde(default)]
    scopes_supported: Vec<String>,
    #[serde(default)]
    resource_signing_alg_values_supported: Vec<String>,
    #[serde(default)]
    resource_documentation: Option<String>,
    #[serde(default, rename = "resourcePolicyUri")]
    resource_policy_uri: Option<String>,
}

#[allow(dead_code)]
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct ClaimToHeader {
    header: String,
    claim: String,
}

#[allow(dead_code)]
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct BackendSpec {
    #[serde(default, rename = "type")]
    ty: Option<String>,
    #[serde(default)]
    endpoints: Vec<BackendEndpoint>,
    #[serde(default)]
    app_protocols: Vec<String>,
    #[serde(default)]
    fallback: Option<bool>,
    #[serde(default)]
    tls: Option<BackendTlsSettings>,
}

#[allow(dead_code)]
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct BackendEndpoint {
    #[serde(default)]
    hostname: Option<String>,
    #[serde(default)]
    fqdn: Option<FqdnEndpoint>,
    #[serde(default)]
    ip: Option<IpEndpoint>,
    #[serde(default)]
    unix: Option<IgnoredAny>,
    #[serde(default)]
    zone: Option<String>,
}

#[allow(dead_code)]
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct FqdnEndpoint {
    hostname: String,
    port: u16,
}

#[allow(dead_code)]
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct IpEndpoint {
    address: String,
    port: u16,
}

#[allow(dead_code)]
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct BackendTlsSettings {
    #[serde(default)]
    ca_certificate_refs: Vec<LocalObjectReference>,
    #[serde(default, rename = "wellKnownCACertificates")]
    well_known_ca_certificates: Option<String>,
    #[serde(default)]
    insecure_skip_verify: Option<bool>,
    #[serde(default)]
    sni: Option<String>,
    #[serde(default, rename = "autoSNIFromEndpointHostname")]
    auto_sni: Option<bool>,
    // BackendTLSConfig (inline): client certificate and TLS parameters.
    #[serde(default)]
    client_certificate_ref: Option<IgnoredAny>,
    #[serde(default)]
    min_version: Option<IgnoredAny>,
    #[serde(default)]
    max_version: Option<IgnoredAny>,
    #[serde(default)]
    ciphers: Option<IgnoredAny>,
    #[serde(default)]
    ecdh_curves: Option<IgnoredAny>,
    #[serde(default)]
    signature_algorithms: Option<IgnoredAny>,
    #[serde(default)]
    alpn_protocols: Option<IgnoredAny>,
}

#[allow(dead_code)]
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct BackendTlsPolicySpec {
    target_refs: Vec<PolicyTargetRef>,
    validation: TlsValidation,
    #[serde(default)]
    options: BTreeMap<String, String>,
}

#[allow(dead_code)]
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct PolicyTargetRef {
    #[serde(default)]
    group: Option<String>,
    kind: String,
    name: String,
    #[serde(default)]
    section_name: Option<String>,
}

#[allow(dead_code)]
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct TlsValidation {
    #[serde(default)]
    ca_certificate_refs: Vec<LocalObjectReference>,
    #[serde(default, rename = "wellKnownCACertificates")]
    well_known_ca_certificates: Option<String>,
    hostname: String,
    #[serde(default)]
    subject_alt_names: Vec<SubjectAltName>,
}

#[allow(dead_code)]
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct SubjectAltName {
    #[serde(rename = "type")]
    ty: String,
    #[serde(default)]
    hostname: Option<String>,
    #[serde(default)]
    uri: Option<String>,
}

/// Secret and ConfigMap (no `spec`).
#[allow(dead_code)]
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct DataDoc {
    #[allow(dead_code)]
    api_version: String,
    #[allow(dead_code)]
    kind: String,
    #[serde(default)]
    metadata: ObjectMeta,
    #[serde(default, rename = "type")]
    #[allow(dead_code)]
    ty: Option<String>,
    #[serde(default)]
    data: BTreeMap<String, String>,
    #[serde(default)]
    string_data: BTreeMap<String, String>,
    #[serde(default)]
    binary_data: BTreeMap<String, String>,
    #[serde(default)]
    #[allow(dead_code)]
    immutable: Option<bool>,
}

// ---------------------------------------------------------------------------
// Loading
// ---------------------------------------------------------------------------

struct Named<T> {
    at: String,
    name: String,
    namespace: String,
    value: T,
    raw: Value,
}

struct DataObj {
    at: String,
    /// Decoded values (data base64-decoded, stringData as is).
    values: BTreeMap<String, String>,
    annotations: BTreeMap<String, String>,
}

fn doc_label(kind: &str, name: &str, file: &str, index: usize) -> String {
    if name.is_empty() {
        format!("{file}: document {} ({kind})", index + 1)
    } else {
        format!("{file}: {kind} \"{name}\"")
    }
}

fn typed<T: for<'de> Deserialize<'de>>(
    at: &str,
    value: Value,
    fix_hint: &str,
) -> Result<T, String> {
    serde_path_to_error::deserialize(value).map_err(|e| {
        let path = e.path().to_string();
        let inner = e.inner().to_string();
        let fix = if inner.contains("unknown field") {
            format!("; remove it or fix its spelling ({fix_hint})")
        } else if inner.contains("missing field") {
            "; add it".to_string()
        } else {
            String::new()
        };
        let field = if path == "." {
            String::new()
        } else {
            format!("{path}: ")
        };
        format!("{at}: {field}{inner}{fix}")
    })
}

const MCPROUTE_HINT: &str =
    "see the MCPRoute API of Envoy AI Gateway, aigateway.envoyproxy.io/v1beta1";
const BACKEND_HINT: &str = "see the Backend API of Envoy Gateway, gateway.envoyproxy.io/v1alpha1";
const TLS_HINT: &str = "see BackendTLSPolicy in the Gateway API";
const DATA_HINT: &str = "a Secret or ConfigMap has metadata, data, stringData, type";

pub fn load(
    files: &[(PathBuf, String)],
    env: Env,
    check: EnvCheck,
    mode: Mode,
) -> Result<(Loaded, Diagnostics), String> {
    let mut diags = Diagnostics::default();
    let mut routes: Vec<Named<McpRouteSpec>> = Vec::new();
    let mut backends: Vec<Named<BackendSpec>> = Vec::new();
    let mut policies: Vec<Named<BackendTlsPolicySpec>> = Vec::new();
    let mut secrets: BTreeMap<(String, String), DataObj> = BTreeMap::new();
    let mut configmaps: BTreeMap<(String, String), DataObj> = BTreeMap::new();
    let mut sources = Vec::new();

    for (path, text) in files {
        let file = path.display().to_string();
        sources.push(file.clone());
        for (index, de) in serde_norway::Deserializer::from_str(text).enumerate() {
            let value = Value::deserialize(de)
                .map_err(|e| format!("{file}: document {}: not valid YAML: {e}", index + 1))?;
            if value.is_null() {
                continue;
            }
            let Value::Mapping(map) = &value else {
                return Err(format!(
                    "{file}: document {}: must be a Kubernetes object (apiVersion, kind, metadata, spec)",
                    index + 1
                ));
            };
            let get = |k: &str| map.get(k).and_then(Value::as_str).unwrap_or("").to_string();
            let (api_version, kind) = (get("apiVersion"), get("kind"));
            let name = map
                .get("metadata")
                .and_then(|m| m.get("name"))
                .and_then(Value::as_str)
                .unwrap_or("")
                .to_string();
            let at = doc_label(&kind, &name, &file, index);
            if kind.is_empty() || api_version.is_empty() {
                return Err(format!(
                    "{at}: needs `apiVersion` and `kind` (e.g. apiVersion: aigateway.envoyproxy.io/v1beta1, kind: MCPRoute)"
                ));
            }
            let group = api_version.rsplit_once('/').map(|(g, _)| g).unwrap_or("");
            let version = api_version.rsplit('/').next().unwrap_or("");
            match (kind.as_str(), group) {
                ("MCPRoute", "aigateway.envoyproxy.io") => {
                    if version != "v1alpha1" && version != "v1beta1" {
                        return Err(format!(
                            "{at}: apiVersion {api_version} is not one mcpgw knows; use aigateway.envoyproxy.io/v1beta1 (or v1alpha1)"
                        ));
                    }
                    let d: Doc<McpRouteSpec> = typed(&at, value.clone(), MCPROUTE_HINT)?;
                    routes.push(named(at, d, value));
                }
                ("Backend", "gateway.envoyproxy.io") => {
                    if version != "v1alpha1" {
                        return Err(format!(
                            "{at}: apiVersion {api_version}: use gateway.envoyproxy.io/v1alpha1"
                        ));
                    }
                    let d: Doc<BackendSpec> = typed(&at, value.clone(), BACKEND_HINT)?;
                    backends.push(named(at, d, value));
                }
                ("BackendTLSPolicy", "gateway.networking.k8s.io") => {
                    let d: Doc<BackendTlsPolicySpec> = typed(&at, value.clone(), TLS_HINT)?;
                    policies.push(named(at, d, value));
                }
                ("Secret" | "ConfigMap", "") => {
                    if api_version != "v1" {
                        return Err(format!("{at}: apiVersion must be v1"));
                    }
                    let d: DataDoc = typed(&at, value.clone(), DATA_HINT)?;
                    let ns = d
                        .metadata
                        .namespace
                        .clone()
                        .unwrap_or_else(|| "default".into());
                    let mut values = BTreeMap::new();
                    for (k, v) in d.data.iter().chain(d.binary_data.iter()) {
                        if kind == "Secret" || d.binary_data.contains_key(k) {
                            let bytes = base64::engine::general_purpose::STANDARD
                                .decode(v.trim())
                                .map_err(|_| {
                                    format!("{at}: data.{k}: not base64; put plain text under `stringData` instead")
                                })?;
                            let text = String::from_utf8(bytes)
                                .map_err(|_| format!("{at}: data.{k}: not UTF-8 text"))?;
                            values.insert(k.clone(), text);
                        } else {
                            values.insert(k.clone(), v.clone());
                        }
                    }
                    for (k, v) in &d.string_data {
                        values.insert(k.clone(), v.clone());
                    }
                    let obj = DataObj {
                        at: at.clone(),
                        values,
                        annotations: d.metadata.annotations.clone(),
                    };
                    let key = (ns, d.metadata.name.clone());
                    if kind == "Secret" {
                        secrets.insert(key, obj);
                    } else {
                        configmaps.insert(key, obj);
                    }
                }
                ("MCPRoute" | "Backend" | "BackendTLSPolicy", _) => {
                    return Err(format!(
                        "{at}: apiVersion {api_version} is not the API group of {kind}; use {}",
                        match kind.as_str() {
                            "MCPRoute" => "aigateway.envoyproxy.io/v1beta1",
                            "Backend" => "gateway.envoyproxy.io/v1alpha1",
                            _ => "gateway.networking.k8s.io/v1 (or v1alpha3)",
                        }
                    ));
                }
                _ => diags.warn(format!(
                    "{at}: {api_version} {kind} is not used by mcpgw (skipped)"
                )),
            }
        }
    }

    let route = match routes.len() {
        0 => {
            return Err(format!(
                "{}: no MCPRoute document (apiVersion: aigateway.envoyproxy.io/v1beta1, kind: MCPRoute)",
                sources.join(", ")
            ))
        }
        1 => routes.remove(0),
        n => {
            return Err(format!(
                "{}: {n} MCPRoutes; one mcpgw gateway serves one MCPRoute: split them into separate files",
                sources.join(", ")
            ))
        }
    };
    let at = route.at.clone();
    let ns = route.namespace.clone();
    let spec = route.value;

    if spec.parent_refs.is_empty() {
        return Err(format!("{at}: spec.parentRefs: needs at least one Gateway (parentRefs: [{{name: my-gateway}}])"));
    }
    let mut parent_refs = Vec::new();
    for (i, p) in spec.parent_refs.iter().enumerate() {
        if p.kind.as_deref().is_some_and(|k| k != "Gateway") {
            return Err(format!(
                "{at}: spec.parentRefs[{i}].kind: only Gateway is supported"
            ));
        }
        if p.group
            .as_deref()
            .is_some_and(|g| g != "gateway.networking.k8s.io")
        {
            return Err(format!(
                "{at}: spec.parentRefs[{i}].group: must be gateway.networking.k8s.io"
            ));
        }
        parent_refs.push(ParentRef {
            name: p.name.clone(),
            namespace: p.namespace.clone(),
            section_name: p.section_name.clone(),
            port: p.port,
        });
    }
    if !spec.headers.is_empty() {
        return Err(format!(
            "{at}: spec.headers: header matches are not supported by mcpgw (it serves every request to spec.path); remove them"
        ));
    }
    if spec.backend_selector.is_some() {
        return Err(format!(
            "{at}: spec.backendSelector: CEL backend selection is not supported by mcpgw; remove it"
        ));
    }
    let path = spec.path.clone().unwrap_or_else(|| "/mcp".into());
    if !path.starts_with('/') {
        return Err(format!("{at}: spec.path: must start with '/' (e.g. /mcp)"));
    }

    let oauth = match &spec.security_policy {
        None => None,
        Some(sp) => {
            for (set, field) in [
                (sp.api_key_auth.is_some(), "apiKeyAuth"),
                (sp.ext_auth.is_some(), "extAuth"),
            ] {
                if set {
                    return Err(format!(
                        "{at}: spec.securityPolicy.{field}: not supported by mcpgw; remove it (spec.securityPolicy.oauth and authorization are supported)"
                    ));
                }
            }
            match &sp.oauth {
                None => None,
                Some(o) => Some(oauth(&at, o, &ns, &configmaps)?),
            }
        }
    };

    if spec.backend_refs.is_empty() {
        return Err(format!(
            "{at}: spec.backendRefs: needs at least one backend"
        ));
    }
    let mut out_backends: Vec<Backend> = Vec::new();
    let mut secret_env: Vec<SecretEnv> = Vec::new();
    let mut passthrough: Vec<Value> = Vec::new();
    for (i, r) in spec.backend_refs.iter().enumerate() {
        let bat = format!("{at}: spec.backendRefs[{i}] ({})", r.name);
        if out_backends.iter().any(|b| b.name == r.name) {
            return Err(format!(
                "{bat}: name: \"{}\" appears twice; backendRefs names must be unique",
                r.name
            ));
        }
        if !crate::model::valid_backend_name(&r.name) {
            return Err(format!(
                "{bat}: name: \"{}\" cannot be a tool prefix (letters, digits, '-', '_', no \"__\", at most 48 characters); rename the Backend",
                r.name
            ));
        }
        let kind = r.kind.as_deref().unwrap_or("Service");
        if kind != "Backend" || r.group.as_deref() != Some("gateway.envoyproxy.io") {
            return Err(format!(
                "{bat}: kind: mcpgw supports Envoy Gateway Backends only; set `kind: Backend` and `group: gateway.envoyproxy.io` and define the Backend"
            ));
        }
        if r.namespace.as_deref().is_some_and(|n| n != ns) {
            return Err(format!(
                "{bat}: namespace: cross-namespace references are not supported; the Backend must be in namespace {ns}"
            ));
        }
        let mut bpath = r.path.clone().unwrap_or_else(|| "/mcp".into());
        if !bpath.starts_with('/') {
            return Err(format!("{bat}: path: must start with '/' (e.g. /mcp)"));
        }
        let tools = match &r.tool_selector {
            None => NameFilter::default(),
            Some(t) => NameFilter {
                include: t.include.clone(),
                exclude: t.exclude.clone(),
                include_regex: t.include_regex.clone(),
                exclude_regex: t.exclude_regex.clone(),
            },
        };
        let mut forward_authorization = false;
        for (j, f) in r.forward_headers.iter().enumerate() {
            let same = f
                .backend_header
                .as_deref()
                .is_none_or(|b| b.eq_ignore_ascii_case(&f.name));
            if f.name.eq_ignore_ascii_case("authorization") && same {
                forward_authorization = true;
            } else {
                return Err(format!(
                    "{bat}: forwardHeaders[{j}]: mcpgw can forward only the client's Authorization header (as is); remove this entry"
                ));
            }
        }
        let mut headers = BTreeMap::new();
        if let Some(key) = r.security_policy.as_ref().and_then(|s| s.api_key.as_ref()) {
            let kat = format!("{bat}: securityPolicy.apiKey");
            let value = match (&key.inline, &key.secret_ref) {
                (Some(_), Some(_)) | (None, None) => {
                    return Err(format!("{kat}: set exactly one of secretRef or inline"))
                }
                (Some(v), None) => KeyValue::Literal(v.clone()),
                (None, Some(sr)) => {
                    if sr.kind.as_deref().is_some_and(|k| k != "Secret")
                        || sr.group.as_deref().is_some_and(|g| !g.is_empty())
                    {
                        return Err(format!("{kat}.secretRef: must reference a Secret"));
                    }
                    if sr.namespace.as_deref().is_some_and(|n| n != ns) {
                        return Err(format!(
                            "{kat}.secretRef.namespace: the Secret must be in namespace {ns}"
                        ));
                    }
                    let var = format!(
                        "MCPGW_APIKEY_{}",
                        r.name.to_ascii_uppercase().replace('-', "_")
                    );
                    match secrets.get(&(ns.clone(), sr.name.clone())) {
                        Some(obj) => {
                            if let Some(envvar) = obj.annotations.get("substitution.aigw.run/env/apiKey") {
                                KeyValue::Secret(SecretEnv {
                                    var: envvar.clone(),
                                    secret: sr.name.clone(),
                                    key: "apiKey".into(),
                                    value: SecretValue::HostEnv,
                                })
                            } else {
                                let v = obj.values.get("apiKey").ok_or_else(|| {
                                    format!("{}: has no `apiKey` key, which {kat}.secretRef needs (stringData: {{apiKey: ...}})", obj.at)
                                })?;
                                KeyValue::Secret(SecretEnv {
                                    var,
                                    secret: sr.name.clone(),
                                    key: "apiKey".into(),
                                    value: SecretValue::Literal(v.trim_end_matches('\n').to_string()),
                                })
                            }
                        }
                        None => match mode {
                            Mode::Kubernetes => {
                                diags.warn(format!(
                                    "{kat}.secretRef: Secret \"{}\" is not in the input; it must exist in namespace {ns} of the cluster with key apiKey",
                                    sr.name
                                ));
                                KeyValue::Secret(SecretEnv {
                                    var,
                                    secret: sr.name.clone(),
                                    key: "apiKey".into(),
                                    value: SecretValue::NotInFile,
                                })
                            }
                            Mode::Local => {
                                return Err(format!(
                                    "{kat}.secretRef: Secret \"{}\" is not in the input; add a Secret document (stringData: {{apiKey: ...}}, or the annotation substitution.aigw.run/env/apiKey: ENV_VAR to read it from the environment)",
                                    sr.name
                                ))
                            }
                        },
                    }
                }
            };
            match (&key.query_param, &key.header) {
                (Some(_), Some(_)) => {
                    return Err(format!("{kat}: set header or queryParam, not both"));
                }
                (Some(q), None) => {
                    let literal = match &value {
                        KeyValue::Literal(v) => v.clone(),
                        KeyValue::Secret(se) => match &se.value {
                            SecretValue::Literal(v) => v.clone(),
                            SecretValue::HostEnv => match env(&se.var) {
                                Some(v) => v,
                                None => return Err(format!("{kat}: environment variable {} (named by Secret \"{}\") is not set", se.var, se.secret)),
                            },
                            SecretValue::NotInFile => {
                                return Err(format!(
                                    "{kat}.queryParam: the key goes into the backend's URL, so mcpgw needs Secret \"{}\" in the input",
                                    se.secret
                                ))
                            }
                        },
                    };
                    diags.warn(format!(
                        "{kat}.queryParam: the API key is part of the backend path in the generated configuration (as in Envoy AI Gateway); prefer a header"
                    ));
                    let sep = if bpath.contains('?') { '&' } else { '?' };
                    bpath = format!("{bpath}{sep}{}={}", pct(q), pct(&literal));
                }
                (None, h) => {
                    let header = h.clone().unwrap_or_else(|| "Authorization".into());
                    let reference = match &value {
                        KeyValue::Literal(v) => escape_dollars(v),
                        KeyValue::Secret(se) => {
                            if se.value == SecretValue::HostEnv && env(&se.var).is_none() {
                                let msg = format!(
                                    "{kat}: environment variable {} (named by Secret \"{}\" annotation substitution.aigw.run/env/apiKey) is not set; export it",
                                    se.var, se.secret
                                );
                                match check {
                                    EnvCheck::Require => return Err(msg),
                                    EnvCheck::Warn => diags.warn(msg),
                                }
                            }
                            secret_env.push(se.clone());
                            format!("${{{}}}", se.var)
                        }
                    };
                    let v = if header.eq_ignore_ascii_case("authorization") {
                        format!("Bearer {reference}")
                    } else {
                        reference
                    };
                    headers.insert(header.to_ascii_lowercase(), v);
                }
            }
        }

        let token_exchange = match r
            .security_policy
            .as_ref()
            .and_then(|s| s.token_exchange.as_ref())
        {
            None => None,
            Some(v) => {
                let tat = format!("{bat}: securityPolicy.tokenExchange");
                if r.security_policy
                    .as_ref()
                    .is_some_and(|s| s.api_key.is_some())
                {
                    return Err(format!(
                        "{bat}: securityPolicy: set apiKey or tokenExchange, not both"
                    ));
                }
                let mut resolve = |f: &str,
                                   sr: &serde_json::Value,
                                   key: &str|
                 -> Result<String, String> {
                    let sr: SecretObjectReference =
                        serde_json::from_value(sr.clone()).map_err(|e| format!("{f}: {e}"))?;
                    if sr.namespace.as_deref().is_some_and(|n| n != ns) {
                        return Err(format!(
                            "{f}.namespace: the Secret must be in namespace {ns}"
                        ));
                    }
                    let var = format!(
                        "MCPGW_STS_{}_{}",
                        r.name.to_ascii_uppercase().replace('-', "_"),
                        key.to_ascii_uppercase()
                    );
                    let value = match secrets.get(&(ns.clone(), sr.name.clone())) {
                        Some(obj) => match obj.values.get(key) {
                            Some(v) => SecretValue::Literal(v.trim_end_matches('\n').to_string()),
                            None => return Err(format!("{}: has no `{key}` key, which {f} needs", obj.at)),
                        },
                        None => match mode {
                            Mode::Kubernetes => {
                                diags.warn(format!("{f}: Secret \"{}\" is not in the input; it must exist in namespace {ns} of the cluster with key {key}", sr.name));
                                SecretValue::NotInFile
                            }
                            Mode::Local => {
                                return Err(format!("{f}: Secret \"{}\" is not in the input; add a Secret document (stringData: {{{key}: ...}})", sr.name))
                            }
                        },
                    };
                    secret_env.push(SecretEnv {
                        var: var.clone(),
                        secret: sr.name.clone(),
                        key: key.to_string(),
                        value,
                    });
                    Ok(format!("${{{var}}}"))
                };
                Some(crate::token_exchange::parse(&tat, v, &mut resolve)?)
            }
        };
        let found = backends
            .iter()
            .find(|b| b.name == r.name && b.namespace == ns);
        let target = match found {
            Some(b) => {
                passthrough.push(b.raw.clone());
                let pols: Vec<&Named<BackendTlsPolicySpec>> = policies
                    .iter()
                    .filter(|p| {
                        p.namespace == ns
                            && p.value.target_refs.iter().any(|t| {
                                t.kind == "Backend"
                                    && t.name == r.name
                                    && t.group.as_deref() == Some("gateway.envoyproxy.io")
                            })
                    })
                    .collect();
                for p in &pols {
                    passthrough.push(p.raw.clone());
                }
                Target::Http(backend_target(b, &pols, &bpath, &configmaps, &secrets, &mut diags)?)
            }
            None => match mode {
                Mode::Kubernetes => {
                    diags.warn(format!(
                        "{bat}: Backend \"{}\" is not in the input; it must exist in namespace {ns} of the cluster",
                        r.name
                    ));
                    Target::InCluster {
                        backend: r.name.clone(),
                        path: bpath.clone(),
                    }
                }
                Mode::Local => {
                    return Err(format!(
                        "{bat}: Backend \"{}\" is not defined in the input; add a Backend document (apiVersion: gateway.envoyproxy.io/v1alpha1, kind: Backend, spec.endpoints: [{{fqdn: {{hostname: ..., port: ...}}}}]) in this or another file given on the command line",
                        r.name
                    ))
                }
            },
        };
        if r.port.is_some() {
            diags.warn(format!(
                "{bat}: port: ignored; the Backend's endpoint gives the port"
            ));
        }
        out_backends.push(Backend {
            name: r.name.clone(),
            target,
            headers,
            tools,
            forward_authorization,
            token_exchange,
        });
    }

    let authorization = match spec
        .security_policy
        .as_ref()
        .and_then(|s| s.authorization.as_ref())
    {
        None => None,
        Some(a) => {
            let names: Vec<&str> = out_backends.iter().map(|b| b.name.as_str()).collect();
            Some(authorization(&at, a, &names, oauth.is_some())?)
        }
    };

    Ok((
        Loaded {
            gateway: Gateway {
                source: sources.join(", "),
                path,
                hostnames: spec.hostnames.clone(),
                backends: out_backends,
                oauth,
                authorization,
                limits: Vec::new(),
                kube: KubeMeta {
                    name: route.name.clone(),
                    namespace: ns,
                    parent_refs,
                },
                secret_env,
            },
            passthrough,
        },
        diags,
    ))
}

enum KeyValue {
    Literal(String),
    Secret(SecretEnv),
}

fn named<S>(at: String, d: Doc<S>, raw: Value) -> Named<S> {
    Named {
        at,
        name: d.metadata.name.clone(),
        namespace: d
            .metadata
            .namespace
            .clone()
            .unwrap_or_else(|| "default".into()),
        value: d.spec,
        raw,
    }
}

/// Percent-encode a query component.
fn pct(s: &str) -> String {
    let mut out = String::new();
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

fn ca_from_refs(
    at: &str,
    refs: &[LocalObjectReference],
    ns: &str,
    configmaps: &BTreeMap<(String, String), DataObj>,
    secrets: &BTreeMap<(String, String), DataObj>,
) -> Result<CaSource, String> {
    let mut pem = String::new();
    let mut from = Vec::new();
    for (i, r) in refs.iter().enumerate() {
        let kind = r.kind.as_deref().unwrap_or("ConfigMap");
        let store = match kind {
            "ConfigMap" => configmaps,
            "Secret" => secrets,
            other => {
                return Err(format!(
                    "{at}.caCertificateRefs[{i}].kind: {other}: use ConfigMap or Secret"
                ))
            }
        };
        let _ = &r.group;
        let obj = store.get(&(ns.to_string(), r.name.clone())).ok_or_else(|| {
            format!(
                "{at}.caCertificateRefs[{i}]: {kind} \"{}\" is not in the input; add it with the CA under key ca.crt",
                r.name
            )
        })?;
        let v = obj.values.get("ca.crt").ok_or_else(|| {
            format!(
                "{}: has no ca.crt key (the PEM CA certificate {at} needs)",
                obj.at
            )
        })?;
        pem.push_str(v);
        if !pem.ends_with('\n') {
            pem.push('\n');
        }
        from.push(format!("{kind} {}", r.name));
    }
    Ok(CaSource::Inline {
        pem,
        from: from.join(", "),
    })
}

fn backend_target(
    b: &Named<BackendSpec>,
    policies: &[&Named<BackendTlsPolicySpec>],
    path: &str,
    configmaps: &BTreeMap<(String, String), DataObj>,
    secrets: &BTreeMap<(String, String), DataObj>,
    diags: &mut Diagnostics,
) -> Result<HttpTarget, String> {
    let at = &b.at;
    let spec = &b.value;
    if spec.ty.as_deref().is_some_and(|t| t != "Endpoints") {
        return Err(format!(
            "{at}: spec.type: only Endpoints backends are supported by mcpgw (remove spec.type or set it to Endpoints)"
        ));
    }
    if spec.fallback.is_some() {
        diags.warn(format!("{at}: spec.fallback: ignored by mcpgw"));
    }
    if spec
        .app_protocols
        .iter()
        .any(|p| p != "gateway.envoyproxy.io/h2c")
    {
        return Err(format!(
            "{at}: spec.appProtocols: MCP servers speak HTTP; remove the WebSocket protocols"
        ));
    }
    let ep = match spec.endpoints.as_slice() {
        [] => {
            return Err(format!(
                "{at}: spec.endpoints: needs one endpoint, e.g. [{{fqdn: {{hostname: mcp.example.com, port: 443}}}}]"
            ))
        }
        [one] => one,
        [first, ..] => {
            diags.warn(format!(
                "{at}: spec.endpoints: mcpgw uses the first endpoint only"
            ));
            first
        }
    };
    if ep.unix.is_some() {
        return Err(format!(
            "{at}: spec.endpoints[0].unix: Unix sockets are not supported by mcpgw; use fqdn or ip"
        ));
    }
    if ep.hostname.is_some() {
        return Err(format!(
            "{at}: spec.endpoints[0].hostname: use fqdn: {{hostname: ..., port: ...}} instead"
        ));
    }
    let _ = &ep.zone;
    let (host, port) = match (&ep.fqdn, &ep.ip) {
        (Some(f), None) => {
            if f.hostname.is_empty() {
                return Err(format!("{at}: spec.endpoints[0].fqdn.hostname: must not be empty"));
            }
            (Host::Name(f.hostname.to_ascii_lowercase()), f.port)
        }
        (None, Some(ip)) => (
            Host::Ip(ip.address.parse().map_err(|_| {
                format!(
                    "{at}: spec.endpoints[0].ip.address: \"{}\" is not an IP address (use fqdn for names)",
                    ip.address
                )
            })?),
            ip.port,
        ),
        _ => {
            return Err(format!(
                "{at}: spec.endpoints[0]: set exactly one of fqdn or ip"
            ))
        }
    };
    if port == 0 {
        return Err(format!("{at}: spec.endpoints[0]: port must be 1-65535"));
    }
    let hostname = host.to_string();
    let mut tls = None;
    if let Some(t) = &spec.tls {
        let tat = format!("{at}: spec.tls");
        if t.insecure_skip_verify == Some(true) {
            return Err(format!(
                "{tat}.insecureSkipVerify: not supported by mcpgw; give the CA with caCertificateRefs"
            ));
        }
        if t.client_certificate_ref.is_some() {
            return Err(format!(
                "{tat}.clientCertificateRef: client certificates are not supported by mcpgw; remove it"
            ));
        }
        let _ = (
            &t.min_version,
            &t.max_version,
            &t.ciphers,
            &t.ecdh_curves,
            &t.signature_algorithms,
            &t.alpn_protocols,
            &t.auto_sni,
        );
        let ca = if !t.ca_certificate_refs.is_empty() {
            ca_from_refs(
                &tat,
                &t.ca_certificate_refs,
                &b.namespace,
                configmaps,
                secrets,
            )?
        } else {
            CaSource::System
        };
        if let Some(w) = &t.well_known_ca_certificates {
            if w != "System" {
                return Err(format!("{tat}.wellKnownCACertificates: must be System"));
            }
        }
        tls = Some(Tls {
            sni: t.sni.clone().unwrap_or_else(|| hostname.clone()),
            ca,
            subject_alt_names: vec![],
        });
    }
    for p in policies {
        let pat = format!("{}: spec.validation", p.at);
        let v = &p.value.validation;
        let _ = &p.value.options;
        if p.value.target_refs.iter().any(|t| t.section_name.is_some()) {
            diags.warn(format!("{}: spec.targetRefs[].sectionName: ignored", p.at));
        }
        let ca = match (
            &v.well_known_ca_certificates,
            v.ca_certificate_refs.is_empty(),
        ) {
            (Some(w), true) if w == "System" => CaSource::System,
            (Some(_), true) => {
                return Err(format!("{pat}.wellKnownCACertificates: must be System"))
            }
            (None, false) => ca_from_refs(
                &pat,
                &v.ca_certificate_refs,
                &p.namespace,
                configmaps,
                secrets,
            )?,
            _ => {
                return Err(format!(
                    "{pat}: set exactly one of wellKnownCACertificates or caCertificateRefs"
                ))
            }
        };
        let mut sans = Vec::new();
        for (i, s) in v.subject_alt_names.iter().enumerate() {
            match (s.ty.as_str(), &s.hostname, &s.uri) {
                ("Hostname", Some(h), None) => sans.push(h.clone()),
                ("URI", None, Some(_)) => {
                    return Err(format!(
                        "{pat}.subjectAltNames[{i}]: URI names are not supported by mcpgw; use type: Hostname"
                    ))
                }
                _ => {
                    return Err(format!(
                        "{pat}.subjectAltNames[{i}]: use {{type: Hostname, hostname: ...}}"
                    ))
                }
            }
        }
        tls = Some(Tls {
            sni: v.hostname.clone(),
            ca,
            subject_alt_names: sans,
        });
    }
    Ok(HttpTarget {
        host,
        port,
        path: path.to_string(),
        tls,
        kube_backend: Some(b.name.clone()),
    })
}

/// `securityPolicy.authorization` -> the filter's `authorization` member,
/// with Envoy AI Gateway's semantics: ordered rules, the first match decides;
/// `defaultAction` Deny unless set; a rule's `source.jwt` scopes (all) and
/// claims, its `target.tools` (backend, unprefixed tool) and its `cel`. A rule
/// without a target also covers the backends' prompts, resources, templates
/// and tasks (Envoy AI Gateway leaves those open to every caller). The result
/// is compiled here with the filter's own compiler, so a bad expression is an
/// error naming the MCPRoute rule.
fn authorization(
    at: &str,
    a: &RouteAuthorization,
    backends: &[&str],
    has_oauth: bool,
) -> Result<serde_json::Value, String> {
    use serde_json::json;
    let aat = format!("{at}: spec.securityPolicy.authorization");
    let action = |field: &str, v: &Option<String>, default: &str| match v.as_deref() {
        None => Ok(default.to_string()),
        Some("Allow") => Ok("allow".to_string()),
        Some("Deny") => Ok("deny".to_string()),
        Some(other) => Err(format!("{aat}.{field}: \"{other}\" is not Allow or Deny")),
    };
    let mut rules = Vec::with_capacity(a.rules.len());
    for (i, r) in a.rules.iter().enumerate() {
        let rat = format!("rules[{i}]");
        let mut rule = serde_json::Map::new();
        rule.insert(
            "action".into(),
            json!(action(&format!("{rat}.action"), &r.action, "allow")?),
        );
        if let Some(src) = &r.source {
            if !has_oauth {
                return Err(format!(
                    "{aat}.{rat}.source.jwt: needs spec.securityPolicy.oauth (the tokens whose scopes and claims it checks)"
                ));
            }
            if src.jwt.scopes.is_empty() && src.jwt.claims.is_empty() {
                return Err(format!(
                    "{aat}.{rat}.source.jwt: set scopes or claims (or remove source to match every caller)"
                ));
            }
            let mut claims = Vec::new();
            for (j, c) in src.jwt.claims.iter().enumerate() {
                let ty = match c.value_type.as_deref() {
                    None | Some("String") => "String",
                    Some("StringArray") => "StringArray",
                    Some(other) => {
                        return Err(format!(
                            "{aat}.{rat}.source.jwt.claims[{j}].valueType: \"{other}\" is not String or StringArray"
                        ))
                    }
                };
                claims.push(json!({"name": c.name, "value_type": ty, "values": c.values}));
            }
            rule.insert(
                "when".into(),
                json!({"scopes": src.jwt.scopes, "claims": claims}),
            );
        }
        if let Some(t) = &r.target {
            if t.tools.is_empty() {
                return Err(format!("{aat}.{rat}.target.tools: needs at least one {{backend, tool}} (or remove target to cover everything)"));
            }
            let tools: Vec<serde_json::Value> = t
                .tools
                .iter()
                .map(|tc| json!({"backend": tc.backend, "name": tc.tool}))
                .collect();
            rule.insert("target".into(), json!({"tools": tools}));
        }
        if let Some(c) = r.cel.as_deref().map(str::trim).filter(|c| !c.is_empty()) {
            rule.insert("cel".into(), json!(c));
        }
        rules.push(serde_json::Value::Object(rule));
    }
    let value = json!({
        "default": action("defaultAction", &a.default_action, "deny")?,
        "rules": rules,
    });
    let raw: mcpgw_core::gateway::policy::RawPolicy =
        serde_json::from_value(value.clone()).map_err(|e| format!("{aat}: {e}"))?;
    if let Err((field, problem)) = mcpgw_core::gateway::policy::compile(&raw, backends) {
        let field = field
            .replace("authorization.", "")
            .replace("when.claims", "source.jwt.claims")
            .replace("when.scopes", "source.jwt.scopes")
            .replace(".name", ".tool");
        return Err(format!("{aat}.{field}: {problem}"));
    }
    Ok(value)
}

fn oauth(
    at: &str,
    o: &RouteOAuth,
    ns: &str,
    configmaps: &BTreeMap<(String, String), DataObj>,
) -> Result<OAuth, String> {
    let oat = format!("{at}: spec.securityPolicy.oauth");
    if crate::model::parse_url(&o.issuer).is_err() {
        return Err(format!(
            "{oat}.issuer: \"{}\" must be the authorization server's URL (https://...)",
            o.issuer
        ));
    }
    if crate::model::parse_url(&o.protected_resource_metadata.resource).is_err() {
        return Err(format!(
            "{oat}.protectedResourceMetadata.resource: must be this gateway's MCP URL, e.g. https://mcp.example.com/mcp"
        ));
    }
    let jwks = match &o.jwks {
        None => None,
        Some(j) => match (&j.remote_jwks, &j.local_jwks) {
            (Some(r), None) => {
                if crate::model::parse_url(&r.uri).is_err() {
                    return Err(format!("{oat}.jwks.remoteJWKS.uri: must be an http(s) URL"));
                }
                if r.backend_ref.is_some()
                    || r.backend_refs.is_some()
                    || r.backend_settings.is_some()
                {
                    return Err(format!(
                        "{oat}.jwks.remoteJWKS: backendRef/backendRefs/backendSettings are not supported by mcpgw; remove them (the URI is fetched directly)"
                    ));
                }
                let _ = &r.failed_refetch_duration;
                let cache_duration = match &r.cache_duration {
                    None => None,
                    Some(d) => Some(format!(
                        "{}s",
                        mcpgw_core::gateway::config::parse_duration(d)
                            .map_err(|e| format!("{oat}.jwks.remoteJWKS.cacheDuration: {e}"))?
                            / 1000
                    )),
                };
                Some(Jwks::Remote {
                    uri: r.uri.clone(),
                    cache_duration,
                })
            }
            (None, Some(l)) => {
                let jat = format!("{oat}.jwks.localJWKS");
                match (l.ty.as_deref(), &l.inline, &l.value_ref) {
                    (Some("Inline") | None, Some(json), None) => Some(Jwks::Local { json: json.clone() }),
                    (Some("ValueRef") | None, None, Some(vr)) => {
                        if vr.kind.as_deref().is_some_and(|k| k != "ConfigMap") {
                            return Err(format!("{jat}.valueRef.kind: must be ConfigMap"));
                        }
                        let _ = &vr.group;
                        let obj = configmaps.get(&(ns.to_string(), vr.name.clone())).ok_or_else(|| {
                            format!("{jat}.valueRef: ConfigMap \"{}\" is not in the input; add it with the JWKS under key jwks", vr.name)
                        })?;
                        let json = obj.values.get("jwks").ok_or_else(|| {
                            format!("{}: has no `jwks` key, which {jat}.valueRef needs", obj.at)
                        })?;
                        Some(Jwks::Local { json: json.clone() })
                    }
                    _ => {
                        return Err(format!(
                            "{jat}: use {{type: Inline, inline: '<JWKS JSON>'}} or {{type: ValueRef, valueRef: {{kind: ConfigMap, name: ...}}}}"
                        ))
                    }
                }
            }
            _ => {
                return Err(format!(
                    "{oat}.jwks: set exactly one of remoteJWKS or localJWKS"
                ))
            }
        },
    };
    if let Some(Jwks::Local { json }) = &jwks {
        if serde_json::from_str::<serde_json::Value>(json).is_err() {
            return Err(format!("{oat}.jwks.localJWKS: the JWKS is not valid JSON"));
        }
    }
    let p = &o.protected_resource_metadata;
    Ok(OAuth {
        issuer: o.issuer.clone(),
        audiences: o.audiences.clone(),
        jwks,
        protected_resource: ProtectedResource {
            resource: p.resource.clone(),
            resource_name: p.resource_name.clone(),
            scopes_supported: p.scopes_supported.clone(),
            signing_alg_values_supported: p.resource_signing_alg_values_supported.clone(),
            documentation: p.resource_documentation.clone(),
            policy_uri: p.resource_policy_uri.clone(),
        },
        claim_to_headers: o
            .claim_to_headers
            .iter()
            .map(|c| (c.header.clone(), c.claim.clone()))
            .collect(),
    })
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::indexing_slicing, clippy::panic)]
mod tests {
    use super::*;
    use crate::model::Target;

    pub fn testdata(name: &str) -> (PathBuf, String) {
        let p = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
            .join("../../testdata/cli")
            .join(name);
        let text = std::fs::read_to_string(&p).unwrap();
        (PathBuf::from(format!("testdata/cli/{name}")), text)
    }

    fn env(n: &str) -> Option<String> {
        (n == "GITHUB_ACCESS_TOKEN").then(|| "ghp_env".to_string())
    }

    fn load_str(text: &str, mode: Mode) -> Result<(Loaded, Diagnostics), String> {
        load(
            &[(PathBuf::from("r.yaml"), text.to_string())],
            &env,
            EnvCheck::Require,
            mode,
        )
    }

    #[test]
    fn the_announcement_example_loads_as_written() {
        let files = [testdata("mcp-announcement.yaml")];
        let (l, d) = load(&files, &env, EnvCheck::Require, Mode::Kubernetes).unwrap();
        let g = &l.gateway;
        assert_eq!(g.kube.name, "mcp-route");
        assert_eq!(g.kube.parent_refs[0].name, "aigw-run");
        assert_eq!(g.path, "/mcp");
        let names: Vec<_> = g.backends.iter().map(|b| b.name.as_str()).collect();
        assert_eq!(names, ["context7", "github"]);
        assert_eq!(
            g.backends[1].target,
            Target::InCluster {
                backend: "github".into(),
                path: "/mcp/readonly".into()
            }
        );
        assert_eq!(
            g.backends[1].tools.include_regex,
            [".*pull_requests?.*", ".*issues?.*"]
        );
        let o = g.oauth.as_ref().unwrap();
        assert_eq!(o.issuer, "https://auth-server.example.com");
        assert_eq!(o.protected_resource.resource, "http://localhost:1975/mcp");
        assert_eq!(o.protected_resource.scopes_supported, ["profile", "email"]);
        assert!(o.jwks.is_none());
        assert_eq!(g.secret_env[0].secret, "github-access-token");
        assert!(d
            .warnings
            .iter()
            .any(|w| w.contains("Backend \"context7\" is not in the input")));

        // For `run`, the Backends must be defined: the error says so.
        let e = load(&files, &env, EnvCheck::Require, Mode::Local).unwrap_err();
        assert!(e.contains("spec.backendRefs[0] (context7): Backend \"context7\" is not defined in the input; add a Backend document"), "{e}");

        // With its Backends and Secret in a second file it resolves; the
        // Secret's substitution annotation reads the key from the environment.
        let files = [
            testdata("mcp-announcement.yaml"),
            testdata("mcp-announcement-backends.yaml"),
        ];
        let (l, _) = load(&files, &env, EnvCheck::Require, Mode::Local).unwrap();
        let g = &l.gateway;
        let Target::Http(t) = &g.backends[1].target else {
            panic!()
        };
        assert_eq!(t.url(), "https://api.githubcopilot.com/mcp/readonly");
        assert_eq!(
            g.backends[1].headers["authorization"],
            "Bearer ${GITHUB_ACCESS_TOKEN}"
        );
        assert_eq!(g.secret_env[0].value, SecretValue::HostEnv);
        let Target::Http(c7) = &g.backends[0].target else {
            panic!()
        };
        assert_eq!(c7.tls.as_ref().unwrap().sni, "mcp.context7.com");
        // No JWKS: Envoy's jwt_authn cannot discover one, and says how to fix it.
        let e = crate::render_envoy::preflight(g).unwrap_err();
        assert!(e.contains("set jwks.remoteJWKS.uri"), "{e}");
    }

    #[test]
    fn full_example() {
        let (l, d) = load(
            &[testdata("mcproute-full.yaml")],
            &env,
            EnvCheck::Require,
            Mode::Local,
        )
        .unwrap();
        let g = &l.gateway;
        assert_eq!(g.hostnames, ["mcp.example.com"]);
        assert_eq!(g.kube.namespace, "agents");
        let gh = &g.backends[0];
        assert_eq!(gh.headers["authorization"], "Bearer ${MCPGW_APIKEY_GITHUB}");
        assert_eq!(
            g.secret_env[0].value,
            SecretValue::Literal("ghp_example".into())
        );
        assert_eq!(gh.tools.exclude, ["delete_issue"]);
        let search = &g.backends[1];
        assert_eq!(search.headers["x-api-key"], "s3cr$$t");
        assert!(search.forward_authorization);
        let Target::Http(t) = &search.target else {
            panic!()
        };
        assert!(matches!(
            t.tls.as_ref().unwrap().ca,
            CaSource::Inline { .. }
        ));
        let Target::Http(m) = &g.backends[2].target else {
            panic!()
        };
        assert_eq!(m.path, "/v1/mcp?api_key=key-123");
        let Target::Http(i) = &g.backends[3].target else {
            panic!()
        };
        assert_eq!(i.host, Host::Ip("10.0.0.7".parse().unwrap()));
        let o = g.oauth.as_ref().unwrap();
        assert_eq!(
            o.jwks,
            Some(Jwks::Remote {
                uri: "https://auth.example.com/.well-known/jwks.json".into(),
                cache_duration: Some("600s".into())
            })
        );
        assert_eq!(
            o.claim_to_headers,
            [("x-user".to_string(), "sub".to_string())]
        );
        assert!(d
            .warnings
            .iter()
            .any(|w| w.contains("Gateway \"edge\"") && w.contains("skipped")));
        assert_eq!(l.passthrough.len(), 5);
    }

    #[test]
    fn envoy_ai_gateway_authorization_loads_with_its_semantics() {
        let (l, _) = load(
            &[testdata("mcproute-authorization.yaml")],
            &env,
            EnvCheck::Require,
            Mode::Local,
        )
        .unwrap();
        let a = l.gateway.authorization.as_ref().unwrap();
        assert_eq!(a["default"], "deny");
        let rules = a["rules"].as_array().unwrap();
        assert_eq!(rules.len(), 4);
        assert_eq!(
            rules[0]["target"]["tools"][0],
            serde_json::json!({"backend": "tools", "name": "echo"})
        );
        assert!(rules[0]["cel"].as_str().unwrap().contains("x-tenant-id"));
        assert_eq!(
            rules[1]["when"]["claims"][1],
            serde_json::json!({"name": "org.departments", "value_type": "StringArray", "values": ["engineering", "development"]})
        );
        assert_eq!(rules[1]["when"]["scopes"], serde_json::json!(["sum"]));
        assert!(rules[2].get("when").is_none(), "no source: every caller");
        assert!(rules[3].get("target").is_none(), "no target: everything");
        // The plugin config carries it, and the filter accepts it.
        let json = crate::plugin::plugin_json(&l.gateway, false, &|_, b| crate::plugin::Upstream {
            cluster: b.name.clone(),
            authority: None,
            path: "/mcp".into(),
            timeout: None,
        });
        let v: serde_json::Value = serde_json::from_str(&json).unwrap();
        assert_eq!(&v["authorization"], a);
        crate::plugin::validate(&l.gateway, &json, &|_| Some(crate::golden::KEY.into())).unwrap();
    }

    #[test]
    fn authorization_errors_name_the_rule() {
        let oauth = "  securityPolicy:\n    oauth: {issuer: 'https://i.example.com', jwks: {remoteJWKS: {uri: 'https://i.example.com/j'}}, protectedResourceMetadata: {resource: 'https://x/mcp'}}\n";
        let cases: Vec<(String, &str)> = vec![
            (format!("{ROUTE}{oauth}    authorization: {{rules: [{{target: {{tools: [{{backend: b, tool: x}}]}}}}]}}\n{BACKEND}"), "spec.securityPolicy.authorization.rules[0].target.tools[0].backend: \"b\" is not a backend"),
            (format!("{ROUTE}{oauth}    authorization: {{rules: [{{}}, {{cel: 'request.mcp.tool =='}}]}}\n{BACKEND}"), "spec.securityPolicy.authorization.rules[1].cel: is not a valid CEL expression"),
            (format!("{ROUTE}{oauth}    authorization: {{rules: [{{cel: 'request.mcp.tool.matches(\"(\")'}}]}}\n{BACKEND}"), "spec.securityPolicy.authorization.rules[0].cel: matches(): invalid regex"),
            (format!("{ROUTE}{oauth}    authorization: {{defaultAction: allow}}\n{BACKEND}"), "authorization.defaultAction: \"allow\" is not Allow or Deny"),
            (format!("{ROUTE}{oauth}    authorization: {{rules: [{{source: {{jwt: {{claims: [{{name: t, valueType: Int, values: [x]}}]}}}}}}]}}\n{BACKEND}"), "rules[0].source.jwt.claims[0].valueType: \"Int\" is not String or StringArray"),
            (format!("{ROUTE}{oauth}    authorization: {{rules: [{{source: {{jwt: {{}}}}}}]}}\n{BACKEND}"), "rules[0].source.jwt: set scopes or claims"),
            (format!("{ROUTE}  securityPolicy:\n    authorization: {{rules: [{{source: {{jwt: {{scopes: [a]}}}}}}]}}\n{BACKEND}"), "rules[0].source.jwt: needs spec.securityPolicy.oauth"),
            (format!("{ROUTE}{oauth}    authorization: {{rules: [{{target: {{tools: []}}}}]}}\n{BACKEND}"), "rules[0].target.tools: needs at least one"),
            (format!("{ROUTE}{oauth}    authorization: {{rules: [{{targets: {{}}}}]}}\n{BACKEND}"), "unknown field `targets`"),
        ];
        for (text, want) in cases {
            let e = load_str(&text, Mode::Local).unwrap_err();
            assert!(e.contains(want), "\n{text}\n  got: {e}\n want: {want}");
        }
        // Without oauth, rules on headers alone are fine.
        let text = format!("{ROUTE}  securityPolicy:\n    authorization: {{rules: [{{cel: 'request.headers[\"x-team\"] == \"a\"'}}]}}\n{BACKEND}");
        let (l, _) = load_str(&text, Mode::Local).unwrap();
        assert!(l.gateway.authorization.is_some());
    }

    const ROUTE: &str = "apiVersion: aigateway.envoyproxy.io/v1beta1\nkind: MCPRoute\nmetadata: {name: r}\nspec:\n  parentRefs: [{name: gw}]\n  backendRefs: [{name: a, kind: Backend, group: gateway.envoyproxy.io}]\n";
    const BACKEND: &str = "---\napiVersion: gateway.envoyproxy.io/v1alpha1\nkind: Backend\nmetadata: {name: a}\nspec:\n  endpoints: [{fqdn: {hostname: a.example.com, port: 443}}]\n";

    #[test]
    fn a_signing_key_only_in_the_cluster_still_renders() {
        let te = |alg: &str| {
            format!("securityPolicy: {{tokenExchange: {{stsEndpoint: 'https://sts.example.com/token', audience: 'https://a.example.com', actorToken: {{clientAssertionJWT: {{issuer: gw, subject: gw, privateKeyRef: {{name: actor-key}}, signingAlgorithm: {alg}}}}}}}}}")
        };
        let route = |alg: &str| {
            ROUTE.replace("group: gateway.envoyproxy.io}", &format!("group: gateway.envoyproxy.io, {}}}", te(alg)))
                + "  securityPolicy: {oauth: {issuer: 'https://auth.example.com', audiences: ['https://mcp.example.com/mcp'], jwks: {remoteJWKS: {uri: 'https://auth.example.com/jwks'}}, protectedResourceMetadata: {resource: 'https://mcp.example.com/mcp'}}}\n"
                + BACKEND
        };
        let opts = crate::render_kube::Options::for_check(
            crate::render_kube::Deploy::GatewayNamespace,
            crate::engine::Engine::Wasm,
        );
        let (l, _) = load_str(&route("ES256"), Mode::Kubernetes).unwrap();
        let out = crate::render_kube::render(&l.gateway, &l.passthrough, &opts)
            .unwrap()
            .text;
        assert!(
            out.contains("name: actor-key") && out.contains("key: privateKey"),
            "{out}"
        );
        assert!(out.contains("algorithm: ES256"), "{out}");
        let (l, _) = load_str(&route("ES257"), Mode::Kubernetes).unwrap();
        let e = crate::render_kube::render(&l.gateway, &l.passthrough, &opts).unwrap_err();
        assert!(
            e.contains("signingAlgorithm: \"ES257\" is not supported"),
            "{e}"
        );
    }

    #[test]
    fn token_exchange_takes_its_secrets_from_secrets() {
        let te = "securityPolicy: {tokenExchange: {stsEndpoint: 'https://sts.example.com/token', audience: 'https://a.example.com', scopes: [tools], clientAuth: {clientID: mcpgw, clientSecretRef: {name: sts-client}}, actorToken: {secretRef: {name: actor}}}}}";
        let text = ROUTE.replace("group: gateway.envoyproxy.io}", &format!("group: gateway.envoyproxy.io, {te}"))
            + "  securityPolicy: {oauth: {issuer: 'https://auth.example.com', audiences: ['https://mcp.example.com/mcp'], jwks: {remoteJWKS: {uri: 'https://auth.example.com/jwks'}}, protectedResourceMetadata: {resource: 'https://mcp.example.com/mcp'}}}\n"
            + BACKEND
            + "---\napiVersion: v1\nkind: Secret\nmetadata: {name: sts-client}\nstringData: {clientSecret: c1}\n";
        let (l, _) = load_str(&text, Mode::Kubernetes).unwrap();
        let b = &l.gateway.backends[0];
        let block = &b.token_exchange.as_ref().unwrap().block;
        assert_eq!(
            block["client_auth"]["client_secret"],
            "${MCPGW_STS_A_CLIENTSECRET}"
        );
        assert_eq!(block["actor_token"]["token"], "${MCPGW_STS_A_TOKEN}");
        let envs: Vec<(&str, &str, &str)> = l
            .gateway
            .secret_env
            .iter()
            .map(|s| (s.var.as_str(), s.secret.as_str(), s.key.as_str()))
            .collect();
        assert_eq!(
            envs,
            [
                ("MCPGW_STS_A_CLIENTSECRET", "sts-client", "clientSecret"),
                ("MCPGW_STS_A_TOKEN", "actor", "token")
            ]
        );
        assert_eq!(
            l.gateway.secret_env[1].value,
            SecretValue::NotInFile,
            "only in the cluster"
        );
        // Kubernetes: the Secrets reach Envoy's environment, the token endpoint gets a rule (a cluster).
        let opts = crate::render_kube::Options::for_check(
            crate::render_kube::Deploy::GatewayNamespace,
            crate::engine::Engine::Wasm,
        );
        let out = crate::render_kube::render(&l.gateway, &l.passthrough, &opts)
            .unwrap()
            .text;
        assert!(
            out.contains("name: sts-client") && out.contains("key: clientSecret"),
            "{out}"
        );
        assert!(
            out.contains("name: actor") && out.contains("key: token"),
            "{out}"
        );
        assert!(out.contains("name: r-a-token-exchange"), "{out}");
        assert!(out.contains("httproute/default/r/rule/1"), "{out}");
        // Locally a missing Secret is an error naming it.
        let e = load_str(&text, Mode::Local).unwrap_err();
        assert!(
            e.contains("tokenExchange.actorToken.secretRef: Secret \"actor\" is not in the input"),
            "{e}"
        );
    }

    #[test]
    fn errors_name_the_document_field_and_fix() {
        let cases: Vec<(String, &str)> = vec![
            (format!("{ROUTE}  toolSelecter: {{}}\n{BACKEND}"), "r.yaml: MCPRoute \"r\": spec.toolSelecter: unknown field `toolSelecter`, expected one of `parentRefs`"),
            (ROUTE.replace("backendRefs: [{name: a,", "backendRefs: [{name: a, tools: [x],") + BACKEND, "spec.backendRefs[0].tools: unknown field `tools`, expected one of"),
            (ROUTE.replace("{name: gw}", "{name: gw, kind: Service}") + BACKEND, "spec.parentRefs[0].kind: only Gateway is supported"),
            (format!("{ROUTE}{}", BACKEND.replace("port: 443", "port: https")), "Backend \"a\": spec.endpoints[0].fqdn.port: invalid type"),
            (format!("{ROUTE}{}", BACKEND.replace("fqdn:", "fqnd:")), "Backend \"a\": spec.endpoints[0].fqnd: unknown field `fqnd`"),
            (ROUTE.to_string(), "Backend \"a\" is not defined in the input; add a Backend document"),
            (ROUTE.replace("v1beta1", "v2"), "apiVersion aigateway.envoyproxy.io/v2 is not one mcpgw knows"),
            (ROUTE.replace("kind: Backend,", "kind: Service,") + BACKEND, "set `kind: Backend` and `group: gateway.envoyproxy.io`"),
            (format!("{ROUTE}  securityPolicy: {{apiKey: {{inline: x}}}}\n{BACKEND}"), "spec.securityPolicy.apiKey: unknown field `apiKey`"),
            (ROUTE.replace("group: gateway.envoyproxy.io}", "group: gateway.envoyproxy.io, securityPolicy: {apiKey: {secretRef: {name: s}}}}") + BACKEND, "Secret \"s\" is not in the input; add a Secret document"),
            (format!("{ROUTE}  securityPolicy: {{oauth: {{issuer: 'https://i', protectedResourceMetadata: {{resource: 'https://x/mcp'}}, jwks: {{remoteJWKS: {{uri: 'https://i/j'}}, localJWKS: {{inline: '{{}}'}}}}}}}}\n{BACKEND}"), "oauth.jwks: set exactly one of remoteJWKS or localJWKS"),
            (format!("{ROUTE}  securityPolicy: {{oauth: {{issuer: i}}}}\n{BACKEND}"), "missing field `protectedResourceMetadata`; add it"),
            (format!("{ROUTE}---\n{ROUTE}{BACKEND}"), "2 MCPRoutes"),
            ("kind: Backend\n".to_string(), "needs `apiVersion` and `kind`"),
            ("a: [\n".to_string(), "not valid YAML"),
            (BACKEND.to_string(), "no MCPRoute document"),
        ];
        for (text, want) in cases {
            let e = load_str(&text, Mode::Local).unwrap_err();
            assert!(e.contains(want), "\n{text}\n  got: {e}\n want: {want}");
        }
    }
}
