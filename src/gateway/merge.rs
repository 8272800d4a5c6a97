//! Combining the answers of several backends into one: `initialize`
//! (version, capabilities, instructions) and the `*/list` methods (filter,
//! rename, keep every other field byte for byte, carry pagination).

use super::config::{Backend, Config};
use super::host::CallResponse;
use super::modern::cache::CacheHint;
use super::naming::Naming;
use super::policy::Resource;
use crate::protocol::http::{media_type, EVENT_STREAM, JSON};
use crate::protocol::jsonrpc::{self, json_string, Kind, RawObject};
use crate::protocol::mcp::{ListKind, Version, MAX_TOOL_NAME, ROUTABLE_CAPABILITIES};
use crate::protocol::sse;
use serde::Deserialize;
use serde_json::{Map, Value};
use std::borrow::Cow;
use std::collections::HashMap;

/// The JSON-RPC response text inside a backend's answer (a JSON body or the
/// response event of an SSE body). Notifications before it are skipped.
pub fn response_message(resp: &CallResponse, max_event: usize) -> Result<Cow<'_, str>, String> {
    if resp.status == 0 {
        // A call the gateway never sent carries its reason as the body.
        if !resp.body.is_empty() {
            return Err(String::from_utf8_lossy(&resp.body).into_owned());
        }
        return Err("no answer (connection failed, reset or timed out)".into());
    }
    if !(200..300).contains(&resp.status) {
        return Err(format!("HTTP {}", resp.status));
    }
    let ct = media_type(resp.header("content-type").unwrap_or(""));
    let text = std::str::from_utf8(&resp.body).map_err(|_| "body is not UTF-8".to_string())?;
    if ct == JSON {
        return Ok(Cow::Borrowed(text));
    }
    if ct == EVENT_STREAM {
        let items = sse::parse_all(&resp.body, max_event).map_err(|e| e.to_string())?;
        for item in items {
            if let sse::Item::Event(ev) = item {
                if ev.event_type() != "message" {
                    continue;
                }
                let Some(data) = ev.data else { continue };
                if data.is_empty() {
                    continue;
                }
                if let Ok(m) = jsonrpc::parse(data.as_bytes()) {
                    if matches!(m.kind, Kind::Response | Kind::Error) {
                        return Ok(Cow::Owned(data));
                    }
                }
            }
        }
        return Err("event stream ended without a response".into());
    }
    Err(format!("unexpected content-type \"{ct}\""))
}

/// The `result` of a JSON-RPC response text, or the error it carries.
pub fn result_of(message: &str) -> Result<&str, String> {
    let m = jsonrpc::parse(message.as_bytes()).map_err(|e| e.message())?;
    match (m.result, m.error) {
        (Some(r), _) => Ok(r.get()),
        (_, Some(e)) => Err(format!("JSON-RPC error {}", e.get())),
        _ => Err("not a response".into()),
    }
}

/// What a backend said in its `initialize` result.
#[derive(Debug, Clone)]
pub struct BackendInit {
    pub version: Version,
    pub capabilities: Map<String, Value>,
    pub instructions: Option<String>,
    pub server_name: Option<String>,
}

pub fn parse_initialize(result: &str) -> Result<BackendInit, String> {
    let v: Value = serde_json::from_str(result).map_err(|e| e.to_string())?;
    let pv = v
        .get("protocolVersion")
        .and_then(Value::as_str)
        .ok_or("initialize result without protocolVersion")?;
    let version = Version::parse(pv)
        .filter(|v| !v.is_modern())
        .ok_or_else(|| format!("unsupported protocol version \"{pv}\""))?;
    let capabilities = match v.get("capabilities") {
        Some(Value::Object(m)) => m.clone(),
        None => Map::new(),
        Some(_) => return Err("capabilities is not an object".into()),
    };
    Ok(BackendInit {
        version,
        capabilities,
        instructions: v
            .get("instructions")
            .and_then(Value::as_str)
            .map(str::to_string),
        server_name: v
            .get("serverInfo")
            .and_then(|s| s.get("name"))
            .and_then(Value::as_str)
            .map(str::to_string),
    })
}

