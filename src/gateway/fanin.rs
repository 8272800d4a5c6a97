//! Several backends' event streams merged into one for the client (fan-in).
//!
//! A 2025-era session's standalone GET stream is where servers push their
//! own requests (`roots/list`, sampling, elicitation) and notifications. With
//! several stateful backends, on a host that can stream side calls
//! ([`Host::can_stream`]), the gateway opens each backend's GET stream as a
//! streaming side call and forwards every event to the client as it arrives,
//! rewritten as on a routed stream (`stream.rs`: server request ids sealed
//! with their backend, so the client's answer goes back to it; resource URIs
//! namespaced). Each forwarded event that had an id carries a sealed cursor
//! instead ([`StreamCursor`]): the last event id of *every* backend, so a
//! client that reconnects with `Last-Event-ID` resumes each backend from its
//! own position.
//!
//! Lifecycle:
//! - the client's answer (200, `text/event-stream`) starts with the first
//!   backend whose stream opens; a backend whose GET fails is logged, counted
//!   and left out; when all fail, one error answer (a backend's 404 first: the
//!   client must initialize again; all 405: no server offers a stream);
//! - when an open backend ends its stream (or breaks it), the merged stream
//!   ends and the others are closed: the client reconnects, as after the end
//!   of one server's stream, and its cursor brings every backend back where
//!   it was (the gateway keeps no timers, so it does not reconnect itself);
//! - when the client leaves, every backend stream is closed;
//! - a client that does not read (Envoy's write buffer above its high
//!   watermark, [`HttpStream::downstream_blocked`]) has events held here up to
//!   `max_response_bytes`; beyond that the merged stream ends and the client
//!   resumes from the cursor it holds (nothing is lost with backends that keep
//!   an event store).
//!
//! Nothing here is GET-specific: any set of streaming side calls whose
//! answers are event streams merges the same way, through
//! [`Exchange::open_fan_in`]; only the requests opened differ. A 2026-07-28
//! `subscriptions/listen` across backends ([`Exchange::open_listen_fan_in`])
//! differs in three ways: the client's answer starts once every backend
//! stream has answered, with the gateway's one acknowledgement of what the
//! opened ones were asked for (events arriving before are held); events
//! carry no ids (not resumable); when every stream fails the client gets a
//! JSON-RPC error for its request.
//!
//! Hosts without streaming side calls (proxy-wasm buffers whole answers)
//! never get here: they route the GET to a lone stateful backend, or answer
//! 405 ([`GatewayError::streams_not_mergeable`]).
//!
//! [`Host::can_stream`]: super::host::Host::can_stream
//! [`HttpStream::downstream_blocked`]: super::host::HttpStream::downstream_blocked
//! [`GatewayError::streams_not_mergeable`]: super::error::GatewayError::streams_not_mergeable

use super::crypto::NONCE_LEN;
use super::error::GatewayError;
use super::exchange::{Exchange, State};
use super::host::{
    header, CallId, Host, Level, LocalResponse, Outbound, StreamOutput, StreamStart,
};
use super::instance::Gateway;
use super::stats::ErrorKind;
use super::stream::{SseRewrite, StreamCtx};
use super::tokens::StreamCursor;
use crate::protocol::http as h;
use std::sync::Arc;

/// One backend's stream in a fan-in.
struct Upstream {
    call: CallId,
    ctx: StreamCtx,
    sse: SseRewrite,
    state: UpState,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum UpState {
    /// Opened; no answer yet.
    Waiting,
    /// Answered with an event stream; events flow.
    Open,
    /// Failed before any event (its HTTP status, 0 for none).
    Failed(u16),
    /// Ended or closed.
    Done,
}

/// Several backends' event streams, merged for the client.
pub struct FanIn {
    sid: [u8; 16],
    upstreams: Vec<Upstream>,
    /// The last event id of every backend that gave one (the cursor).
    positions: Vec<(String, String)>,
    /// Output held while the client does not read.
    held: Vec<u8>,
    cap: usize,
    started: bool,
    ended: bool,
    /// A merged `subscriptions/listen` (`None`: a GET stream).
    listen: Option<crate::gateway::modern::listen::ListenCtx>,
}

impl FanIn {
    pub fn new(sid: [u8; 16], cap: usize, positions: Vec<(String, String)>) -> FanIn {
        FanIn {
            sid,
            upstreams: Vec::new(),
            positions,
            held: Vec::new(),
            cap,
            started: false,
            ended: false,
            listen: None,
        }
    }

