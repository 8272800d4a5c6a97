//! A fake host for driving the core natively in unit tests, through the same
//! port the adapters implement.

use super::config::compile;
use super::host::{
    Attribute, CallId, CallResponse, Configure, Dir, Family, HeaderOp, Host, HostError, HttpStream,
    Level, LocalResponse, LogField, MetaValue, MetricId, MetricKind, Outbound, StreamId,
};
use super::instance::Gateway;
use super::stats::series_name;
use std::cell::{Cell, RefCell};
use std::collections::HashMap;

pub const KEY: &str = "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=";

thread_local! {
    /// The series declared by the gateways of this test thread, by id, with
    /// their flat names (as the proxy-wasm build names them).
    static SERIES: RefCell<Vec<(MetricKind, String)>> = const { RefCell::new(Vec::new()) };
}

/// Declares metrics into this thread's registry.
pub struct FakeConfigure;

impl Configure for FakeConfigure {
    fn define_metric(&mut self, family: &Family, labels: &[&str]) -> Option<MetricId> {
        let name = series_name(family, labels);
        SERIES.with(|s| {
            let mut s = s.borrow_mut();
            s.push((family.kind, name));
            u32::try_from(s.len() - 1).ok().map(MetricId)
        })
    }
}

pub struct FakeHost {
    pub now: Cell<u64>,
    counter: Cell<u64>,
    pub logs: RefCell<Vec<(Level, String)>>,
    pub calls: Vec<(CallId, Outbound)>,
    pub shared: RefCell<HashMap<String, (Vec<u8>, u32)>>,
    /// Dynamic metadata by namespace and path (joined with `/`).
    metadata: RefCell<HashMap<String, MetaValue>>,
    attributes: RefCell<Vec<(Attribute, String)>>,
    /// Access-log fields as the proxy-wasm build names them (`mcpgw.<name>`).
    pub published: RefCell<HashMap<String, String>>,
    /// Metrics by flat name: counters add, histograms keep the last sample.
    pub metrics: RefCell<HashMap<String, u64>>,
    pub fail_dispatch: bool,
    /// The stream (for the hooks).
    pub request_headers: Vec<(String, String)>,
    pub request_body: Vec<u8>,
    pub response_headers: Vec<(String, String)>,
    pub response_body: Vec<u8>,
    /// Local replies sent.
    pub sent: Vec<LocalResponse>,
    /// Times a held request was resumed.
    pub resumed: u32,
    /// This stream's id (`None`: a host that cannot wake requests).
    pub stream: Option<StreamId>,
    /// Wakes asked for: (request, deadline or `None` for soon).
    pub wakes: Vec<(StreamId, Option<u64>)>,
    /// Times the core asked for this stream's id (a module makes a
    /// scheduler and a shared-map entry for it).
    pub stream_ids_asked: Cell<u32>,
    /// Streams side calls and replies (a dynamic module) or not (proxy-wasm).
    pub streaming: bool,
    /// Streaming side calls opened, with their ids.
    pub streams: Vec<(CallId, Outbound)>,
    /// Streaming side calls closed.
    pub closed: Vec<CallId>,
    /// A streamed reply: its status and headers, the data sent, whether it ended.
    pub streamed: Option<(u16, Vec<(String, String)>)>,
    pub streamed_data: Vec<u8>,
    pub streamed_end: bool,
    /// The client does not read.
    pub blocked: bool,
}

impl Default for FakeHost {
    fn default() -> Self {
        FakeHost {
            now: Cell::new(1_700_000_000_000),
            counter: Cell::new(0),
            logs: RefCell::new(Vec::new()),
            calls: Vec::new(),
            shared: RefCell::new(HashMap::new()),
            metadata: RefCell::new(HashMap::new()),
            attributes: RefCell::new(Vec::new()),
            published: RefCell::new(HashMap::new()),
            metrics: RefCell::new(HashMap::new()),
            fail_dispatch: false,
            request_headers: Vec::new(),
            request_body: Vec::new(),
            response_headers: Vec::new(),
            response_body: Vec::new(),
            sent: Vec::new(),
            resumed: 0,
            stream: None,
            wakes: Vec::new(),
            stream_ids_asked: Cell::new(0),
            streaming: false,
            streams: Vec::new(),
            closed: Vec::new(),
            streamed: None,
            streamed_data: Vec::new(),
            streamed_end: false,
            blocked: false,
        }
    }
}

impl FakeHost {
    /// A counter's value, by its full name (with labels).
    pub fn counter(&self, name: &str) -> u64 {
        self.metrics.borrow().get(name).copied().unwrap_or(0)
    }

