//! The agents' MCP servers file (Claude Desktop / Claude Code `mcpServers`,
//! Cursor, VS Code `servers`, ...) -> [`Gateway`].
//!
//! Entries: Streamable HTTP (`type` `http` / `streamable-http` /
//! `streamable_http` / `streamableHttp`, or only a `url`), stdio (`command`,
//! `args`, `env`, `cwd`, optional `type: stdio`). Legacy SSE servers are
//! skipped with a warning. Keys other clients add (`disabled`,
//! `autoApprove`, ...) are tolerated: a warning names the ones mcpgw ignores.

use crate::model::{
    escape_dollars, parse_url, sanitize_backend_name, valid_backend_name, Backend, CaSource,
    Diagnostics, Gateway, HttpTarget, KubeMeta, NameFilter, StdioCommand, Target, Tls,
};
use serde_json::{Map, Value};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

pub type Env<'a> = &'a dyn Fn(&str) -> Option<String>;

/// How strictly `${VAR}` references in headers are checked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EnvCheck {
    /// A missing variable is an error (`run`, `check`).
    Require,
    /// A missing variable is a warning (`render`: the variable is needed
    /// only where Envoy runs).
    Warn,
}

/// Keys some clients put in an entry that mean nothing to a gateway.
const IGNORED_KEYS: &[&str] = &[
    "description",
    "timeout",
    "autoApprove",
    "alwaysAllow",
    "disabledTools",
    "trust",
    "name",
    "icon",
    "transportType",
    "startup_timeout_sec",
    "tool_timeout_sec",
    "enabled",
];

pub fn load(
    path: &Path,
    text: &str,
    env: Env,
    check: EnvCheck,
) -> Result<(Gateway, Diagnostics), String> {
    let file = path.display().to_string();
    let mut diags = Diagnostics::default();
    let root: Value = serde_json::from_str(text).map_err(|e| {
        format!("{file}: not valid JSON ({e}); an MCP servers file is a JSON object like {{\"mcpServers\": {{\"name\": {{\"url\": \"https://...\"}}}}}}")
    })?;
    let Value::Object(root) = root else {
        return Err(format!(
            "{file}: the top level must be a JSON object with an \"mcpServers\" (or \"servers\") map"
        ));
    };
    let (key, servers) = match (root.get("mcpServers"), root.get("servers")) {
        (Some(_), Some(_)) => {
            return Err(format!(
                "{file}: has both \"mcpServers\" and \"servers\"; keep one map of servers"
            ))
        }
        (Some(s), None) => ("mcpServers", s),
        (None, Some(s)) => ("servers", s),
        (None, None) => {
            return Err(format!(
                "{file}: no \"mcpServers\" (Claude, Cursor) or \"servers\" (VS Code) map of servers found"
            ))
        }
    };
    for k in root.keys() {
        if k != key && k != "inputs" {
            diags.warn(format!(
                "{file}: top-level \"{k}\" is not used by mcpgw (ignored)"
            ));
        }
    }
    let Value::Object(servers) = servers else {
        return Err(format!(
            "{file}: \"{key}\" must be an object mapping server names to their settings"
        ));
    };
    let base_dir = path.parent().map(Path::to_path_buf).unwrap_or_default();
    let mut backends: Vec<Backend> = Vec::new();
    let mut original_names: Vec<String> = Vec::new();
    for (name, entry) in servers {
        let at = format!("{file}: {key}.{name}");
        let Value::Object(entry) = entry else {
            return Err(format!("{at}: must be an object like {{\"url\": \"https://...\"}} or {{\"command\": \"npx\", \"args\": [...]}}"));
        };
        if entry.get("disabled").and_then(Value::as_bool) == Some(true) {
            diags.warn(format!("{at}: skipped: \"disabled\": true"));
            continue;
        }
        let Some(backend) = server(&at, name, entry, env, check, &base_dir, &mut diags)? else {
            continue;
        };
        if let Some(i) = backends.iter().position(|b| b.name == backend.name) {
            let other = original_names.get(i).cloned().unwrap_or_default();
            return Err(format!(
                "{at}: its gateway name \"{}\" is also the name of server \"{other}\"; rename one of them (names become tool prefixes and must be unique)",
                backend.name
            ));
        }
        original_names.push(name.clone());
        backends.push(backend);
    }
    if backends.is_empty() {
        return Err(format!(
            "{file}: no server mcpgw can serve (see the warnings above); add an HTTP server (\"url\") or a stdio server (\"command\")"
        ));
    }
    Ok((
        Gateway {
            source: file,
            path: "/mcp".into(),
            hostnames: vec![],
            backends,
            oauth: None,
            authorization: None,
            limits: Vec::new(),
            kube: KubeMeta {
                name: "mcpgw".into(),
                namespace: "default".into(),
                parent_refs: vec![],
            },
            secret_env: vec![],
        },
        diags,
    ))
}

