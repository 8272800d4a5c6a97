//! The fuzz harness: one function per target, each feeding arbitrary bytes to
//! mcpgw's own code and panicking when an invariant breaks. Shared verbatim by
//! the cargo-fuzz targets (`e2e/fuzz/fuzz_targets/*.rs`) and the regression
//! tests (`e2e/tests/fuzz_regressions.rs`, which include this file), so a
//! crashing input replays natively with `cargo test`.
//!
//! Only mcpgw's public API and serde_json are used.

use mcpgw_core::gateway::config::{compile, Config};
use mcpgw_core::gateway::crypto::{Keyring, Purpose, NONCE_LEN};
use mcpgw_core::gateway::host::{
    Attribute, BodyAction, CallId, CallResponse, Configure, Family, HeaderOp, HeadersAction, Host,
    HostError, Level, LocalResponse, LogField, MetaValue, MetricId, MetricKind, Outbound,
    ResponseBodyAction, ResponseHeadersAction,
};
use mcpgw_core::gateway::merge::{self, ListOptions, ListPage};
use mcpgw_core::gateway::modern::listen::{Filter, ListenCtx};
use mcpgw_core::gateway::modern::{Seal, StreamEra};
use mcpgw_core::gateway::session::{caps, BackendSession, Session};
use mcpgw_core::gateway::stats::series_name;
use mcpgw_core::gateway::stream::{self, Answer, SseRewrite, StreamCtx};
use mcpgw_core::gateway::tokens::{ListCursor, Wrapped};
use mcpgw_core::gateway::{Exchange, Gateway};
use mcpgw_core::protocol::http::is_safe_header_value;
use mcpgw_core::protocol::jsonrpc::{self, Kind, RawObject};
use mcpgw_core::protocol::mcp::{ListKind, Version};
use mcpgw_core::protocol::sse::{self, Item};
use serde_json::value::RawValue;
use serde_json::Value;
use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::sync::{Arc, OnceLock};

/// The session key of every fuzzed gateway (32 bytes, base64).
pub const KEY: &str = "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=";
/// A previous key (rotation): ids sealed with it still open.
pub const OLD_KEY: &str = "ICEiIyQlJicoKSorLC0uLzAxMjM0NTY3ODk6Ozw9Pj8=";
/// The fake host's clock.
pub const NOW_MS: u64 = 1_700_000_000_000;
const SID: [u8; 16] = [7; 16];
const ISSUER: &str = "https://auth.example.com";
const RESOURCE: &str = "https://mcp.example.com/mcp";

// ----- a deterministic host ------------------------------------------------------

/// A [`Host`] for fuzzing: fixed clock, deterministic "randomness", calls
/// recorded, shared data and metrics in memory.
pub struct FuzzHost {
    pub now: u64,
    rng: Cell<u64>,
    pub logs: RefCell<Vec<(Level, String)>>,
    pub calls: Vec<(CallId, Outbound)>,
    next_token: CallId,
    shared: RefCell<HashMap<String, (Vec<u8>, u32)>>,
    /// Dynamic metadata by namespace and path, joined with `/`.
    pub metadata: HashMap<String, MetaValue>,
    pub published: RefCell<HashMap<String, String>>,
    pub metrics: RefCell<HashMap<String, u64>>,
    pub fail_dispatch: bool,
    pub fail_random: bool,
}

impl Default for FuzzHost {
    fn default() -> Self {
        FuzzHost {
            now: NOW_MS,
            rng: Cell::new(0x9E37_79B9_7F4A_7C15),
            logs: RefCell::new(Vec::new()),
            calls: Vec::new(),
            next_token: 100,
            shared: RefCell::new(HashMap::new()),
            metadata: HashMap::new(),
            published: RefCell::new(HashMap::new()),
            metrics: RefCell::new(HashMap::new()),
            fail_dispatch: false,
            fail_random: false,
        }
    }
}

impl Host for FuzzHost {
    fn now_ms(&self) -> u64 {
        self.now
    }
    fn random(&self, buf: &mut [u8]) -> Result<(), HostError> {
        if self.fail_random {
            return Err(HostError);
        }
        for b in buf.iter_mut() {
            // xorshift64*
            let mut x = self.rng.get();
            x ^= x >> 12;
            x ^= x << 25;
            x ^= x >> 27;
            self.rng.set(x);
            *b = (x.wrapping_mul(0x2545_F491_4F6C_DD1D) >> 56) as u8;
        }
        Ok(())
    }
    fn log(&self, level: Level, message: &str) {
        self.logs.borrow_mut().push((level, message.to_string()));
    }
    fn dispatch(&mut self, call: &Outbound) -> Result<CallId, HostError> {
        if self.fail_dispatch {
            return Err(HostError);
        }
        let token = self.next_token;
        self.next_token = self.next_token.wrapping_add(1);
        self.calls.push((token, call.clone()));
        Ok(token)
    }
    fn shared_get(&self, key: &str) -> (Option<Vec<u8>>, u32) {
        match self.shared.borrow().get(key) {
            Some((v, cas)) => (Some(v.clone()), *cas),
            None => (None, 0),
        }
    }
    fn shared_set(&self, key: &str, value: &[u8], cas: u32) -> Result<bool, HostError> {
        let mut m = self.shared.borrow_mut();
        let cur = m.get(key).map(|(_, c)| *c).unwrap_or(0);
        if cas != 0 && cas != cur {
            return Ok(false);
        }
        m.insert(
            key.to_string(),
            (value.to_vec(), cur.wrapping_add(1).max(1)),
        );
        Ok(true)
    }
    fn metadata(&self, namespace: &str, path: &[&str]) -> Option<MetaValue> {
        self.metadata
            .get(&format!("{namespace}/{}", path.join("/")))
            .cloned()
    }
    fn attribute(&self, _attribute: Attribute) -> Option<String> {
        None
    }
    fn set_log_field(&self, field: LogField, value: &str) {
        self.published
            .borrow_mut()
            .insert(field.name().to_string(), value.to_string());
    }
    fn record(&self, metric: MetricId, value: u64) {
        // Series are known by id only here (the gateway is shared by threads).
        self.add(MetricKind::Counter, format!("#{}", metric.0), value);
    }
    fn record_labelled(&self, family: &Family, labels: &[&str], value: u64) {
        assert_eq!(labels.len(), family.labels.len(), "{}", family.name);
        self.add(family.kind, series_name(family, labels), value);
    }
}

