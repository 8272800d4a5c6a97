//! Golden renders and the rendering rules (names, limits, namespaces, code
//! sources, warnings). What the output means to Envoy Gateway is checked in
//! `checks.rs`.

#![allow(clippy::unwrap_used, clippy::indexing_slicing, clippy::panic)]

use super::*;
use crate::golden;
use crate::mcp_config::EnvCheck;
use crate::model::ParentRef;

pub const DIGEST: &str = "4d3c2b1a00112233445566778899aabbccddeeff00112233445566778899aabb";

pub fn opts(code: impl Into<Code>) -> Options {
    Options {
        code: code.into(),
        sha256: "0".repeat(64),
        session_key: golden::KEY.into(),
        previous_key: None,
        deploy: Deploy::ControllerNamespace(DEFAULT_CONTROLLER_NAMESPACE.into()),
    }
}

pub fn http_code() -> Options {
    opts(WasmCode::Http("https://example.com/mcpgw.wasm".into()))
}

/// MCPRoute files of testdata/cli, loaded for Kubernetes.
pub fn mcproute(files: &[&str]) -> (Gateway, Vec<serde_norway::Value>) {
    let files: Vec<_> = files.iter().map(|f| golden::testdata(f)).collect();
    let (l, _) = crate::mcproute::load(
        &files,
        &|n| golden::env(n).or_else(|| Some("x".into())),
        EnvCheck::Require,
        crate::mcproute::Mode::Kubernetes,
    )
    .unwrap();
    (l.gateway, l.passthrough)
}

/// The MCPRoute of Envoy AI Gateway's announcement, with the Backends it
/// references and the JWKS Envoy Gateway needs (the issuer's jwks_uri).
pub fn announcement() -> (Gateway, Vec<serde_norway::Value>) {
    let (mut g, p) = mcproute(&["mcp-announcement.yaml", "mcp-announcement-backends.yaml"]);
    g.oauth.as_mut().unwrap().jwks = Some(Jwks::Remote {
        uri: "https://auth-server.example.com/.well-known/jwks.json".into(),
        cache_duration: None,
    });
    (g, p)
}

/// An MCP servers file (JSON text), attached to Gateway `eg`, listener `http`.
pub fn servers(json: &str) -> Gateway {
    let (mut g, _) = crate::mcp_config::load(
        std::path::Path::new("servers.json"),
        json,
        &golden::env,
        EnvCheck::Require,
    )
    .unwrap();
    g.kube.parent_refs.push(ParentRef {
        name: "eg".into(),
        namespace: None,
        section_name: Some("http".into()),
        port: None,
    });
    g
}