fn server(
    at: &str,
    name: &str,
    entry: &Map<String, Value>,
    env: Env,
    check: EnvCheck,
    base_dir: &Path,
    diags: &mut Diagnostics,
) -> Result<Option<Backend>, String> {
    let gw_name = if valid_backend_name(name) {
        name.to_string()
    } else {
        let s = sanitize_backend_name(name);
        diags.warn(format!(
            "{at}: \"{name}\" is not a valid gateway name (letters, digits, '-', '_', no \"__\", at most 48); using \"{s}\" (its tools are {s}__<tool>); rename the server in the file to choose another"
        ));
        s
    };
    let ty = match entry.get("type") {
        None => None,
        Some(Value::String(t)) => Some(t.as_str()),
        Some(_) => {
            return Err(format!(
                "{at}.type: must be a string such as \"http\" or \"stdio\""
            ))
        }
    };
    let url = match (entry.get("url"), entry.get("serverUrl")) {
        (Some(u), _) | (None, Some(u)) => Some(
            u.as_str()
                .ok_or_else(|| format!("{at}.url: must be a string like \"https://host/mcp\""))?,
        ),
        (None, None) => None,
    };
    let command = entry.get("command");
    enum Kind {
        Http,
        Stdio,
    }
    let kind = match ty {
        Some("http" | "streamable-http" | "streamable_http" | "streamableHttp" | "streamable") => {
            Kind::Http
        }
        Some("stdio") => Kind::Stdio,
        Some("sse") => {
            diags.warn(format!(
                "{at}: skipped: \"type\": \"sse\" is the legacy HTTP+SSE transport (2024-11-05), which mcpgw cannot proxy; if the server also offers Streamable HTTP, set \"type\": \"http\" and its Streamable HTTP URL (often ending in /mcp)"
            ));
            return Ok(None);
        }
        Some(other) => {
            return Err(format!(
                "{at}.type: \"{other}\" is not a transport mcpgw knows; use \"http\" (Streamable HTTP) or \"stdio\""
            ))
        }
        None => match (url, command) {
            (Some(u), _) => {
                if u.trim_end_matches('/').ends_with("/sse") {
                    diags.warn(format!(
                        "{at}: skipped: the URL ends in /sse, the legacy HTTP+SSE transport mcpgw cannot proxy; if the server also offers Streamable HTTP, set its URL (often ending in /mcp) or add \"type\": \"http\" to use this URL anyway"
                    ));
                    return Ok(None);
                }
                Kind::Http
            }
            (None, Some(_)) => Kind::Stdio,
            (None, None) => {
                return Err(format!(
                    "{at}: has neither \"url\" (an HTTP server) nor \"command\" (a stdio server)"
                ))
            }
        },
    };
    let mut known: Vec<&str> = vec!["type", "disabled", "tools", "includeTools", "excludeTools"];
    known.extend_from_slice(IGNORED_KEYS);
    let target = match kind {
        Kind::Http => {
            known.extend(["url", "serverUrl", "headers"]);
            let url = url.ok_or_else(|| format!("{at}: an HTTP server needs \"url\""))?;
            let url = expand_now(url, env).map_err(|e| format!("{at}.url: {e}"))?;
            let u = parse_url(&url).map_err(|e| format!("{at}.url: {e}"))?;
            let tls = u.https.then(|| Tls {
                sni: u.host.to_string(),
                ca: CaSource::System,
                subject_alt_names: vec![],
            });
            if command.is_some() {
                diags.warn(format!(
                    "{at}: has both \"url\" and \"command\"; using the URL"
                ));
            }
            Target::Http(HttpTarget {
                host: u.host,
                port: u.port,
                path: u.path,
                tls,
                kube_backend: None,
            })
        }
        Kind::Stdio => {
            known.extend([
                "command",
                "args",
                "env",
                "cwd",
                "envFile",
                "maxProcesses",
                "sharedProcess",
            ]);
            Target::Stdio(stdio(at, entry, env, base_dir, diags)?)
        }
    };
    let mut headers = BTreeMap::new();
    if let Some(h) = entry.get("headers") {
        let Value::Object(h) = h else {
            return Err(format!(
                "{at}.headers: must be an object of header name -> value"
            ));
        };
        for (hname, v) in h {
            let hat = format!("{at}.headers.{hname}");
            let v = v
                .as_str()
                .ok_or_else(|| format!("{hat}: must be a string"))?;
            if hname.is_empty()
                || !hname
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b))
            {
                return Err(format!(
                    "{hat}: \"{hname}\" is not a valid HTTP header name"
                ));
            }
            let template = header_template(v, env, check, &hat, diags)?;
            headers.insert(hname.to_ascii_lowercase(), template);
        }
    }
    let tools = tool_filter(at, entry)?;
    if entry.contains_key("oauth") {
        diags.warn(format!(
            "{at}.oauth: ignored: the gateway authenticates to servers with \"headers\" (e.g. \"Authorization\": \"Bearer ${{TOKEN}}\"), not with an OAuth flow of its own"
        ));
        known.push("oauth");
    }
    for k in entry.keys() {
        if !known.contains(&k.as_str()) {
            diags.warn(format!("{at}.{k}: not used by mcpgw (ignored)"));
        }
    }
    Ok(Some(Backend {
        name: gw_name,
        target,
        headers,
        tools,
        forward_authorization: false,
    }))
}

