//! Golden files under testdata/cli/golden: `MCPGW_UPDATE_GOLDEN=1 cargo test
//! -p mcpgw` rewrites them; review the diff.

#![allow(clippy::unwrap_used, clippy::panic)]

use std::path::PathBuf;

pub fn testdata(name: &str) -> (PathBuf, String) {
    let p = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../testdata/cli")
        .join(name);
    let text = std::fs::read_to_string(&p).unwrap();
    (PathBuf::from(format!("testdata/cli/{name}")), text)
}

pub fn check(name: &str, actual: &str) {
    let p = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../testdata/cli/golden")
        .join(name);
    if std::env::var_os("MCPGW_UPDATE_GOLDEN").is_some() {
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(&p, actual).unwrap();
        return;
    }
    let want = std::fs::read_to_string(&p).unwrap_or_default();
    if want != actual {
        let mut msg = format!(
            "{} differs from the rendered output (MCPGW_UPDATE_GOLDEN=1 rewrites it):\n",
            p.display()
        );
        for (i, (a, b)) in want.lines().zip(actual.lines()).enumerate() {
            if a != b {
                msg.push_str(&format!("line {}:\n  want: {a}\n  got:  {b}\n", i + 1));
                break;
            }
        }
        msg.push_str(&format!(
            "lines: want {}, got {}",
            want.lines().count(),
            actual.lines().count()
        ));
        panic!("{msg}");
    }
}

/// The environment the golden renders see.
pub fn env(name: &str) -> Option<String> {
    match name {
        "GITHUB_TOKEN" => Some("ghp_golden".into()),
        _ => None,
    }
}

pub const KEY: &str = "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=";