/// `n` HTTP servers `s0`.. `s<n-1>` at `http://s<i>.example.com/mcp`.
pub fn many(n: usize) -> Gateway {
    let entries: Vec<String> = (0..n)
        .map(|i| format!(r#""s{i}": {{"url": "http://s{i}.example.com/mcp"}}"#))
        .collect();
    servers(&format!(r#"{{"mcpServers": {{{}}}}}"#, entries.join(",")))
}

#[test]
fn golden_mcproute_full() {
    let (g, p) = mcproute(&["mcproute-full.yaml"]);
    let r = render(
        &g,
        &p,
        &opts(WasmCode::Image(format!(
            "ghcr.io/example/mcpgw@sha256:{DIGEST}"
        ))),
    )
    .unwrap();
    golden::check("mcproute-full.kube.yaml", &r.text);
    // The filter's clusters are Envoy Gateway's names for the route's rules.
    assert!(r.text.contains("cluster: httproute/agents/tools/rule/0"));
    assert!(r.text.contains("value: httproute/agents/tools/rule/3"));
    assert!(r
        .warnings
        .iter()
        .any(|w| w
            .contains("BackendTLSPolicy \"github-tls\": written as gateway.networking.k8s.io/v1")));
    assert!(!r.text.contains("v1alpha3"));
}

/// testdata/cli/mcp-servers.json, attached to Gateway `eg`, listener `http`.
fn servers_file() -> Gateway {
    let (p, text) = golden::testdata("mcp-servers.json");
    let (mut g, _) = crate::mcp_config::load(&p, &text, &golden::env, EnvCheck::Require).unwrap();
    g.kube.parent_refs.push(ParentRef {
        name: "eg".into(),
        namespace: None,
        section_name: Some("http".into()),
        port: None,
    });
    g
}

#[test]
fn golden_mcp_servers_json() {
    let g = servers_file();
    let r = render(&g, &[], &http_code()).unwrap();
    golden::check("mcp-servers.kube.yaml", &r.text);
    assert!(r.text.contains("--from-literal=GITHUB_TOKEN=..."));
    let has = |s: &str| r.warnings.iter().any(|w| w.contains(s));
    assert!(has("\"filesystem\" is a stdio server"));
    assert!(has("server \"local-api\": 127.0.0.1 is a loopback address"));
    assert!(has("routed calls reach it with Host: docs.internal (Gateway API's URLRewrite cannot carry the port 8080)"));
    assert!(!r.text.contains("local-api"), "left out entirely");
}

#[test]
fn golden_announcement_in_gateway_namespace_mode() {
    let (g, p) = announcement();
    let mut o = opts(WasmCode::Image("ghcr.io/example/mcpgw:0.1.0".into()));
    o.deploy = Deploy::GatewayNamespace;
    let r = render(&g, &p, &o).unwrap();
    golden::check("mcp-announcement.kube.yaml", &r.text);
    let has = |s: &str| r.warnings.iter().any(|w| w.contains(s));
    assert!(has("--wasm-image ghcr.io/example/mcpgw:0.1.0: not pinned"));
    assert!(has(
        "listener of Gateway default/aigw-run is assumed to be named \"http\""
    ));
}

#[test]
fn the_announcement_needs_jwks_for_envoy_gateway() {
    let (g, p) = mcproute(&["mcp-announcement.yaml", "mcp-announcement-backends.yaml"]);
    let e = render(&g, &p, &http_code()).unwrap_err();
    assert!(e.contains("remoteJWKS.uri"), "{e}");
}

#[test]
fn names_are_kubernetes_names_and_stable() {
    let g = servers(
        r#"{"mcpServers": {"GitHub": {"url": "https://api.githubcopilot.com/mcp/"},
            "github": {"url": "https://other.example.com/mcp"},
            "My_Server": {"url": "http://my.example.com/mcp"}}}"#,
    );
    let r = render(&g, &[], &http_code()).unwrap();
    let backends: Vec<&str> = docs(&r.text, "Backend")
        .into_iter()
        .filter_map(|d| d.lines().find_map(|l| l.strip_prefix("  name: ")))
        .collect();
    assert_eq!(backends.len(), 3, "{backends:?}");
    assert!(backends.contains(&"mcpgw-github"), "{backends:?}");
    for b in &backends {
        assert!(names::is_label(b), "{b}");
    }
    assert_eq!(
        backends
            .iter()
            .collect::<std::collections::BTreeSet<_>>()
            .len(),
        3,
        "distinct"
    );
    // The same server name gives the same object name in any company.
    let alone = render(
        &servers(r#"{"mcpServers": {"My_Server": {"url": "http://my.example.com/mcp"}}}"#),
        &[],
        &http_code(),
    )
    .unwrap();
    let mine = backends
        .iter()
        .find(|b| b.starts_with("mcpgw-my-server-"))
        .unwrap();
    assert!(alone.text.contains(&format!("name: {mine}\n")));
}

#[test]
fn past_fifteen_backends_the_rules_continue_in_more_routes() {
    for (n, routes) in [(15, 1), (16, 2), (31, 2), (32, 3), (64, 5)] {
        let r = render(&many(n), &[], &http_code()).unwrap();
        let count = docs(&r.text, "HTTPRoute").len();
        assert_eq!(count, routes, "{n} backends");
        for d in docs(&r.text, "HTTPRoute") {
            let rules = d.matches("\n  - matches:").count();
            assert!((1..=16).contains(&rules), "{n}: {rules} rules");
        }
    }
    let r = render(&many(20), &[], &http_code()).unwrap();
    assert!(r
        .text
        .contains("cluster: httproute/default/mcpgw/rule/14\n"));
    assert!(r
        .text
        .contains("cluster: httproute/default/mcpgw-2/rule/0\n"));
    assert!(r
        .text
        .contains("cluster: httproute/default/mcpgw-2/rule/4\n"));
    assert!(r.text.contains("20 backends need 2 HTTPRoutes"));
    let e = render(&many(65), &[], &http_code()).unwrap_err();
    assert!(e.contains("at most 64 backends"), "{e}");
}

#[test]
fn backends_envoy_gateway_refuses_are_left_out_with_the_reason() {
    let g = servers(
        r#"{"mcpServers": {"loop": {"url": "http://127.0.0.1:9000/mcp"},
            "v6": {"url": "http://[::1]:9000/mcp"},
            "local": {"url": "http://localhost:9000/mcp"},
            "short": {"url": "http://my-svc:8080/mcp"},
            "under": {"url": "http://my_svc.example.com/mcp"},
            "ok": {"url": "http://10.1.2.3:8080/mcp"}}}"#,
    );
    let r = render(&g, &[], &http_code()).unwrap();
    let has = |s: &str| r.warnings.iter().any(|w| w.contains(s));
    assert!(has("server \"loop\": 127.0.0.1 is a loopback address"));
    assert!(has("server \"v6\": ::1 is a loopback address"));
    assert!(has("server \"local\": localhost is a loopback name"));
    assert!(has(
        "use the Service's full name (my-svc.<namespace>.svc.cluster.local)"
    ));
    assert!(has(
        "host name \"my_svc.example.com\" is not a valid DNS-1123 name"
    ));
    assert!(has(
        "server \"ok\": Gateway API's URLRewrite cannot set an IP address as Host"
    ));
    assert_eq!(docs(&r.text, "Backend").len(), 1);
    let none = servers(r#"{"mcpServers": {"loop": {"url": "http://127.0.0.1:9000/mcp"}}}"#);
    assert!(render(&none, &[], &http_code())
        .unwrap_err()
        .contains("no backend left"));
}

#[test]
fn code_sources() {
    let g = many(1);
    let code = |o: &Options| {
        let r = render(&g, &[], o).unwrap();
        let d = docs(&r.text, "EnvoyExtensionPolicy")[0].to_string();
        (d, r.warnings)
    };
    let (d, w) = code(&http_code());
    assert!(d.contains("      type: HTTP\n      http:\n        url: https://example.com/mcpgw.wasm\n        sha256: '0000"));
    assert!(w.is_empty(), "{w:?}");
    let (d, w) = code(&opts(WasmCode::Image(format!(
        "r.example/mcpgw@sha256:{DIGEST}"
    ))));
    assert!(
        d.contains(&format!(
            "        url: r.example/mcpgw@sha256:{DIGEST}\n        sha256: {DIGEST}\n"
        )),
        "{d}"
    );
    assert!(w.is_empty(), "{w:?}");
    let (d, w) = code(&opts(WasmCode::Image("r.example/mcpgw:1".into())));
    assert!(
        d.contains("        url: r.example/mcpgw:1\n    config:") || !d.contains("sha256"),
        "{d}"
    );
    assert!(!d.contains("sha256:"), "no checksum for a tag: {d}");
    assert!(w[0].contains("not pinned"), "{w:?}");
    for bad in ["r.example/mcpgw@sha256:abc", "r.example/mcpgw@md5:00"] {
        let e = render(&g, &[], &opts(WasmCode::Image(bad.into()))).unwrap_err();
        assert!(e.contains("manifest digest"), "{e}");
    }
    let e = render(&g, &[], &opts(WasmCode::Http("ftp://x/mcpgw.wasm".into()))).unwrap_err();
    assert!(e.contains("http:// or https://"), "{e}");
}

#[test]
fn hostnames_must_be_gateway_api_hostnames() {
    for (h, ok) in [
        ("mcp.example.com", true),
        ("*.example.com", true),
        ("10.0.0.1", false),
        ("mcp.example.com:8443", false),
        ("MCP.example.com", false),
    ] {
        let mut g = many(1);
        g.hostnames = vec![h.into()];
        assert_eq!(render(&g, &[], &http_code()).is_ok(), ok, "{h}");
    }
    let mut g = many(1);
    g.hostnames = (0..17).map(|i| format!("h{i}.example.com")).collect();
    assert!(render(&g, &[], &http_code())
        .unwrap_err()
        .contains("at most 16"));
}

/// The documents of one kind, as text.
pub fn docs<'a>(text: &'a str, kind: &str) -> Vec<&'a str> {
    let line = format!("\nkind: {kind}\n");
    text.split("---\n").filter(|d| d.contains(&line)).collect()
}

