//! The HTTP filter hooks an adapter forwards its host's events to, in order:
//! request headers, request body, side-call answers, response headers,
//! response body, end of stream; on hosts that stream side calls, also the
//! pieces of those streams and the client's readiness. Each reads through [`HttpStream`] only what
//! it needs, applies the step's decision and tells the adapter whether to let
//! the data go on or hold it ([`Flow`]). What used to be each adapter's own
//! logic lives here once: which hook reads a body, the request size limit
//! while the body arrives, when a response is buffered whole, and resuming a
//! request held for side calls.

use super::exchange::Exchange;
use super::host::{
    BodyAction, CallId, CallResponse, Dir, Flow, HeadersAction, Host, HttpStream, LocalResponse,
    ResponseBodyAction, ResponseHeadersAction, StreamOutput, StreamStart,
};

/// What the hooks remember between host events.
#[derive(Debug, Default)]
pub struct HookState {
    /// The response body concerns the gateway (decided on its headers).
    response_body: bool,
    /// The size of the request body the gateway read, to replace it after a
    /// wait.
    request_body_size: usize,
    /// The access-log fields were published (the response started).
    published: bool,
}

impl Exchange {
    /// The request headers arrived.
    pub fn request_headers<H: Host + HttpStream>(
        &mut self,
        host: &mut H,
        end_of_stream: bool,
    ) -> Flow {
        // Most requests through a shared listener are not the gateway's:
        // one header read decides, without copying the others.
        let pass = host
            .header(Dir::Request, ":path")
            .is_some_and(|p| self.passes_by(&p));
        if pass {
            let HeadersAction::Continue(ops) =
                self.not_ours(|n| host.header(Dir::Request, n).is_some())
            else {
                return Flow::Continue;
            };
            host.apply(Dir::Request, &ops);
            return Flow::Continue;
        }
        let headers = host.headers(Dir::Request);
        let action = self.on_request_headers(host, &headers, end_of_stream);
        match self.with_credential_headers(host, action) {
            HeadersAction::Continue(ops) => {
                host.apply(Dir::Request, &ops);
                Flow::Continue
            }
            HeadersAction::NeedBody | HeadersAction::Wait => Flow::Stop,
            HeadersAction::Respond(r) => {
                self.send(host, r);
                Flow::Stop
            }
        }
    }

    /// Answer with the gateway's own reply. Its access-log fields are
    /// published first: a host may not run the response hooks for a reply
    /// the filter made itself (an Envoy dynamic module does not).
    fn send<H: Host + HttpStream>(&mut self, host: &mut H, r: LocalResponse) {
        self.hooks.published = true;
        self.on_response_start(host);
        host.send(r);
    }

    /// The response starts: publish the access-log fields, unless the
    /// gateway's own reply did (the response hooks of a host that runs them
    /// for the filter's own replies, proxy-wasm).
    fn response_started(&mut self, host: &mut dyn Host) {
        if !self.hooks.published {
            self.hooks.published = true;
            self.on_response_start(host);
        }
    }

    /// Request body data: `size` bytes are held so far.
    pub fn request_body<H: Host + HttpStream>(
        &mut self,
        host: &mut H,
        size: usize,
        end_of_stream: bool,
    ) -> Flow {
        if !self.wants_request_body() {
            return Flow::Continue;
        }
        if !end_of_stream {
            // Refused as soon as it is too big; otherwise held until complete.
            if let Some(r) = self.check_request_size(size) {
                self.send(host, r);
            }
            return Flow::Stop;
        }
        self.hooks.request_body_size = size;
        let body = host.body(Dir::Request, size);
        let action = self.on_request_body(host, &body);
        let action = self.with_credential(host, action);
        self.apply_body(host, action, false)
    }

    /// The answer to side call `id` arrived (or its failure: status 0).
    pub fn call_done<H: Host + HttpStream>(
        &mut self,
        host: &mut H,
        id: CallId,
        response: CallResponse,
    ) {
        let action = if self.leads_exchange(id) {
            self.on_exchange_response(host, id, response)
        } else {
            self.on_call_response(host, id, response)
        };
        let action = self.with_credential(host, action);
        self.apply_body(host, action, true);
    }

    /// The host woke this request ([`Host::wake`]): another request's token
    /// exchange it waited for ended, or its deadline passed.
    pub fn woken<H: Host + HttpStream>(&mut self, host: &mut H) {
        let action = self.on_woken(host);
        let action = self.with_credential(host, action);
        self.apply_body(host, action, true);
    }