/// Union of the backends' capabilities, limited to what the gateway routes.
pub fn merge_capabilities<'a>(
    caps: impl Iterator<Item = &'a Map<String, Value>>,
) -> Map<String, Value> {
    let mut out = Map::new();
    for c in caps {
        for (cap, flags) in ROUTABLE_CAPABILITIES {
            let Some(theirs) = c.get(*cap) else { continue };
            let entry = out
                .entry(cap.to_string())
                .or_insert_with(|| Value::Object(Map::new()));
            if *cap == "tasks" {
                deep_union(entry, theirs);
                continue;
            }
            if let (Value::Object(mine), Value::Object(theirs)) = (entry, theirs) {
                for f in *flags {
                    if theirs.get(*f) == Some(&Value::Bool(true)) {
                        mine.insert(f.to_string(), Value::Bool(true));
                    }
                }
            }
        }
    }
    out
}

/// Union of nested presence flags (`{"requests":{"tools":{"call":{}}}}`).
fn deep_union(mine: &mut Value, theirs: &Value) {
    if let (Value::Object(m), Value::Object(t)) = (mine, theirs) {
        for (k, v) in t {
            match m.get_mut(k) {
                Some(existing) => deep_union(existing, v),
                None => {
                    m.insert(k.clone(), v.clone());
                }
            }
        }
    }
}

/// The gateway's `initialize` result.
pub fn initialize_result(
    cfg: &Config,
    negotiated: Version,
    joined: &[(&Backend, &BackendInit)],
) -> String {
    let caps = merge_capabilities(joined.iter().map(|(_, i)| &i.capabilities));
    let mut result = Map::new();
    result.insert(
        "protocolVersion".into(),
        Value::String(negotiated.as_str().into()),
    );
    result.insert("capabilities".into(), Value::Object(caps));
    let mut info = Map::new();
    info.insert("name".into(), Value::String(cfg.server_name.clone()));
    info.insert(
        "version".into(),
        Value::String(env!("CARGO_PKG_VERSION").into()),
    );
    result.insert("serverInfo".into(), Value::Object(info));
    let parts: Vec<(&Backend, Option<&str>)> = joined
        .iter()
        .map(|(b, i)| (*b, i.instructions.as_deref()))
        .collect();
    if let Some(i) = merged_instructions(cfg, &parts) {
        result.insert("instructions".into(), Value::String(i));
    }
    Value::Object(result).to_string()
}

/// The backends' instructions as one text: a single backend's as they are,
/// several under a heading per backend.
pub fn merged_instructions(cfg: &Config, parts: &[(&Backend, Option<&str>)]) -> Option<String> {
    let with_instructions: Vec<_> = parts
        .iter()
        .filter_map(|(b, i)| i.filter(|s| !s.trim().is_empty()).map(|s| (b, s)))
        .collect();
    match with_instructions.as_slice() {
        [] => None,
        [(_, only)] if cfg.backends.len() == 1 => Some(only.to_string()),
        many => Some(
            many.iter()
                .map(|(b, s)| format!("## {}\n{}", b.name, s.trim()))
                .collect::<Vec<_>>()
                .join("\n\n"),
        ),
    }
}

/// One backend's page of a list.
pub struct ListPage<'a> {
    pub backend: usize,
    /// The `result` object text.
    pub result: &'a str,
}

#[derive(Debug, PartialEq, Eq)]
pub enum MergeError {
    /// The same client-visible name from two backends (only possible with bare names).
    Collision {
        name: String,
        first: String,
        second: String,
    },
}

#[derive(Debug)]
pub struct MergedList {
    /// The merged items, as a JSON array text.
    pub items: String,
    /// Backends with more pages, and their cursors.
    pub next: Vec<(usize, String)>,
    /// Per backend: problems that cost it its page (reported, not fatal).
    pub broken: Vec<(usize, String)>,
    /// Names longer than clients accept after prefixing.
    pub overlong: Vec<String>,
    /// The pages' cache hints combined (2026-07-28 `ttlMs` / `cacheScope`).
    pub cache: CacheHint,
}

/// MCP Apps: a tool's UI is a `ui://` resource named in its `_meta`; it is
/// read through the gateway, so it gets the backend namespace like any URI.
fn app_ui_meta(
    naming: &Naming<'_>,
    backend: &Backend,
    meta: &serde_json::value::RawValue,
) -> Option<String> {
    let text = meta.get();
    if naming.expose_uri(backend, "").is_empty()
        || !(text.contains("resourceUri") || text.contains("openai/outputTemplate"))
    {
        return None;
    }
    let mut m: Value = serde_json::from_str(text).ok()?;
    let fix = |v: Option<&mut Value>| {
        if let Some(v) = v {
            if let Some(u) = v.as_str() {
                *v = Value::String(naming.expose_uri(backend, u).into_owned());
            }
        }
    };
    fix(m.get_mut("ui").and_then(|u| u.get_mut("resourceUri")));
    fix(m.get_mut("ui/resourceUri"));
    fix(m.get_mut("openai/outputTemplate"));
    Some(m.to_string())
}