    fn add(&mut self, call: CallId, ctx: StreamCtx, max_event: usize) {
        self.upstreams.push(Upstream {
            call,
            ctx,
            sse: SseRewrite::new(max_event),
            state: UpState::Waiting,
        });
    }

    /// The streams still open or opening (to close).
    fn live(&mut self) -> Vec<CallId> {
        self.upstreams
            .iter_mut()
            .filter(|u| matches!(u.state, UpState::Waiting | UpState::Open))
            .map(|u| {
                u.state = UpState::Done;
                u.call
            })
            .collect()
    }

    /// End the merged stream after `data`, closing every backend stream.
    fn end(&mut self, mut out: StreamOutput) -> StreamOutput {
        if self.listen.is_some() && !self.started && out.start.is_none() {
            let held = std::mem::take(&mut out.data);
            self.start_listen(&mut out, Vec::new());
            out.data.extend_from_slice(&held);
        }
        self.ended = true;
        self.held.clear();
        out.end = true;
        out.close.extend(self.live());
        out
    }

    /// A merged listen starts once no backend stream is still opening: the
    /// headers `start`, the gateway's acknowledgement of what the opened
    /// streams were asked for, then what was held.
    fn start_listen(&mut self, out: &mut StreamOutput, start: Vec<(String, String)>) {
        let Some(listen) = &self.listen else {
            return;
        };
        let honoured = self
            .upstreams
            .iter()
            .filter(|u| matches!(u.state, UpState::Open | UpState::Done))
            .filter_map(|u| u.ctx.era.as_ref()?.listen.as_ref())
            .fold(
                Default::default(),
                |acc: crate::gateway::modern::listen::Filter, l| acc.union(&l.honoured),
            );
        let mut data = Vec::new();
        crate::protocol::sse::Event {
            event: Some("message".into()),
            ..crate::protocol::sse::Event::data(listen.acknowledgement(&honoured))
        }
        .write(&mut data);
        data.extend_from_slice(&std::mem::take(&mut self.held));
        let mut headers = vec![
            (h::CONTENT_TYPE.to_string(), h::EVENT_STREAM.to_string()),
            ("cache-control".to_string(), "no-cache".to_string()),
        ];
        headers.extend(start);
        self.started = true;
        out.start = Some(StreamStart::Stream(headers));
        out.data = data;
    }

    /// A merged listen whose backend streams have all answered (one at
    /// least opened) and that has not started yet.
    fn listen_ready(&self) -> bool {
        self.listen.is_some()
            && !self.started
            && !self.upstreams.iter().any(|u| u.state == UpState::Waiting)
            && self.upstreams.iter().any(|u| u.state == UpState::Open)
    }

    /// Send `data` now, or hold it while the client does not read.
    fn deliver(&mut self, data: Vec<u8>, blocked: bool, out: &mut StreamOutput) -> bool {
        if blocked {
            self.held.extend_from_slice(&data);
            return self.held.len() <= self.cap;
        }
        if self.held.is_empty() {
            out.data = data;
        } else {
            out.data = std::mem::take(&mut self.held);
            out.data.extend_from_slice(&data);
        }
        true
    }
}

/// The cursor after an event id `id` from `backend`, sealed; an empty id (a
/// backend resetting its own position) drops that backend's position.
fn advance(
    gw: &Gateway,
    host: &dyn Host,
    sid: &[u8; 16],
    positions: &mut Vec<(String, String)>,
    backend: &str,
    id: String,
) -> String {
    positions.retain(|(b, _)| b != backend);
    if !id.is_empty() {
        positions.push((backend.to_string(), id));
    }
    if positions.is_empty() {
        return String::new();
    }
    let mut nonce = [0u8; NONCE_LEN];
    if host.random(&mut nonce).is_err() {
        host.log(
            Level::Error,
            "no randomness for an event id; dropping the id",
        );
        return String::new();
    }
    StreamCursor {
        sid: *sid,
        positions: positions.clone(),
    }
    .seal(&gw.cfg.keys, &nonce)
}

impl Exchange {
    /// Open `calls` (backend index, request) as streaming side calls merged
    /// into one event stream for the client. `positions` is the cursor the
    /// client resumes from. `None` when no stream could be opened at all.
    pub(super) fn open_fan_in(
        &mut self,
        host: &mut dyn Host,
        sid: [u8; 16],
        calls: Vec<(usize, Outbound)>,
        positions: Vec<(String, String)>,
    ) -> Option<()> {
        let max = self.gw.cfg.max_response_bytes;
        let fan = FanIn::new(sid, max, positions);
        let calls = calls
            .into_iter()
            .map(|(backend, call)| {
                let ctx = StreamCtx {
                    backend,
                    sid,
                    method: None,
                    request_id: None,
                    era: None,
                };
                (ctx, call)
            })
            .collect();
        self.open_streams(host, fan, calls)
    }