impl FuzzHost {
    fn add(&self, kind: MetricKind, name: String, value: u64) {
        let mut m = self.metrics.borrow_mut();
        let e = m.entry(name).or_insert(0);
        match kind {
            MetricKind::Counter => *e = e.saturating_add(value),
            MetricKind::Histogram => *e = value,
        }
    }
}

/// Declares metrics with sequential ids, checking every series is well formed.
#[derive(Default)]
pub struct FuzzConfigure {
    next: u32,
}

impl Configure for FuzzConfigure {
    fn define_metric(&mut self, family: &Family, labels: &[&str]) -> Option<MetricId> {
        assert_eq!(labels.len(), family.labels.len(), "{}", family.name);
        self.next += 1;
        Some(MetricId(self.next))
    }
}

// ----- fixed gateways ---------------------------------------------------------------

/// Four backends: `alpha` and `beta` prefixed (credentials, filters, another
/// path), `gamma` and `delta` bare (`prefix: never`, so bare names need
/// look-ups). Small size limits so the fuzzer reaches them.
pub fn config_json(with_auth: bool) -> String {
    let auth = if with_auth {
        format!(
            r#","auth":{{"resource":"{RESOURCE}","authorization_servers":["{ISSUER}"],"scopes":["mcp"],
              "authorization_server_metadata":{{"cluster":"c_idp","authority":"auth.example.com","path":"/.well-known/oauth-authorization-server"}}}},
              "authorization":{{"rules":[{{"name":"users","when":{{"scopes":["mcp"]}},"target":{{"backends":["alpha","gamma"],"tools":[{{"backend":"beta","name":"echo"}}]}}}},
                       {{"name":"admins","when":{{"claims":{{"groups":"admins"}}}}}}]}}"#
        )
    } else {
        String::new()
    };
    format!(
        r#"{{"session":{{"key":"{KEY}","previous_keys":["{OLD_KEY}"],"ttl":"1h"}},
  "allowed_origins":["https://app.example.com"],
  "max_request_bytes":65536,"max_response_bytes":8192,
  "backends":[
    {{"name":"alpha","cluster":"c_alpha","authority":"alpha.test","headers":{{"authorization":"Bearer ${{TOKEN}}"}},"tools":{{"exclude":["admin_reset"]}},"timeout":"5s"}},
    {{"name":"beta","cluster":"c_beta","path":"/beta/mcp","tools":{{"include_regex":["^(echo|count)$"]}},"forward_authorization":true}},
    {{"name":"gamma","cluster":"c_gamma","prefix":"never"}},
    {{"name":"delta","cluster":"c_delta","prefix":"never","prompts":{{"exclude":["secret"]}}}}
  ]{auth}}}"#
    )
}

fn env(name: &str) -> Option<String> {
    (name == "TOKEN").then(|| "s3cret".to_string())
}

/// The fuzzed gateway (built once per process).
pub fn gateway(with_auth: bool) -> Arc<Gateway> {
    static PLAIN: OnceLock<Arc<Gateway>> = OnceLock::new();
    static AUTH: OnceLock<Arc<Gateway>> = OnceLock::new();
    let cell = if with_auth { &AUTH } else { &PLAIN };
    cell.get_or_init(|| {
        let cfg: Config = match compile(config_json(with_auth).as_bytes(), &env) {
            Ok(c) => c,
            Err(e) => panic!("the harness config must compile: {e}"),
        };
        Arc::new(Gateway::new(cfg, &mut FuzzConfigure::default()))
    })
    .clone()
}

/// The session `{SID}` stands for: all four backends joined; alpha and gamma
/// stateful, alpha with every capability.
pub fn session(principal: Option<[u8; 16]>, created_ms: u64) -> Session {
    let all = caps::TOOLS
        | caps::PROMPTS
        | caps::RESOURCES
        | caps::COMPLETIONS
        | caps::LOGGING
        | caps::TASKS
        | caps::TASK_LIST;
    let b = |name: &str, sid: Option<&str>, caps: u8| BackendSession {
        name: name.into(),
        version: Version::V2025_11_25,
        session_id: sid.map(str::to_string),
        caps,
    };
    Session {
        sid: SID,
        created_ms,
        version: Version::V2025_11_25,
        principal,
        backends: vec![
            b("alpha", Some("alpha-session-1"), all),
            b("beta", None, caps::TOOLS | caps::LOGGING),
            b(
                "gamma",
                Some("g-1"),
                caps::TOOLS | caps::PROMPTS | caps::RESOURCES,
            ),
            b("delta", None, caps::TOOLS | caps::PROMPTS | caps::RESOURCES),
        ],
    }
}

/// The principal digest of the harness user (issuer + `alice`), as the gateway computes it.
fn alice_digest(keys: &Keyring) -> [u8; 16] {
    let n = keys.synthetic_nonce(&[b"principal", ISSUER.as_bytes(), b"alice"]);
    let mut d = [0u8; 16];
    d.copy_from_slice(&n[..16]);
    d
}

fn b64url(data: &[u8]) -> String {
    const A: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    let mut out = String::new();
    for chunk in data.chunks(3) {
        let n = chunk
            .iter()
            .enumerate()
            .fold(0u32, |acc, (i, b)| acc | (u32::from(*b) << (16 - 8 * i)));
        for i in 0..=chunk.len() {
            out.push(A[((n >> (18 - 6 * i)) & 63) as usize] as char);
        }
    }
    out
}

