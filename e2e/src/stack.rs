//! Ready-made setups: test backends behind a real Envoy running mcpgw.

use crate::backends::{self, Kind, TestServer};
use crate::envoy::{render, Cluster, Engine, Envoy};
use serde_json::{json, Value};

/// A fixed test key (32 bytes, base64).
pub const SESSION_KEY: &str = "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=";

pub struct Stack {
    pub alpha: TestServer,
    pub beta: TestServer,
    pub envoy: Envoy,
}

impl Stack {
    /// alpha (stateful, SSE, credentials from the environment, `admin_reset`
    /// hidden) and beta (stateless, JSON, an API key, only some tools shown).
    pub async fn two_backends(engine: Engine) -> Stack {
        Self::two_backends_with(engine, |_| {}).await
    }

    /// Like [`Stack::two_backends`], with a chance to edit the plugin config.
    pub async fn two_backends_with(engine: Engine, edit: impl FnOnce(&mut Value)) -> Stack {
        let alpha = backends::spawn(Kind::Alpha).await;
        let beta = backends::spawn(Kind::Beta).await;
        let mut cfg = json!({
            "session": {"key": SESSION_KEY},
            "backends": [
                {"name": "alpha", "cluster": "alpha", "authority": format!("127.0.0.1:{}", alpha.port()),
                 "headers": {"authorization": "Bearer ${ALPHA_TOKEN}"},
                 "tools": {"exclude": ["admin_reset"]}},
                {"name": "beta", "cluster": "beta", "headers": {"x-api-key": "key-beta"},
                 "tools": {"include_regex": ["^(echo|count|whoami)$"]}}
            ]
        });
        edit(&mut cfg);
        let yaml = render(
            engine,
            &cfg.to_string(),
            &[
                Cluster {
                    name: "alpha".into(),
                    port: alpha.port(),
                },
                Cluster {
                    name: "beta".into(),
                    port: beta.port(),
                },
            ],
            &["ALPHA_TOKEN"],
        );
        let envoy = tokio::task::spawn_blocking(move || {
            Envoy::start_with_env(&yaml, &[("ALPHA_TOKEN", "alpha-secret")])
        })
        .await
        .expect("envoy start");
        Stack { alpha, beta, envoy }
    }

    pub fn url(&self) -> String {
        self.envoy.url()
    }

    /// Fail if the filter ever crashed or panicked.
    pub fn assert_vm_healthy(&self) {
        self.envoy.assert_log_clean();
    }
}

/// The conformance fixture and alpha behind mcpgw, both prefixed (the default
/// `when-multiplexed` mode with two backends): `fixture__test_sampling`,
/// `alpha__count`, `fixture+test://static-text`, ...
pub struct FixtureStack {
    pub fixture: crate::fixture::FixtureServer,
    pub alpha: TestServer,
    pub envoy: Envoy,
}

impl FixtureStack {
    /// The fixture (which validates `Host`, hence a loopback `authority`) and
    /// alpha (credentials from the environment, `admin_reset` hidden).
    pub async fn start(engine: Engine) -> FixtureStack {
        let fixture = crate::fixture::spawn().await;
        let alpha = backends::spawn(Kind::Alpha).await;
        let cfg = json!({
            "session": {"key": SESSION_KEY},
            "backends": [
                {"name": "fixture", "cluster": "fixture",
                 "authority": format!("127.0.0.1:{}", fixture.port())},
                {"name": "alpha", "cluster": "alpha",
                 "authority": format!("127.0.0.1:{}", alpha.port()),
                 "headers": {"authorization": "Bearer ${ALPHA_TOKEN}"},
                 "tools": {"exclude": ["admin_reset"]}}
            ]
        });
        let yaml = render(
            engine,
            &cfg.to_string(),
            &[
                Cluster {
                    name: "fixture".into(),
                    port: fixture.port(),
                },
                Cluster {
                    name: "alpha".into(),
                    port: alpha.port(),
                },
            ],
            &["ALPHA_TOKEN"],
        );
        let envoy = tokio::task::spawn_blocking(move || {
            Envoy::start_with_env(&yaml, &[("ALPHA_TOKEN", "alpha-secret")])
        })
        .await
        .expect("envoy start");
        FixtureStack {
            fixture,
            alpha,
            envoy,
        }
    }

    pub fn url(&self) -> String {
        self.envoy.url()
    }

    /// Fail if the filter ever crashed or panicked.
    pub fn assert_vm_healthy(&self) {
        self.envoy.assert_log_clean();
    }
}

/// Three backends, one per era, behind mcpgw (all prefixed):
/// `py` (the Python SDK's `MCPServer`: both eras, MRTR, `subscriptions/listen`),
/// `modern` (rmcp, 2026-07-28 only), `legacy` (the TypeScript SDK, 2025 era
/// only), and `bare`: `modern` again, unprefixed (`prefix: never`), which
/// 2026-07-28 requests reach routed from their headers alone.
pub struct EraStack {
    pub py: crate::peers::PeerServer,
    pub legacy: crate::peers::PeerServer,
    pub modern: TestServer,
    pub envoy: Envoy,
}

impl EraStack {
    pub async fn start(engine: Engine) -> EraStack {
        use crate::peers::{node_bin, python_bin, PeerServer};
        let (py, legacy, modern) = tokio::join!(
            PeerServer::start(python_bin(), "e2e/python/modern_server.py"),
            PeerServer::start(node_bin(), "e2e/node/legacy_server.mjs"),
            backends::spawn(Kind::Modern),
        );
        let cfg = json!({
            "session": {"key": SESSION_KEY},
            "backends": [
                {"name": "py", "cluster": "py", "authority": format!("127.0.0.1:{}", py.port)},
                {"name": "modern", "cluster": "modern"},
                {"name": "legacy", "cluster": "legacy", "authority": format!("127.0.0.1:{}", legacy.port)},
                {"name": "bare", "cluster": "modern", "prefix": "never"}
            ]
        });
        let yaml = render(
            engine,
            &cfg.to_string(),
            &[
                Cluster {
                    name: "py".into(),
                    port: py.port,
                },
                Cluster {
                    name: "modern".into(),
                    port: modern.port(),
                },
                Cluster {
                    name: "legacy".into(),
                    port: legacy.port,
                },
            ],
            &[],
        );
        let envoy = tokio::task::spawn_blocking(move || Envoy::start(&yaml))
            .await
            .expect("envoy start");
        EraStack {
            py,
            legacy,
            modern,
            envoy,
        }
    }

    pub fn url(&self) -> String {
        self.envoy.url()
    }
}