    /// Open a 2026-07-28 `subscriptions/listen` across backends: `calls`
    /// (each stream's context carries what its backend was asked for) merged
    /// for the client, acknowledged by the gateway as `listen`.
    pub(super) fn open_listen_fan_in(
        &mut self,
        host: &mut dyn Host,
        sid: [u8; 16],
        calls: Vec<(StreamCtx, Outbound)>,
        listen: crate::gateway::modern::listen::ListenCtx,
    ) -> Option<()> {
        let mut fan = FanIn::new(sid, self.gw.cfg.max_response_bytes, Vec::new());
        fan.listen = Some(listen);
        self.open_streams(host, fan, calls)
    }

    fn open_streams(
        &mut self,
        host: &mut dyn Host,
        mut fan: FanIn,
        calls: Vec<(StreamCtx, Outbound)>,
    ) -> Option<()> {
        let max = self.gw.cfg.max_response_bytes;
        for (ctx, mut call) in calls {
            let backend = ctx.backend;
            // A stream opens at once: with a credential at hand (this
            // request's or a cached one), else not at all.
            let Some(credential) = self.credential_at_hand(host, backend) else {
                self.log_backend(
                    host,
                    backend,
                    "no exchanged token at hand for its event stream; left out (it joins once a call has exchanged one)",
                );
                self.count_backend_failure(host, backend);
                continue;
            };
            call.headers.extend(credential);
            match host.open_stream(&call) {
                Ok(id) => fan.add(id, ctx, max),
                Err(_) => {
                    self.log_backend(host, backend, "could not open its event stream");
                    self.count_backend_failure(host, backend);
                }
            }
        }
        if fan.upstreams.is_empty() {
            return None;
        }
        let names: Vec<&str> = fan
            .upstreams
            .iter()
            .map(|u| self.gw.backend_name(u.ctx.backend))
            .collect();
        host.log(
            Level::Debug,
            &format!("merging the event streams of {}", names.join(", ")),
        );
        self.state = State::Merged(Box::new(fan));
        Some(())
    }

    fn fan_in(&mut self) -> Option<&mut FanIn> {
        match &mut self.state {
            State::Merged(f) if !f.ended => Some(f),
            _ => None,
        }
    }