/// (kind, namespace, name) of every document.
pub fn objects_of(text: &str) -> Vec<(String, String, String)> {
    text.split("---\n")
        .skip(1)
        .map(|d| {
            let v: serde_norway::Value = serde_norway::from_str(d).unwrap();
            let s = |v: Option<&serde_norway::Value>| {
                v.and_then(|v| v.as_str()).unwrap_or("").to_string()
            };
            (
                s(v.get("kind")),
                s(v.get("metadata").and_then(|m| m.get("namespace"))),
                s(v.get("metadata").and_then(|m| m.get("name"))),
            )
        })
        .collect()
}

#[test]
fn namespaces_in_both_deployment_modes() {
    // The MCPRoute in `agents` attaches to Gateway `edge` of `agents`.
    let (g, p) = mcproute(&["mcproute-full.yaml"]);
    let mut g = g;
    g.kube.parent_refs.push(ParentRef {
        name: "shared".into(),
        namespace: Some("infra".into()),
        section_name: Some("web".into()),
        port: None,
    });
    let find = |objs: &[(String, String, String)], kind: &str| -> Vec<(String, String)> {
        objs.iter()
            .filter(|o| o.0 == kind)
            .map(|o| (o.1.clone(), o.2.clone()))
            .collect()
    };

    // Controller namespace: one Secret where Envoy runs; an EnvoyProxy in
    // each Gateway's namespace; cross-namespace credentials are copied by
    // the user (the command is in the header), never read across.
    let r = render(&g, &p, &http_code()).unwrap();
    let objs = objects_of(&r.text);
    assert_eq!(
        find(&objs, "Secret"),
        [(
            "envoy-gateway-system".into(),
            "agents-tools-session-key".into()
        )]
    );
    assert_eq!(
        find(&objs, "EnvoyProxy"),
        [
            ("agents".into(), "tools-proxy".into()),
            ("infra".into(), "agents-tools-proxy".into())
        ]
    );
    assert_eq!(
        find(&objs, "EnvoyPatchPolicy"),
        [
            ("agents".into(), "tools-wasm-edge-https".into()),
            ("infra".into(), "agents-tools-wasm-shared-web".into())
        ]
    );
    assert!(r.text.contains("kubectl -n envoy-gateway-system create secret generic agents-tools-credentials --from-literal=MCPGW_APIKEY_GITHUB=\"$(kubectl -n agents get secret github-token -o jsonpath='{.data.apiKey}' | base64 -d)\""), "{}", r.text);
    assert!(r
        .text
        .contains("kubectl -n infra patch gateway shared --type merge"));
    assert!(r
        .text
        .contains("name: agents-tools-credentials\n                key: MCPGW_APIKEY_GITHUB"));
    let has = |s: &str| r.warnings.iter().any(|w| w.contains(s));
    assert!(has("Gateway infra/shared is in another namespace: its listener must admit routes from namespace agents"));
    assert!(has("Secret agents/github-token: Envoy's pods run in namespace envoy-gateway-system and cannot read it"));

    // Gateway namespace: Secrets in each Gateway's namespace; in the route's
    // own namespace the user's Secret is read where it is.
    let mut o = http_code();
    o.deploy = Deploy::GatewayNamespace;
    let r = render(&g, &p, &o).unwrap();
    let objs = objects_of(&r.text);
    assert_eq!(
        find(&objs, "Secret"),
        [
            ("agents".into(), "tools-session-key".into()),
            ("infra".into(), "agents-tools-session-key".into())
        ]
    );
    let agents_proxy = docs(&r.text, "EnvoyProxy")
        .into_iter()
        .find(|d| d.contains("namespace: agents\n"))
        .unwrap();
    assert!(agents_proxy.contains("name: github-token\n                key: apiKey"));
    assert!(r
        .text
        .contains("kubectl -n infra create secret generic agents-tools-credentials"));
    assert!(!r.text.contains("kubectl -n agents create secret"));
}