    /// What another filter (jwt_authn) left in the dynamic metadata.
    pub fn set_metadata(&self, namespace: &str, path: &[&str], value: &str) {
        self.metadata.borrow_mut().insert(
            format!("{namespace}/{}", path.join("/")),
            MetaValue::Str(value.to_string()),
        );
    }

    pub fn set_attribute(&self, attribute: Attribute, value: &str) {
        self.attributes
            .borrow_mut()
            .push((attribute, value.to_string()));
    }

    /// Metadata present but unreadable, as an Envoy dynamic module sees a
    /// struct under a namespace's top-level key.
    pub fn set_opaque_metadata(&self, namespace: &str, key: &str) {
        self.metadata
            .borrow_mut()
            .insert(format!("{namespace}/{key}"), MetaValue::Opaque);
    }

    /// Forget the metadata and attributes (a new stream).
    pub fn clear_stream_info(&self) {
        self.metadata.borrow_mut().clear();
        self.attributes.borrow_mut().clear();
    }

    pub fn logged(&self, needle: &str) -> bool {
        self.logs.borrow().iter().any(|(_, m)| m.contains(needle))
    }

    /// The streaming side call opened to `cluster`, with its id.
    pub fn stream_to(&self, cluster: &str) -> (CallId, &Outbound) {
        let (t, o) = self
            .streams
            .iter()
            .find(|(_, o)| o.cluster == cluster)
            .unwrap_or_else(|| panic!("no stream to {cluster}: {:?}", self.streams));
        (*t, o)
    }

    /// The call dispatched to `cluster`, with its id.
    pub fn call_to(&self, cluster: &str) -> (CallId, &Outbound) {
        let (t, o) = self
            .calls
            .iter()
            .find(|(_, o)| o.cluster == cluster)
            .unwrap_or_else(|| panic!("no call to {cluster}: {:?}", self.calls));
        (*t, o)
    }

    fn add(&self, kind: MetricKind, name: String, value: u64) {
        let mut m = self.metrics.borrow_mut();
        let e = m.entry(name).or_insert(0);
        match kind {
            MetricKind::Counter => *e += value,
            MetricKind::Histogram => *e = value,
        }
    }
}