    /// The answer headers of backend stream `id` arrived.
    pub fn on_stream_headers(
        &mut self,
        host: &mut dyn Host,
        id: CallId,
        headers: &[(String, String)],
    ) -> StreamOutput {
        let gw = Arc::clone(&self.gw);
        let cors = self.req.cors.clone();
        let Some(fan) = self.fan_in() else {
            return StreamOutput::close(id);
        };
        let Some(u) = fan.upstreams.iter_mut().find(|u| u.call == id) else {
            return StreamOutput::close(id);
        };
        let status: u16 = header(headers, ":status")
            .and_then(|s| s.trim().parse().ok())
            .unwrap_or(0);
        let ct = h::media_type(header(headers, h::CONTENT_TYPE).unwrap_or(""));
        let backend = u.ctx.backend;
        if (200..300).contains(&status) && ct == h::EVENT_STREAM {
            u.state = UpState::Open;
            if fan.started {
                return StreamOutput::default();
            }
            if fan.listen.is_some() {
                let mut out = StreamOutput::default();
                if fan.listen_ready() {
                    fan.start_listen(&mut out, cors);
                }
                return out;
            }
            fan.started = true;
            let mut start = vec![
                (h::CONTENT_TYPE.to_string(), h::EVENT_STREAM.to_string()),
                ("cache-control".to_string(), "no-cache".to_string()),
            ];
            start.extend(cors);
            return StreamOutput {
                start: Some(StreamStart::Stream(start)),
                ..StreamOutput::default()
            };
        }
        u.state = UpState::Failed(status);
        let name = gw.backend_name(backend);
        match status {
            405 => host.log(
                Level::Debug,
                &format!("backend {name} offers no GET stream; merging the others"),
            ),
            404 => {
                host.log(
                    Level::Info,
                    &format!("backend {name} answered 404 for its event stream: its session ended"),
                );
            }
            _ => {
                let what = if status == 0 {
                    "no answer".to_string()
                } else {
                    format!("HTTP {status} ({ct})")
                };
                host.log(
                    Level::Warn,
                    &format!("backend {name}: its event stream failed: {what}"),
                );
                self.count_backend_failure(host, backend);
            }
        }
        let mut out = StreamOutput::close(id);
        let cors = self.req.cors.clone();
        if let Some(fan) = self.fan_in().filter(|f| f.listen_ready()) {
            fan.start_listen(&mut out, cors);
        } else if let Some(r) = self.fan_in_failed(host) {
            out.start = Some(StreamStart::Reply(r));
        }
        out
    }

    /// Every backend stream failed before the answer started: the client's
    /// error answer (`None` while one may still open).
    fn fan_in_failed(&mut self, _host: &mut dyn Host) -> Option<LocalResponse> {
        let fan = self.fan_in()?;
        if fan.started
            || fan
                .upstreams
                .iter()
                .any(|u| matches!(u.state, UpState::Waiting | UpState::Open))
        {
            return None;
        }
        fan.ended = true;
        let statuses: Vec<(usize, u16)> = fan
            .upstreams
            .iter()
            .map(|u| match u.state {
                UpState::Failed(s) => (u.ctx.backend, s),
                _ => (u.ctx.backend, 0),
            })
            .collect();
        let listen = fan.listen.is_some();
        let gw = Arc::clone(&self.gw);
        let name = |i: usize| gw.backend_name(i).to_string();
        if listen {
            let names: Vec<String> = statuses
                .iter()
                .map(|(i, s)| format!("{} (HTTP {s})", name(*i)))
                .collect();
            self.note(ErrorKind::BackendFailure);
            let e = self.era_error(GatewayError::backend_failed(
                format!("no backend listen stream opened: {}", names.join(", ")),
                true,
            ));
            let mut r = e.response(self.req.request_id.as_deref());
            r.headers.extend(self.req.cors.iter().cloned());
            return Some(self.respond(r));
        }
        let e = if let Some((i, _)) = statuses.iter().find(|(_, s)| *s == 404) {
            self.note(ErrorKind::ExpiredSession);
            GatewayError::backend_session_ended(&name(*i))
        } else if statuses.iter().all(|(_, s)| *s == 405) {
            let names: Vec<String> = statuses.iter().map(|(i, _)| name(*i)).collect();
            GatewayError::no_get_stream(&names.join(", "))
        } else {
            let names: Vec<String> = statuses
                .iter()
                .map(|(i, s)| format!("{} (HTTP {s})", name(*i)))
                .collect();
            self.note(ErrorKind::BackendFailure);
            GatewayError::backend_failed(
                format!("no backend event stream opened: {}", names.join(", ")),
                false,
            )
        };
        let mut r = e.response(None);
        r.headers.extend(self.req.cors.iter().cloned());
        Some(self.respond(r))
    }