fn stdio(
    at: &str,
    entry: &Map<String, Value>,
    env: Env,
    base_dir: &Path,
    diags: &mut Diagnostics,
) -> Result<StdioCommand, String> {
    let command = entry
        .get("command")
        .and_then(Value::as_str)
        .filter(|c| !c.trim().is_empty())
        .ok_or_else(|| format!("{at}.command: a stdio server needs \"command\", the program to start (e.g. \"npx\")"))?;
    let command = expand_now(command, env).map_err(|e| format!("{at}.command: {e}"))?;
    let mut args = Vec::new();
    match entry.get("args") {
        None => {}
        Some(Value::Array(a)) => {
            for (i, v) in a.iter().enumerate() {
                let s = v
                    .as_str()
                    .ok_or_else(|| format!("{at}.args[{i}]: must be a string"))?;
                args.push(expand_now(s, env).map_err(|e| format!("{at}.args[{i}]: {e}"))?);
            }
        }
        Some(_) => return Err(format!("{at}.args: must be an array of strings")),
    }
    let mut child_env = BTreeMap::new();
    match entry.get("env") {
        None => {}
        Some(Value::Object(m)) => {
            for (k, v) in m {
                let s = match v {
                    Value::String(s) => s.clone(),
                    Value::Number(n) => n.to_string(),
                    Value::Bool(b) => b.to_string(),
                    _ => return Err(format!("{at}.env.{k}: must be a string")),
                };
                child_env.insert(
                    k.clone(),
                    expand_now(&s, env).map_err(|e| format!("{at}.env.{k}: {e}"))?,
                );
            }
        }
        Some(_) => return Err(format!("{at}.env: must be an object of NAME -> value")),
    }
    if entry.contains_key("envFile") {
        diags.warn(format!(
            "{at}.envFile: ignored: put the variables in \"env\" or in mcpgw's environment"
        ));
    }
    let cwd = match entry.get("cwd") {
        None => None,
        Some(Value::String(c)) => {
            let c = expand_now(c, env).map_err(|e| format!("{at}.cwd: {e}"))?;
            let p = PathBuf::from(&c);
            Some(if p.is_absolute() { p } else { base_dir.join(p) })
        }
        Some(_) => return Err(format!("{at}.cwd: must be a string (a directory)")),
    };
    let max_processes = match entry.get("maxProcesses") {
        None => None,
        Some(v) => Some(
            v.as_u64()
                .filter(|n| *n > 0)
                .and_then(|n| usize::try_from(n).ok())
                .ok_or_else(|| {
                    format!("{at}.maxProcesses: must be a whole number of processes, at least 1")
                })?,
        ),
    };
    let shared = match entry.get("sharedProcess") {
        None => false,
        Some(Value::Bool(b)) => *b,
        Some(_) => {
            return Err(format!(
                "{at}.sharedProcess: must be true (one process for every session) or false"
            ))
        }
    };
    if shared && max_processes.is_some() {
        diags.warn(format!(
            "{at}.maxProcesses: ignored: with \"sharedProcess\": true there is one process"
        ));
    }
    Ok(StdioCommand {
        command,
        args,
        env: child_env,
        cwd,
        max_processes,
        shared,
    })
}