/// Placeholders the exchange input may use, replaced by valid sealed ids.
fn placeholders(gw: &Gateway, with_auth: bool) -> Vec<(&'static str, String)> {
    let keys = &gw.cfg.keys;
    let principal = with_auth.then(|| alice_digest(keys));
    let sid = session_id(gw, with_auth);
    let expired = session(principal, NOW_MS - 7_200_000).seal(keys, &[2; NONCE_LEN]);
    // OLD_KEY decodes to the bytes 32..=63.
    let old: [u8; 32] = std::array::from_fn(|i| 32 + i as u8);
    let rotated = session(principal, NOW_MS - 1000).seal(&Keyring::new(&old, &[]), &[3; 24]);
    let w = |backend: &str, original: &str| Wrapped {
        sid: SID,
        backend: backend.into(),
        original: original.into(),
    };
    let reqid = w("alpha", "7").seal_request_id(keys, &[4; NONCE_LEN]);
    let reqid_str = w("gamma", "\"s-1\"").seal_request_id(keys, &[5; NONCE_LEN]);
    let task = w("alpha", "task-1").seal_task_id(keys, &[6; NONCE_LEN]);
    let event = w("alpha", "e-41").seal_event_id(keys, &[7; NONCE_LEN]);
    let cursor = ListCursor::new(
        SID,
        ListKind::Tools,
        vec![("alpha".into(), "p2".into()), ("gamma".into(), "g2".into())],
    )
    .seal(keys, &[8; NONCE_LEN]);
    let jwt = b64url(
        format!(r#"{{"iss":"{ISSUER}","sub":"alice","aud":"{RESOURCE}","scope":"mcp","groups":["admins"]}}"#)
            .as_bytes(),
    );
    vec![
        ("{SID}", sid),
        ("{EXPIRED}", expired),
        ("{ROTATED}", rotated),
        ("{REQID}", reqid),
        ("{REQID2}", reqid_str),
        ("{TASK}", task),
        ("{EVENT}", event),
        ("{CURSOR}", cursor),
        ("{JWT}", jwt),
    ]
}

/// A valid session id for the fuzzed gateway (what `{SID}` stands for).
pub fn session_id(gw: &Gateway, with_auth: bool) -> String {
    let principal = with_auth.then(|| alice_digest(&gw.cfg.keys));
    session(principal, NOW_MS - 1000).seal(&gw.cfg.keys, &[1; NONCE_LEN])
}

/// The headers of an MCP POST in session `sid`.
pub fn post_headers(sid: &str) -> Vec<(String, String)> {
    headers_of(&[
        (":method", "POST"),
        (":path", "/mcp"),
        (":authority", "localhost:1975"),
        ("accept", "application/json, text/event-stream"),
        ("content-type", "application/json"),
        ("mcp-session-id", sid),
        ("mcp-protocol-version", "2025-11-25"),
    ])
}

/// A backend's answer to a side call, as `application/json`.
pub fn json_answer(status: u16, body: Vec<u8>) -> CallResponse {
    CallResponse {
        status,
        headers: vec![
            (":status".into(), status.to_string()),
            ("content-type".into(), "application/json".into()),
        ],
        body,
    }
}

fn expand(data: &[u8], subst: &[(&'static str, String)]) -> Vec<u8> {
    if !data.contains(&b'{') {
        return data.to_vec();
    }
    let mut out = Vec::with_capacity(data.len() + 256);
    let mut i = 0;
    'outer: while i < data.len() {
        if data[i] == b'{' {
            for (k, v) in subst {
                if data[i..].starts_with(k.as_bytes()) {
                    out.extend_from_slice(v.as_bytes());
                    i += k.len();
                    continue 'outer;
                }
            }
        }
        out.push(data[i]);
        i += 1;
    }
    out
}

// ----- invariants ---------------------------------------------------------------------

fn check_json_rpc_text(what: &str, text: &str) {
    if let Err(e) = jsonrpc::parse(text.as_bytes()) {
        panic!("{what} is not one JSON-RPC message ({e:?}): {text:?}");
    }
}

/// A local answer: well-formed headers; a JSON body is JSON, and for an
/// error status a JSON-RPC error with an integer code.
fn check_local(r: &LocalResponse) {
    assert!((100..=599).contains(&r.status), "status {}", r.status);
    for (k, v) in &r.headers {
        assert!(
            !k.is_empty() && is_safe_header_value(k) && !k.contains(' '),
            "bad response header name {k:?}"
        );
        assert!(is_safe_header_value(v), "unsafe response header {k}: {v:?}");
    }
    let ct = r
        .headers
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case("content-type"))
        .map(|(_, v)| v.as_str());
    match ct {
        Some("application/json") => {
            let raw = std::str::from_utf8(&r.body)
                .ok()
                .and_then(|t| serde_json::from_str::<&RawValue>(t).ok());
            if raw.is_none() {
                panic!(
                    "JSON answer is not JSON: {:?}",
                    String::from_utf8_lossy(&r.body)
                );
            }
            // The gateway's own errors (nothing of a backend's in them).
            if r.status >= 400 && r.body.starts_with(b"{\"jsonrpc\"") {
                let text = String::from_utf8_lossy(&r.body);
                let m = jsonrpc::parse(&r.body)
                    .unwrap_or_else(|e| panic!("error answer is not JSON-RPC ({e:?}): {text}"));
                let code = m
                    .error
                    .and_then(|e| RawObject::parse(e).ok())
                    .and_then(|o| o.get("code"))
                    .map(|c| c.get().to_string());
                assert!(
                    m.kind == Kind::Error && code.is_some_and(|c| c.parse::<i64>().is_ok()),
                    "error answer without a JSON-RPC error code: {text}"
                );
            }
        }
        Some("text/event-stream") => {
            if let Err(e) = sse::parse_all(&r.body, usize::MAX) {
                panic!("SSE answer does not parse: {e}");
            }
        }
        _ => {}
    }
}

/// Header values the gateway sends are safe: visible ASCII, or a client's
/// own header value passed on verbatim (as Envoy accepted it: it may hold
/// non-ASCII, never a line break or another control character).
fn safe_value(v: &str, client: &[(String, String)]) -> bool {
    is_safe_header_value(v)
        || (client.iter().any(|(_, c)| c == v)
            && !v.chars().any(|c| c.is_ascii_control() && c != '\t'))
}

fn check_ops(ops: &[HeaderOp], client: &[(String, String)]) {
    for op in ops {
        match op {
            HeaderOp::Set(k, v) => {
                assert!(is_safe_header_value(k), "unsafe header name {k:?}");
                assert!(safe_value(v, client), "unsafe header value {k}: {v:?}");
            }
            HeaderOp::Remove(k) => assert!(is_safe_header_value(k), "unsafe header name {k:?}"),
        }
    }
}

fn check_outbound(o: &Outbound, client: &[(String, String)]) {
    for (k, v) in &o.headers {
        assert!(safe_value(v, client), "unsafe call header {k}: {v:?}");
    }
    if !o.body.is_empty() {
        let text = std::str::from_utf8(&o.body).expect("call bodies are UTF-8");
        check_json_rpc_text("a fan-out call body", text);
    }
}

// ----- (a) JSON-RPC parsing and rewriting -----------------------------------------------

/// `jsonrpc::parse`, `RawObject` round trips, string escaping, and the
/// rewriting paths (`stream::rewrite_message`, `merge::merge_list`).
pub fn jsonrpc(data: &[u8]) {
    let parsed = jsonrpc::parse(data);
    if let Ok(m) = &parsed {
        // Ids come back exactly as they went out (`null` only names the
        // unknown request of an error, and is never answered).
        if let Some(id) = m.id.filter(|i| jsonrpc::valid_id(i)) {
            let out = jsonrpc::result_json(id, "{}");
            let again = jsonrpc::parse(out.as_bytes()).expect("result_json parses");
            assert_eq!(again.id.map(|i| i.get()), Some(id.get()));
            let err = jsonrpc::error_json(Some(id), -32000, "m", None);
            assert_eq!(
                jsonrpc::parse(err.as_bytes())
                    .expect("error_json parses")
                    .kind,
                Kind::Error
            );
        }
        if let Some(method) = m.method.as_deref() {
            let req = jsonrpc::request_json("1", method, m.params.map(|p| p.get()));
            let again = jsonrpc::parse(req.as_bytes()).expect("request_json parses");
            assert_eq!(again.method.as_deref(), Some(method));
        }
    }
    let Ok(text) = std::str::from_utf8(data) else {
        assert!(parsed.is_err(), "non-UTF-8 accepted");
        return;
    };
    // String escaping: any text survives as a JSON string.
    let quoted = jsonrpc::json_string(text);
    let back: String = serde_json::from_str(&quoted).expect("json_string is a JSON string");
    assert_eq!(back, text);
    let e = jsonrpc::error_json(None, -32603, text, Some(&quoted));
    let v: Value = serde_json::from_str(&e).expect("error_json is JSON");
    assert_eq!(v["error"]["message"].as_str(), Some(text));

    // RawObject: members written back keep their meaning.
    let trimmed = text.trim_start_matches('\u{feff}').trim();
    if let Ok(obj) = RawObject::parse_str(trimmed) {
        // Always valid JSON text out ...
        let valid = |s: &str| serde_json::from_str::<&RawValue>(s).is_ok();
        let same = obj.write_with(&[]);
        let replaced = obj.write_with(&[("id", "\"x\""), ("new", "[1]")]);
        let without = obj.write_without(&["params"], &[]);
        for out in [&same, &replaced, &without] {
            assert!(valid(out), "RawObject wrote invalid JSON: {out}");
        }
        for (_, v) in &obj.members {
            let _ = jsonrpc::raw_str(v);
            let _ = jsonrpc::raw_array(v);
        }
        // ... with the same meaning, where serde_json can tell (numbers
        // beyond f64, such as 1e999, are valid JSON it cannot load).
        if let Ok(original) = serde_json::from_str::<Value>(trimmed) {
            let v = |s: &str| serde_json::from_str::<Value>(s).expect("valid JSON loads");
            assert_eq!(v(&same), original, "RawObject round trip");
            let r = v(&replaced);
            assert_eq!(r["id"], "x");
            assert_eq!(r["new"], serde_json::json!([1]));
            assert!(v(&without).get("params").is_none());
            for (k, raw) in &obj.members {
                if let Some(s) = jsonrpc::raw_str(raw) {
                    assert_eq!(Value::String(s.into_owned()), original[k.as_ref()]);
                }
            }
        }
    }

    // The backend message rewrite, for each routed method.
    let gw = gateway(false);
    let request_id = parsed
        .as_ref()
        .ok()
        .and_then(|m| m.id)
        .map(|i| i.get().to_string());
    // Each era pairing: both handshake-era, a 2026-07-28 client (listening
    // or not), a 2025-era client of a 2026-07-28 backend.
    let eras = [
        None,
        Some(Arc::new(StreamEra {
            client_modern: true,
            backend_modern: true,
            seal: Some(Seal {
                method: "tools/call".into(),
                target: "a__t".into(),
                args: [1; 16],
                backend: "a".into(),
            }),
            ..Default::default()
        })),
        Some(Arc::new(StreamEra {
            client_modern: true,
            any_id: true,
            listen: Some(ListenCtx {
                id: "1".into(),
                honoured: Filter {
                    tools: true,
                    uris: vec!["a+x://1".into()],
                    ..Default::default()
                },
                merged: false,
            }),
            ..Default::default()
        })),
        Some(Arc::new(StreamEra {
            backend_modern: true,
            ..Default::default()
        })),
    ];
    for ((backend, method), era) in [
        (0, "tools/call"),
        (0, "resources/read"),
        (0, "prompts/get"),
        (0, "tasks/get"),
        (0, "tasks/result"),
        (2, "tools/call"),
        (9, "tools/call"),
    ]
    .into_iter()
    .flat_map(|m| eras.iter().map(move |e| (m, e.clone())))
    {
        let ctx = StreamCtx {
            backend,
            sid: SID,
            method: Some(method.into()),
            request_id: request_id.clone(),
            era,
        };
        let mut answer = Answer::default();
        if let Some(out) = stream::rewrite_message(&gw, &ctx, text, &mut answer) {
            check_json_rpc_text("a rewritten message", &out);
            let before = parsed.as_ref().map(|m| m.kind).ok();
            let after = jsonrpc::parse(out.as_bytes()).map(|m| m.kind).ok();
            assert_eq!(before, after, "rewriting changed the message kind");
        }
    }

    // The list merge, with this text as one backend's result (and twice, for collisions).
    let seal =
        |b: &mcpgw_core::gateway::config::Backend, t: &str| stream::wrap_task_id(&gw, &SID, b, t);
    let allowed = |r: mcpgw_core::gateway::policy::Resource<'_>| !r.label().contains("deny");
    let opts = ListOptions {
        seal_task: &seal,
        allowed: &allowed,
    };
    let result = match &parsed {
        Ok(m) => m.result.map(|r| r.get()).unwrap_or(trimmed),
        Err(_) => trimmed,
    };
    for kind in ListKind::ALL {
        for pages in [
            vec![ListPage { backend: 0, result }],
            vec![
                ListPage { backend: 2, result },
                ListPage { backend: 3, result },
                ListPage {
                    backend: 1,
                    result: r#"{"tools":[{"name":"echo"}],"prompts":[],"resources":[],"resourceTemplates":[],"tasks":[]}"#,
                },
            ],
        ] {
            if let Ok(merged) = merge::merge_list(&gw.cfg, kind, &pages, &opts) {
                // A JSON array (checked as raw JSON: items may hold numbers
                // like 1e999 that serde_json cannot load as f64).
                if let Err(e) = serde_json::from_str::<Vec<&RawValue>>(&merged.items) {
                    panic!("merged items are not a JSON array ({e}): {}", merged.items);
                }
            }
        }
    }
    // Initialize answers.
    if let Ok(init) = merge::parse_initialize(result) {
        let b = &gw.cfg.backends[0];
        let out = merge::initialize_result(&gw.cfg, Version::V2025_06_18, &[(b, &init)]);
        let v: Value = serde_json::from_str(&out).expect("initialize result is JSON");
        assert!(v["capabilities"].is_object());
    }
}

// ----- (b) SSE under arbitrary chunking ---------------------------------------------------

/// Split `data` into (max event size, chunk boundaries, stream).
fn sse_input(data: &[u8]) -> (usize, Vec<usize>, &[u8]) {
    let Some((&head, rest)) = data.split_first() else {
        return (64, Vec::new(), data);
    };
    let nsplits = usize::from(head & 0x0f);
    let max_event = match head >> 4 {
        0 => 16,
        1 => 64,
        2 => 300,
        _ => 1 << 16,
    };
    let take = (nsplits * 2).min(rest.len());
    let (splits_raw, stream) = rest.split_at(take);
    let mut splits: Vec<usize> = splits_raw
        .chunks(2)
        .map(|c| {
            let n = c.iter().fold(0usize, |a, b| (a << 8) | usize::from(*b));
            if stream.is_empty() {
                0
            } else {
                n % (stream.len() + 1)
            }
        })
        .collect();
    splits.sort_unstable();
    splits.dedup();
    (max_event, splits, stream)
}

fn chunks<'a>(stream: &'a [u8], splits: &[usize]) -> Vec<&'a [u8]> {
    let mut out = Vec::with_capacity(splits.len() + 1);
    let mut prev = 0;
    for &s in splits {
        out.push(&stream[prev..s]);
        prev = s;
    }
    out.push(&stream[prev..]);
    out
}

