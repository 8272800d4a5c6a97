//! Build script of the `mcpgw` command: it embeds the release filter with
//! `include_bytes!`.
//!
//! Where the wasm comes from, in order:
//! 1. `$MCPGW_WASM` (a path to a built `mcpgw.wasm`);
//! 2. `target/wasm32-wasip1/release/mcpgw.wasm` in this workspace (what
//!    `./build.sh wasm` builds);
//! 3. otherwise a nested `cargo build --release --target wasm32-wasip1 -p
//!    mcpgw-proxy-wasm` into the separate target dir `target/embedded-wasm`,
//!    so a plain `cargo build -p mcpgw` works on a fresh clone. A separate
//!    target dir is required: the outer build holds the lock on `target/`, and
//!    a nested build there would wait for it forever.

use std::path::{Path, PathBuf};
use std::process::Command;

fn main() {
    println!("cargo::rerun-if-changed=build.rs");
    println!("cargo::rerun-if-env-changed=MCPGW_WASM");
    match locate() {
        Ok(path) => {
            println!("cargo::rerun-if-changed={}", path.display());
            println!("cargo::rustc-env=MCPGW_EMBEDDED_WASM={}", path.display());
        }
        Err(e) => {
            println!("cargo::error={e}");
        }
    }
}

fn locate() -> Result<PathBuf, String> {
    if let Some(p) = std::env::var_os("MCPGW_WASM") {
        let p = PathBuf::from(p);
        return if p.is_file() {
            Ok(p)
        } else {
            Err(format!(
                "MCPGW_WASM={} does not name a file; unset it or build the filter with ./build.sh wasm",
                p.display()
            ))
        };
    }
    // This crate is crates/cli; the workspace (and its target/) is two up.
    let root = PathBuf::from(std::env::var("CARGO_MANIFEST_DIR").unwrap_or_else(|_| ".".into()))
        .join("../..");
    let root = root.canonicalize().unwrap_or(root);
    let built = root.join("target/wasm32-wasip1/release/mcpgw.wasm");
    // Rebuilds of the filter change this file; a first build creates it.
    println!("cargo::rerun-if-changed={}", built.display());
    if built.is_file() {
        return Ok(built);
    }
    nested_build(&root)
}

fn nested_build(root: &Path) -> Result<PathBuf, String> {
    let target_dir = root.join("target/embedded-wasm");
    let out = target_dir.join("wasm32-wasip1/release/mcpgw.wasm");
    // The nested build sees source changes through these.
    for dir in ["src", "crates/proxy-wasm", "Cargo.toml"] {
        println!("cargo::rerun-if-changed={}", root.join(dir).display());
    }
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let status = Command::new(cargo)
        .current_dir(root)
        .args([
            "build",
            "--quiet",
            "--release",
            "--target",
            "wasm32-wasip1",
            "-p",
            "mcpgw-proxy-wasm",
        ])
        .arg("--target-dir")
        .arg(&target_dir)
        // The outer build's flag settings must not leak in.
        .env_remove("RUSTFLAGS")
        .env_remove("CARGO_ENCODED_RUSTFLAGS")
        .env_remove("CARGO_BUILD_TARGET")
        .env_remove("CARGO_TARGET_DIR")
        .status();
    match status {
        Ok(s) if s.success() && out.is_file() => Ok(out),
        Ok(s) => Err(format!(
            "the embedded filter target/wasm32-wasip1/release/mcpgw.wasm is missing and building it failed ({s}); run ./build.sh wasm (it adds the wasm32-wasip1 target) or set MCPGW_WASM"
        )),
        Err(e) => Err(format!(
            "the embedded filter target/wasm32-wasip1/release/mcpgw.wasm is missing and cargo could not be run to build it ({e}); run ./build.sh wasm or set MCPGW_WASM"
        )),
    }
}