fn string_list(at: &str, v: &Value) -> Result<Vec<String>, String> {
    let Value::Array(a) = v else {
        return Err(format!("{at}: must be an array of tool names"));
    };
    a.iter()
        .enumerate()
        .map(|(i, v)| {
            v.as_str()
                .map(str::to_string)
                .ok_or_else(|| format!("{at}[{i}]: must be a string (a tool name)"))
        })
        .collect()
}

fn tool_filter(at: &str, entry: &Map<String, Value>) -> Result<NameFilter, String> {
    let mut f = NameFilter::default();
    if let Some(v) = entry.get("tools") {
        let list = string_list(&format!("{at}.tools"), v)?;
        // ["*"] (some clients' "all tools") is no filter at all.
        if !(list.len() == 1 && list.first().is_some_and(|s| s == "*")) {
            f.include.extend(list);
        }
    }
    if let Some(v) = entry.get("includeTools") {
        f.include
            .extend(string_list(&format!("{at}.includeTools"), v)?);
    }
    if let Some(v) = entry.get("excludeTools") {
        f.exclude
            .extend(string_list(&format!("{at}.excludeTools"), v)?);
    }
    Ok(f)
}

/// One `${...}` reference: `VAR`, `env:VAR` (VS Code), `VAR:-default`.
struct VarRef<'a> {
    name: &'a str,
    default: Option<&'a str>,
}

fn parse_ref(inner: &str) -> Result<VarRef<'_>, String> {
    let inner = inner.strip_prefix("env:").unwrap_or(inner);
    let (name, default) = match inner.split_once(":-") {
        Some((n, d)) => (n, Some(d)),
        None => (inner, None),
    };
    if name.starts_with("input:") {
        return Err(format!(
            "\"${{{name}}}\" is a VS Code input variable, which only VS Code can prompt for; use an environment variable instead: \"${{env:NAME}}\""
        ));
    }
    if name.is_empty() || !name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_') {
        return Err(format!(
            "\"${{{inner}}}\" is not a variable reference; write ${{NAME}} (letters, digits, _)"
        ));
    }
    Ok(VarRef { name, default })
}

/// Split a value into literal text and `${...}` references.
fn scan<'a>(
    s: &'a str,
    mut on: impl FnMut(Result<&'a str, &'a str>) -> Result<(), String>,
) -> Result<(), String> {
    let mut rest = s;
    while let Some(i) = rest.find("${") {
        on(Ok(rest.get(..i).unwrap_or("")))?;
        let after = rest.get(i + 2..).unwrap_or("");
        let end = after
            .find('}')
            .ok_or_else(|| "has an unterminated ${...}".to_string())?;
        on(Err(after.get(..end).unwrap_or("")))?;
        rest = after.get(end + 1..).unwrap_or("");
    }
    on(Ok(rest))
}