/// Feed all chunks; items and the first error.
fn parse_chunked(max: usize, parts: &[&[u8]]) -> (Vec<Item>, Option<sse::SseError>, bool) {
    let mut p = sse::Parser::new(max);
    let mut items = Vec::new();
    for c in parts {
        if let Err(e) = p.feed(c, &mut items) {
            return (items, Some(e), false);
        }
    }
    let truncated = p.finish();
    (items, None, truncated)
}

/// `sse::Parser` and `stream::SseRewrite`: no panic, the same items and
/// output whatever the chunking, and output that parses again.
pub fn sse(data: &[u8]) {
    let (max, splits, stream) = sse_input(data);
    let whole = parse_chunked(max, &[stream]);
    let parts = chunks(stream, &splits);
    let split = parse_chunked(max, &parts);
    assert_eq!(
        whole.1.is_some(),
        split.1.is_some(),
        "error depends on chunking: whole {:?}, split {:?} at {splits:?}",
        whole.1,
        split.1
    );
    if whole.1.is_none() {
        assert_eq!(whole.0, split.0, "items depend on chunking ({splits:?})");
        assert_eq!(whole.2, split.2, "truncation depends on chunking");
    }
    // One byte at a time (bounded, to keep executions fast).
    if stream.len() <= 512 {
        let bytes: Vec<&[u8]> = stream.chunks(1).collect();
        let single = parse_chunked(max, &bytes);
        assert_eq!(whole.1.is_some(), single.1.is_some(), "bytewise error");
        if whole.1.is_none() {
            assert_eq!(whole.0, single.0, "bytewise items");
        }
    }
    // What the writer emits parses back to the same items (ids and event
    // types lose NUL, which a single-line field cannot carry).
    if whole.1.is_none() {
        let mut buf = Vec::new();
        for i in &whole.0 {
            i.write(&mut buf);
        }
        let again = sse::parse_all(&buf, usize::MAX).expect("written events parse");
        let norm = |items: &[Item]| -> Vec<Item> {
            items
                .iter()
                .map(|i| match i {
                    Item::Event(e) => {
                        let mut e = e.clone();
                        e.event = e.event.map(|t| t.replace('\0', ""));
                        Item::Event(e)
                    }
                    Item::Comment(c) => Item::Comment(c.replace('\0', "")),
                })
                .collect()
        };
        assert_eq!(norm(&whole.0), again, "writer/parser round trip");
    }

    // The gateway's rewrite of a routed stream.
    let gw = gateway(false);
    let run = |parts: &[&[u8]], backend: usize, method: &str| {
        let host = FuzzHost::default();
        let ctx = StreamCtx {
            backend,
            sid: SID,
            method: Some(method.into()),
            request_id: Some("7".into()),
            era: None,
        };
        let mut rw = SseRewrite::new(max);
        let mut out = Vec::new();
        let mut err = false;
        for c in parts {
            if rw.feed(&gw, &host, &ctx, c, &mut out).is_err() {
                err = true;
                break;
            }
        }
        let cut = !err && rw.finish();
        (out, err, cut, rw.answer, rw.resumable)
    };
    for (backend, method) in [(0, "tools/call"), (2, "resources/read")] {
        let a = run(&[stream], backend, method);
        let b = run(&parts, backend, method);
        assert_eq!(a.1, b.1, "rewrite error depends on chunking");
        if !a.1 {
            assert_eq!(
                a.0, b.0,
                "rewritten stream depends on chunking ({splits:?})"
            );
            assert_eq!((a.2, a.3, a.4), (b.2, b.3, b.4));
        }
        let items = match sse::parse_all(&a.0, usize::MAX) {
            Ok(i) => i,
            Err(e) => panic!("rewritten stream does not parse: {e}"),
        };
        if !a.1 {
            assert_eq!(
                items.len(),
                whole.0.len(),
                "the rewrite dropped or added items"
            );
            // Every event id the rewrite minted opens to the backend's id.
            for (orig, new) in whole.0.iter().zip(&items) {
                if let (Item::Event(o), Item::Event(n)) = (orig, new) {
                    match (&o.id, &n.id) {
                        (Some(oid), Some(nid)) if !oid.is_empty() => {
                            let w = Wrapped::open_event_id(&gw.cfg.keys, nid, &SID)
                                .expect("sealed event id opens");
                            assert_eq!(&w.original, oid);
                        }
                        (None, None) => {}
                        (Some(o), Some(n)) => assert_eq!(o, n),
                        other => panic!("event id changed presence: {other:?}"),
                    }
                }
            }
        }
    }
}

