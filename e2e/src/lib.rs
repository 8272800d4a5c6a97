//! End-to-end test support for mcpgw: MCP test backends built on the official
//! Rust SDK (`backends`), the MCP conformance suite's fixture server
//! (`fixture`), SDK servers run as child processes (`peers`), a real Envoy
//! with the built filter (`envoy`), and client helpers (`client`).

pub mod backends;
/// The benchmark harness (`bench` and `bench-backend` binaries).
pub mod bench;
pub mod checks;
pub mod client;
pub mod envoy;
pub mod faulty;
pub mod fixture;
pub mod jwt;
pub mod mcpgw_run;
pub mod peers;
pub mod stack;
pub mod sts;
pub mod tls;

/// Tests run once per build of mcpgw: for each `async fn name(engine: Engine)`
/// listed, `per_engine!(name, ...)` makes the tests `name::wasm` and
/// `name::module` (multi-threaded tokio tests), each calling `name` with its
/// [`envoy::Engine`].
#[macro_export]
macro_rules! per_engine {
    ($($name:ident),+ $(,)?) => {
        $(
            mod $name {
                #[tokio::test(flavor = "multi_thread")]
                async fn wasm() {
                    super::$name($crate::envoy::Engine::Wasm).await
                }

                #[tokio::test(flavor = "multi_thread")]
                async fn module() {
                    super::$name($crate::envoy::Engine::Module).await
                }
            }
        )+
    };
}
