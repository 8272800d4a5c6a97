//! The gateway's own `server/discover` answer: the versions it serves (both
//! eras), the capabilities it can deliver from what its backends said, their
//! instructions, its identity, and cache hints no looser than any part's.

use super::cache::CacheHint;
use super::eras::Learned;
use crate::gateway::config::{Backend, Config};
use crate::gateway::merge;
use crate::protocol::jsonrpc::json_string;
use crate::protocol::mcp::Version;
use crate::protocol::modern::{meta, TASKS_EXTENSION, UI_EXTENSION};
use serde_json::{Map, Value};

/// Extensions the gateway routes (others are not promised to clients).
const ROUTABLE_EXTENSIONS: &[&str] = &[TASKS_EXTENSION, UI_EXTENSION];

/// What a backend's capabilities are worth to a 2026-07-28 client through
/// the gateway. A handshake-era backend's change notifications and
/// subscriptions reach no `subscriptions/listen` stream, and its tasks are
/// the 2025-11-25 kind, not the extension: both are left out.
pub fn capabilities_for_modern_clients(learned: &Learned) -> Map<String, Value> {
    let mut caps = learned.info.capabilities.clone();
    if learned.modern {
        if let Some(Value::Object(ext)) = caps.get_mut("extensions") {
            ext.retain(|k, _| ROUTABLE_EXTENSIONS.contains(&k.as_str()));
        }
        return caps;
    }
    caps.remove("tasks");
    caps.remove("extensions");
    for cap in ["tools", "prompts", "resources"] {
        if let Some(Value::Object(c)) = caps.get_mut(cap) {
            c.remove("listChanged");
            c.remove("subscribe");
        }
    }
    caps
}

/// Merged capabilities: the routable ones (as for `initialize`) plus the
/// routable extensions.
pub fn merged_capabilities(parts: &[Map<String, Value>]) -> Map<String, Value> {
    let mut out = merge::merge_capabilities(parts.iter());
    // 2025-11-25 `tasks` is a top-level capability; in 2026-07-28 it is an extension.
    out.remove("tasks");
    let mut ext = Map::new();
    for p in parts {
        if let Some(Value::Object(e)) = p.get("extensions") {
            for (k, v) in e {
                if ROUTABLE_EXTENSIONS.contains(&k.as_str()) && !ext.contains_key(k) {
                    ext.insert(k.clone(), v.clone());
                }
            }
        }
    }
    if !ext.is_empty() {
        out.insert("extensions".into(), Value::Object(ext));
    }
    out
}

/// The hints of one backend's part of the discover answer.
fn hint_of(learned: &Learned) -> CacheHint {
    // Capabilities are the same for every caller: a handshake-era backend
    // gave no hints, so its part is stale at once but shareable.
    learned.info.cache.unwrap_or(CacheHint::LOCAL)
}

/// The `server/discover` result object.
pub fn discover_result(cfg: &Config, backends: &[(&Backend, &Learned)]) -> String {
    let caps: Vec<Map<String, Value>> = backends
        .iter()
        .map(|(_, l)| capabilities_for_modern_clients(l))
        .collect();
    let capabilities = Value::Object(merged_capabilities(&caps)).to_string();
    let versions: Vec<String> = Version::ALL_SERVED
        .iter()
        .map(|v| json_string(v.as_str()))
        .collect();
    let instructions: Vec<(&Backend, Option<&str>)> = backends
        .iter()
        .map(|(b, l)| (*b, l.info.instructions.as_deref()))
        .collect();
    let hint = CacheHint::merge(backends.iter().map(|(_, l)| hint_of(l)));
    let mut out = format!(
        "{{\"resultType\":\"complete\",\"supportedVersions\":[{}],\"capabilities\":{capabilities}",
        versions.join(",")
    );
    if let Some(i) = merge::merged_instructions(cfg, &instructions) {
        out.push_str(",\"instructions\":");
        out.push_str(&json_string(&i));
    }
    out.push_str(",\"_meta\":{");
    out.push_str(&server_info_member(cfg));
    out.push_str("},");
    out.push_str(&hint.members());
    out.push('}');
    out
}