// ----- (c) sealed ids ------------------------------------------------------------------------

/// Opening arbitrary strings as session ids, request / task / event ids and
/// cursors; and arbitrary plaintexts sealed with the real key, so the
/// decoders behind the AEAD see every shape of input.
pub fn tokens(data: &[u8]) {
    let gw = gateway(false);
    let keys = &gw.cfg.keys;
    let text = String::from_utf8_lossy(data);
    for purpose in [
        Purpose::Session,
        Purpose::RequestId,
        Purpose::EventId,
        Purpose::Cursor,
        Purpose::TaskId,
    ] {
        let _ = keys.open(purpose, &text);
    }
    let _ = Session::open(keys, &text, NOW_MS, 3_600_000);
    let _ = Session::open(keys, &text, u64::MAX, u64::MAX);
    let _ = Session::open(keys, &text, 0, 0);
    let _ = Wrapped::open_request_id(keys, &text, &SID);
    let _ = Wrapped::open_event_id(keys, &text, &SID);
    let _ = Wrapped::open_task_id(keys, &text, &SID);
    for kind in ListKind::ALL {
        let _ = ListCursor::open(keys, &text, &SID, kind);
    }
    let _ = mcpgw_core::gateway::crypto::decode_key(&text);

    // Arbitrary plaintexts behind a valid seal.
    let nonce = [9u8; NONCE_LEN];
    let s = keys.seal(Purpose::Session, &nonce, data);
    for (now, ttl) in [
        (NOW_MS, 3_600_000),
        (u64::MAX, u64::MAX),
        (0, 0),
        (u64::MAX, 0),
    ] {
        if let Ok(sess) = Session::open(keys, &s, now, ttl) {
            let resealed = sess.seal(keys, &nonce);
            assert_eq!(
                Session::open(keys, &resealed, now, ttl),
                Ok(sess.clone()),
                "session re-seal round trip"
            );
            let _ = sess.expires_ms(ttl);
        }
    }
    if let Some(sid) = data.get(1..17).and_then(|s| <[u8; 16]>::try_from(s).ok()) {
        for purpose in [Purpose::RequestId, Purpose::EventId, Purpose::TaskId] {
            let t = keys.seal(purpose, &nonce, data);
            let opened = match purpose {
                Purpose::RequestId => Wrapped::open_request_id(keys, &format!("mcpgw.{t}"), &sid),
                Purpose::EventId => Wrapped::open_event_id(keys, &t, &sid),
                _ => Wrapped::open_task_id(keys, &t, &sid),
            };
            if let Some(w) = opened {
                assert_eq!(w.sid, sid);
                let again = w.seal_event_id(keys, &nonce);
                assert_eq!(Wrapped::open_event_id(keys, &again, &sid), Some(w));
            }
        }
        let t = keys.seal(Purpose::Cursor, &nonce, data);
        for kind in ListKind::ALL {
            if let Some(c) = ListCursor::open(keys, &t, &sid, kind) {
                let again = c.seal(keys, &nonce);
                assert_eq!(ListCursor::open(keys, &again, &sid, kind), Some(c));
            }
        }
    }
}