/// A list result parsed in one pass: the items stay raw objects (their
/// members are written back byte for byte), whatever the list is.
#[derive(Deserialize)]
pub struct PageItems<'a> {
    #[serde(borrow, default)]
    tools: Option<Vec<RawObject<'a>>>,
    #[serde(borrow, default)]
    prompts: Option<Vec<RawObject<'a>>>,
    #[serde(borrow, default)]
    resources: Option<Vec<RawObject<'a>>>,
    #[serde(borrow, default, rename = "resourceTemplates")]
    resource_templates: Option<Vec<RawObject<'a>>>,
    #[serde(borrow, default)]
    tasks: Option<Vec<RawObject<'a>>>,
    #[serde(borrow, default, rename = "nextCursor")]
    next_cursor: Option<Cow<'a, str>>,
    #[serde(borrow, default, rename = "ttlMs")]
    ttl_ms: Option<&'a serde_json::value::RawValue>,
    #[serde(borrow, default, rename = "cacheScope")]
    cache_scope: Option<Cow<'a, str>>,
}

impl<'a> PageItems<'a> {
    fn take(self, kind: ListKind) -> (Option<Vec<RawObject<'a>>>, Option<Cow<'a, str>>) {
        let items = match kind {
            ListKind::Tools => self.tools,
            ListKind::Prompts => self.prompts,
            ListKind::Resources => self.resources,
            ListKind::ResourceTemplates => self.resource_templates,
            ListKind::Tasks => self.tasks,
        };
        (items, self.next_cursor)
    }
}

/// The items of one page, if it had the list's member.
type Items<'a> = Option<Vec<RawObject<'a>>>;

/// Per-request hooks of a list merge.
pub struct ListOptions<'a> {
    /// Task ids are not renamed but sealed.
    pub seal_task: &'a dyn Fn(&Backend, &str) -> String,
    /// The policy's list filter.
    pub allowed: &'a dyn Fn(Resource<'_>) -> bool,
}

impl ListOptions<'_> {
    #[cfg(test)]
    pub fn none() -> ListOptions<'static> {
        ListOptions {
            seal_task: &|_, t| t.to_string(),
            allowed: &|_| true,
        }
    }
}

/// Merge one page from each backend: filter, rename, concatenate.
pub fn merge_list(
    cfg: &Config,
    kind: ListKind,
    pages: &[ListPage<'_>],
    opts: &ListOptions<'_>,
) -> Result<MergedList, MergeError> {
    let mut parsed = Vec::with_capacity(pages.len());
    let mut broken = Vec::new();
    for p in pages {
        match parse_page(p.result, false) {
            Ok(items) => parsed.push((p.backend, items)),
            Err(e) => broken.push((p.backend, e)),
        }
    }
    let mut merged = merge_pages("", cfg, kind, parsed, opts)?;
    merged.broken.extend(broken);
    Ok(merged)
}

/// Parse a list answer in one pass: the `result` object itself, or (with
/// `envelope`) the whole JSON-RPC response, whose error becomes `Err`.
pub fn parse_page(text: &str, envelope: bool) -> Result<PageItems<'_>, String> {
    if !envelope {
        return serde_json::from_str(text).map_err(|e| format!("result is not a list result: {e}"));
    }
    #[derive(Deserialize)]
    struct Answer<'a> {
        #[serde(borrow, default)]
        result: Option<PageItems<'a>>,
        #[serde(borrow, default)]
        error: Option<&'a serde_json::value::RawValue>,
    }
    let a: Answer<'_> =
        serde_json::from_str(text).map_err(|e| format!("not a JSON-RPC response: {e}"))?;
    match (a.result, a.error) {
        (Some(r), None) => Ok(r),
        (_, Some(e)) => Err(format!("JSON-RPC error {}", e.get())),
        (None, None) => Err("not a response".into()),
    }
}