/// `"io.modelcontextprotocol/serverInfo":{...}` for the gateway's own results.
pub fn server_info_member(cfg: &Config) -> String {
    format!(
        "{}:{{\"name\":{},\"version\":\"{}\"}}",
        json_string(meta::SERVER_INFO),
        json_string(&cfg.server_name),
        env!("CARGO_PKG_VERSION")
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::gateway::modern::eras::{BackendInfo, Held};
    use crate::gateway::testing::gateway;
    use serde_json::json;
    #[cfg(all(target_arch = "wasm32", target_os = "unknown"))]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    fn learned(
        modern: bool,
        caps: Value,
        instructions: Option<&str>,
        cache: Option<CacheHint>,
    ) -> Learned {
        Learned {
            modern,
            legacy: !modern,
            info: BackendInfo {
                capabilities: caps.as_object().cloned().unwrap_or_default(),
                instructions: instructions.map(str::to_string),
                server_name: None,
                cache,
            },
            learned_ms: 0,
            held: (!modern).then(|| Held {
                session_id: Some("s".into()),
                version: Version::V2025_06_18,
            }),
        }
    }

    #[test]
    fn merges_what_each_era_can_deliver() {
        let gw = gateway(r#"[{"name":"a","cluster":"a"},{"name":"b","cluster":"b"}]"#);
        let a = learned(
            true,
            json!({"tools":{"listChanged":true},"resources":{"subscribe":true},
                   "extensions":{"io.modelcontextprotocol/tasks":{},"com.example/x":{}}}),
            Some("Use a."),
            Some(CacheHint {
                ttl_ms: 60_000,
                private: false,
            }),
        );
        let b = learned(
            false,
            json!({"tools":{"listChanged":true},"prompts":{"listChanged":true},"logging":{},"tasks":{"list":{}}}),
            Some("Use b."),
            None,
        );
        let r: Value = serde_json::from_str(&discover_result(
            &gw.cfg,
            &[(&gw.cfg.backends[0], &a), (&gw.cfg.backends[1], &b)],
        ))
        .unwrap();
        assert_eq!(r["resultType"], "complete");
        assert_eq!(
            r["supportedVersions"],
            json!(["2026-07-28", "2025-11-25", "2025-06-18", "2025-03-26"])
        );
        assert_eq!(
            r["capabilities"]["tools"]["listChanged"], true,
            "from the modern backend"
        );
        assert_eq!(
            r["capabilities"]["prompts"],
            json!({}),
            "a handshake-era backend's list changes reach no listen stream"
        );
        assert_eq!(r["capabilities"]["resources"]["subscribe"], true);
        assert_eq!(r["capabilities"]["logging"], json!({}));
        assert!(
            r["capabilities"].get("tasks").is_none(),
            "2025 tasks are not the extension"
        );
        assert_eq!(
            r["capabilities"]["extensions"],
            json!({"io.modelcontextprotocol/tasks":{}})
        );
        assert_eq!(r["instructions"], "## a\nUse a.\n\n## b\nUse b.");
        assert_eq!(
            r["_meta"]["io.modelcontextprotocol/serverInfo"]["name"],
            "mcpgw"
        );
        assert_eq!(
            (r["ttlMs"].as_u64(), r["cacheScope"].as_str()),
            (Some(0), Some("public"))
        );
        let r: Value =
            serde_json::from_str(&discover_result(&gw.cfg, &[(&gw.cfg.backends[0], &a)])).unwrap();
        assert_eq!(
            (r["ttlMs"].as_u64(), r["cacheScope"].as_str()),
            (Some(60_000), Some("public"))
        );
        let r: Value = serde_json::from_str(&discover_result(&gw.cfg, &[])).unwrap();
        assert_eq!(r["capabilities"], json!({}));
    }
}