    /// The response headers arrived (upstream's, or the gateway's own reply).
    pub fn response_headers<H: Host + HttpStream>(
        &mut self,
        host: &mut H,
        _end_of_stream: bool,
    ) -> Flow {
        self.response_started(host);
        if !self.wants_response() {
            return Flow::Continue;
        }
        let headers = host.headers(Dir::Response);
        match self.on_response_headers(host, &headers) {
            ResponseHeadersAction::Continue(ops) | ResponseHeadersAction::Buffer(ops) => {
                host.apply(Dir::Response, &ops);
                self.hooks.response_body = self.wants_response();
                Flow::Continue
            }
            ResponseHeadersAction::Replace(r) => {
                self.hooks.response_body = false;
                self.send(host, r);
                Flow::Stop
            }
        }
    }

    /// Response body data: `size` bytes are held so far (all of this chunk
    /// when nothing was held).
    pub fn response_body<H: Host + HttpStream>(
        &mut self,
        host: &mut H,
        size: usize,
        end_of_stream: bool,
    ) -> Flow {
        if !self.hooks.response_body {
            return Flow::Continue;
        }
        if !end_of_stream && self.buffers_response() {
            // Rewritten whole at the end: only its size is checked until then.
            return match self.on_response_body_pending(host, size) {
                ResponseBodyAction::Buffer => Flow::Stop,
                _ => Flow::Continue,
            };
        }
        let chunk = host.body(Dir::Response, size);
        match self.on_response_body(host, &chunk, end_of_stream) {
            ResponseBodyAction::Continue => Flow::Continue,
            ResponseBodyAction::Buffer => Flow::Stop,
            ResponseBodyAction::Replace(b) => {
                host.replace_body(Dir::Response, size, &b);
                Flow::Continue
            }
        }
    }

    /// The stream is over (completed, reset or abandoned): report it.
    pub fn stream_done(&mut self, host: &mut dyn Host) {
        self.release_credentials(host);
        self.on_done(host);
    }

    /// The answer headers of streaming side call `id` arrived.
    pub fn stream_headers<H: Host + HttpStream>(
        &mut self,
        host: &mut H,
        id: CallId,
        headers: &[(String, String)],
    ) {
        let out = self.on_stream_headers(host, id, headers);
        self.apply_stream(host, out);
    }

    /// Answer data of streaming side call `id`.
    pub fn stream_data<H: Host + HttpStream>(
        &mut self,
        host: &mut H,
        id: CallId,
        data: &[u8],
        end_of_stream: bool,
    ) {
        let blocked = host.downstream_blocked();
        let out = self.on_stream_data(host, id, data, end_of_stream, blocked);
        self.apply_stream(host, out);
    }

    /// Streaming side call `id` is over: completed, or `reset` (failed or
    /// cut) before completing.
    pub fn stream_end<H: Host + HttpStream>(&mut self, host: &mut H, id: CallId, reset: bool) {
        let out = self.on_stream_end(host, id, reset);
        self.apply_stream(host, out);
    }

    /// The client reads its streamed answer again.
    pub fn downstream_ready<H: Host + HttpStream>(&mut self, host: &mut H) {
        let out = self.on_downstream_ready();
        self.apply_stream(host, out);
    }

    /// Apply a merged stream's decision.
    fn apply_stream<H: Host + HttpStream>(&mut self, host: &mut H, out: StreamOutput) {
        match out.start {
            Some(StreamStart::Reply(r)) => self.send(host, r),
            Some(StreamStart::Stream(headers)) => {
                self.hooks.published = true;
                self.on_response_start(host);
                host.send_headers(200, &headers, false);
            }
            None => {}
        }
        if !out.data.is_empty() || out.end {
            host.send_data(&out.data, out.end);
        }
        for id in out.close {
            host.close_stream(id);
        }
    }

    /// Apply a body-phase decision; `resume` when the request was held by a wait.
    fn apply_body<H: Host + HttpStream>(
        &mut self,
        host: &mut H,
        action: BodyAction,
        resume: bool,
    ) -> Flow {
        match action {
            BodyAction::Forward { headers, body } => {
                host.apply(Dir::Request, &headers);
                if let Some(b) = body {
                    host.replace_body(Dir::Request, self.hooks.request_body_size, &b);
                }
                if resume {
                    host.resume_request();
                }
                Flow::Continue
            }
            BodyAction::Wait => Flow::Stop,
            BodyAction::Respond(r) => {
                self.send(host, r);
                Flow::Stop
            }
        }
    }
}

#[cfg(test)]
#[path = "hooks_tests.rs"]
mod tests;
