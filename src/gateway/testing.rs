//! A fake host for driving the logic natively in unit tests.

use super::config::compile;
use super::exchange::Gateway;
use super::host::{CallResponse, Host, HostError, Level, Outbound};
use std::cell::{Cell, RefCell};
use std::collections::HashMap;

pub const KEY: &str = "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=";

pub struct FakeHost {
    pub now: Cell<u64>,
    counter: Cell<u8>,
    pub logs: RefCell<Vec<(Level, String)>>,
    pub calls: Vec<(u32, Outbound)>,
    pub shared: RefCell<HashMap<String, (Vec<u8>, u32)>>,
    pub properties: RefCell<HashMap<String, Vec<u8>>>,
    pub published: RefCell<HashMap<String, String>>,
    pub metrics: RefCell<HashMap<String, u64>>,
    pub fail_dispatch: bool,
}

impl Default for FakeHost {
    fn default() -> Self {
        FakeHost {
            now: Cell::new(1_700_000_000_000),
            counter: Cell::new(0),
            logs: RefCell::new(Vec::new()),
            calls: Vec::new(),
            shared: RefCell::new(HashMap::new()),
            properties: RefCell::new(HashMap::new()),
            published: RefCell::new(HashMap::new()),
            metrics: RefCell::new(HashMap::new()),
            fail_dispatch: false,
        }
    }
}

impl FakeHost {
    /// A counter's value, by its full name (with labels).
    pub fn counter(&self, name: &str) -> u64 {
        self.metrics.borrow().get(name).copied().unwrap_or(0)
    }

    pub fn set_property(&self, path: &[&str], value: &str) {
        self.properties
            .borrow_mut()
            .insert(path.join("/"), value.as_bytes().to_vec());
    }

    pub fn clear_properties(&self) {
        self.properties.borrow_mut().clear();
    }

    pub fn logged(&self, needle: &str) -> bool {
        self.logs.borrow().iter().any(|(_, m)| m.contains(needle))
    }

    /// The call dispatched to `cluster`, with its token.
    pub fn call_to(&self, cluster: &str) -> (u32, &Outbound) {
        let (t, o) = self
            .calls
            .iter()
            .find(|(_, o)| o.cluster == cluster)
            .unwrap_or_else(|| panic!("no call to {cluster}: {:?}", self.calls));
        (*t, o)
    }
}

impl Host for FakeHost {
    fn now_ms(&self) -> u64 {
        self.now.get()
    }
    fn random(&self, buf: &mut [u8]) -> Result<(), HostError> {
        for b in buf.iter_mut() {
            let c = self.counter.get().wrapping_add(1);
            self.counter.set(c);
            *b = c.wrapping_mul(31).wrapping_add(7);
        }
        Ok(())
    }
    fn log(&self, level: Level, message: &str) {
        self.logs.borrow_mut().push((level, message.to_string()));
    }
    fn dispatch(&mut self, call: &Outbound) -> Result<u32, HostError> {
        if self.fail_dispatch {
            return Err(HostError);
        }
        let token = self.calls.len() as u32 + 100;
        self.calls.push((token, call.clone()));
        Ok(token)
    }
    fn shared_get(&self, key: &str) -> (Option<Vec<u8>>, u32) {
        match self.shared.borrow().get(key) {
            Some((v, cas)) => (Some(v.clone()), *cas),
            None => (None, 0),
        }
    }
    fn property(&self, path: &[&str]) -> Option<Vec<u8>> {
        self.properties.borrow().get(&path.join("/")).cloned()
    }
    fn set_property(&self, name: &str, value: &str) {
        self.published
            .borrow_mut()
            .insert(name.to_string(), value.to_string());
    }
    fn metric(&self, kind: super::host::MetricKind, name: &str, value: u64) {
        let mut m = self.metrics.borrow_mut();
        let e = m.entry(name.to_string()).or_insert(0);
        match kind {
            super::host::MetricKind::Counter => *e += value,
            super::host::MetricKind::Histogram => *e = value,
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
    Gateway::new(cfg)
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
