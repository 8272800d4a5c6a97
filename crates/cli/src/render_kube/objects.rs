//! The Kubernetes objects `render --kubernetes` writes, as typed structs in
//! the field order of the API references (Kubernetes core, Gateway API,
//! Envoy Gateway v1alpha1). Only what mcpgw sets is modelled; the tests read
//! the output back with the upstream types (gateway-api, k8s-openapi) and
//! with shape structs written from Envoy Gateway's API, unknown fields refused.

use serde::Serialize;
use std::collections::BTreeMap;

pub const GATEWAY_API: &str = "gateway.networking.k8s.io";
pub const ENVOY_GATEWAY: &str = "gateway.envoyproxy.io";
const EG_V1ALPHA1: &str = "gateway.envoyproxy.io/v1alpha1";

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Object<B: Serialize> {
    pub api_version: &'static str,
    pub kind: &'static str,
    pub metadata: Meta,
    #[serde(flatten)]
    pub body: B,
}

#[derive(Serialize)]
pub struct Meta {
    pub name: String,
    pub namespace: String,
}

/// The `spec` of most kinds.
#[derive(Serialize)]
pub struct Spec<S: Serialize> {
    pub spec: S,
}

/// An Envoy Gateway object (`gateway.envoyproxy.io/v1alpha1`) of `kind`.
pub fn eg<S: Serialize>(
    kind: &'static str,
    name: &str,
    namespace: &str,
    spec: S,
) -> Object<Spec<S>> {
    object(EG_V1ALPHA1, kind, name, namespace, Spec { spec })
}

fn object<B: Serialize>(
    api_version: &'static str,
    kind: &'static str,
    name: &str,
    namespace: &str,
    body: B,
) -> Object<B> {
    Object {
        api_version,
        kind,
        metadata: Meta {
            name: name.to_string(),
            namespace: namespace.to_string(),
        },
        body,
    }
}

// ----- core/v1 Secret ---------------------------------------------------------

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
pub struct SecretBody {
    #[serde(rename = "type")]
    pub ty: &'static str,
    pub string_data: BTreeMap<String, String>,
}

pub fn secret(name: &str, ns: &str, data: BTreeMap<String, String>) -> Object<SecretBody> {
    object(
        "v1",
        "Secret",
        name,
        ns,
        SecretBody {
            ty: "Opaque",
            string_data: data,
        },
    )
}