/// Merge parsed pages, the items written after `prefix` in `items`, so a
/// large answer is built in one buffer (no copy into an envelope afterwards).
pub fn merge_pages(
    prefix: &str,
    cfg: &Config,
    kind: ListKind,
    pages: Vec<(usize, PageItems<'_>)>,
    opts: &ListOptions<'_>,
) -> Result<MergedList, MergeError> {
    let naming = Naming::new(cfg);
    let mut out = MergedList {
        items: String::new(),
        next: Vec::new(),
        broken: Vec::new(),
        overlong: Vec::new(),
        cache: CacheHint::merge(
            pages
                .iter()
                .map(|(_, p)| CacheHint::read(p.ttl_ms, p.cache_scope.as_deref())),
        ),
    };
    let mut first = true;
    let mut seen: HashMap<String, usize> = HashMap::new();
    let mut capacity = prefix.len() + 256;
    let pages: Vec<(usize, Items<'_>, Option<Cow<'_, str>>)> = pages
        .into_iter()
        .map(|(i, p)| {
            let (items, next) = p.take(kind);
            capacity += items
                .as_ref()
                .map_or(0, |v| v.iter().map(RawObject::size_hint).sum());
            (i, items, next)
        })
        .collect();
    out.items.reserve(capacity);
    out.items.push_str(prefix);
    out.items.push('[');
    for (page_backend, items, next) in pages {
        let Some(backend) = cfg.backends.get(page_backend) else {
            continue;
        };
        let Some(items) = items else {
            out.broken.push((
                page_backend,
                format!("result has no \"{}\" array", kind.items_key()),
            ));
            continue;
        };
        if let Some(c) = next.filter(|c| !c.is_empty()) {
            out.next.push((page_backend, c.into_owned()));
        }
        for obj in items {
            let (key_field, name_field) = match kind {
                ListKind::Tools | ListKind::Prompts => ("name", None),
                ListKind::Resources => ("uri", Some("name")),
                ListKind::ResourceTemplates => ("uriTemplate", Some("name")),
                ListKind::Tasks => ("taskId", None),
            };
            let Some(key) = obj.get_str(key_field) else {
                continue;
            };
            let visible = match kind {
                ListKind::Tools => backend.tools.allows(&key),
                ListKind::Prompts => backend.prompts.allows(&key),
                _ => true,
            };
            if !visible {
                continue;
            }
            let exposed = match kind {
                ListKind::Tools | ListKind::Prompts => naming.expose(backend, &key),
                ListKind::Tasks => std::borrow::Cow::Owned((opts.seal_task)(backend, &key)),
                _ => naming.expose_uri(backend, &key),
            };
            let b = backend.name.as_str();
            let permitted = (opts.allowed)(match kind {
                ListKind::Tools => Resource::tool(b, &key),
                ListKind::Prompts => Resource::prompt(b, &key),
                ListKind::Resources => Resource::uri(b, &key),
                ListKind::ResourceTemplates => Resource::template(b, &key),
                ListKind::Tasks => Resource::task(b),
            });
            if !permitted {
                continue;
            }
            if let Some(prev) = seen.get(exposed.as_ref()) {
                if *prev != page_backend {
                    return Err(MergeError::Collision {
                        name: exposed.into_owned(),
                        first: cfg
                            .backends
                            .get(*prev)
                            .map(|b| b.name.clone())
                            .unwrap_or_default(),
                        second: backend.name.clone(),
                    });
                }
            }
            if kind == ListKind::Tools && exposed.len() > MAX_TOOL_NAME {
                out.overlong.push(exposed.to_string());
            }
            let exposed_json = json_string(&exposed);
            let renamed_name = name_field.and_then(|f| {
                obj.get_str(f)
                    .map(|n| (f, json_string(&naming.expose(backend, &n))))
            });
            seen.insert(exposed.into_owned(), page_backend);
            if !first {
                out.items.push(',');
            }
            first = false;
            let mut replace: Vec<(&str, &str)> = vec![(key_field, &exposed_json)];
            if let Some((f, n)) = &renamed_name {
                replace.push((f, n));
            }
            let app_meta = match kind {
                ListKind::Tools => obj
                    .get("_meta")
                    .and_then(|m| app_ui_meta(&naming, backend, m)),
                _ => None,
            };
            if let Some(m) = &app_meta {
                replace.push(("_meta", m));
            }
            obj.write_into(&mut out.items, &replace);
        }
    }
    out.items.push(']');
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::gateway::config::compile;
    use crate::gateway::config::tests::{env, KEY};
    use serde_json::json;
    #[cfg(all(target_arch = "wasm32", target_os = "unknown"))]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    fn cfg(backends: &str) -> Config {
        compile(
            format!(r#"{{"session":{{"key":"{KEY}"}},"backends":{backends}}}"#).as_bytes(),
            &env,
        )
        .unwrap()
    }

    fn resp(ct: &str, body: &str) -> CallResponse {
        CallResponse {
            status: 200,
            headers: vec![("content-type".into(), ct.into())],
            body: body.as_bytes().to_vec(),
        }
    }

    #[test]
    fn extracts_json_and_sse_answers() {
        let j = resp(
            "application/json",
            r#"{"jsonrpc":"2.0","id":1,"result":{}}"#,
        );
        assert!(response_message(&j, 1 << 20).unwrap().contains("result"));
        let s = resp(
            "text/event-stream; charset=utf-8",
            "id: p\ndata:\n\ndata: {\"jsonrpc\":\"2.0\",\"method\":\"notifications/message\",\"params\":{}}\n\nevent: message\ndata: {\"jsonrpc\":\"2.0\",\"id\":1,\"result\":{\"x\":1}}\n\n",
        );
        assert_eq!(
            result_of(&response_message(&s, 1 << 20).unwrap()).unwrap(),
            r#"{"x":1}"#
        );
        let truncated = resp(
            "text/event-stream",
            "data: {\"jsonrpc\":\"2.0\",\"method\":\"x\"}\n\n",
        );
        assert!(response_message(&truncated, 1 << 20).is_err());
        assert!(response_message(&resp("text/html", "<html>"), 1 << 20).is_err());
        let mut e = resp("application/json", "{}");
        e.status = 500;
        assert_eq!(response_message(&e, 1 << 20).unwrap_err(), "HTTP 500");
        assert!(
            result_of(r#"{"jsonrpc":"2.0","id":1,"error":{"code":-1,"message":"m"}}"#).is_err()
        );
    }

    #[test]
    fn initialize_merge() {
        let c = cfg(r#"[{"name":"a","cluster":"a"},{"name":"b","cluster":"b"}]"#);
        let a = parse_initialize(
            r#"{"protocolVersion":"2025-06-18","capabilities":{"tools":{"listChanged":true},"experimental":{"x":{}},"tasks":{}},"serverInfo":{"name":"A"},"instructions":"Use A."}"#,
        )
        .unwrap();
        let b = parse_initialize(
            r#"{"protocolVersion":"2025-11-25","capabilities":{"tools":{},"logging":{},"resources":{"subscribe":true}},"serverInfo":{"name":"B"}}"#,
        )
        .unwrap();
        let r: Value = serde_json::from_str(&initialize_result(
            &c,
            Version::V2025_11_25,
            &[(&c.backends[0], &a), (&c.backends[1], &b)],
        ))
        .unwrap();
        assert_eq!(r["protocolVersion"], "2025-11-25");
        assert_eq!(r["serverInfo"]["name"], "mcpgw");
        assert_eq!(r["capabilities"]["tools"]["listChanged"], true);
        assert_eq!(r["capabilities"]["resources"]["subscribe"], true);
        assert!(r["capabilities"]["logging"].is_object());
        assert!(
            r["capabilities"].get("experimental").is_none(),
            "not routable"
        );
        assert_eq!(r["capabilities"]["tasks"], json!({}), "tasks are routed");
        assert_eq!(r["instructions"], "## a\nUse A.");
        assert!(parse_initialize(r#"{"protocolVersion":"1999-01-01"}"#).is_err());
    }

    #[test]
    fn list_merge_filters_renames_and_keeps_fields() {
        let c = cfg(
            r#"[{"name":"a","cluster":"a","tools":{"exclude":["secret"]}},{"name":"b","cluster":"b"}]"#,
        );
        let pa = r#"{"tools":[{"name":"echo","title":"Echo","inputSchema":{"type":"object"},"outputSchema":{"type":"object"},"annotations":{"readOnlyHint":true},"_meta":{"k":1},"icons":[{"src":"x"}]},{"name":"secret","inputSchema":{}}],"nextCursor":"p2"}"#;
        let pb = r#"{"tools":[{"name":"echo","inputSchema":{}}]}"#;
        let m = merge_list(
            &c,
            ListKind::Tools,
            &[
                ListPage {
                    backend: 0,
                    result: pa,
                },
                ListPage {
                    backend: 1,
                    result: pb,
                },
            ],
            &ListOptions::none(),
        )
        .unwrap();
        let items: Vec<Value> = serde_json::from_str(&m.items).unwrap();
        assert_eq!(items.len(), 2);
        assert_eq!(items[0]["name"], "a__echo");
        assert_eq!(items[0]["title"], "Echo");
        assert_eq!(items[0]["outputSchema"]["type"], "object");
        assert_eq!(items[0]["annotations"]["readOnlyHint"], true);
        assert_eq!(items[0]["_meta"]["k"], 1);
        assert_eq!(items[0]["icons"][0]["src"], "x");
        assert_eq!(items[1]["name"], "b__echo");
        assert_eq!(m.next, vec![(0, "p2".to_string())]);
    }

    #[test]
    fn app_ui_resources_follow_the_namespace() {
        let c = cfg(r#"[{"name":"a","cluster":"a"},{"name":"b","cluster":"b"}]"#);
        let p = r#"{"tools":[{"name":"show","inputSchema":{},"_meta":{"ui":{"resourceUri":"ui://show/app.html","csp":{}},"ui/resourceUri":"ui://show/app.html","x":1}}]}"#;
        let m = merge_list(
            &c,
            ListKind::Tools,
            &[ListPage {
                backend: 1,
                result: p,
            }],
            &ListOptions::none(),
        )
        .unwrap();
        let items: Vec<Value> = serde_json::from_str(&m.items).unwrap();
        assert_eq!(
            items[0]["_meta"]["ui"]["resourceUri"],
            "b+ui://show/app.html"
        );
        assert_eq!(items[0]["_meta"]["ui/resourceUri"], "b+ui://show/app.html");
        assert_eq!(items[0]["_meta"]["x"], 1);
    }

    #[test]
    fn resources_are_namespaced() {
        let c = cfg(r#"[{"name":"a","cluster":"a"},{"name":"b","cluster":"b"}]"#);
        let p = r#"{"resources":[{"uri":"test://x","name":"x","mimeType":"text/plain"}]}"#;
        let m = merge_list(
            &c,
            ListKind::Resources,
            &[ListPage {
                backend: 1,
                result: p,
            }],
            &ListOptions::none(),
        )
        .unwrap();
        let items: Vec<Value> = serde_json::from_str(&m.items).unwrap();
        assert_eq!(items[0]["uri"], "b+test://x");
        assert_eq!(items[0]["name"], "b__x");
        let t = r#"{"resourceTemplates":[{"uriTemplate":"test://t/{id}","name":"t"}]}"#;
        let m = merge_list(
            &c,
            ListKind::ResourceTemplates,
            &[ListPage {
                backend: 0,
                result: t,
            }],
            &ListOptions::none(),
        )
        .unwrap();
        let items: Vec<Value> = serde_json::from_str(&m.items).unwrap();
        assert_eq!(items[0]["uriTemplate"], "a+test://t/{id}");
    }

    #[test]
    fn bare_name_collisions_are_errors() {
        let c = cfg(
            r#"[{"name":"a","cluster":"a","prefix":"never"},{"name":"b","cluster":"b","prefix":"never"}]"#,
        );
        let p = r#"{"tools":[{"name":"same","inputSchema":{}}]}"#;
        let e = merge_list(
            &c,
            ListKind::Tools,
            &[
                ListPage {
                    backend: 0,
                    result: p,
                },
                ListPage {
                    backend: 1,
                    result: p,
                },
            ],
            &ListOptions::none(),
        )
        .unwrap_err();
        assert_eq!(
            e,
            MergeError::Collision {
                name: "same".into(),
                first: "a".into(),
                second: "b".into()
            }
        );
    }

    #[test]
    fn broken_pages_and_long_names_are_reported() {
        let c = cfg(
            r#"[{"name":"averyveryverylongbackendname","cluster":"a"},{"name":"b","cluster":"b"}]"#,
        );
        let long = format!(
            r#"{{"tools":[{{"name":"{}","inputSchema":{{}}}}]}}"#,
            "t".repeat(40)
        );
        let m = merge_list(
            &c,
            ListKind::Tools,
            &[
                ListPage {
                    backend: 0,
                    result: &long,
                },
                ListPage {
                    backend: 1,
                    result: "[]",
                },
            ],
            &ListOptions::none(),
        )
        .unwrap();
        assert_eq!(m.overlong.len(), 1);
        assert_eq!(m.broken.len(), 1);
    }
}
