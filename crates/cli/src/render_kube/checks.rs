//! What the rendered manifests mean to a cluster, checked without one.
//!
//! * Every document is read back with a typed model, unknown fields
//!   refused (a field the API server would prune is a silent bug): Gateway
//!   API's HTTPRoute and BackendTLSPolicy with the `gateway-api` crate,
//!   Secrets with `k8s-openapi`, Envoy Gateway's kinds with the shape
//!   structs below, written from its v1.9 API types (`api/v1alpha1`),
//!   together with the CRD validation rules (patterns, enums, CEL) and the
//!   translator's own checks that apply to what mcpgw writes.
//! * Routing is decided the way Gateway API specifies it (HTTPRoute rule
//!   precedence, hostnames), and again the way Envoy Gateway builds it (its
//!   route sort, then Envoy's first match), for the rules as written and
//!   reversed: every routed call and every path the filter answers must land
//!   on exactly one rule, the same in every case, and that rule must rewrite
//!   to the right Backend, host and path, with the cluster the filter uses
//!   for fan-out calls. A rendering of the old layout (header rules on the
//!   rewritten path plus a `PathPrefix` catch-all) fails these checks.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]

use super::tests::{announcement, http_code, many, mcproute, opts, servers, DIGEST};
use super::*;
use gateway_api::backendtlspolicies::BackendTlsPolicy;
use gateway_api::httproutes::{
    HttpRoute, HttpRouteRules, HttpRouteRulesFiltersType, HttpRouteRulesFiltersUrlRewritePathType,
    HttpRouteRulesMatches, HttpRouteRulesMatchesHeadersType, HttpRouteRulesMatchesPathType,
};
use k8s_openapi::api::core::v1::{EnvVar, Secret, Volume, VolumeMount};
use serde::de::DeserializeOwned;
use serde::Deserialize;
use serde_json::Value;
use std::net::IpAddr;

// ---------------------------------------------------------------------------
// Reading documents back, strictly
// ---------------------------------------------------------------------------

/// `v` as `T`, failing on any field `T` does not know.
fn strict<T: DeserializeOwned>(what: &str, v: &Value) -> T {
    let mut unknown = Vec::new();
    let t = serde_ignored::deserialize(v.clone(), |p| unknown.push(p.to_string()))
        .unwrap_or_else(|e| panic!("{what}: {e}\n{v:#}"));
    assert!(unknown.is_empty(), "{what}: unknown fields {unknown:?}");
    t
}

/// The documents of a rendering, as JSON values.
fn documents(text: &str) -> Vec<Value> {
    text.split("---\n")
        .skip(1)
        .map(|d| serde_norway::from_str::<Value>(d).unwrap())
        .collect()
}

fn kind(v: &Value) -> &str {
    v["kind"].as_str().unwrap_or("")
}

fn name(v: &Value) -> String {
    format!(
        "{} {}/{}",
        kind(v),
        v["metadata"]["namespace"].as_str().unwrap_or(""),
        v["metadata"]["name"].as_str().unwrap_or("")
    )
}

/// The object without `apiVersion` and `kind` (checked here; the kube
/// derive's root types take only metadata, spec and status).
fn body(v: &Value, api_version: &str) -> Value {
    assert_eq!(v["apiVersion"], api_version, "{}", name(v));
    let mut b = v.clone();
    let m = b.as_object_mut().unwrap();
    m.remove("apiVersion");
    m.remove("kind");
    b
}

// ---------------------------------------------------------------------------
// Envoy Gateway v1alpha1 shapes (what mcpgw writes or passes through)
// ---------------------------------------------------------------------------

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Meta {
    name: String,
    namespace: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct EgObject<S> {
    api_version: String,
    kind: String,
    metadata: Meta,
    spec: S,
}

/// An Envoy Gateway object of `kind`, strictly.
fn eg<S: DeserializeOwned>(kind: &str, v: &Value) -> EgObject<S> {
    let o: EgObject<S> = strict(kind, v);
    assert_eq!(o.api_version, "gateway.envoyproxy.io/v1alpha1", "{kind}");
    assert_eq!(o.kind, kind);
    assert!(names::is_subdomain(&o.metadata.name) && names::is_label(&o.metadata.namespace));
    o
}

/// LocalPolicyTargetReference(WithSectionName).
#[derive(Deserialize, Debug)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct TargetRef {
    group: String,
    kind: String,
    name: String,
    section_name: Option<String>,
}

fn check_targets(
    what: &str,
    one: Option<&TargetRef>,
    many: Option<&Vec<TargetRef>>,
    kinds: &[&str],
) {
    let refs: Vec<&TargetRef> = match (one, many) {
        (Some(r), None) => vec![r],
        (None, Some(rs)) if !rs.is_empty() && rs.len() <= 16 => rs.iter().collect(),
        _ => panic!("{what}: either targetRef or targetRefs must be used"),
    };
    for r in refs {
        assert_eq!(r.group, GATEWAY_API, "{what}: {r:?}");
        assert!(kinds.contains(&r.kind.as_str()), "{what}: {r:?}");
        assert!(names::is_subdomain(&r.name), "{what}: {r:?}");
        if let Some(s) = &r.section_name {
            assert!(names::is_subdomain(s), "{what}: {r:?}");
        }
    }
}