#[test]
fn every_object_name_is_valid() {
    let (g, p) = announcement();
    for text in [
        render(&g, &p, &http_code()).unwrap().text,
        render(&many(40), &[], &http_code()).unwrap().text,
    ] {
        for (kind, ns, name) in objects_of(&text) {
            assert!(names::is_label(&ns), "{kind} namespace {ns}");
            assert!(
                names::is_subdomain(&name) && name.len() <= 63,
                "{kind} {name}"
            );
        }
    }
}

/// The module, from `source`, on the Envoy 1.40 image.
pub fn module(source: ModuleSource) -> Options {
    let mut o = opts(ModuleCode {
        source,
        envoy_image: MODULE_ENVOY_IMAGE.into(),
    });
    o.sha256 = "1".repeat(64);
    o
}

pub fn module_image() -> Options {
    module(ModuleSource::Image(format!(
        "ghcr.io/example/mcpgw-module@sha256:{DIGEST}"
    )))
}

#[test]
fn golden_module_mcp_servers_json() {
    let g = servers_file();
    let r = render(&g, &[], &module_image()).unwrap();
    golden::check("mcp-servers.module.kube.yaml", &r.text);
    assert!(docs(&r.text, "EnvoyPatchPolicy").is_empty(), "wasm only");
    assert_eq!(docs(&r.text, "ClientTrafficPolicy").len(), 1);
    let proxy = docs(&r.text, "EnvoyProxy")[0];
    assert!(proxy.contains(&format!("image: {MODULE_ENVOY_IMAGE}\n")));
    assert!(proxy.contains("path: /etc/envoy/mcpgw/libmcpgw.so\n"));
    assert!(r.text.contains("extensionApis: {enableBackend: true}\n"));
    assert!(r.text.contains("Envoy 1.40 (dynamic-module ABI v0.2.0)"));
    assert!(!r.text.contains("enableEnvoyPatchPolicy"));
    // Pinned: no warning about the code.
    assert!(
        !r.warnings.iter().any(|w| w.contains("--module")),
        "{:?}",
        r.warnings
    );
}