    /// Data of backend stream `id`; `blocked` when the client is not reading.
    pub fn on_stream_data(
        &mut self,
        host: &mut dyn Host,
        id: CallId,
        data: &[u8],
        end_of_stream: bool,
        blocked: bool,
    ) -> StreamOutput {
        let gw = Arc::clone(&self.gw);
        let Some(fan) = self.fan_in() else {
            return StreamOutput::close(id);
        };
        let FanIn {
            sid,
            upstreams,
            positions,
            ..
        } = &mut *fan;
        let Some(u) = upstreams.iter_mut().find(|u| u.call == id) else {
            return StreamOutput::close(id);
        };
        if u.state != UpState::Open {
            return StreamOutput::default();
        }
        let backend = u.ctx.backend;
        let name = gw.backend_name(backend).to_string();
        let mut events = Vec::with_capacity(data.len() + 128);
        let fed = u
            .sse
            .feed_with(&gw, &u.ctx, data, &mut events, &mut |event_id| {
                advance(&gw, host, sid, positions, &name, event_id)
            });
        let mut out = StreamOutput::default();
        match fed {
            Err(e) => {
                u.state = UpState::Done;
                host.log(
                    Level::Warn,
                    &format!("backend {name}: broken event stream ({e}); ending the merged stream"),
                );
                self.count_backend_failure(host, backend);
                let Some(fan) = self.fan_in() else {
                    return out;
                };
                fan.deliver(events, blocked, &mut out);
                return fan.end(out);
            }
            Ok(()) => {
                // A merged listen holds events until its acknowledgement.
                let blocked = blocked || !fan.started;
                if !fan.deliver(events, blocked, &mut out) {
                    host.log(
                        Level::Warn,
                        &format!(
                            "the client does not read its event stream (over {} bytes held); ending it, it resumes from its last event id",
                            fan.cap
                        ),
                    );
                    return fan.end(out);
                }
            }
        }
        if end_of_stream {
            return self.upstream_ended(host, id, out, false);
        }
        out
    }

    /// Backend stream `id` ended (`reset`: without completing).
    pub fn on_stream_end(&mut self, host: &mut dyn Host, id: CallId, reset: bool) -> StreamOutput {
        self.upstream_ended(host, id, StreamOutput::default(), reset)
    }

    fn upstream_ended(
        &mut self,
        host: &mut dyn Host,
        id: CallId,
        out: StreamOutput,
        reset: bool,
    ) -> StreamOutput {
        let gw = Arc::clone(&self.gw);
        let Some(fan) = self.fan_in() else {
            return out;
        };
        let Some(u) = fan.upstreams.iter_mut().find(|u| u.call == id) else {
            return out;
        };
        let was = u.state;
        let backend = u.ctx.backend;
        let cut = u.sse.finish();
        let name = gw.backend_name(backend).to_string();
        match was {
            UpState::Waiting => {
                // Reset before answering: a failure like any other.
                u.state = UpState::Failed(0);
                host.log(
                    Level::Warn,
                    &format!("backend {name}: its event stream failed: no answer"),
                );
                self.count_backend_failure(host, backend);
                let mut out = out;
                let cors = self.req.cors.clone();
                if let Some(fan) = self.fan_in().filter(|f| f.listen_ready()) {
                    fan.start_listen(&mut out, cors);
                } else if let Some(r) = self.fan_in_failed(host) {
                    out.start = Some(StreamStart::Reply(r));
                }
                out
            }
            UpState::Open => {
                u.state = UpState::Done;
                let how = match (reset, cut) {
                    (true, _) => "reset its event stream",
                    (false, true) => "cut its event stream mid-event",
                    (false, false) => "ended its event stream",
                };
                host.log(
                    Level::Info,
                    &format!("backend {name} {how}; ending the merged stream (the client resumes)"),
                );
                fan.end(out)
            }
            UpState::Failed(_) | UpState::Done => out,
        }
    }

    /// The client reads again: what was held goes out.
    pub fn on_downstream_ready(&mut self) -> StreamOutput {
        let mut out = StreamOutput::default();
        if let Some(fan) = self.fan_in() {
            if fan.started {
                fan.deliver(Vec::new(), false, &mut out);
            }
        }
        out
    }

    /// The client left: the backend streams still open, to close.
    pub(super) fn close_fan_in(&mut self) -> Vec<CallId> {
        match &mut self.state {
            State::Merged(f) => {
                f.ended = true;
                f.live()
            }
            _ => Vec::new(),
        }
    }
}

#[cfg(test)]
#[path = "fanin_tests.rs"]
mod tests;