/// Expand `${VAR}` now, from mcpgw's environment (url, command, args, env, cwd).
pub fn expand_now(s: &str, env: Env) -> Result<String, String> {
    let mut out = String::new();
    scan(s, |part| {
        match part {
            Ok(lit) => out.push_str(lit),
            Err(inner) => {
                let r = parse_ref(inner)?;
                match (env(r.name), r.default) {
                    (Some(v), _) => out.push_str(&v),
                    (None, Some(d)) => out.push_str(d),
                    (None, None) => {
                        return Err(format!(
                            "environment variable {} is not set; export it before running mcpgw",
                            r.name
                        ))
                    }
                }
            }
        }
        Ok(())
    })?;
    Ok(out)
}

/// A header value -> the filter's template: `${VAR}` stays a reference that
/// Envoy resolves from its environment (the secret is never written to a
/// file); literal `$` becomes `$$`.
fn header_template(
    v: &str,
    env: Env,
    check: EnvCheck,
    at: &str,
    diags: &mut Diagnostics,
) -> Result<String, String> {
    let mut out = String::new();
    scan(v, |part| {
        match part {
            Ok(lit) => out.push_str(&escape_dollars(lit)),
            Err(inner) => {
                let r = parse_ref(inner).map_err(|e| format!("{at}: {e}"))?;
                match (env(r.name), r.default) {
                    (Some(_), _) => out.push_str(&format!("${{{}}}", r.name)),
                    (None, Some(d)) => out.push_str(&escape_dollars(d)),
                    (None, None) => {
                        let msg = format!(
                            "{at}: environment variable {} is not set; export it before starting the gateway (mcpgw hands it to Envoy through its environment and never writes it to a file)",
                            r.name
                        );
                        match check {
                            EnvCheck::Require => return Err(msg),
                            EnvCheck::Warn => {
                                diags.warn(msg);
                                out.push_str(&format!("${{{}}}", r.name));
                            }
                        }
                    }
                }
            }
        }
        Ok(())
    })
    .map_err(|e| if e.starts_with(at) { e } else { format!("{at}: {e}") })?;
    Ok(out)
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::indexing_slicing, clippy::panic)]
mod tests {
    use super::*;

    fn env(name: &str) -> Option<String> {
        match name {
            "GITHUB_TOKEN" => Some("ghp_x".into()),
            "HOME" => Some("/home/u".into()),
            _ => None,
        }
    }

    fn ld(text: &str) -> Result<(Gateway, Diagnostics), String> {
        load(Path::new("/cfg/mcp.json"), text, &env, EnvCheck::Require)
    }