/// mcproute-full.yaml without its OAuth, which the module cannot run on
/// Envoy Gateway.
pub fn mcproute_full_without_oauth() -> (Gateway, Vec<serde_norway::Value>) {
    let (mut g, p) = mcproute(&["mcproute-full.yaml"]);
    g.oauth = None;
    (g, p)
}

#[test]
fn golden_module_mcproute_full() {
    let (g, p) = mcproute_full_without_oauth();
    let mut o = module(ModuleSource::Path("/opt/mcpgw/libmcpgw.so".into()));
    if let Code::Module(m) = &mut o.code {
        m.envoy_image = "registry.example/envoy-mcpgw:1.40.0".into();
    }
    let r = render(&g, &p, &o).unwrap();
    golden::check("mcproute-full.module.kube.yaml", &r.text);
    let proxy = docs(&r.text, "EnvoyProxy")[0];
    assert!(proxy.contains("image: registry.example/envoy-mcpgw:1.40.0\n"));
    assert!(proxy.contains("path: /opt/mcpgw/libmcpgw.so\n"));
    assert!(
        !proxy.contains("volume"),
        "the path is already there: {proxy}"
    );
    let has = |s: &str| r.warnings.iter().any(|w| w.contains(s));
    assert!(has(
        "--envoy-image registry.example/envoy-mcpgw:1.40.0: it must run Envoy 1.40.x"
    ));
}