impl Host for FakeHost {
    fn now_ms(&self) -> u64 {
        self.now.get()
    }
    fn random(&self, buf: &mut [u8]) -> Result<(), HostError> {
        // Deterministic, without short cycles (RSA blinding draws until
        // it finds a number below the modulus).
        for b in buf.iter_mut() {
            let mut x = self.counter.get().wrapping_add(0x9e37_79b9_7f4a_7c15);
            self.counter.set(x);
            x = (x ^ (x >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
            x = (x ^ (x >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
            *b = (x ^ (x >> 31)) as u8;
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
        // Wider than proxy-wasm's u32 tokens, as a dynamic module's are.
        let id = (1 << 40) + self.calls.len() as u64 + 100;
        self.calls.push((id, call.clone()));
        Ok(id)
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
        m.insert(key.to_string(), (value.to_vec(), cur + 1));
        Ok(true)
    }
    fn metadata(&self, namespace: &str, path: &[&str]) -> Option<MetaValue> {
        let key = format!("{namespace}/{}", path.join("/"));
        self.metadata.borrow().get(&key).cloned()
    }
    fn attribute(&self, attribute: Attribute) -> Option<String> {
        self.attributes
            .borrow()
            .iter()
            .rev()
            .find(|(a, _)| *a == attribute)
            .map(|(_, v)| v.clone())
    }
    fn set_log_field(&self, field: LogField, value: &str) {
        self.published
            .borrow_mut()
            .insert(format!("mcpgw.{}", field.name()), value.to_string());
    }
    fn record(&self, metric: MetricId, value: u64) {
        let series = SERIES.with(|s| s.borrow().get(metric.0 as usize).cloned());
        let (kind, name) = series.unwrap_or_else(|| panic!("undeclared metric {metric:?}"));
        self.add(kind, name, value);
    }
    fn record_labelled(&self, family: &Family, labels: &[&str], value: u64) {
        assert_eq!(family.labels.len(), labels.len(), "{}", family.name);
        self.add(family.kind, series_name(family, labels), value);
    }
    fn stream_id(&self) -> Option<StreamId> {
        self.stream_ids_asked.set(self.stream_ids_asked.get() + 1);
        self.stream
    }
    fn wake(&mut self, id: StreamId, at_ms: Option<u64>) {
        self.wakes.push((id, at_ms));
    }
    fn can_stream(&self) -> bool {
        self.streaming
    }
    fn open_stream(&mut self, call: &Outbound) -> Result<CallId, HostError> {
        if !self.streaming || self.fail_dispatch {
            return Err(HostError);
        }
        let id = (2 << 40) + self.streams.len() as u64;
        self.streams.push((id, call.clone()));
        Ok(id)
    }
    fn close_stream(&mut self, id: CallId) {
        self.closed.push(id);
    }
}

impl HttpStream for FakeHost {
    fn headers(&mut self, dir: Dir) -> Vec<(String, String)> {
        match dir {
            Dir::Request => self.request_headers.clone(),
            Dir::Response => self.response_headers.clone(),
        }
    }
    fn body(&mut self, dir: Dir, size: usize) -> Vec<u8> {
        let b = match dir {
            Dir::Request => &self.request_body,
            Dir::Response => &self.response_body,
        };
        assert_eq!(b.len(), size, "the hook reads what it was told is there");
        b.clone()
    }
    fn apply(&mut self, dir: Dir, ops: &[HeaderOp]) {
        let headers = match dir {
            Dir::Request => &mut self.request_headers,
            Dir::Response => &mut self.response_headers,
        };
        for op in ops {
            match op {
                HeaderOp::Set(k, v) => {
                    headers.retain(|(n, _)| !n.eq_ignore_ascii_case(k));
                    headers.push((k.clone(), v.clone()));
                }
                HeaderOp::Remove(k) => headers.retain(|(n, _)| !n.eq_ignore_ascii_case(k)),
            }
        }
    }
    fn replace_body(&mut self, dir: Dir, size: usize, body: &[u8]) {
        let b = match dir {
            Dir::Request => &mut self.request_body,
            Dir::Response => &mut self.response_body,
        };
        assert_eq!(b.len(), size, "the whole body the hook saw is replaced");
        *b = body.to_vec();
    }
    fn send(&mut self, response: LocalResponse) {
        self.sent.push(response);
    }
    fn resume_request(&mut self) {
        self.resumed += 1;
    }
    fn send_headers(&mut self, status: u16, headers: &[(String, String)], end_of_stream: bool) {
        assert!(self.streamed.is_none(), "one answer per stream");
        self.streamed = Some((status, headers.to_vec()));
        self.streamed_end = end_of_stream;
    }
    fn send_data(&mut self, data: &[u8], end_of_stream: bool) {
        assert!(self.streamed.is_some(), "data after headers");
        assert!(!self.streamed_end, "nothing after the end");
        self.streamed_data.extend_from_slice(data);
        self.streamed_end = end_of_stream;
    }
    fn downstream_blocked(&self) -> bool {
        self.blocked
    }
}

pub fn gateway(backends: &str) -> Gateway {
    gateway_with(backends, "")
}

/// A gateway with extra top-level config members (`extra` starts with a comma).
pub fn gateway_with(backends: &str, extra: &str) -> Gateway {
    let cfg = compile(
        format!(r#"{{"session":{{"key":"{KEY}","ttl":"1h"}},"backends":{backends}{extra}}}"#)
            .as_bytes(),
        &|n| (n == "TOKEN").then(|| "s3cret".to_string()),
    )
    .unwrap();
    Gateway::new(cfg, &mut FakeConfigure)
}

/// A client's request headers: `method` on `/mcp`, accepting JSON and SSE,
/// with a JSON body, plus `extra`.
pub fn request_headers(method: &str, extra: &[(&str, &str)]) -> Vec<(String, String)> {
    let mut h = vec![
        (":method".to_string(), method.to_string()),
        (":path".to_string(), "/mcp".to_string()),
        (":authority".to_string(), "localhost:1975".to_string()),
        (
            "accept".to_string(),
            "application/json, text/event-stream".to_string(),
        ),
        ("content-type".to_string(), "application/json".to_string()),
    ];
    h.extend(extra.iter().map(|(k, v)| (k.to_string(), v.to_string())));
    h
}

pub fn json_response(body: &str) -> CallResponse {
    CallResponse {
        status: 200,
        headers: vec![("content-type".into(), "application/json".into())],
        body: body.as_bytes().to_vec(),
    }
}

pub fn sse_response(body: &str) -> CallResponse {
    CallResponse {
        status: 200,
        headers: vec![("content-type".into(), "text/event-stream".into())],
        body: body.as_bytes().to_vec(),
    }
}