    #[test]
    fn http_and_stdio_entries() {
        let (g, d) = ld(r#"{"mcpServers": {
            "github": {"type": "http", "url": "https://api.githubcopilot.com/mcp/",
                       "headers": {"Authorization": "Bearer ${GITHUB_TOKEN}", "X-Cost": "$5"},
                       "tools": ["list_issues"], "excludeTools": ["delete_repo"]},
            "local": {"url": "http://127.0.0.1:9001/mcp"},
            "fs": {"command": "npx", "args": ["-y", "server-fs", "${HOME}/src"], "env": {"A": "1"}, "cwd": "sub"},
            "old": {"type": "sse", "url": "http://x/sse"},
            "old2": {"url": "http://x/sse"},
            "off": {"url": "http://x/mcp", "disabled": true},
            "my.server": {"type": "streamableHttp", "url": "http://10.0.0.1:8080", "autoApprove": []}
        }}"#)
        .unwrap();
        let names: Vec<_> = g.backends.iter().map(|b| b.name.as_str()).collect();
        assert_eq!(names, ["fs", "github", "local", "my-server"]);
        let gh = &g.backends[1];
        assert_eq!(gh.headers["authorization"], "Bearer ${GITHUB_TOKEN}");
        assert_eq!(gh.headers["x-cost"], "$$5");
        assert_eq!(gh.tools.include, ["list_issues"]);
        assert_eq!(gh.tools.exclude, ["delete_repo"]);
        let Target::Http(t) = &gh.target else {
            panic!()
        };
        assert_eq!(t.authority(), "api.githubcopilot.com");
        assert_eq!(t.path, "/mcp/");
        assert!(t.tls.is_some());
        let Target::Stdio(s) = &g.backends[0].target else {
            panic!()
        };
        assert_eq!(s.args, ["-y", "server-fs", "/home/u/src"]);
        assert_eq!(s.cwd.as_deref(), Some(Path::new("/cfg/sub")));
        let w = d.warnings.join("\n");
        assert!(w.contains("old: skipped") && w.contains("legacy"), "{w}");
        assert!(w.contains("old2: skipped"), "{w}");
        assert!(w.contains("off: skipped"), "{w}");
        assert!(
            w.contains("\"my.server\" is not a valid gateway name"),
            "{w}"
        );
        assert!(!w.contains("autoApprove"), "{w}");
    }

    #[test]
    fn vscode_servers_and_env_syntax() {
        let (g, _) = ld(
            r#"{"servers": {"gh": {"type": "http", "url": "https://x/mcp",
            "headers": {"Authorization": "Bearer ${env:GITHUB_TOKEN}", "X-D": "${NOPE:-dflt}"}}},
            "inputs": []}"#,
        )
        .unwrap();
        assert_eq!(
            g.backends[0].headers["authorization"],
            "Bearer ${GITHUB_TOKEN}"
        );
        assert_eq!(g.backends[0].headers["x-d"], "dflt");
    }

    #[test]
    fn errors_name_file_server_field_and_fix() {
        let cases: &[(&str, &str)] = &[
            (r#"{"mcpServers": {"gh": {"url": "https://x", "headers": {"Authorization": "Bearer ${MISSING_TOKEN}"}}}}"#,
             "/cfg/mcp.json: mcpServers.gh.headers.Authorization: environment variable MISSING_TOKEN is not set; export it"),
            (r#"{"mcpServers": {"gh": {"url": "ftp://x"}}}"#, "mcpServers.gh.url: \"ftp://x\" is not an http:// or https:// URL"),
            (r#"{"mcpServers": {"gh": {"type": "websocket", "url": "ws://x"}}}"#, "mcpServers.gh.type: \"websocket\" is not a transport mcpgw knows; use \"http\""),
            (r#"{"mcpServers": {"gh": {}}}"#, "mcpServers.gh: has neither \"url\""),
            (r#"{"mcpServers": {"gh": {"command": "x", "args": "-y"}}}"#, "mcpServers.gh.args: must be an array"),
            (r#"{"mcpServers": {"gh": {"url": "http://x", "tools": "a"}}}"#, "mcpServers.gh.tools: must be an array"),
            (r#"{"mcpServers": {"a.b": {"url": "http://x"}, "a-b": {"url": "http://y"}}}"#, "is also the name of server"),
            (r#"{"mcpServers": {"gh": {"url": "http://x", "headers": {"A": "${input:tok}"}}}}"#, "VS Code input variable"),
            (r#"{"other": {}}"#, "no \"mcpServers\""),
            (r#"{"mcpServers": {"o": {"type": "sse", "url": "http://x/sse"}}}"#, "no server mcpgw can serve"),
            ("[1]", "top level must be a JSON object"),
            ("{", "not valid JSON"),
            (r#"{"mcpServers": {"gh": {"command": "${NOPE}/bin/x"}}}"#, "mcpServers.gh.command: environment variable NOPE is not set"),
        ];
        for (text, want) in cases {
            let e = ld(text).unwrap_err();
            assert!(e.contains(want), "{text}\n  got: {e}\n want: {want}");
        }
    }

    #[test]
    fn render_mode_only_warns_for_missing_header_vars() {
        let (g, d) = load(
            Path::new("m.json"),
            r#"{"mcpServers": {"gh": {"url": "https://x", "headers": {"Authorization": "Bearer ${MISSING_TOKEN}"}}}}"#,
            &env,
            EnvCheck::Warn,
        )
        .unwrap();
        assert_eq!(
            g.backends[0].headers["authorization"],
            "Bearer ${MISSING_TOKEN}"
        );
        assert!(d.warnings[0].contains("MISSING_TOKEN is not set"));
    }
}