/// The module carries exactly the wasm's plugin configuration, and the Envoy
/// container gets the same environment; the rest of the output is shared.
#[test]
fn the_module_and_the_wasm_carry_the_same_filter_config() {
    let (g, p) = mcproute_full_without_oauth();
    let wasm = render(&g, &p, &http_code()).unwrap().text;
    let module = render(&g, &p, &module_image()).unwrap().text;
    let value = |text: &str, kind: &str| -> serde_json::Value {
        serde_norway::from_str(docs(text, kind)[0]).unwrap()
    };
    let (w, m) = (
        value(&wasm, "EnvoyExtensionPolicy"),
        value(&module, "EnvoyExtensionPolicy"),
    );
    assert_eq!(
        w["spec"]["wasm"][0]["config"],
        m["spec"]["dynamicModule"][0]["config"]
    );
    assert_eq!(w["spec"]["targetRefs"], m["spec"]["targetRefs"]);
    assert_eq!(m["spec"]["dynamicModule"][0]["name"], "mcpgw");
    assert_eq!(
        m["spec"]["dynamicModule"][0]["filterName"],
        mcpgw_module::names::FILTER_NAME
    );
    assert!(m["spec"].get("wasm").is_none());
    let (w, m) = (value(&wasm, "EnvoyProxy"), value(&module, "EnvoyProxy"));
    let env = |v: &serde_json::Value| {
        v["spec"]["provider"]["kubernetes"]["envoyDeployment"]["container"]["env"].clone()
    };
    assert_eq!(env(&w), env(&m));
    for kind in ["HTTPRoute", "Backend", "Secret", "ClientTrafficPolicy"] {
        assert_eq!(docs(&wasm, kind), docs(&module, kind), "{kind}");
    }
}

#[test]
fn module_code_sources() {
    let g = many(1);
    let run = |o: &Options| render(&g, &[], o);
    let r = run(&module(ModuleSource::Image(
        "r.example/mcpgw-module:1".into(),
    )))
    .unwrap();
    assert!(
        r.warnings
            .iter()
            .any(|w| w.contains("--module-image r.example/mcpgw-module:1: not pinned")),
        "{:?}",
        r.warnings
    );
    let proxy = docs(&r.text, "EnvoyProxy")[0];
    assert!(proxy.contains("        pod:\n          volumes:\n          - name: mcpgw-module\n            image:\n              reference: r.example/mcpgw-module:1\n"), "{proxy}");
    assert!(proxy.contains("          volumeMounts:\n          - name: mcpgw-module\n            mountPath: /etc/envoy/mcpgw\n            readOnly: true\n"), "{proxy}");
    assert!(r.text.contains("(tag, not pinned)"));
    let r = run(&module(ModuleSource::Path("/opt/libmcpgw.so".into()))).unwrap();
    assert!(
        r.warnings.iter().any(|w| w.contains(
            "the stock image docker.io/envoyproxy/envoy:distroless-v1.40.0 has no libmcpgw.so"
        )),
        "{:?}",
        r.warnings
    );
    for (o, want) in [
        (
            module(ModuleSource::Image("r.example/m@sha256:abc".into())),
            "--module-image \"r.example/m@sha256:abc\": the digest must be sha256:",
        ),
        (
            module(ModuleSource::Image("has space".into())),
            "--module-image \"has space\": not an image reference",
        ),
        (
            module(ModuleSource::Path("libmcpgw.so".into())),
            "--module \"libmcpgw.so\": with --kubernetes, the absolute path",
        ),
        (
            {
                let mut o = module_image();
                if let Code::Module(m) = &mut o.code {
                    m.envoy_image = String::new();
                }
                o
            },
            "--envoy-image \"\": not an image reference",
        ),
    ] {
        let e = run(&o).unwrap_err();
        assert!(e.contains(want), "{e}");
    }
}

#[test]
fn the_module_refuses_oauth_on_envoy_gateway() {
    let (g, p) = mcproute(&["mcproute-full.yaml"]);
    let e = render(&g, &p, &module_image()).unwrap_err();
    assert!(
        e.starts_with("testdata/cli/mcproute-full.yaml: OAuth with --engine module")
            && e.contains("forward_payload_header")
            && e.contains("--engine wasm"),
        "{e}"
    );
    assert!(render(&g, &p, &http_code()).is_ok());
}
