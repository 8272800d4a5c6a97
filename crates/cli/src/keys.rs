//! Session keys. The key seals session ids; every replica serving the same
//! clients needs the same one, and a restart must keep it so sessions stay
//! valid. Sources, first found wins:
//! `--session-key-file`, `$MCPGW_SESSION_KEY`, then a key generated once and
//! kept at `$XDG_CONFIG_HOME/mcpgw/session.key` (or `~/.config/...`), mode 0600.
//! The key reaches Envoy only through its environment, never a file.

use base64::Engine;
use std::io::Write;
use std::path::{Path, PathBuf};

#[derive(Debug, Clone)]
pub struct Keys {
    pub current: String,
    pub previous: Option<String>,
    /// Where the current key came from, for the log.
    pub origin: String,
}

fn check(text: &str, origin: &str) -> Result<String, String> {
    let t = text.trim().to_string();
    mcpgw_core::gateway::crypto::decode_key(&t).map_err(|e| {
        format!("{origin}: not a valid session key ({e}); a key is 32 random bytes in base64, e.g. `openssl rand -base64 32`")
    })?;
    Ok(t)
}

fn read_key_file(path: &Path) -> Result<String, String> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| format!("cannot read the session key file {}: {e}", path.display()))?;
    check(&text, &path.display().to_string())
}

/// The user's config directory for mcpgw.
pub fn config_dir(env: &dyn Fn(&str) -> Option<String>) -> Result<PathBuf, String> {
    if let Some(x) = env("XDG_CONFIG_HOME").filter(|x| !x.is_empty()) {
        return Ok(PathBuf::from(x).join("mcpgw"));
    }
    match env("HOME").filter(|h| !h.is_empty()) {
        Some(h) => Ok(PathBuf::from(h).join(".config/mcpgw")),
        None => Err("no HOME or XDG_CONFIG_HOME to keep the generated session key in; pass --session-key-file or set MCPGW_SESSION_KEY".into()),
    }
}

pub fn resolve(
    key_file: Option<&Path>,
    previous_file: Option<&Path>,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<Keys, String> {
    let previous = match previous_file {
        Some(p) => Some(read_key_file(p)?),
        None => match env("MCPGW_PREVIOUS_SESSION_KEY").filter(|k| !k.trim().is_empty()) {
            Some(k) => Some(check(&k, "MCPGW_PREVIOUS_SESSION_KEY")?),
            None => None,
        },
    };
    if let Some(p) = key_file {
        return Ok(Keys {
            current: read_key_file(p)?,
            previous,
            origin: p.display().to_string(),
        });
    }
    if let Some(k) = env("MCPGW_SESSION_KEY").filter(|k| !k.trim().is_empty()) {
        return Ok(Keys {
            current: check(&k, "MCPGW_SESSION_KEY")?,
            previous,
            origin: "$MCPGW_SESSION_KEY".into(),
        });
    }
    let path = config_dir(env)?.join("session.key");
    let current = load_or_create(&path)?;
    Ok(Keys {
        current,
        previous,
        origin: path.display().to_string(),
    })
}

/// Read the stored key, or generate and store one (0600, directory 0700).
pub fn load_or_create(path: &Path) -> Result<String, String> {
    if path.exists() {
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            if let Ok(md) = std::fs::metadata(path) {
                if md.permissions().mode() & 0o077 != 0 {
                    return Err(format!(
                        "{}: the session key file is readable by other users; run `chmod 600 {}`",
                        path.display(),
                        path.display()
                    ));
                }
            }
        }
        return read_key_file(path);
    }
    let dir = path.parent().unwrap_or(Path::new("."));
    let mut builder = std::fs::DirBuilder::new();
    builder.recursive(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::DirBuilderExt;
        builder.mode(0o700);
    }
    builder
        .create(dir)
        .map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
    let mut bytes = [0u8; 32];
    getrandom::fill(&mut bytes).map_err(|e| format!("no randomness for a session key: {e}"))?;
    let key = base64::engine::general_purpose::STANDARD.encode(bytes);
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        opts.mode(0o600);
    }
    match opts.open(path) {
        Ok(mut f) => {
            f.write_all(format!("{key}\n").as_bytes())
                .map_err(|e| format!("cannot write {}: {e}", path.display()))?;
            Ok(key)
        }
        // Another mcpgw created it first: use that one.
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => read_key_file(path),
        Err(e) => Err(format!("cannot create {}: {e}", path.display())),
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    const KEY: &str = "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=";

    #[test]
    fn generated_once_and_kept_private() {
        let dir = std::env::temp_dir().join(format!("mcpgw-keys-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let d = dir.display().to_string();
        let env = move |n: &str| (n == "XDG_CONFIG_HOME").then(|| d.clone());
        let a = resolve(None, None, &env).unwrap();
        let b = resolve(None, None, &env).unwrap();
        assert_eq!(a.current, b.current);
        assert!(a.origin.ends_with("mcpgw/session.key"));
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(dir.join("mcpgw/session.key"))
                .unwrap()
                .permissions()
                .mode();
            assert_eq!(mode & 0o777, 0o600);
            std::fs::set_permissions(
                dir.join("mcpgw/session.key"),
                std::fs::Permissions::from_mode(0o644),
            )
            .unwrap();
            let e = resolve(None, None, &env).unwrap_err();
            assert!(e.contains("chmod 600"), "{e}");
        }
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn env_and_files_and_errors() {
        let env = |n: &str| match n {
            "MCPGW_SESSION_KEY" => Some(KEY.to_string()),
            "MCPGW_PREVIOUS_SESSION_KEY" => Some(format!(" {KEY}\n")),
            _ => None,
        };
        let k = resolve(None, None, &env).unwrap();
        assert_eq!(k.current, KEY);
        assert_eq!(k.previous.as_deref(), Some(KEY));
        let bad = |n: &str| (n == "MCPGW_SESSION_KEY").then(|| "short".to_string());
        let e = resolve(None, None, &bad).unwrap_err();
        assert!(
            e.starts_with("MCPGW_SESSION_KEY: not a valid session key"),
            "{e}"
        );
        assert!(e.contains("openssl rand -base64 32"), "{e}");
        let e = resolve(Some(Path::new("/nonexistent/k")), None, &env).unwrap_err();
        assert!(
            e.contains("cannot read the session key file /nonexistent/k"),
            "{e}"
        );
    }
}
