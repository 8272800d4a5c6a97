//! The Envoy configurations shipped in envoy/ are valid for the real Envoy
//! (with the built filter loaded and its plugin configuration checked), and a
//! broken plugin configuration is refused with a message naming the field.

use mcpgw_e2e::envoy::{envoy_bin, module_path, wasm_path, workspace_root};
use std::process::Command;

fn validate(config: &std::path::Path) -> (bool, String) {
    // The configs load the built filter.
    let _ = (wasm_path(), module_path());
    let out = Command::new(envoy_bin())
        .current_dir(workspace_root())
        .args(["--mode", "validate", "--disable-hot-restart", "-c"])
        .arg(config)
        .env(
            "MCPGW_SESSION_KEY",
            "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=",
        )
        .output()
        .expect("run envoy");
    let log = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), log)
}

#[test]
fn shipped_configs_validate() {
    let dir = workspace_root().join("envoy");
    let mut seen = 0;
    for entry in std::fs::read_dir(&dir).expect("envoy/") {
        let path = entry.expect("entry").path();
        if path.extension().and_then(|e| e.to_str()) != Some("yaml") {
            continue;
        }
        let (ok, log) = validate(&path);
        assert!(ok, "{} does not validate:\n{log}", path.display());
        // Prometheus labels and the JSON access log are part of every shipped config.
        let text = std::fs::read_to_string(&path).expect("read");
        let tags: String = mcpgw_core::gateway::stats::envoy_stats_config_yaml()
            .lines()
            .filter(|l| l.contains("regex:"))
            .map(|l| format!("{}\n", l.trim()))
            .collect();
        let shipped: String = text
            .lines()
            .filter(|l| l.contains("regex: '(;"))
            .map(|l| format!("{}\n", l.trim()))
            .collect();
        assert_eq!(
            shipped,
            tags,
            "{}: stats_tags differ from the metric names",
            path.display()
        );
        // Each build publishes its fields under its own filter-state keys.
        let module = text.contains("envoy.filters.http.dynamic_modules");
        let (tool_key, audit_filter, audit_fields) = if module {
            (
                "%FILTER_STATE(mcpgw.tool:PLAIN)%",
                mcpgw_module::names::audit_log_filter(),
                mcpgw_module::names::audit_log_fields(),
            )
        } else {
            (
                "%FILTER_STATE(wasm.mcpgw.tool:PLAIN)%",
                mcpgw_proxy_wasm::names::audit_log_filter(),
                mcpgw_proxy_wasm::names::audit_log_fields(),
            )
        };
        assert!(text.contains(tool_key), "{}: access log", path.display());
        // And the audit log, with every field of the record.
        assert!(
            text.contains(&audit_filter),
            "{}: audit log filter",
            path.display()
        );
        for (k, v) in audit_fields {
            assert!(
                text.contains(&format!("{k}: \"{v}\"")),
                "{}: audit field {k}",
                path.display()
            );
        }
        assert!(
            log.contains("mcpgw") && log.contains("configured"),
            "{}: filter not loaded:\n{log}",
            path.display()
        );
        seen += 1;
    }
    assert!(seen >= 3, "expected the shipped examples in envoy/");
}

#[test]
fn a_bad_plugin_config_is_refused_with_the_field_named() {
    for shipped in ["envoy/envoy.yaml", "envoy/envoy-module.yaml"] {
        let good = std::fs::read_to_string(workspace_root().join(shipped)).expect(shipped);
        let bad = good.replacen(
            "\"tools\": {\"exclude\": [\"admin_reset\"]}",
            "\"tools\": {\"exclude\": [\"admin_reset\"], \"include_regex\": [\"(\"]}",
            1,
        );
        assert_ne!(good, bad, "{shipped}");
        let dir = tempfile::tempdir().expect("tmp");
        let path = dir.path().join("bad.yaml");
        // Relative filter paths: keep the working directory at the repository root.
        std::fs::write(&path, bad).expect("write");
        let (ok, log) = validate(&path);
        assert!(!ok, "{shipped}: a broken config must not validate");
        assert!(
            log.contains("mcpgw config: backends[0].tools.include_regex[0]: invalid regex"),
            "{shipped}: the log names the field:\n{log}"
        );
    }
}
