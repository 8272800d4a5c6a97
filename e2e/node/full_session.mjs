// A full multiplexed session through mcpgw with the TypeScript SDK
// (@modelcontextprotocol/sdk, Client + StreamableHTTPClientTransport).
//
// Usage: node full_session.mjs URL
//
// The gateway fronts the conformance fixture (`fixture__*`,
// `fixture+test://...`) and the `alpha` test backend (`alpha__*`). In one
// session this client lists and calls tools with progress, reads a namespaced
// resource and a template resource, gets a prompt, completes prompt and
// template arguments, answers a sampling and an elicitation request raised by
// the fixture during a tool call, receives a log message and answers a
// `roots/list` request that alpha sends on the session's standalone GET
// stream (with the dynamic module that stream merges both backends'; the
// proxy-wasm build answers its GET with 405), cancels a long call (AbortSignal), resumes a
// cut SSE stream with `Last-Event-ID` (the transport does it on its own), and
// ends the session with DELETE (`terminateSession`). Every HTTP request and
// its answer is recorded through the transport's `fetch` option (method,
// JSON-RPC method and id, status, the SSE events of the answer and how its
// body ended). Prints one JSON object, also when a step fails (`fatal`); the
// Rust test (`e2e/tests/official_clients.rs`) asserts on it.

import { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { StreamableHTTPClientTransport } from '@modelcontextprotocol/sdk/client/streamableHttp.js';
import {
    CreateMessageRequestSchema,
    ElicitRequestSchema,
    ListRootsRequestSchema,
    LoggingMessageNotificationSchema,
} from '@modelcontextprotocol/sdk/types.js';

const SAMPLING_PROMPT = 'What is the capital of Italy?';
const SAMPLING_ANSWER = 'Rome, from the node client';
const ELICITATION_MESSAGE = 'Please identify yourself (node)';
const ELICITATION_CONTENT = { username: 'node-user', email: 'node@example.com' };
const ANNOUNCEMENT = 'hello from alpha (node)';
const ROOT = 'file:///node-client';

const url = process.argv[2];
if (!url) {
    console.error('usage: node full_session.mjs URL');
    process.exit(2);
}

// ---------------------------------------------------------------------------
// The wire, as this client's fetch saw it.

const wire = [];
const sessionIds = [];
const waiters = [];

function whenWire(predicate, timeoutMs = 10000) {
    return new Promise((resolve, reject) => {
        const found = wire.find(predicate);
        if (found) {
            resolve(found);
            return;
        }
        const timer = setTimeout(() => reject(new Error(`timed out waiting on the wire for ${predicate}`)), timeoutMs);
        waiters.push({ predicate, resolve: (e) => { clearTimeout(timer); resolve(e); } });
    });
}

function notifyWaiters() {
    for (let i = waiters.length - 1; i >= 0; i--) {
        const found = wire.find(waiters[i].predicate);
        if (found) {
            waiters[i].resolve(found);
            waiters.splice(i, 1);
        }
    }
}

const started = Date.now();
const now = () => (Date.now() - started) / 1000;

/** One SSE event: whether it has an id, and which JSON-RPC message it carries. */
function summarizeEvent(event) {
    const lines = event.replace(/\r\n/g, '\n').split('\n');
    const data = lines
        .filter((l) => l.startsWith('data:'))
        .map((l) => l.slice(5).replace(/^ /, ''))
        .join('\n');
    const out = { has_id: lines.some((l) => l.startsWith('id:')) };
    try {
        const msg = data.trim() ? JSON.parse(data) : null;
        if (msg && typeof msg === 'object') {
            out.rpc = msg.method ?? ('result' in msg ? 'response' : 'error');
            out.id = msg.id ?? null;
        }
    } catch {
        // not JSON
    }
    return out;
}

async function recordingFetch(input, init = {}) {
    const headers = new Headers(init.headers ?? {});
    const entry = {
        method: (init.method ?? 'GET').toUpperCase(),
        last_event_id: headers.get('last-event-id'),
        has_session: headers.has('mcp-session-id'),
        at: now(),
        events: [],
    };
    if (entry.method === 'POST' && typeof init.body === 'string') {
        try {
            const body = JSON.parse(init.body);
            if (body.method) entry.rpc = body.method;
            else if ('result' in body) entry.rpc = 'response';
            else if ('error' in body) entry.rpc = 'error';
            entry.id = body.id ?? null;
            const params = body.params ?? {};
            if (params.name !== undefined) entry.name = params.name;
            if (body.method === 'notifications/cancelled') entry.cancelled_id = params.requestId;
            const token = params._meta?.progressToken;
            if (token !== undefined) entry.progress_token = token;
        } catch {
            // not JSON: recorded without details
        }
    }
    wire.push(entry);
    notifyWaiters();
    const response = await fetch(input, init);
    entry.status = response.status;
    entry.content_type = (response.headers.get('content-type') ?? '').split(';')[0].trim();
    const sid = response.headers.get('mcp-session-id');
    if (sid && !sessionIds.includes(sid)) sessionIds.push(sid);
    notifyWaiters();
    if (!response.body) {
        entry.end = { how: 'eof', at: now() };
        return response;
    }
    // Pass the body through, noting its SSE events and how it ended.
    const decoder = new TextDecoder();
    let buffer = '';
    const tap = new TransformStream({
        transform(chunk, controller) {
            if (entry.content_type === 'text/event-stream') {
                buffer += decoder.decode(chunk, { stream: true }).replace(/\r\n/g, '\n');
                let cut;
                while ((cut = buffer.indexOf('\n\n')) >= 0) {
                    entry.events.push(summarizeEvent(buffer.slice(0, cut)));
                    buffer = buffer.slice(cut + 2);
                }
            }
            controller.enqueue(chunk);
        },
        flush() {
            entry.end ??= { how: 'eof', at: now() };
            notifyWaiters();
        },
        cancel() {
            entry.end ??= { how: 'closed', at: now() };
            notifyWaiters();
        },
    });
    return new Response(response.body.pipeThrough(tap), {
        status: response.status,
        statusText: response.statusText,
        headers: response.headers,
    });
}

// ---------------------------------------------------------------------------

const texts = (result) => (result.content ?? []).filter((c) => c.type === 'text').map((c) => c.text);
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

const out = {};
const errors = [];

async function main() {
    const seen = {};

    // Default reconnection options: the transport resumes on its own, after
    // the `retry` the server's priming event asks for.
    const transport = new StreamableHTTPClientTransport(new URL(url), { fetch: recordingFetch });
    const client = new Client(
        { name: 'mcpgw-e2e-node', version: '1.0.0' },
        { capabilities: { sampling: {}, elicitation: { form: {} }, roots: {} } },
    );
    client.onerror = (e) => errors.push(String(e?.message ?? e));

    client.setRequestHandler(CreateMessageRequestSchema, async (request, extra) => {
        seen.sampling = {
            request_id: extra.requestId,
            messages: request.params.messages,
            max_tokens: request.params.maxTokens,
        };
        return {
            role: 'assistant',
            content: { type: 'text', text: SAMPLING_ANSWER },
            model: 'node-test-model',
            stopReason: 'endTurn',
        };
    });
    client.setRequestHandler(ElicitRequestSchema, async (request, extra) => {
        seen.elicitation = {
            request_id: extra.requestId,
            mode: request.params.mode ?? null,
            message: request.params.message,
            requested_schema: request.params.requestedSchema,
        };
        return { action: 'accept', content: { ...ELICITATION_CONTENT } };
    });

    client.setRequestHandler(ListRootsRequestSchema, async (request, extra) => {
        seen.roots_request_id = extra.requestId;
        return { roots: [{ uri: ROOT, name: 'node client' }] };
    });
    client.setNotificationHandler(LoggingMessageNotificationSchema, (n) => {
        (seen.logs ??= []).push({ level: n.params.level, logger: n.params.logger ?? null, data: n.params.data });
    });

    await client.connect(transport);
    out.protocol_version = transport.protocolVersion ?? null;
    out.server_name = client.getServerVersion()?.name ?? null;
    out.capabilities = Object.keys(client.getServerCapabilities() ?? {}).sort();

    // Lists (merged, namespaced).
    out.tools = (await client.listTools()).tools.map((t) => t.name).sort();
    out.prompts = (await client.listPrompts()).prompts.map((p) => p.name).sort();
    out.resources = (await client.listResources()).resources.map((r) => r.uri).sort();
    out.templates = (await client.listResourceTemplates()).resourceTemplates.map((t) => t.uriTemplate).sort();

    // Tools with progress, on both backends.
    for (const [name, args] of [
        ['alpha__count', { n: 5, delay_ms: 30 }],
        ['fixture__test_tool_with_progress', {}],
    ]) {
        const progress = [];
        const r = await client.callTool({ name, arguments: args }, undefined, {
            onprogress: (p) => progress.push([p.progress, p.total ?? null, p.message ?? null]),
        });
        const sent = wire.filter((e) => e.rpc === 'tools/call' && e.name === name);
        out[name] = {
            text: texts(r),
            is_error: Boolean(r.isError),
            progress,
            sent_token: sent.length ? (sent[sent.length - 1].progress_token ?? null) : null,
        };
    }
    out.alpha__echo = texts(await client.callTool({ name: 'alpha__echo', arguments: { text: 'node' } }));

    // Resources: a static one and one from the template, both namespaced.
    out.reads = {};
    for (const uri of ['fixture+test://static-text', 'fixture+test://template/42/data']) {
        out.reads[uri] = (await client.readResource({ uri })).contents;
    }

    // A prompt with arguments.
    out.prompt = (await client.getPrompt({
        name: 'fixture__test_prompt_with_arguments',
        arguments: { arg1: 'hello', arg2: 'world' },
    })).messages;

    // Completions: a prompt argument and a template argument.
    const c1 = await client.complete({
        ref: { type: 'ref/prompt', name: 'fixture__test_prompt_with_arguments' },
        argument: { name: 'arg1', value: 'par' },
    });
    const c2 = await client.complete({
        ref: { type: 'ref/resource', uri: 'fixture+test://template/{id}/data' },
        argument: { name: 'id', value: '1' },
    });
    out.completions = { prompt: c1.completion.values, template: c2.completion.values };

    // Sampling and elicitation raised by the fixture during a tool call.
    let r = await client.callTool({ name: 'fixture__test_sampling', arguments: { prompt: SAMPLING_PROMPT } });
    out.sampling = { text: texts(r), is_error: Boolean(r.isError), seen: seen.sampling ?? null };
    r = await client.callTool({ name: 'fixture__test_elicitation', arguments: { message: ELICITATION_MESSAGE } });
    out.elicitation = { text: texts(r), is_error: Boolean(r.isError), seen: seen.elicitation ?? null };
    out.answers_posted = [];
    for (const e of wire.filter((x) => x.rpc === 'response' || x.rpc === 'error')) {
        await whenWire((x) => x === e && x.status !== undefined);
        out.answers_posted.push({ rpc: e.rpc, id: e.id, status: e.status });
    }

    // alpha pushes a log message and a roots/list request on the session's
    // standalone stream, outside any call.
    r = await client.callTool({ name: 'alpha__announce', arguments: { text: ANNOUNCEMENT } });
    const announce = { text: texts(r) };
    // Without a standalone stream the messages cannot arrive.
    const standalone = wire.some((e) => e.method === 'GET' && !e.last_event_id && e.status === 200);
    const deadline = Date.now() + (standalone ? 10000 : 500);
    while (!(seen.logs ?? []).some((l) => l.data === ANNOUNCEMENT) && Date.now() < deadline) {
        await sleep(20);
    }
    let roots = ['none'];
    while (roots[0] === 'none' && Date.now() < deadline) {
        roots = texts(await client.callTool({ name: 'alpha__roots', arguments: {} }));
        if (roots[0] === 'none') await sleep(100);
    }
    if (standalone || roots[0] !== 'none') announce.roots = roots;
    announce.logs = (seen.logs ?? []).filter((l) => l.data === ANNOUNCEMENT);
    announce.roots_request_id = seen.roots_request_id ?? null;
    announce.get_events = wire.filter((e) => e.method === 'GET' && !e.last_event_id).flatMap((e) => e.events);
    out.announce = announce;

    // Cancel a long call: aborting sends notifications/cancelled.
    const cancel = { result: null, outcome: null };
    const controller = new AbortController();
    const longCall = client
        .callTool({ name: 'alpha__sleep', arguments: { ms: 20000 } }, undefined, { signal: controller.signal })
        .then(
            (res) => {
                cancel.result = texts(res);
                cancel.outcome = 'result';
            },
            (err) => {
                cancel.outcome = 'rejected';
                cancel.error = { name: err?.name ?? null, code: err?.code ?? null, message: String(err?.message ?? err) };
            },
        );
    const sleepCall = await whenWire((e) => e.rpc === 'tools/call' && e.name === 'alpha__sleep' && e.status !== undefined);
    await sleep(300);
    cancel.at = now();
    controller.abort('the user changed their mind');
    await longCall;
    await whenWire((e) => e.rpc === 'notifications/cancelled' && e.status !== undefined);
    // The backend stops the tool and drops its answer; its stream ends.
    await whenWire((e) => e === sleepCall && e.end !== undefined);
    cancel.sleep_request_id = sleepCall.id;
    cancel.sleep_status = sleepCall.status;
    cancel.sleep_stream_end = sleepCall.end;
    cancel.sleep_stream_events = sleepCall.events;
    cancel.notifications = wire
        .filter((e) => e.rpc === 'notifications/cancelled')
        .map((e) => ({ request_id: e.cancelled_id, status: e.status ?? null }));
    // The session still works afterwards.
    cancel.after = texts(await client.callTool({ name: 'alpha__echo', arguments: { text: 'after cancel' } }));
    out.cancel = cancel;

    // The fixture cuts this call's SSE stream after its priming event; the
    // transport resumes it with GET + Last-Event-ID.
    const t0 = Date.now();
    let resumed;
    try {
        r = await client.callTool({ name: 'fixture__test_reconnection', arguments: {} }, undefined, { timeout: 15000 });
        resumed = { text: texts(r), is_error: Boolean(r.isError) };
    } catch (err) {
        resumed = { error: err?.code ?? null, message: String(err?.message ?? err) };
    }
    const call = wire.filter((e) => e.rpc === 'tools/call' && e.name === 'fixture__test_reconnection').pop();
    out.reconnection = {
        ...resumed,
        elapsed_s: (Date.now() - t0) / 1000,
        request_id: call.id,
        post_events: call.events,
        post_end: call.end?.how ?? null,
        resume_gets: wire
            .filter((e) => e.method === 'GET' && e.last_event_id)
            .map((e) => ({ status: e.status ?? null, content_type: e.content_type ?? null, events: e.events })),
    };
    out.plain_gets = [...new Set(wire.filter((e) => e.method === 'GET' && !e.last_event_id).map((e) => e.status ?? null))];
    out.after_resume = texts(await client.callTool({ name: 'alpha__echo', arguments: { text: 'after resume' } }));

    // DELETE, then the old session id must be dead.
    const sid = transport.sessionId;
    await transport.terminateSession();
    out.session_ids = sessionIds.length;
    out.deletes = wire.filter((e) => e.method === 'DELETE').map((e) => e.status ?? null);
    out.session_id_after_delete = transport.sessionId ?? null;
    const after = await fetch(url, {
        method: 'POST',
        headers: {
            'content-type': 'application/json',
            accept: 'application/json, text/event-stream',
            'mcp-session-id': sid,
            'mcp-protocol-version': out.protocol_version ?? '2025-11-25',
        },
        body: JSON.stringify({ jsonrpc: '2.0', id: 99, method: 'tools/list' }),
    });
    out.after_delete_status = after.status;
    await after.body?.cancel();
    await client.close();
    out.errors = errors;
    out.wire = wire;
}

// Always print what was seen: a failed step is reported as `fatal`, with the
// wire so far.
main().then(
    () => {
        process.stdout.write(`${JSON.stringify(out)}\n`);
        process.exit(0);
    },
    (err) => {
        out.fatal = err?.stack ?? String(err);
        out.errors = errors;
        out.wire = wire;
        process.stdout.write(`${JSON.stringify(out)}\n`);
        process.exit(1);
    },
);