// ----- EnvoyProxy ---------------------------------------------------------------

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
pub struct EnvoyProxySpec {
    pub provider: Provider,
    /// The dynamic modules EnvoyExtensionPolicies may load (v1.8+).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub dynamic_modules: Vec<DynamicModuleEntry>,
    /// Merged onto the GatewayClass's EnvoyProxy (and Envoy Gateway's
    /// defaults) instead of replacing them.
    pub merge_type: &'static str,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
pub struct DynamicModuleEntry {
    pub name: &'static str,
    pub source: DynamicModuleSource,
    pub do_not_close: bool,
}

#[derive(Serialize)]
pub struct DynamicModuleSource {
    #[serde(rename = "type")]
    pub ty: &'static str,
    pub local: LocalModule,
}

#[derive(Serialize)]
pub struct LocalModule {
    /// Absolute path in the Envoy container.
    pub path: String,
}

#[derive(Serialize)]
pub struct Provider {
    #[serde(rename = "type")]
    pub ty: &'static str,
    pub kubernetes: KubernetesProvider,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
pub struct KubernetesProvider {
    pub envoy_deployment: EnvoyDeployment,
}

#[derive(Serialize)]
pub struct EnvoyDeployment {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pod: Option<Pod>,
    pub container: Container,
}

#[derive(Serialize)]
pub struct Pod {
    pub volumes: Vec<Volume>,
}

/// A core/v1 Volume from an OCI image (Kubernetes image volumes).
#[derive(Serialize)]
pub struct Volume {
    pub name: &'static str,
    pub image: ImageVolumeSource,
}

#[derive(Serialize)]
pub struct ImageVolumeSource {
    pub reference: String,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Container {
    pub env: Vec<EnvVar>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub image: Option<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub volume_mounts: Vec<VolumeMount>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
pub struct VolumeMount {
    pub name: &'static str,
    pub mount_path: &'static str,
    pub read_only: bool,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
pub struct EnvVar {
    pub name: String,
    pub value_from: EnvVarSource,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
pub struct EnvVarSource {
    pub secret_key_ref: SecretKeyRef,
}

#[derive(Serialize)]
pub struct SecretKeyRef {
    pub name: String,
    pub key: String,
}

/// What the EnvoyProxy adds for the dynamic module: the Envoy image it
/// needs, where the library comes from, and its registration.
pub struct ModuleProxy {
    pub envoy_image: String,
    pub pod: Option<Pod>,
    pub volume_mounts: Vec<VolumeMount>,
    pub entry: DynamicModuleEntry,
}

pub fn envoy_proxy(
    name: &str,
    ns: &str,
    env: Vec<EnvVar>,
    module: Option<ModuleProxy>,
) -> Object<Spec<EnvoyProxySpec>> {
    let (pod, image, volume_mounts, dynamic_modules) = match module {
        Some(m) => (m.pod, Some(m.envoy_image), m.volume_mounts, vec![m.entry]),
        None => (None, None, vec![], vec![]),
    };
    eg(
        "EnvoyProxy",
        name,
        ns,
        EnvoyProxySpec {
            provider: Provider {
                ty: "Kubernetes",
                kubernetes: KubernetesProvider {
                    envoy_deployment: EnvoyDeployment {
                        pod,
                        container: Container {
                            env,
                            image,
                            volume_mounts,
                        },
                    },
                },
            },
            dynamic_modules,
            merge_type: "StrategicMerge",
        },
    )
}

// ----- Backend ------------------------------------------------------------------

#[derive(Serialize)]
pub struct BackendSpec {
    pub endpoints: Vec<Endpoint>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tls: Option<BackendTls>,
}

#[derive(Serialize)]
pub struct Endpoint {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fqdn: Option<HostPort>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ip: Option<AddressPort>,
}

#[derive(Serialize)]
pub struct HostPort {
    pub hostname: String,
    pub port: u16,
}

#[derive(Serialize)]
pub struct AddressPort {
    pub address: String,
    pub port: u16,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
pub struct BackendTls {
    #[serde(rename = "wellKnownCACertificates")]
    pub well_known_ca_certificates: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sni: Option<String>,
}

// ----- HTTPRoute ----------------------------------------------------------------

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
pub struct HttpRouteSpec {
    pub parent_refs: Vec<ParentRef>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub hostnames: Vec<String>,
    pub rules: Vec<Rule>,
}

#[derive(Serialize, Clone)]
#[serde(rename_all = "camelCase")]
pub struct ParentRef {
    pub group: &'static str,
    pub kind: &'static str,
    pub name: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub section_name: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub port: Option<u16>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Rule {
    pub matches: Vec<Match>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub filters: Vec<Filter>,
    pub backend_refs: Vec<ObjectRef>,
    pub timeouts: Timeouts,
}

#[derive(Serialize)]
pub struct Match {
    pub path: TypedValue,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub headers: Vec<HeaderMatch>,
}

/// `{type, value}`: a path match.
#[derive(Serialize)]
pub struct TypedValue {
    #[serde(rename = "type")]
    pub ty: &'static str,
    pub value: String,
}

#[derive(Serialize)]
pub struct HeaderMatch {
    #[serde(rename = "type")]
    pub ty: &'static str,
    pub name: String,
    pub value: String,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Filter {
    #[serde(rename = "type")]
    pub ty: &'static str,
    pub url_rewrite: UrlRewrite,
}

#[derive(Serialize)]
pub struct UrlRewrite {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub hostname: Option<String>,
    pub path: PathModifier,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
pub struct PathModifier {
    #[serde(rename = "type")]
    pub ty: &'static str,
    pub replace_full_path: String,
}

/// A reference by group, kind and name (backendRefs, policy targetRefs).
#[derive(Serialize, Clone)]
#[serde(rename_all = "camelCase")]
pub struct ObjectRef {
    pub group: &'static str,
    pub kind: &'static str,
    pub name: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub section_name: Option<String>,
}

impl ObjectRef {
    pub fn new(group: &'static str, kind: &'static str, name: &str) -> ObjectRef {
        ObjectRef {
            group,
            kind,
            name: name.to_string(),
            section_name: None,
        }
    }
}

#[derive(Serialize)]
pub struct Timeouts {
    pub request: &'static str,
}

pub fn http_route(name: &str, ns: &str, spec: HttpRouteSpec) -> Object<Spec<HttpRouteSpec>> {
    object(
        "gateway.networking.k8s.io/v1",
        "HTTPRoute",
        name,
        ns,
        Spec { spec },
    )
}

// ----- EnvoyExtensionPolicy -------------------------------------------------------

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ExtensionPolicySpec {
    pub target_refs: Vec<ObjectRef>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub wasm: Vec<Wasm>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub dynamic_module: Vec<DynamicModule>,
}

/// One `dynamicModule` filter: a module the EnvoyProxy registers, by name.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
pub struct DynamicModule {
    pub name: &'static str,
    pub filter_name: &'static str,
    /// The filter's plugin configuration (Envoy Gateway hands it to the
    /// module as a JSON string, as the local envoy.yaml does).
    pub config: serde_json::Value,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Wasm {
    pub name: &'static str,
    #[serde(rename = "rootID")]
    pub root_id: &'static str,
    pub code: WasmCode,
    /// The filter's plugin configuration (Envoy Gateway hands it over as JSON).
    pub config: serde_json::Value,
    pub fail_open: bool,
    pub env: WasmEnv,
}

#[derive(Serialize)]
pub struct WasmCode {
    #[serde(rename = "type")]
    pub ty: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub http: Option<CodeUrl>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub image: Option<CodeUrl>,
}

#[derive(Serialize)]
pub struct CodeUrl {
    pub url: String,
    /// HTTP: the wasm file's sha256; Image: the OCI manifest digest.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sha256: Option<String>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
pub struct WasmEnv {
    pub host_keys: Vec<String>,
}

// ----- EnvoyPatchPolicy -------------------------------------------------------------

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
pub struct PatchPolicySpec {
    pub target_ref: ObjectRef,
    #[serde(rename = "type")]
    pub ty: &'static str,
    pub json_patches: Vec<JsonPatch>,
}

#[derive(Serialize)]
pub struct JsonPatch {
    #[serde(rename = "type")]
    pub ty: &'static str,
    pub name: String,
    pub operation: PatchOperation,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
pub struct PatchOperation {
    pub op: &'static str,
    pub json_path: String,
    pub path: &'static str,
    pub value: serde_json::Value,
}

// ----- ClientTrafficPolicy -------------------------------------------------------------

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
pub struct TrafficPolicySpec {
    pub target_refs: Vec<ObjectRef>,
    pub timeout: ClientTimeout,
    pub connection: ClientConnection,
}

#[derive(Serialize)]
pub struct ClientTimeout {
    pub http: HttpClientTimeout,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
pub struct HttpClientTimeout {
    pub stream_idle_timeout: &'static str,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ClientConnection {
    pub buffer_limit: &'static str,
}

// ----- SecurityPolicy ---------------------------------------------------------------------

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
pub struct SecurityPolicySpec {
    pub target_refs: Vec<ObjectRef>,
    pub jwt: Jwt,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Jwt {
    /// jwt_authn's allow_missing_or_failed (Envoy Gateway v1.9+).
    pub fail_open: bool,
    pub providers: Vec<JwtProvider>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
pub struct JwtProvider {
    pub name: &'static str,
    pub issuer: String,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub audiences: Vec<String>,
    #[serde(rename = "remoteJWKS", skip_serializing_if = "Option::is_none")]
    pub remote_jwks: Option<RemoteJwks>,
    #[serde(rename = "localJWKS", skip_serializing_if = "Option::is_none")]
    pub local_jwks: Option<LocalJwks>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub claim_to_headers: Vec<ClaimToHeader>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
pub struct RemoteJwks {
    pub uri: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cache_duration: Option<String>,
}

#[derive(Serialize)]
pub struct LocalJwks {
    #[serde(rename = "type")]
    pub ty: &'static str,
    pub inline: String,
}

#[derive(Serialize)]
pub struct ClaimToHeader {
    pub header: String,
    pub claim: String,
}