// ----- (d) plugin configuration --------------------------------------------------------------

/// `config::compile` on arbitrary bytes. Input: `NAME=VALUE` lines (the VM
/// environment), a NUL byte, then the configuration. Without a NUL the whole
/// input is the configuration and the environment is empty.
pub fn config(data: &[u8]) {
    let (env_part, json) = match data.iter().position(|b| *b == 0) {
        Some(i) => (&data[..i], &data[i + 1..]),
        None => (&data[..0], data),
    };
    let vars: Vec<(String, String)> = String::from_utf8_lossy(env_part)
        .lines()
        .filter_map(|l| l.split_once('='))
        .map(|(k, v)| (k.to_string(), v.replace("\\r", "\r").replace("\\n", "\n")))
        .collect();
    let env = |name: &str| vars.iter().find(|(k, _)| k == name).map(|(_, v)| v.clone());
    for result in [compile(json, &env), compile(json, &|_| None)] {
        match result {
            Ok(cfg) => {
                assert!(!cfg.backends.is_empty() && cfg.backends.len() <= 64);
                assert!(cfg.path.starts_with('/'));
                for b in &cfg.backends {
                    assert!(is_safe_header_value(&b.cluster), "cluster {:?}", b.cluster);
                    assert!(is_safe_header_value(&b.path), "path {:?}", b.path);
                    if let Some(a) = &b.authority {
                        assert!(is_safe_header_value(a), "authority {a:?}");
                    }
                    for (k, v) in &b.headers {
                        assert!(is_safe_header_value(k) && is_safe_header_value(v));
                    }
                    assert!(b.timeout_ms > 0);
                    assert!(!b.name.contains(cfg.separator.as_str()));
                }
                if let Some(auth) = &cfg.auth {
                    check_local(&auth.metadata_response());
                }
                let gw = Gateway::new(cfg, &mut FuzzConfigure::default());
                // The compiled gateway serves a request without panicking.
                let mut host = FuzzHost::default();
                let mut ex = Exchange::new(Arc::new(gw));
                let h = headers_of(&[
                    (":method", "POST"),
                    (":path", "/mcp"),
                    (":authority", "localhost"),
                    ("accept", "application/json, text/event-stream"),
                    ("content-type", "application/json"),
                ]);
                if let HeadersAction::NeedBody = ex.on_request_headers(&mut host, &h, false) {
                    let body = br#"{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2025-11-25","capabilities":{},"clientInfo":{"name":"f","version":"1"}}}"#;
                    let _ = ex.on_request_body(&mut host, body);
                    for (_, call) in &host.calls {
                        check_outbound(call, &h);
                    }
                }
            }
            Err(e) => {
                let shown = e.to_string();
                assert!(shown.starts_with("mcpgw config:"), "{shown}");
            }
        }
    }
}

