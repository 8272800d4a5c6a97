//! `mcp-test-server --kind alpha|beta|conformance [--port N]`
//!
//! Runs one MCP test backend (`conformance`: the conformance suite's fixture,
//! `mcpgw_e2e::fixture`) on 127.0.0.1, prints
//! `listening on http://127.0.0.1:PORT/mcp` once bound, and serves until
//! SIGINT or SIGTERM.

use std::io::Write;
use std::process::ExitCode;

use mcpgw_e2e::backends::{self, Kind};
use mcpgw_e2e::fixture;

const USAGE: &str = "usage: mcp-test-server --kind alpha|beta|conformance [--port N]";

/// What to serve.
enum Serve {
    Backend(Kind),
    Conformance,
}

impl std::str::FromStr for Serve {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        if s.eq_ignore_ascii_case("conformance") {
            return Ok(Serve::Conformance);
        }
        s.parse::<Kind>()
            .map(Serve::Backend)
            .map_err(|_| format!("unknown backend kind {s:?} (want alpha|beta|conformance)"))
    }
}

/// A running server of either sort.
enum Running {
    Backend(backends::TestServer),
    Conformance(fixture::FixtureServer),
}

impl Running {
    fn url(&self) -> String {
        match self {
            Running::Backend(s) => s.url(),
            Running::Conformance(s) => s.url(),
        }
    }

    async fn shutdown(self) {
        match self {
            Running::Backend(s) => s.shutdown().await,
            Running::Conformance(s) => s.shutdown().await,
        }
    }
}

fn parse_args() -> Result<(Serve, u16), String> {
    let mut kind = None;
    let mut port = 0u16;
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        let (flag, inline) = match arg.split_once('=') {
            Some((f, v)) => (f.to_owned(), Some(v.to_owned())),
            None => (arg.clone(), None),
        };
        let mut value = |name: &str| {
            inline
                .clone()
                .or_else(|| args.next())
                .ok_or_else(|| format!("{name} needs a value"))
        };
        match flag.as_str() {
            "--kind" => kind = Some(value("--kind")?.parse::<Serve>()?),
            "--port" => {
                let v = value("--port")?;
                port = v.parse().map_err(|_| format!("bad port {v:?}"))?;
            }
            "-h" | "--help" => return Err(USAGE.to_owned()),
            other => return Err(format!("unknown argument {other:?}")),
        }
    }
    let kind = kind.ok_or_else(|| "--kind is required".to_owned())?;
    Ok((kind, port))
}

async fn shutdown_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = tokio::signal::ctrl_c() => {}
                    _ = term.recv() => {}
                }
            }
            Err(_) => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}

#[tokio::main]
async fn main() -> ExitCode {
    let (kind, port) = match parse_args() {
        Ok(v) => v,
        Err(msg) => {
            eprintln!("{msg}\n{USAGE}");
            return ExitCode::from(2);
        }
    };
    let spawned = match kind {
        Serve::Backend(kind) => backends::spawn_on(kind, port).await.map(Running::Backend),
        Serve::Conformance => fixture::spawn_on(port).await.map(Running::Conformance),
    };
    let server = match spawned {
        Ok(server) => server,
        Err(e) => {
            eprintln!("mcp-test-server: cannot bind 127.0.0.1:{port}: {e}");
            return ExitCode::FAILURE;
        }
    };
    {
        let mut out = std::io::stdout().lock();
        let _ = writeln!(out, "listening on {}", server.url());
        let _ = out.flush();
    }
    shutdown_signal().await;
    server.shutdown().await;
    ExitCode::SUCCESS
}