/// Gateway API LocalObjectReference.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct LocalObjectRef {
    group: String,
    kind: String,
    name: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct BackendSpec {
    #[serde(rename = "type")]
    ty: Option<String>,
    endpoints: Vec<BackendEndpoint>,
    tls: Option<BackendTlsSettings>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct BackendEndpoint {
    fqdn: Option<FqdnEndpoint>,
    ip: Option<IpEndpoint>,
    unix: Option<UnixSocket>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct FqdnEndpoint {
    hostname: String,
    port: i64,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct IpEndpoint {
    address: String,
    port: i64,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct UnixSocket {
    #[allow(dead_code)]
    path: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct BackendTlsSettings {
    ca_certificate_refs: Option<Vec<LocalObjectRef>>,
    #[serde(rename = "wellKnownCACertificates")]
    well_known_ca_certificates: Option<String>,
    insecure_skip_verify: Option<bool>,
    sni: Option<String>,
    #[serde(rename = "autoSNIFromEndpointHostname")]
    auto_sni: Option<bool>,
}

/// Where a Backend sends requests.
#[derive(Debug, Clone, PartialEq)]
struct Endpoint {
    host: String,
    port: i64,
}

/// The CRD's rules and the translator's `validateBackend`, for one Backend.
fn check_backend(v: &Value, tls_policies: &[BackendTlsPolicy]) -> (String, Endpoint) {
    let o: EgObject<BackendSpec> = eg("Backend", v);
    let what = format!("Backend {}", o.metadata.name);
    assert!(
        o.spec.ty.is_none() || o.spec.ty.as_deref() == Some("Endpoints"),
        "{what}"
    );
    assert!(
        !o.spec.endpoints.is_empty() && o.spec.endpoints.len() <= 256,
        "{what}"
    );
    let fqdns = o.spec.endpoints.iter().filter(|e| e.fqdn.is_some()).count();
    assert!(
        fqdns == 0 || fqdns == o.spec.endpoints.len(),
        "{what}: fqdn mixed with other addresses"
    );
    let mut first = None;
    for e in &o.spec.endpoints {
        let set = [e.fqdn.is_some(), e.ip.is_some(), e.unix.is_some()];
        assert_eq!(
            set.iter().filter(|s| **s).count(),
            1,
            "{what}: one of fqdn, ip or unix"
        );
        let ep = if let Some(f) = &e.fqdn {
            let h = f.hostname.trim_end_matches('.');
            assert!(names::is_subdomain(h), "{what}: FQDN {h}");
            assert!(h.contains('.'), "{what}: FQDN {h} needs two labels");
            assert!(h.parse::<IpAddr>().is_err(), "{what}: FQDN {h} is an IP");
            Endpoint {
                host: f.hostname.clone(),
                port: f.port,
            }
        } else if let Some(ip) = &e.ip {
            let a: IpAddr = ip
                .address
                .parse()
                .unwrap_or_else(|_| panic!("{what}: {}", ip.address));
            assert!(!a.is_loopback(), "{what}: loopback {a}");
            Endpoint {
                host: ip.address.clone(),
                port: ip.port,
            }
        } else {
            continue;
        };
        assert!((0..=65535).contains(&ep.port), "{what}: port {}", ep.port);
        first.get_or_insert(ep);
    }
    if let Some(t) = &o.spec.tls {
        let refs = t
            .ca_certificate_refs
            .as_ref()
            .is_some_and(|r| !r.is_empty());
        assert!(
            !(refs && t.well_known_ca_certificates.is_some()),
            "{what}: both CA sources"
        );
        assert!(!(t.sni.is_some() && t.auto_sni == Some(true)), "{what}");
        if let Some(s) = &t.sni {
            assert!(names::is_subdomain(s), "{what}: sni {s}");
        }
        for r in t.ca_certificate_refs.iter().flatten() {
            assert!(
                r.group.is_empty() && ["ConfigMap", "Secret"].contains(&r.kind.as_str()),
                "{what}"
            );
            assert!(names::is_subdomain(&r.name), "{what}");
        }
        if t.well_known_ca_certificates.is_some() {
            assert_eq!(
                t.well_known_ca_certificates.as_deref(),
                Some("System"),
                "{what}"
            );
        }
        // The translator: without a CA here, a BackendTLSPolicy must give one.
        if t.insecure_skip_verify != Some(true) && !refs && t.well_known_ca_certificates.is_none() {
            let covered = tls_policies.iter().any(|p| {
                p.spec
                    .target_refs
                    .iter()
                    .any(|r| r.kind == "Backend" && r.name == o.metadata.name)
            });
            assert!(covered, "{what}: TLS without a CA");
        }
    }
    (
        o.metadata.name,
        first.unwrap_or_else(|| panic!("{what}: no endpoint")),
    )
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct EnvoyProxySpec {
    provider: Provider,
    dynamic_modules: Option<Vec<DynamicModuleEntry>>,
    merge_type: Option<String>,
}

/// `api/v1alpha1/dynamic_module_types.go` (v1.8+).
#[derive(Deserialize, Debug, Clone)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct DynamicModuleEntry {
    name: String,
    source: DynamicModuleSource,
    do_not_close: Option<bool>,
    load_globally: Option<bool>,
}

#[derive(Deserialize, Debug, Clone)]
#[serde(deny_unknown_fields)]
struct DynamicModuleSource {
    #[serde(rename = "type")]
    ty: Option<String>,
    local: Option<LocalDynamicModuleSource>,
    remote: Option<RemoteDynamicModuleSource>,
}

#[derive(Deserialize, Debug, Clone)]
#[serde(deny_unknown_fields)]
struct LocalDynamicModuleSource {
    path: String,
}

#[derive(Deserialize, Debug, Clone)]
#[serde(deny_unknown_fields)]
struct RemoteDynamicModuleSource {
    url: String,
    sha256: String,
}

/// The `name` pattern of DynamicModuleEntry and DynamicModule.
fn is_module_name(n: &str) -> bool {
    let b = n.as_bytes();
    (1..=253).contains(&b.len())
        && b.iter()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == b'.' || *c == b'-')
        && b.first().is_some_and(|c| c.is_ascii_alphanumeric())
        && b.last().is_some_and(|c| c.is_ascii_alphanumeric())
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Provider {
    #[serde(rename = "type")]
    ty: String,
    kubernetes: Option<KubernetesProvider>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct KubernetesProvider {
    envoy_deployment: Option<KubernetesDeployment>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct KubernetesDeployment {
    pod: Option<KubernetesPod>,
    container: Option<Container>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct KubernetesPod {
    /// core/v1 Volume, read with k8s-openapi below.
    volumes: Option<Vec<Value>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct Container {
    /// core/v1 EnvVar, read with k8s-openapi below.
    env: Vec<Value>,
    image: Option<String>,
    image_repository: Option<String>,
    /// core/v1 VolumeMount, read with k8s-openapi below.
    volume_mounts: Option<Vec<Value>>,
}

/// What an EnvoyProxy gives the dynamic module: its registrations, the
/// Envoy image, and the image volumes mounted (mount path, image).
#[derive(Debug, Default, Clone)]
struct ProxyModules {
    entries: Vec<DynamicModuleEntry>,
    envoy_image: Option<String>,
    image_mounts: Vec<(String, String)>,
}

fn check_dynamic_modules(entries: &[DynamicModuleEntry]) {
    assert!(entries.len() <= 16, "dynamicModules: MaxItems=16");
    let mut names: Vec<&str> = entries.iter().map(|e| e.name.as_str()).collect();
    names.sort();
    names.dedup();
    assert_eq!(
        names.len(),
        entries.len(),
        "dynamicModules: listMapKey=name"
    );
    for e in entries {
        assert!(is_module_name(&e.name), "dynamicModules name {}", e.name);
        let s = &e.source;
        let ty = s.ty.as_deref().unwrap_or("Local");
        assert!(["Local", "Remote"].contains(&ty), "source.type {ty}");
        // The CRD's CEL rules on DynamicModuleSource.
        assert_eq!(
            ty == "Remote",
            s.remote.is_some(),
            "If type is Remote, remote field needs to be set."
        );
        assert!(
            ty != "Local" || s.local.is_some(),
            "If type is Local, local field needs to be set."
        );
        assert!(
            ty != "Remote" || s.local.is_none(),
            "If type is Remote, local field must not be set."
        );
        if let Some(l) = &s.local {
            assert!(
                (1..=4096).contains(&l.path.len()) && l.path.starts_with('/'),
                "absolute path: {}",
                l.path
            );
        }
        if let Some(r) = &s.remote {
            assert!(r.url.starts_with("https://") || r.url.starts_with("http://"));
            assert!(is_sha256(&r.sha256));
        }
    }
}

/// The EnvoyProxy's environment: variable -> (Secret, key).
fn check_envoy_proxy(v: &Value) -> (String, Vec<(String, String, String)>, ProxyModules) {
    let o: EgObject<EnvoyProxySpec> = eg("EnvoyProxy", v);
    assert_eq!(o.spec.provider.ty, "Kubernetes");
    assert!(["Replace", "StrategicMerge", "JSONMerge"]
        .contains(&o.spec.merge_type.as_deref().unwrap_or("Replace")));
    let entries = o.spec.dynamic_modules.unwrap_or_default();
    check_dynamic_modules(&entries);
    let deployment = o.spec.provider.kubernetes.and_then(|k| k.envoy_deployment);
    let (pod, container) = match deployment {
        Some(d) => (d.pod, d.container),
        None => (None, None),
    };
    let volumes: Vec<Volume> = pod
        .and_then(|p| p.volumes)
        .unwrap_or_default()
        .iter()
        .map(|v| strict("Volume", v))
        .collect();
    let mut modules = ProxyModules {
        entries,
        ..Default::default()
    };
    let env = match container {
        Some(c) => {
            assert!(
                c.image.is_none() || c.image_repository.is_none(),
                "image and imageRepository are mutually exclusive"
            );
            modules.envoy_image = c.image;
            for m in c.volume_mounts.unwrap_or_default() {
                let m: VolumeMount = strict("VolumeMount", &m);
                let vol = volumes
                    .iter()
                    .find(|v| v.name == m.name)
                    .unwrap_or_else(|| panic!("volumeMount {} has no pod volume", m.name));
                assert!(m.mount_path.starts_with('/'));
                if let Some(i) = &vol.image {
                    assert_eq!(m.read_only, Some(true), "an image volume is read-only");
                    let r = i.reference.clone().expect("image volume reference");
                    assert!(!r.is_empty() && !r.contains(char::is_whitespace));
                    modules.image_mounts.push((m.mount_path, r));
                }
            }
            c.env
        }
        None => vec![],
    };
    let vars = env
        .iter()
        .map(|e| {
            let e: EnvVar = strict("EnvVar", e);
            let r = e
                .value_from
                .and_then(|f| f.secret_key_ref)
                .expect("secretKeyRef");
            (e.name, r.name, r.key)
        })
        .collect();
    (o.metadata.namespace, vars, modules)
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct ExtensionPolicySpec {
    target_ref: Option<TargetRef>,
    target_refs: Option<Vec<TargetRef>>,
    wasm: Option<Vec<Wasm>>,
    dynamic_module: Option<Vec<DynamicModule>>,
}

/// `api/v1alpha1/dynamic_module_types.go` DynamicModule.
#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct DynamicModule {
    name: String,
    filter_name: Option<String>,
    config: Option<Value>,
    terminal_filter: Option<bool>,
}

/// The filter an EnvoyExtensionPolicy loads.
#[derive(Debug, Clone, PartialEq)]
enum Loaded {
    /// Its env.hostKeys.
    Wasm(Vec<String>),
    /// The registered module's name.
    Module(String),
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct Wasm {
    name: Option<String>,
    #[serde(rename = "rootID")]
    root_id: Option<String>,
    code: WasmCodeSource,
    config: Option<Value>,
    fail_open: Option<bool>,
    env: Option<WasmEnv>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct WasmCodeSource {
    #[serde(rename = "type")]
    ty: String,
    http: Option<CodeSource>,
    image: Option<CodeSource>,
    pull_policy: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CodeSource {
    url: String,
    sha256: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct WasmEnv {
    host_keys: Vec<String>,
}

fn is_sha256(s: &str) -> bool {
    s.len() == 64
        && s.bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

/// The filter's config (checked by the filter's own compile), the names of
/// the HTTPRoutes it is enabled on, and what it loads.
fn check_extension_policy(v: &Value) -> (Value, Vec<String>, Loaded) {
    let o: EgObject<ExtensionPolicySpec> = eg("EnvoyExtensionPolicy", v);
    let kinds = [
        "Gateway",
        "ListenerSet",
        "HTTPRoute",
        "GRPCRoute",
        "UDPRoute",
        "TCPRoute",
        "TLSRoute",
    ];
    check_targets(
        "EnvoyExtensionPolicy",
        o.spec.target_ref.as_ref(),
        o.spec.target_refs.as_ref(),
        &kinds,
    );
    let targets = o
        .spec
        .target_refs
        .as_ref()
        .unwrap()
        .iter()
        .filter(|t| t.kind == "HTTPRoute")
        .map(|t| t.name.clone())
        .collect();
    let wasm = o.spec.wasm.unwrap_or_default();
    let modules = o.spec.dynamic_module.unwrap_or_default();
    assert!(wasm.len() <= 16 && modules.len() <= 16, "MaxItems=16");
    assert_eq!(
        wasm.len() + modules.len(),
        1,
        "one mcpgw filter: the wasm or the module"
    );
    if let Some(m) = modules.into_iter().next() {
        assert!(is_module_name(&m.name), "{}", m.name);
        assert_eq!(m.name, mcpgw_module::names::MODULE_NAME);
        assert_eq!(
            m.filter_name.as_deref(),
            Some(mcpgw_module::names::FILTER_NAME),
            "the module's filter (filter_name)"
        );
        assert!(m.filter_name.as_ref().is_some_and(|f| f.len() <= 253));
        assert_ne!(m.terminal_filter, Some(true), "the route's backends answer");
        return (m.config.expect("config"), targets, Loaded::Module(m.name));
    }
    let w = wasm.into_iter().next().unwrap();
    assert_eq!(w.name.as_deref(), Some("mcpgw"));
    assert_eq!(
        w.root_id.as_deref(),
        Some("mcpgw"),
        "the filter's root context id"
    );
    assert_eq!(w.fail_open, Some(false), "never pass unfiltered");
    let c = &w.code;
    assert!(["HTTP", "Image"].contains(&c.ty.as_str()));
    assert_eq!(
        c.ty == "HTTP",
        c.http.is_some(),
        "If type is HTTP, http field needs to be set"
    );
    assert_eq!(
        c.ty == "Image",
        c.image.is_some(),
        "If type is Image, image field needs to be set"
    );
    assert!(c.pull_policy.is_none());
    if let Some(h) = &c.http {
        assert!(h.url.starts_with("https://") || h.url.starts_with("http://"));
        assert!(
            h.sha256.as_deref().is_some_and(is_sha256),
            "the wasm file's sha256"
        );
    }
    if let Some(i) = &c.image {
        // Envoy Gateway compares sha256 with the image's manifest digest: it
        // is set exactly when the reference carries that digest.
        let digest = i.url.split_once("@sha256:").map(|(_, d)| d.to_string());
        assert_eq!(i.sha256, digest, "{}", i.url);
    }
    let config = w.config.expect("config");
    (
        config,
        targets,
        Loaded::Wasm(w.env.map(|e| e.host_keys).unwrap_or_default()),
    )
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct PatchPolicySpec {
    target_ref: LocalObjectRef,
    #[serde(rename = "type")]
    ty: String,
    json_patches: Vec<JsonPatch>,
    priority: Option<i32>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct JsonPatch {
    #[serde(rename = "type")]
    ty: String,
    name: String,
    operation: PatchOperation,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct PatchOperation {
    op: String,
    path: Option<String>,
    json_path: Option<String>,
    from: Option<String>,
    value: Option<Value>,
}

fn check_patch_policy(v: &Value, filter_name: &str) {
    let o: EgObject<PatchPolicySpec> = eg("EnvoyPatchPolicy", v);
    assert_eq!(o.spec.ty, "JSONPatch");
    assert!(o.spec.priority.is_none());
    assert_eq!(
        (
            o.spec.target_ref.group.as_str(),
            o.spec.target_ref.kind.as_str()
        ),
        (GATEWAY_API, "Gateway")
    );
    let mut paths = Vec::new();
    for p in &o.spec.json_patches {
        assert_eq!(
            p.ty,
            "type.googleapis.com/envoy.config.listener.v3.Listener"
        );
        assert_eq!(
            p.name.split('/').count(),
            3,
            "<ns>/<gateway>/<listener>: {}",
            p.name
        );
        assert!(p.name.starts_with(&format!(
            "{}/{}/",
            o.metadata.namespace, o.spec.target_ref.name
        )));
        assert_eq!(p.operation.op, "add");
        assert!(p.operation.from.is_none() && p.operation.value.is_some());
        let jp = p.operation.json_path.as_deref().unwrap();
        assert!(jp.contains(&format!("@.name=='{filter_name}'")), "{jp}");
        assert!(
            jp.ends_with(".typed_config.config"),
            "the Wasm filter's PluginConfig: {jp}"
        );
        paths.push(p.operation.path.clone().unwrap());
    }
    assert_eq!(paths, ["allow_on_headers_stop_iteration", "failure_policy"]);
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct TrafficPolicySpec {
    target_ref: Option<TargetRef>,
    target_refs: Option<Vec<TargetRef>>,
    timeout: Option<ClientTimeout>,
    connection: Option<ClientConnection>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ClientTimeout {
    http: Option<HttpClientTimeout>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct HttpClientTimeout {
    stream_idle_timeout: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct ClientConnection {
    buffer_limit: Option<String>,
}

/// Gateway API Duration: `^([0-9]{1,5}(h|m|s|ms)){1,4}$`.
fn is_duration(s: &str) -> bool {
    let mut rest = s;
    let mut parts = 0;
    while !rest.is_empty() {
        let digits = rest.bytes().take_while(u8::is_ascii_digit).count();
        if !(1..=5).contains(&digits) {
            return false;
        }
        rest = &rest[digits..];
        let unit = ["ms", "h", "m", "s"]
            .into_iter()
            .find(|u| rest.starts_with(u));
        let Some(u) = unit else { return false };
        rest = &rest[u.len()..];
        parts += 1;
    }
    (1..=4).contains(&parts)
}

fn check_traffic_policy(v: &Value) {
    let o: EgObject<TrafficPolicySpec> = eg("ClientTrafficPolicy", v);
    check_targets(
        "ClientTrafficPolicy",
        o.spec.target_ref.as_ref(),
        o.spec.target_refs.as_ref(),
        &["Gateway", "ListenerSet"],
    );
    let idle = o
        .spec
        .timeout
        .and_then(|t| t.http)
        .and_then(|h| h.stream_idle_timeout)
        .unwrap();
    assert!(is_duration(&idle), "{idle}");
    let limit = o.spec.connection.and_then(|c| c.buffer_limit).unwrap();
    assert!(
        limit.trim_end_matches("Mi").parse::<u32>().is_ok(),
        "{limit}"
    );
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct SecurityPolicySpec {
    target_ref: Option<TargetRef>,
    target_refs: Option<Vec<TargetRef>>,
    jwt: Jwt,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct Jwt {
    optional: Option<bool>,
    fail_open: Option<bool>,
    providers: Vec<JwtProvider>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct JwtProvider {
    name: String,
    issuer: Option<String>,
    audiences: Option<Vec<String>>,
    #[serde(rename = "remoteJWKS")]
    remote_jwks: Option<RemoteJwks>,
    #[serde(rename = "localJWKS")]
    local_jwks: Option<LocalJwks>,
    claim_to_headers: Option<Vec<ClaimToHeader>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct RemoteJwks {
    uri: String,
    cache_duration: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct LocalJwks {
    #[serde(rename = "type")]
    ty: String,
    inline: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ClaimToHeader {
    header: String,
    claim: String,
}

fn check_security_policy(v: &Value) -> Vec<String> {
    let o: EgObject<SecurityPolicySpec> = eg("SecurityPolicy", v);
    let kinds = [
        "Gateway",
        "ListenerSet",
        "HTTPRoute",
        "GRPCRoute",
        "TCPRoute",
    ];
    check_targets(
        "SecurityPolicy",
        o.spec.target_ref.as_ref(),
        o.spec.target_refs.as_ref(),
        &kinds,
    );
    let j = &o.spec.jwt;
    assert!(
        !(j.optional.is_some() && j.fail_open.is_some()),
        "optional and failOpen cannot both be set"
    );
    assert_eq!(
        j.fail_open,
        Some(true),
        "the filter answers the MCP 401 itself"
    );
    assert!((1..=16).contains(&j.providers.len()));
    for p in &j.providers {
        assert_eq!(p.name, JWT_PROVIDER, "the filter's metadata key");
        assert!(
            p.remote_jwks.is_some() != p.local_jwks.is_some(),
            "remoteJWKS xor localJWKS"
        );
        if let Some(r) = &p.remote_jwks {
            assert!(!r.uri.is_empty() && r.uri.len() <= 253);
            assert!(r.cache_duration.as_deref().is_none_or(is_duration));
        }
        if let Some(l) = &p.local_jwks {
            assert_eq!(l.ty, "Inline");
            assert!(l.inline.is_some());
        }
        assert!(p.issuer.as_deref().is_some_and(|i| i.contains("://")));
        for a in p.audiences.iter().flatten() {
            assert!(!a.is_empty());
        }
        for c in p.claim_to_headers.iter().flatten() {
            assert!(!c.header.is_empty() && !c.claim.is_empty());
        }
    }
    o.spec
        .target_refs
        .unwrap()
        .into_iter()
        .map(|t| t.name)
        .collect()
}

// ---------------------------------------------------------------------------
// Gateway API kinds, with the gateway-api crate
// ---------------------------------------------------------------------------

/// Gateway API's HTTPRoute CRD rules that apply to what mcpgw writes.
fn check_http_route(r: &HttpRoute) {
    let what = r.metadata.name.clone().unwrap();
    assert!(names::is_subdomain(&what));
    let hostnames = r.spec.hostnames.clone().unwrap_or_default();
    assert!(hostnames.len() <= 16, "{what}");
    for h in &hostnames {
        let bare = h.strip_prefix("*.").unwrap_or(h);
        assert!(
            names::is_subdomain(bare) && bare.parse::<IpAddr>().is_err(),
            "{what}: {h}"
        );
    }
    let parents = r.spec.parent_refs.clone().unwrap_or_default();
    assert!(!parents.is_empty() && parents.len() <= 32, "{what}");
    let rules = r.spec.rules.clone().unwrap();
    assert!(
        (1..=16).contains(&rules.len()),
        "{what}: {} rules",
        rules.len()
    );
    let total: usize = rules
        .iter()
        .map(|r| r.matches.as_ref().map_or(1, Vec::len))
        .sum();
    assert!(total <= 128, "{what}: {total} matches");
    for rule in &rules {
        let matches = rule.matches.clone().unwrap();
        assert!(!matches.is_empty() && matches.len() <= 64);
        for m in &matches {
            let p = m.path.as_ref().unwrap();
            let v = p.value.as_deref().unwrap();
            assert!(
                v.starts_with('/') && v.len() <= 1024 && !v.contains("//"),
                "{v}"
            );
            for h in m.headers.iter().flatten() {
                assert!(h
                    .name
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)));
                assert!(h.value.len() <= 4096);
            }
        }
        let filters = rule.filters.clone().unwrap_or_default();
        assert!(filters.len() <= 16);
        for f in &filters {
            assert_eq!(f.r#type, HttpRouteRulesFiltersType::UrlRewrite);
            let u = f.url_rewrite.as_ref().unwrap();
            if let Some(h) = &u.hostname {
                // PreciseHostname, and Envoy Gateway refuses IP addresses.
                assert!(
                    names::is_subdomain(h) && h.parse::<IpAddr>().is_err(),
                    "{h}"
                );
            }
            let p = u.path.as_ref().unwrap();
            assert_eq!(
                p.r#type,
                HttpRouteRulesFiltersUrlRewritePathType::ReplaceFullPath
            );
            assert!(p.replace_prefix_match.is_none());
            let full = p.replace_full_path.as_deref().unwrap();
            assert!(full.starts_with('/') && full.len() <= 1024);
        }
        let refs = rule.backend_refs.clone().unwrap();
        assert!(!refs.is_empty() && refs.len() <= 16);
        for b in &refs {
            assert_eq!(
                (b.group.as_deref(), b.kind.as_deref()),
                (Some(ENVOY_GATEWAY), Some("Backend"))
            );
            assert!(
                b.namespace.is_none(),
                "same namespace: no ReferenceGrant needed"
            );
        }
        let t = rule.timeouts.as_ref().unwrap().request.as_deref().unwrap();
        assert!(is_duration(t), "{t}");
    }
}

fn check_backend_tls_policy(p: &BackendTlsPolicy) {
    let v = &p.spec.validation;
    let refs = v
        .ca_certificate_refs
        .as_ref()
        .is_some_and(|r| !r.is_empty());
    assert!(
        refs != v.well_known_ca_certificates.is_some(),
        "exactly one CA source"
    );
    assert!(names::is_subdomain(&v.hostname));
    assert!(!p.spec.target_refs.is_empty() && p.spec.target_refs.len() <= 16);
}

// ---------------------------------------------------------------------------
// The whole rendering
// ---------------------------------------------------------------------------

/// A rendering, read back and checked document by document.
struct Cluster {
    routes: Vec<HttpRoute>,
    /// Backend name -> endpoint.
    backends: Vec<(String, Endpoint)>,
    /// The filter's plugin configuration.
    config: Value,
    /// HTTPRoutes the filter and the JWT check are enabled on.
    wasm_routes: Vec<String>,
    jwt_routes: Option<Vec<String>>,
    /// (namespace, variable, Secret, key) the Envoy container reads.
    env: Vec<(String, String, String, String)>,
    /// What the EnvoyExtensionPolicy loads.
    loaded: Option<Loaded>,
    /// Per EnvoyProxy (namespace): what it gives the module.
    proxies: Vec<(String, ProxyModules)>,
    /// (namespace, name) of the Secrets in the output.
    secrets: Vec<(String, String)>,
}

fn read(text: &str) -> Cluster {
    let docs = documents(text);
    let tls_policies: Vec<BackendTlsPolicy> = docs
        .iter()
        .filter(|d| kind(d) == "BackendTLSPolicy")
        .map(|d| strict(&name(d), &body(d, "gateway.networking.k8s.io/v1")))
        .collect();
    tls_policies.iter().for_each(check_backend_tls_policy);
    let mut c = Cluster {
        routes: vec![],
        backends: vec![],
        config: Value::Null,
        wasm_routes: vec![],
        jwt_routes: None,
        env: vec![],
        loaded: None,
        proxies: vec![],
        secrets: vec![],
    };
    let mut filter_name = String::new();
    for d in &docs {
        match kind(d) {
            "Secret" => {
                let s: Secret = strict(&name(d), &body(d, "v1"));
                assert_eq!(s.type_.as_deref(), Some("Opaque"));
                let m = s.metadata;
                c.secrets.push((m.namespace.unwrap(), m.name.unwrap()));
            }
            "HTTPRoute" => {
                let r: HttpRoute = strict(&name(d), &body(d, "gateway.networking.k8s.io/v1"));
                check_http_route(&r);
                c.routes.push(r);
            }
            "Backend" => c.backends.push(check_backend(d, &tls_policies)),
            "EnvoyProxy" => {
                let (ns, vars, modules) = check_envoy_proxy(d);
                c.env
                    .extend(vars.into_iter().map(|(v, s, k)| (ns.clone(), v, s, k)));
                c.proxies.push((ns, modules));
            }
            "EnvoyExtensionPolicy" => {
                let (config, routes, loaded) = check_extension_policy(d);
                filter_name = format!(
                    "envoy.filters.http.wasm/envoyextensionpolicy/{}/{}/wasm/0",
                    d["metadata"]["namespace"].as_str().unwrap(),
                    d["metadata"]["name"].as_str().unwrap()
                );
                c.config = config;
                c.wasm_routes = routes;
                c.loaded = Some(loaded);
            }
            "SecurityPolicy" => c.jwt_routes = Some(check_security_policy(d)),
            "ClientTrafficPolicy" => check_traffic_policy(d),
            "EnvoyPatchPolicy" | "BackendTLSPolicy" => {}
            other => panic!("unexpected kind {other}"),
        }
    }
    let patches: Vec<&Value> = docs
        .iter()
        .filter(|d| kind(d) == "EnvoyPatchPolicy")
        .collect();
    for d in &patches {
        check_patch_policy(d, &filter_name);
    }
    let route_names: Vec<String> = c
        .routes
        .iter()
        .map(|r| r.metadata.name.clone().unwrap())
        .collect();
    assert_eq!(c.wasm_routes, route_names, "the filter runs on every route");
    if let Some(j) = &c.jwt_routes {
        assert_eq!(j, &route_names, "and so does the JWT check");
    }
    // Every variable the filter reads is in the Envoy container's
    // environment: the wasm sees those its hostKeys name, the module all.
    let mut env_vars: Vec<String> = c.env.iter().map(|e| e.1.clone()).collect();
    env_vars.sort();
    env_vars.dedup();
    let read = std::cell::RefCell::new(Vec::new());
    mcpgw_core::gateway::config::compile(c.config.to_string().as_bytes(), &|n| {
        read.borrow_mut().push(n.to_string());
        Some(crate::golden::KEY.to_string())
    })
    .unwrap();
    let mut read = read.into_inner();
    read.sort();
    read.dedup();
    assert!(
        read.iter().all(|n| env_vars.contains(n)),
        "{read:?} in {env_vars:?}"
    );
    match c.loaded.clone().expect("an EnvoyExtensionPolicy") {
        Loaded::Wasm(keys) => {
            assert_eq!(env_vars, keys);
            assert!(c.proxies.iter().all(|(_, m)| m.entries.is_empty()
                && m.envoy_image.is_none()
                && m.image_mounts.is_empty()));
        }
        Loaded::Module(name) => {
            assert!(patches.is_empty(), "no wasm patch for the module");
            assert!(!c.proxies.is_empty());
            // Envoy Gateway refuses a policy whose module the Gateway's
            // EnvoyProxy does not register; the .so must be in the
            // container and Envoy 1.40 must run it.
            for (ns, m) in &c.proxies {
                let e = m
                    .entries
                    .iter()
                    .find(|e| e.name == name)
                    .unwrap_or_else(|| panic!("EnvoyProxy in {ns}: module {name} not registered"));
                let path = e
                    .source
                    .local
                    .as_ref()
                    .expect("a local module")
                    .path
                    .clone();
                assert!(path.ends_with(&format!("/{}", mcpgw_module::names::LIBRARY_FILE)));
                assert_eq!(e.do_not_close, Some(true));
                assert!(e.load_globally.is_none());
                for (mount, _) in &m.image_mounts {
                    assert!(path.starts_with(&format!("{mount}/")), "{path} in {mount}");
                }
                let image = m.envoy_image.as_deref().expect("the Envoy image");
                assert!(!image.is_empty());
            }
        }
    }
    c
}

// ---------------------------------------------------------------------------
// Routing: Gateway API's precedence, and Envoy Gateway's order
// ---------------------------------------------------------------------------

#[derive(Debug, Clone)]
struct Request {
    host: String,
    path: String,
    headers: Vec<(String, String)>,
}

impl Request {
    fn new(host: &str, path: &str) -> Request {
        Request {
            host: host.into(),
            path: path.into(),
            headers: vec![],
        }
    }

    fn with(mut self, name: &str, value: &str) -> Request {
        self.headers.push((name.into(), value.into()));
        self
    }
}

/// The rule a request lands on: (HTTPRoute, rule index).
type Landing = (String, usize);

/// Gateway API hostname matching; the Host's port is ignored.
fn host_matches(route_hosts: &[String], host: &str) -> bool {
    let host = host.rsplit_once(':').map_or(host, |(h, p)| {
        if p.bytes().all(|b| b.is_ascii_digit()) {
            h
        } else {
            host
        }
    });
    route_hosts.is_empty()
        || route_hosts.iter().any(|h| match h.strip_prefix("*.") {
            Some(suffix) => host.ends_with(&format!(".{suffix}")),
            None => h == host,
        })
}

fn match_applies(m: &HttpRouteRulesMatches, r: &Request) -> bool {
    let path = r.path.split(['?', '#']).next().unwrap();
    let path_ok = match &m.path {
        None => true,
        Some(p) => {
            let v = p.value.as_deref().unwrap_or("/");
            match p.r#type {
                Some(HttpRouteRulesMatchesPathType::Exact) => path == v,
                Some(HttpRouteRulesMatchesPathType::PathPrefix) | None => {
                    let v = v.trim_end_matches('/');
                    v.is_empty() || path == v || path.starts_with(&format!("{v}/"))
                }
                Some(HttpRouteRulesMatchesPathType::RegularExpression) => panic!("not used"),
            }
        }
    };
    let headers_ok = m.headers.iter().flatten().all(|h| {
        assert!(h.r#type.is_none() || h.r#type == Some(HttpRouteRulesMatchesHeadersType::Exact));
        r.headers
            .iter()
            .any(|(k, v)| k.eq_ignore_ascii_case(&h.name) && *v == h.value)
    });
    assert!(m.method.is_none() && m.query_params.is_none());
    path_ok && headers_ok
}

/// Gateway API's precedence key of a match.
type Precedence = (bool, usize, bool, usize, usize);

/// Gateway API's precedence of a match: Exact path, longest path, method,
/// most header matches, most query matches (bigger wins).
fn precedence(m: &HttpRouteRulesMatches) -> Precedence {
    let (exact, len) = match &m.path {
        None => (false, 0),
        Some(p) => (
            p.r#type == Some(HttpRouteRulesMatchesPathType::Exact),
            p.value
                .as_deref()
                .map_or(0, |v| if v == "/" { 0 } else { v.len() }),
        ),
    };
    (
        exact,
        len,
        m.method.is_some(),
        m.headers.as_ref().map_or(0, Vec::len),
        m.query_params.as_ref().map_or(0, Vec::len),
    )
}

fn rules_of(r: &HttpRoute) -> Vec<HttpRouteRules> {
    r.spec.rules.clone().unwrap_or_default()
}

/// Where Gateway API's precedence sends `req`, if anywhere. Panics when the
/// best matches tie across rules: the outcome would depend on rule order.
fn by_precedence(routes: &[HttpRoute], req: &Request) -> Option<Landing> {
    let mut best: Option<(Precedence, Vec<Landing>)> = None;
    for r in routes {
        if !host_matches(&r.spec.hostnames.clone().unwrap_or_default(), &req.host) {
            continue;
        }
        for (i, rule) in rules_of(r).iter().enumerate() {
            for m in rule.matches.iter().flatten() {
                if !match_applies(m, req) {
                    continue;
                }
                let key = precedence(m);
                let at = (r.metadata.name.clone().unwrap(), i);
                match &mut best {
                    Some((k, ats)) if *k == key => {
                        if !ats.contains(&at) {
                            ats.push(at);
                        }
                    }
                    Some((k, _)) if *k > key => {}
                    _ => best = Some((key, vec![at])),
                }
            }
        }
    }
    let (_, ats) = best?;
    assert_eq!(
        ats.len(),
        1,
        "{req:?} ties between rules {ats:?}: the outcome depends on rule order"
    );
    ats.into_iter().next()
}

/// Where Envoy sends `req` with Envoy Gateway's route table: one route per
/// match, sorted as its translator does (path match kind Exact > regex >
/// prefix, then path length with "/" as 0, then header matches, then exact
/// header matches; descending, stable), first match wins.
fn by_envoy_gateway(routes: &[HttpRoute], req: &Request) -> Option<Landing> {
    let mut table: Vec<(Landing, HttpRouteRulesMatches, bool)> = Vec::new();
    for r in routes {
        let host_ok = host_matches(&r.spec.hostnames.clone().unwrap_or_default(), &req.host);
        for (i, rule) in rules_of(r).iter().enumerate() {
            for m in rule.matches.iter().flatten() {
                table.push(((r.metadata.name.clone().unwrap(), i), m.clone(), host_ok));
            }
        }
    }
    let rank = |m: &HttpRouteRulesMatches| {
        let kind = match m.path.as_ref().and_then(|p| p.r#type.clone()) {
            Some(HttpRouteRulesMatchesPathType::Exact) => 2,
            Some(HttpRouteRulesMatchesPathType::RegularExpression) => 1,
            _ => 0,
        };
        let (_, len, _, headers, _) = precedence(m);
        let exact_headers = m
            .headers
            .iter()
            .flatten()
            .filter(|h| {
                h.r#type.is_none() || h.r#type == Some(HttpRouteRulesMatchesHeadersType::Exact)
            })
            .count();
        (kind, len, headers, exact_headers)
    };
    table.sort_by_key(|t| std::cmp::Reverse(rank(&t.1)));
    table
        .into_iter()
        .find(|(_, m, host_ok)| *host_ok && match_applies(m, req))
        .map(|(at, _, _)| at)
}

/// The routes as written, and with their rules and the routes themselves in
/// reverse order (what a different sort or a different creation order does).
fn reorderings(routes: &[HttpRoute]) -> Vec<Vec<HttpRoute>> {
    let mut reversed: Vec<HttpRoute> = routes.to_vec();
    reversed.reverse();
    for r in &mut reversed {
        if let Some(rules) = r.spec.rules.as_mut() {
            rules.reverse();
        }
    }
    vec![routes.to_vec(), reversed]
}

/// The rule `req` lands on, the same by precedence and by Envoy Gateway's
/// table, in every order. Landings in reversed copies are mapped back to the
/// rule index as written.
fn land(routes: &[HttpRoute], req: &Request) -> Option<Landing> {
    let written = by_precedence(routes, req);
    for (n, rs) in reorderings(routes).iter().enumerate() {
        let unreverse = |l: Option<Landing>| {
            l.map(|(r, i)| {
                if n == 0 {
                    return (r, i);
                }
                let count = routes
                    .iter()
                    .find(|x| x.metadata.name.as_deref() == Some(&r))
                    .map_or(0, |x| rules_of(x).len());
                (r, count - 1 - i)
            })
        };
        assert_eq!(
            unreverse(by_precedence(rs, req)),
            written,
            "{req:?}: precedence, order {n}"
        );
        assert_eq!(
            unreverse(by_envoy_gateway(rs, req)),
            written,
            "{req:?}: Envoy Gateway's table, order {n}"
        );
    }
    written
}

/// What a landing does: (Backend, Host the backend sees, path it sees, the
/// cluster Envoy Gateway names for the rule).
fn forward(c: &Cluster, l: &Landing, req: &Request) -> (String, String, String, String) {
    let route = c
        .routes
        .iter()
        .find(|r| r.metadata.name.as_ref() == Some(&l.0))
        .unwrap();
    let rule = &rules_of(route)[l.1];
    let refs = rule.backend_refs.clone().unwrap();
    assert_eq!(refs.len(), 1);
    let mut host = req.host.clone();
    let mut path = req.path.clone();
    for f in rule.filters.iter().flatten() {
        let u = f.url_rewrite.as_ref().unwrap();
        if let Some(h) = &u.hostname {
            host = h.clone();
        }
        if let Some(p) = u.path.as_ref().and_then(|p| p.replace_full_path.clone()) {
            // Envoy Gateway: regex_rewrite "^/.*$" on the path without its query.
            path = p;
        }
    }
    let ns = route.metadata.namespace.clone().unwrap();
    (refs[0].name.clone(), host, path, eg_cluster(&ns, &l.0, l.1))
}

/// What the filter does with a client request to the MCP path: it answers
/// itself (initialize, lists, discovery) on the rule it runs on, or sets
/// the route header for one backend; with `rewrite: route` nothing else
/// changes before Envoy picks the route again (the query is dropped).
fn routed(req: &Request, cluster: &str) -> Request {
    let mut r = req.clone().with(ROUTE_HEADER, cluster);
    r.path = r.path.split('?').next().unwrap().to_string();
    r
}

/// Every routed call and every path the filter answers lands where it must,
/// for each host in `hosts`; a host in `strangers` and paths that are not
/// the gateway's never reach the filter.
fn check_routing(text: &str, hosts: &[&str], strangers: &[&str]) -> Cluster {
    let c = read(text);
    assert_eq!(
        c.config["rewrite"], "route",
        "the route rewrites path and host"
    );
    let compiled = mcpgw_core::gateway::config::compile(c.config.to_string().as_bytes(), &|_| {
        Some(crate::golden::KEY.to_string())
    })
    .unwrap();
    let mcp_path = compiled.path.clone();
    let mut answered: Vec<String> = vec![mcp_path.clone()];
    if let Some(a) = &compiled.auth {
        answered.extend(a.well_known_paths().into_iter().map(str::to_string));
    }
    for host in hosts {
        for p in &answered {
            for path in [p.clone(), format!("{p}?x=1")] {
                let req = Request::new(host, &path);
                let l = land(&c.routes, &req)
                    .unwrap_or_else(|| panic!("{req:?} reaches no rule: the filter never sees it"));
                assert!(c.wasm_routes.contains(&l.0), "{req:?}");
                // Whatever a client sends in the route header, the filter
                // removes or replaces it before it matters; the first route
                // choice only has to run the filter.
                let spoofed = req.clone().with(ROUTE_HEADER, "httproute/x/y/rule/0");
                assert!(land(&c.routes, &spoofed).is_some_and(|l| c.wasm_routes.contains(&l.0)));
            }
        }
        for b in c.config["backends"].as_array().unwrap() {
            let cluster = b["cluster"].as_str().unwrap();
            let name = b["name"].as_str().unwrap();
            let client = Request::new(host, &format!("{mcp_path}?client=q"));
            let req = routed(&client, cluster);
            let l =
                land(&c.routes, &req).unwrap_or_else(|| panic!("{name}: {req:?} reaches no rule"));
            let (backend, up_host, up_path, rule_cluster) = forward(&c, &l, &req);
            assert_eq!(
                rule_cluster, cluster,
                "{name}: fan-out calls use the routed rule's cluster"
            );
            let ep = &c
                .backends
                .iter()
                .find(|(n, _)| *n == backend)
                .unwrap_or_else(|| panic!("{name}: Backend {backend} is not rendered"))
                .1;
            // The filter's own idea of the backend (fan-out calls).
            let authority = b["authority"].as_str().unwrap();
            let want_host = authority
                .rsplit_once(':')
                .map_or(authority, |(h, _)| h)
                .trim_matches(['[', ']']);
            assert_eq!(
                ep.host.trim_end_matches('.'),
                want_host,
                "{name}: Backend {backend}"
            );
            let port = if authority.contains("]:") || authority.matches(':').count() == 1 {
                authority
                    .rsplit_once(':')
                    .unwrap()
                    .1
                    .parse::<i64>()
                    .unwrap()
            } else {
                ep.port
            };
            assert_eq!(ep.port, port, "{name}: port");
            if want_host.parse::<IpAddr>().is_err() {
                assert_eq!(up_host, want_host, "{name}: Host");
            }
            assert_eq!(up_path, b["path"].as_str().unwrap(), "{name}: path");
        }
    }
    for host in strangers {
        for p in &answered {
            assert_eq!(land(&c.routes, &Request::new(host, p)), None, "{host}{p}");
        }
    }
    for host in hosts {
        for p in [
            "/",
            "/other",
            &format!("{mcp_path}/x"),
            &format!("{mcp_path}x"),
        ] {
            let l = land(&c.routes, &Request::new(host, p));
            assert_eq!(l, None, "{p} is not the gateway's");
        }
    }
    c
}

// ---------------------------------------------------------------------------
// The cases
// ---------------------------------------------------------------------------

#[test]
fn the_announcement_routes_github_to_github() {
    let (g, p) = announcement();
    for o in [
        http_code(),
        opts(WasmCode::Image(format!("ghcr.io/x/mcpgw@sha256:{DIGEST}"))),
    ] {
        let text = render(&g, &p, &o).unwrap().text;
        let c = check_routing(&text, &["localhost:1975", "mcp.example.com"], &[]);
        let host = "mcp.example.com";
        let call = |cluster: &str| {
            let req = routed(&Request::new(host, "/mcp"), cluster);
            forward(&c, &land(&c.routes, &req).unwrap(), &req)
        };
        let github = call("httproute/default/mcp-route/rule/1");
        assert_eq!(
            github,
            (
                "github".into(),
                "api.githubcopilot.com".into(),
                "/mcp/readonly".into(),
                "httproute/default/mcp-route/rule/1".into()
            )
        );
        let context7 = call("httproute/default/mcp-route/rule/0");
        assert_eq!(
            (context7.0.as_str(), context7.1.as_str()),
            ("context7", "mcp.context7.com")
        );
        // OAuth discovery reaches the filter.
        for p in [
            "/.well-known/oauth-protected-resource/mcp",
            "/.well-known/oauth-protected-resource",
        ] {
            assert!(land(&c.routes, &Request::new(host, p)).is_some(), "{p}");
        }
        assert!(c.jwt_routes.is_some());
    }
}

#[test]
fn every_rendering_reads_back_and_routes() {
    // Every MCPRoute feature; in a cross-namespace Gateway too, both modes.
    let (g, p) = mcproute(&["mcproute-full.yaml"]);
    let text = render(&g, &p, &http_code()).unwrap().text;
    let c = check_routing(
        &text,
        &["mcp.example.com", "mcp.example.com:443"],
        &["other.example.com"],
    );
    assert_eq!(
        c.secrets,
        [(
            "envoy-gateway-system".to_string(),
            "agents-tools-session-key".to_string()
        )]
    );
    let mut g2 = g.clone();
    g2.kube.parent_refs[0].namespace = Some("infra".into());
    for deploy in [
        Deploy::GatewayNamespace,
        Deploy::ControllerNamespace("eg".into()),
    ] {
        let mut o = http_code();
        o.deploy = deploy.clone();
        let c = check_routing(
            &render(&g2, &p, &o).unwrap().text,
            &["mcp.example.com"],
            &[],
        );
        let proxy_ns = match &deploy {
            Deploy::GatewayNamespace => "infra",
            Deploy::ControllerNamespace(n) => n.as_str(),
        };
        // The pods read only Secrets of their own namespace, all rendered
        // there or created there by the user (the header says how).
        for (ns, var, secret, _) in &c.env {
            assert_eq!(ns, "infra", "the EnvoyProxy lives with the Gateway");
            if var.starts_with("MCPGW_SESSION") {
                assert!(
                    c.secrets.contains(&(proxy_ns.to_string(), secret.clone())),
                    "{var}"
                );
            } else {
                assert_eq!(secret, "agents-tools-credentials", "{var}");
            }
        }
    }

    // An MCP servers file whose paths share prefixes, with hostnames.
    let mut g = servers(
        r#"{"mcpServers": {
            "root": {"url": "http://root.example.com/"},
            "a": {"url": "http://a.example.com/mcp"},
            "a-readonly": {"url": "https://a.example.com/mcp/readonly"},
            "a-deeper": {"url": "https://a.example.com:8443/mcp/readonly/x?tenant=1"},
            "GitHub": {"url": "https://api.githubcopilot.com/mcp/", "headers": {"Authorization": "Bearer ${GITHUB_TOKEN}"}},
            "ip": {"url": "http://10.2.3.4:9000/mcp"}}}"#,
    );
    g.hostnames = vec!["mcp.example.com".into(), "*.tools.example.com".into()];
    let text = render(&g, &[], &http_code()).unwrap().text;
    check_routing(
        &text,
        &[
            "mcp.example.com",
            "x.tools.example.com",
            "a.b.tools.example.com:8080",
        ],
        &["tools.example.com", "example.com"],
    );

    // Past Gateway API's 16 rules: several HTTPRoutes, one filter.
    let text = render(&many(40), &[], &http_code()).unwrap().text;
    let c = check_routing(&text, &["anything.example.com"], &[]);
    assert_eq!(c.routes.len(), 3);
}

/// The checks fail for the layout this rendering replaced: per-backend
/// header rules on the path the filter rewrote to, plus a `PathPrefix`
/// catch-all, which Gateway API's precedence (and Envoy Gateway's sort)
/// puts first for `/mcp`.
#[test]
fn the_old_layout_fails_the_routing_checks() {
    let route: HttpRoute = serde_norway::from_str(
        r#"
metadata: {name: mcp-route, namespace: default}
spec:
  parentRefs: [{name: aigw-run}]
  rules:
  - matches: [{headers: [{type: Exact, name: x-mcpgw-cluster, value: httproute/default/mcp-route/rule/0}]}]
    backendRefs: [{group: gateway.envoyproxy.io, kind: Backend, name: context7}]
  - matches: [{headers: [{type: Exact, name: x-mcpgw-cluster, value: httproute/default/mcp-route/rule/1}]}]
    backendRefs: [{group: gateway.envoyproxy.io, kind: Backend, name: github}]
  - matches: [{path: {type: PathPrefix, value: /mcp}}]
    backendRefs: [{group: gateway.envoyproxy.io, kind: Backend, name: context7}]
"#,
    )
    .unwrap();
    // The old filter rewrote :path to github's /mcp/readonly before the
    // route was picked again: the catch-all's 4-character prefix outranks
    // the header rule's implicit "/".
    let req =
        Request::new("h", "/mcp/readonly").with(ROUTE_HEADER, "httproute/default/mcp-route/rule/1");
    assert_eq!(
        by_precedence(std::slice::from_ref(&route), &req),
        Some(("mcp-route".into(), 2))
    );
    assert_eq!(
        by_envoy_gateway(std::slice::from_ref(&route), &req),
        Some(("mcp-route".into(), 2))
    );
    // And the discovery paths reach no rule at all.
    let wk = Request::new("h", "/.well-known/oauth-protected-resource/mcp");
    assert_eq!(by_precedence(&[route], &wk), None);
}

#[test]
fn precedence_ties_across_rules_are_caught() {
    let route: HttpRoute = serde_norway::from_str(
        r#"
metadata: {name: r, namespace: default}
spec:
  rules:
  - matches: [{path: {type: Exact, value: /mcp}}]
    backendRefs: [{name: a}]
  - matches: [{path: {type: Exact, value: /mcp}}]
    backendRefs: [{name: b}]
"#,
    )
    .unwrap();
    let r = std::panic::catch_unwind(|| by_precedence(&[route], &Request::new("h", "/mcp")));
    assert!(r.is_err(), "a tie must fail the check");
}

#[test]
fn duration_and_host_helpers() {
    assert!(
        is_duration("0s") && is_duration("3600s") && is_duration("1h30m") && is_duration("250ms")
    );
    assert!(
        !is_duration("") && !is_duration("10") && !is_duration("1d") && !is_duration("123456s")
    );
    assert!(host_matches(&[], "x"));
    assert!(host_matches(
        &["*.example.com".into()],
        "a.b.example.com:443"
    ));
    assert!(!host_matches(&["*.example.com".into()], "example.com"));
    assert!(host_matches(
        &["mcp.example.com".into()],
        "mcp.example.com:8443"
    ));
}

#[test]
fn token_endpoints_have_their_own_rule_backend_and_cluster() {
    let g = servers(
        r#"{
          "mcpgw": {"oauth": {"issuer": "https://auth.example.com", "jwksUri": "https://auth.example.com/jwks", "resource": "https://mcp.example.com/mcp"}},
          "mcpServers": {
            "docs": {"url": "http://docs.example.com/mcp"},
            "gh": {"url": "https://gh.example.com/mcp", "mcpgw": {"tokenExchange": {
              "stsEndpoint": "https://sts.example.com:8443/oauth2/token", "audience": "https://gh.example.com",
              "clientAuth": {"clientID": "mcpgw", "clientSecret": "${GITHUB_TOKEN}"}}}}
          }
        }"#,
    );
    let text = render(&g, &[], &http_code()).unwrap().text;
    // Also: the client secret's variable is in the Envoy container's environment.
    let c = check_routing(&text, &["mcp.example.com"], &[]);
    let gh = c.config["backends"]
        .as_array()
        .unwrap()
        .iter()
        .find(|b| b["name"] == "gh")
        .unwrap();
    let cluster = gh["token_exchange"]["cluster"].as_str().unwrap();
    assert_eq!(
        cluster, "httproute/default/mcpgw/rule/2",
        "after the backends' rules"
    );
    let req = routed(&Request::new("mcp.example.com", "/mcp"), cluster);
    let (backend, _, _, rule_cluster) = forward(&c, &land(&c.routes, &req).unwrap(), &req);
    assert_eq!(rule_cluster, cluster);
    let ep = &c.backends.iter().find(|(n, _)| *n == backend).unwrap().1;
    assert_eq!((ep.host.as_str(), ep.port), ("sts.example.com", 8443));
    assert!(matches!(&c.loaded, Some(Loaded::Wasm(k)) if k.contains(&"GITHUB_TOKEN".to_string())));
    assert!(c.env.iter().any(|e| e.1 == "GITHUB_TOKEN"));
    // A token endpoint Envoy Gateway would refuse is an error, not a silent gap.
    let local = servers(
        r#"{"mcpServers": {"gh": {"url": "https://gh.example.com/mcp", "mcpgw": {"tokenExchange": {
          "stsEndpoint": "http://127.0.0.1:9000/token", "audience": "gh"}}}}}"#,
    );
    let e = render(&local, &[], &http_code()).unwrap_err();
    assert!(
        e.contains("server \"gh\": its token endpoint: 127.0.0.1 is a loopback address"),
        "{e}"
    );
}

#[test]
fn module_renderings_read_back_and_route() {
    use super::tests::{mcproute_full_without_oauth, module, module_image};
    let (mut g, p) = announcement();
    g.oauth = None;
    let text = render(&g, &p, &module_image()).unwrap().text;
    let c = check_routing(&text, &["localhost:1975", "mcp.example.com"], &[]);
    assert_eq!(c.loaded, Some(Loaded::Module("mcpgw".into())));
    let (_, m) = &c.proxies[0];
    assert_eq!(m.envoy_image.as_deref(), Some(MODULE_ENVOY_IMAGE));
    assert_eq!(
        m.image_mounts,
        [(
            "/etc/envoy/mcpgw".to_string(),
            format!("ghcr.io/example/mcpgw-module@sha256:{DIGEST}")
        )]
    );
    let (g, p) = mcproute_full_without_oauth();
    let mut g2 = g.clone();
    g2.kube.parent_refs[0].namespace = Some("infra".into());
    for deploy in [
        Deploy::GatewayNamespace,
        Deploy::ControllerNamespace("eg".into()),
    ] {
        let mut o = module(ModuleSource::Path("/opt/mcpgw/libmcpgw.so".into()));
        o.deploy = deploy;
        let c = check_routing(
            &render(&g2, &p, &o).unwrap().text,
            &["mcp.example.com"],
            &[],
        );
        assert!(c
            .proxies
            .iter()
            .all(|(ns, m)| ns == "infra" && m.image_mounts.is_empty()));
    }
    let text = render(&many(40), &[], &module_image()).unwrap().text;
    assert_eq!(
        check_routing(&text, &["anything.example.com"], &[])
            .routes
            .len(),
        3
    );
}

/// The read-back refuses what Envoy Gateway would: an unregistered module,
/// a module path outside the mounted image, an unknown field.
#[test]
fn module_read_back_catches_what_envoy_gateway_refuses() {
    use super::tests::module_image;
    let (mut g, p) = announcement();
    g.oauth = None;
    let text = render(&g, &p, &module_image()).unwrap().text;
    for (from, to) in [
        (
            "  dynamicModules:\n  - name: mcpgw\n",
            "  dynamicModules:\n  - name: other\n",
        ),
        (
            "path: /etc/envoy/mcpgw/libmcpgw.so",
            "path: /elsewhere/libmcpgw.so",
        ),
        (
            "    filterName: mcpgw\n",
            "    filterName: mcpgw\n    terminalFilter: true\n",
        ),
        ("      type: Local\n", "      type: Remote\n"),
        (
            "    doNotClose: true\n",
            "    doNotClose: true\n    unknownField: 1\n",
        ),
    ] {
        assert!(text.contains(from), "{from}");
        let bad = text.replace(from, to);
        let r = std::panic::catch_unwind(|| read(&bad));
        assert!(r.is_err(), "accepted: {to}");
    }
}