fn headers_of(list: &[(&str, &str)]) -> Vec<(String, String)> {
    list.iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

// ----- (e) the whole request path ------------------------------------------------------------

/// Section separator of the exchange input.
pub const SEP: &[u8] = b"\n--\n";

fn split_sections(data: &[u8]) -> Vec<&[u8]> {
    let mut out = Vec::new();
    let mut rest = data;
    while let Some(i) = rest.windows(SEP.len()).position(|w| w == SEP) {
        out.push(&rest[..i]);
        rest = &rest[i + SEP.len()..];
    }
    out.push(rest);
    out
}

/// Header lines `name: value` (pseudo-headers `:name: value`). Names are
/// lower-cased and values lose ASCII control characters but tab, as Envoy's
/// codecs guarantee; other bytes are kept (lossily as UTF-8, as a host
/// adapter must).
fn parse_headers(text: &[u8]) -> Vec<(String, String)> {
    String::from_utf8_lossy(text)
        .lines()
        .filter_map(|l| {
            let start = usize::from(l.starts_with(':'));
            let i = l.get(start..)?.find(':')? + start;
            let (k, v) = (l.get(..i)?, l.get(i + 1..)?);
            let k = k.trim().to_ascii_lowercase();
            if k.is_empty() {
                return None;
            }
            let v: String = v
                .trim()
                .chars()
                .filter(|c| !c.is_ascii_control() || *c == '\t')
                .collect();
            Some((k, v))
        })
        .collect()
}

/// `STATUS` line, header lines, a blank line, then the body.
fn parse_response(section: &[u8]) -> CallResponse {
    let (head, body) = match section.windows(2).position(|w| w == b"\n\n") {
        Some(i) => (&section[..i], &section[i + 2..]),
        None => (section, &section[section.len()..]),
    };
    let (status_line, header_lines) = match head.iter().position(|b| *b == b'\n') {
        Some(i) => (&head[..i], &head[i + 1..]),
        None => (head, &head[head.len()..]),
    };
    let status = String::from_utf8_lossy(status_line)
        .trim()
        .parse::<u16>()
        .unwrap_or(0);
    let mut headers = parse_headers(header_lines);
    if status != 0 {
        headers.insert(0, (":status".into(), status.to_string()));
    }
    CallResponse {
        status,
        headers,
        body: body.to_vec(),
    }
}

/// One request through `Exchange` with a fake host. Input sections, split by
/// `\n--\n`:
///
/// 0. flags (first line: `auth` selects the OAuth gateway, `nodispatch`,
///    `norandom`), then the request headers;
/// 1. the request body (empty section: a body-less request);
/// 2. and on: answers to the side calls, in dispatch order (`STATUS`,
///    headers, blank line, body); once the request is routed, the next
///    section is the upstream response head (+ first body chunk) and every
///    later section one more body chunk.
///
/// `{SID}`, `{REQID}`, `{TASK}`, `{EVENT}`, `{CURSOR}`, `{JWT}`, ... are
/// replaced by valid sealed ids, so deep paths are reachable.
pub fn exchange(data: &[u8]) {
    let sections = split_sections(data);
    let head = sections.first().copied().unwrap_or_default();
    let (flags, header_text) = match head.iter().position(|b| *b == b'\n') {
        Some(i) => (&head[..i], &head[i + 1..]),
        None => (head, &head[head.len()..]),
    };
    let flags = String::from_utf8_lossy(flags);
    let with_auth = flags.contains("auth");
    let gw = gateway(with_auth);
    let subst = placeholders(&gw, with_auth);
    let headers = parse_headers(&expand(header_text, &subst));
    let body = sections.get(1).map(|b| expand(b, &subst));
    let mut rest = sections.iter().skip(2).map(|s| expand(s, &subst));

    let mut host = FuzzHost {
        fail_dispatch: flags.contains("nodispatch"),
        fail_random: flags.contains("norandom"),
        ..FuzzHost::default()
    };
    if with_auth {
        let md = "envoy.filters.http.jwt_authn/jwt_payload";
        host.metadata
            .insert(format!("{md}/iss"), MetaValue::Str(ISSUER.into()));
        host.metadata
            .insert(format!("{md}/sub"), MetaValue::Str("alice".into()));
    }
    let mut ex = Exchange::new(gw.clone());
    let client_id = body
        .as_deref()
        .and_then(|b| jsonrpc::parse(b).ok())
        .filter(|m| m.kind == Kind::Request)
        .and_then(|m| m.id.map(|i| i.get().to_string()));
    let end_of_stream = body.as_ref().is_none_or(|b| b.is_empty());

    // Request headers.
    let mut body_action = match ex.on_request_headers(&mut host, &headers, end_of_stream) {
        HeadersAction::Continue(ops) => {
            check_ops(&ops, &headers);
            // Routed without a body (GET stream) or not ours.
            if ex.wants_response() {
                routed_response(&mut ex, &mut host, &mut rest, None, &headers);
            }
            ex.on_done(&mut host);
            return;
        }
        HeadersAction::Respond(r) => {
            check_local(&r);
            ex.on_response_start(&mut host);
            ex.on_done(&mut host);
            return;
        }
        HeadersAction::NeedBody => {
            let body = body.unwrap_or_default();
            assert!(ex.wants_request_body());
            if let Some(r) = ex.check_request_size(body.len() / 2) {
                check_local(&r);
                assert_eq!(r.status, 413);
                ex.on_done(&mut host);
                return;
            }
            ex.on_request_body(&mut host, &body)
        }
        HeadersAction::Wait => BodyAction::Wait,
    };

    // Side calls (fan-out, look-ups), answered from the input, round after round.
    let mut rounds = 0;
    loop {
        match body_action {
            BodyAction::Wait => {
                rounds += 1;
                let calls = std::mem::take(&mut host.calls);
                assert!(
                    !calls.is_empty(),
                    "the exchange waits but dispatched nothing: it would hang"
                );
                assert!(rounds < 64, "unbounded side-call rounds");
                let mut last = BodyAction::Wait;
                for (token, call) in calls {
                    check_outbound(&call, &headers);
                    assert!(call.timeout_ms > 0, "a side call without a timeout");
                    let answer = rest.next().map(|s| parse_response(&s)).unwrap_or_default();
                    last = ex.on_call_response(&mut host, token, answer);
                }
                // A stray answer (unknown token) changes nothing.
                if let BodyAction::Wait = last {
                    let stray = ex.on_call_response(&mut host, 1, CallResponse::default());
                    assert_eq!(stray, BodyAction::Wait);
                }
                body_action = last;
            }
            BodyAction::Respond(r) => {
                check_local(&r);
                ex.on_response_start(&mut host);
                break;
            }
            BodyAction::Forward { headers: ops, body } => {
                check_ops(&ops, &headers);
                if let Some(b) = &body {
                    let text = std::str::from_utf8(b).expect("forwarded body is UTF-8");
                    check_json_rpc_text("a forwarded body", text);
                }
                routed_response(
                    &mut ex,
                    &mut host,
                    &mut rest,
                    client_id.as_deref(),
                    &headers,
                );
                break;
            }
        }
    }
    ex.on_done(&mut host);
    ex.on_done(&mut host);
}

/// The upstream answer to a routed request, applied as the proxy-wasm
/// adapter does (buffered JSON: sizes, then the whole body at the end).
/// `client_id`: the raw id of the client's request, when it expects an answer.
fn routed_response(
    ex: &mut Exchange,
    host: &mut FuzzHost,
    rest: &mut dyn Iterator<Item = Vec<u8>>,
    client_id: Option<&str>,
    client: &[(String, String)],
) {
    let Some(head) = rest.next() else {
        // The upstream never answered (reset): nothing more is called.
        return;
    };
    let resp = parse_response(&head);
    ex.on_response_start(host);
    if !ex.wants_response() {
        return;
    }
    match ex.on_response_headers(host, &resp.headers) {
        ResponseHeadersAction::Continue(ops) | ResponseHeadersAction::Buffer(ops) => {
            check_ops(&ops, client)
        }
        ResponseHeadersAction::Replace(r) => {
            check_local(&r);
            // Envoy may still hand over body chunks; they must be swallowed.
            let a = ex.on_response_body(host, &resp.body, true);
            assert!(
                matches!(a, ResponseBodyAction::Replace(ref b) if b.is_empty())
                    || a == ResponseBodyAction::Continue,
                "{a:?}"
            );
            return;
        }
    }
    let mut chunks: Vec<Vec<u8>> = vec![resp.body];
    chunks.extend(rest);
    let sse = resp
        .headers
        .iter()
        .any(|(k, v)| k == "content-type" && v.contains("event-stream"));
    let json_mode = ex.buffers_response();
    let mut out: Vec<u8> = Vec::new();
    let mut too_large = false;
    let mut buffered: Vec<u8> = Vec::new();
    let n = chunks.len();
    for (i, chunk) in chunks.into_iter().enumerate() {
        let last = i + 1 == n;
        if !last && ex.buffers_response() {
            buffered.extend_from_slice(&chunk);
            if ex.on_response_body_pending(host, buffered.len()) == ResponseBodyAction::Buffer {
                continue;
            }
            too_large = true;
            out.extend_from_slice(&buffered);
            buffered.clear();
            continue;
        }
        let whole;
        let chunk = if buffered.is_empty() {
            &chunk
        } else {
            buffered.extend_from_slice(&chunk);
            whole = std::mem::take(&mut buffered);
            &whole
        };
        match ex.on_response_body(host, chunk, last) {
            ResponseBodyAction::Continue | ResponseBodyAction::Buffer => {
                out.extend_from_slice(chunk)
            }
            ResponseBodyAction::Replace(b) => out.extend_from_slice(&b),
        }
    }
    // A buffered JSON answer to a request reaches the client as a JSON-RPC
    // response to that request (unless it was too large to rewrite).
    if let (true, Some(id), false) = (json_mode, client_id, too_large) {
        let ok = jsonrpc::parse(&out).is_ok_and(|m| {
            matches!(m.kind, Kind::Response | Kind::Error) && m.id.map(|i| i.get()) == Some(id)
        });
        assert!(
            ok,
            "the client's request {id} got no JSON-RPC answer: {:?}",
            String::from_utf8_lossy(&out)
        );
    }
    if sse && ex.wants_response() {
        // What reached the client is a well-formed event stream of whole
        // events: a cut-off backend event is never passed on half-written.
        let mut p = sse::Parser::new(usize::MAX);
        let mut items = Vec::new();
        if let Err(e) = p.feed(&out, &mut items) {
            panic!("the client got a broken event stream: {e}");
        }
        assert!(
            !p.finish(),
            "the client got a partial event: {:?}",
            String::from_utf8_lossy(&out)
        );
    }
}
