//! Build script of the `mcpgw` command: it embeds both release builds of the
//! filter with `include_bytes!`, the proxy-wasm filter and the dynamic module.
//!
//! Where each comes from, in order:
//! 1. `$MCPGW_WASM` / `$MCPGW_MODULE` (a path to a built `mcpgw.wasm` /
//!    `libmcpgw.so`);
//! 2. what `./build.sh wasm` / `./build.sh module` build in this workspace:
//!    `target/wasm32-wasip1/release/mcpgw.wasm`,
//!    `target/dynamic-module/libmcpgw.so`;
//! 3. otherwise a nested release build (`-p mcpgw-proxy-wasm` for
//!    wasm32-wasip1, `-p mcpgw-dynamic-module` for the host) into a separate
//!    target dir (`target/embedded-wasm`, `target/embedded-module`), so a
//!    plain `cargo build -p mcpgw` works on a fresh clone. A separate target
//!    dir is required: the outer build holds the lock on `target/`, and a
//!    nested build there would wait for it forever.

use std::path::{Path, PathBuf};
use std::process::Command;

/// One embedded artifact.
struct Artifact {
    /// What a user calls it.
    what: &'static str,
    /// Environment variable naming a prebuilt one.
    var: &'static str,
    /// The env var the command's `include_bytes!` reads.
    embedded_var: &'static str,
    /// Where `./build.sh` puts it, relative to the workspace.
    built: &'static str,
    /// `./build.sh` subcommand that builds it.
    build_cmd: &'static str,
    /// The nested build: its target dir, package, target triple (none: host)
    /// and output file relative to the target dir.
    nested_dir: &'static str,
    package: &'static str,
    target: Option<&'static str>,
    output: &'static str,
}

const ARTIFACTS: [Artifact; 2] = [
    Artifact {
        what: "mcpgw.wasm",
        var: "MCPGW_WASM",
        embedded_var: "MCPGW_EMBEDDED_WASM",
        built: "target/wasm32-wasip1/release/mcpgw.wasm",
        build_cmd: "./build.sh wasm (it adds the wasm32-wasip1 target)",
        nested_dir: "target/embedded-wasm",
        package: "mcpgw-proxy-wasm",
        target: Some("wasm32-wasip1"),
        output: "wasm32-wasip1/release/mcpgw.wasm",
    },
    Artifact {
        what: "libmcpgw.so",
        var: "MCPGW_MODULE",
        embedded_var: "MCPGW_EMBEDDED_MODULE",
        built: "target/dynamic-module/libmcpgw.so",
        build_cmd: "./build.sh module",
        nested_dir: "target/embedded-module",
        package: "mcpgw-dynamic-module",
        target: None,
        output: "release/libmcpgw_module.so",
    },
];

fn main() {
    println!("cargo::rerun-if-changed=build.rs");
    for a in &ARTIFACTS {
        println!("cargo::rerun-if-env-changed={}", a.var);
        match locate(a) {
            Ok(path) => {
                println!("cargo::rerun-if-changed={}", path.display());
                println!("cargo::rustc-env={}={}", a.embedded_var, path.display());
            }
            Err(e) => println!("cargo::error={e}"),
        }
    }
}

fn locate(a: &Artifact) -> Result<PathBuf, String> {
    if let Some(p) = std::env::var_os(a.var) {
        let p = PathBuf::from(p);
        return if p.is_file() {
            Ok(p)
        } else {
            Err(format!(
                "{}={} does not name a file; unset it or build with {}",
                a.var,
                p.display(),
                a.build_cmd
            ))
        };
    }
    // This crate is crates/cli; the workspace (and its target/) is two up.
    let root = PathBuf::from(std::env::var("CARGO_MANIFEST_DIR").unwrap_or_else(|_| ".".into()))
        .join("../..");
    let root = root.canonicalize().unwrap_or(root);
    let built = root.join(a.built);
    // Rebuilds change this file; a first build creates it.
    println!("cargo::rerun-if-changed={}", built.display());
    if built.is_file() {
        return Ok(built);
    }
    nested_build(&root, a)
}

fn nested_build(root: &Path, a: &Artifact) -> Result<PathBuf, String> {
    let target_dir = root.join(a.nested_dir);
    let out = target_dir.join(a.output);
    // The nested build sees source changes through these.
    for dir in [
        "src",
        "crates/proxy-wasm",
        "crates/dynamic-module",
        "Cargo.toml",
    ] {
        println!("cargo::rerun-if-changed={}", root.join(dir).display());
    }
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let mut cmd = Command::new(cargo);
    cmd.current_dir(root)
        .args(["build", "--quiet", "--release", "-p", a.package]);
    if let Some(t) = a.target {
        cmd.args(["--target", t]);
    }
    let status = cmd
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
            "the embedded {} ({}) is missing and building it failed ({s}); run {} or set {}",
            a.what, a.built, a.build_cmd, a.var
        )),
        Err(e) => Err(format!(
            "the embedded {} ({}) is missing and cargo could not be run to build it ({e}); run {} or set {}",
            a.what, a.built, a.build_cmd, a.var
        )),
    }
}
