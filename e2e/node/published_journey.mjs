// One client journey over the published MCP servers, with the TypeScript SDK
// (@modelcontextprotocol/sdk: Client over StdioClientTransport or
// StreamableHTTPClientTransport).
//
// Usage: node published_journey.mjs SPEC_JSON
//
// The same journey, checks and spec as e2e/python/published_journey.py:
// SPEC is {label, via, root, sessions: [{connect: {url} | {command, args,
// env}, servers: [{name, kind, prefix, uri_prefix}]}]}. Each check records
// whether it passed and what it saw, names and URIs un-prefixed; the Rust
// test (e2e/tests/published_servers.rs) requires that whatever passes
// directly passes through mcpgw, with the same values. Prints one JSON
// object: {checks: {"<server>.<check>": {ok, value}}}.

import { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { StdioClientTransport, getDefaultEnvironment } from '@modelcontextprotocol/sdk/client/stdio.js';
import { StreamableHTTPClientTransport } from '@modelcontextprotocol/sdk/client/streamableHttp.js';
import {
    CreateMessageRequestSchema,
    ElicitRequestSchema,
    ListRootsRequestSchema,
    LoggingMessageNotificationSchema,
    ResourceListChangedNotificationSchema,
    ResourceUpdatedNotificationSchema,
} from '@modelcontextprotocol/sdk/types.js';

const STEP_TIMEOUT_MS = 20000;
const WAIT_MS = 5000;

const spec = JSON.parse(process.argv[2] ?? '{}');
const label = spec.label;
const checks = {};
const notes = [];
const logs = [];
const seen = { sampling: [], elicitation: [] };

const texts = (r) => (r.content ?? []).filter((c) => c.type === 'text').map((c) => c.text);
const stampFree = (s) => s.replace(/created at .*$/, 'created at <time>');
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
const now = () => performance.now();

async function waitFor(pred, since) {
    const deadline = now() + WAIT_MS;
    while (now() < deadline) {
        const hit = notes.find((n) => n.at >= since && pred(n));
        if (hit) return hit;
        await sleep(50);
    }
    return null;
}

async function check(name, fn) {
    let timer;
    try {
        const timeout = new Promise((_, reject) => {
            timer = setTimeout(() => reject(new Error(`timed out after ${STEP_TIMEOUT_MS} ms`)), STEP_TIMEOUT_MS);
        });
        const [ok, value] = await Promise.race([fn(), timeout]);
        checks[name] = { ok: Boolean(ok), value: value ?? null };
    } catch (e) {
        checks[name] = { ok: false, value: `${e?.name ?? 'Error'}: ${e?.message ?? e}` };
    } finally {
        clearTimeout(timer);
    }
}

function newClient() {
    const client = new Client(
        { name: `journey-${label}`, version: '1.0.0' },
        { capabilities: { sampling: {}, elicitation: {}, roots: { listChanged: true } } },
    );
    client.setRequestHandler(CreateMessageRequestSchema, async (request) => {
        seen.sampling.push(request.params.messages);
        return {
            role: 'assistant',
            content: { type: 'text', text: `sampled by ${label}` },
            model: 'journey-model',
            stopReason: 'endTurn',
        };
    });
    client.setRequestHandler(ElicitRequestSchema, async (request) => {
        seen.elicitation.push(request.params.message);
        return {
            action: 'accept',
            content: { name: label, check: true, email: 'journey@example.com', integer: 7 },
        };
    });
    client.setRequestHandler(ListRootsRequestSchema, async () => ({
        roots: [{ uri: `file://${spec.root}`, name: 'journey-root' }],
    }));
    client.setNotificationHandler(LoggingMessageNotificationSchema, async (n) => {
        logs.push({ level: n.params.level, data: n.params.data, at: now() });
    });
    for (const schema of [ResourceUpdatedNotificationSchema, ResourceListChangedNotificationSchema]) {
        client.setNotificationHandler(schema, async (n) => {
            notes.push({ method: n.method, params: n.params ?? {}, at: now() });
        });
    }
    return client;
}

class View {
    constructor(client, server) {
        this.c = client;
        this.name = server.name;
        this.kind = server.kind;
        this.prefix = server.prefix;
        this.uriPrefix = server.uri_prefix;
    }

    t(name) {
        return this.prefix + name;
    }

    u(uri) {
        return this.uriPrefix + uri;
    }

    strip(uri) {
        return this.uriPrefix && uri.startsWith(this.uriPrefix) ? uri.slice(this.uriPrefix.length) : uri;
    }

    mine(names) {
        return names.filter((n) => n.startsWith(this.prefix)).map((n) => n.slice(this.prefix.length)).sort();
    }

    call(name, args, options) {
        return this.c.callTool({ name: this.t(name), arguments: args }, undefined, { timeout: STEP_TIMEOUT_MS, ...options });
    }

    check(name, fn) {
        return check(`${this.name}.${name}`, fn);
    }

    async run() {
        await this.check('tools', async () => {
            const names = this.mine((await this.c.listTools()).tools.map((t) => t.name));
            return [names.length > 0, names];
        });
        await this[`run_${this.kind}`]();
    }

    // -- server-everything (stdio and streamable HTTP) ---------------------------

    async run_everything() {
        const steps = {
            echo: async () => {
                const got = texts(await this.call('echo', { message: 'hello' }));
                return [JSON.stringify(got) === JSON.stringify(['Echo: hello']), got];
            },
            image: async () => {
                const r = await this.call('get-tiny-image', {});
                const img = r.content.filter((c) => c.type === 'image');
                const ok = img.length > 0 && img[0].mimeType === 'image/png' && img[0].data.length > 100;
                return [ok, { kinds: r.content.map((c) => c.type), mime: img[0]?.mimeType ?? null }];
            },
            annotated: async () => {
                const r = await this.call('get-annotated-message', { messageType: 'error', includeImage: true });
                const ann = r.content.map((c) => c.annotations ?? null);
                return [ann.some((a) => a), ann];
            },
            structured: async () => {
                const r = await this.call('get-structured-content', { location: 'New York' });
                const sc = r.structuredContent;
                const t = texts(r);
                const ok = sc && t.length > 0 && JSON.stringify(JSON.parse(t[0])) === JSON.stringify(sc);
                return [ok, sc];
            },
            resource_links: async () => {
                const r = await this.call('get-resource-links', { count: 2 });
                const links = r.content.filter((c) => c.type === 'resource_link');
                let ok = links.length === 2;
                const out = [];
                for (const link of links) {
                    const back = (await this.c.readResource({ uri: link.uri })).contents.map((c) => this.strip(c.uri));
                    ok = ok && link.uri.startsWith(this.uriPrefix) && JSON.stringify(back) === JSON.stringify([this.strip(link.uri)]);
                    out.push({ uri: this.strip(link.uri), name: link.name, read_back: back });
                }
                return [ok, out];
            },
            embedded_resource: async () => {
                const r = await this.call('get-resource-reference', { resourceType: 'Text', resourceId: 3 });
                const res = r.content.filter((c) => c.type === 'resource').map((c) => c.resource);
                if (!res.length) return [false, null];
                const again = (await this.c.readResource({ uri: res[0].uri })).contents.map((c) => this.strip(c.uri));
                const ok = res[0].uri.startsWith(this.uriPrefix) && JSON.stringify(again) === JSON.stringify([this.strip(res[0].uri)]);
                return [ok, { uri: this.strip(res[0].uri), text: stampFree(res[0].text) }];
            },
            progress: async () => {
                const seenSteps = [];
                const r = await this.call(
                    'trigger-long-running-operation',
                    { duration: 0.6, steps: 3 },
                    { onprogress: (p) => seenSteps.push([p.progress, p.total]) },
                );
                const ok = JSON.stringify(seenSteps) === JSON.stringify([[1, 3], [2, 3], [3, 3]]) && texts(r).length > 0;
                return [ok, { progress: seenSteps, text: texts(r) }];
            },
            sampling: async () => {
                const r = await this.call('trigger-sampling-request', { prompt: 'Say hi', maxTokens: 20 });
                const text = texts(r).join('\n');
                const asked = seen.sampling.at(-1);
                const ok = text.includes(`sampled by ${label}`) && asked && JSON.stringify(asked).includes('Say hi');
                return [ok, text.includes(`sampled by ${label}`)];
            },
            elicitation: async () => {
                const t = texts(await this.call('trigger-elicitation-request', {}));
                return [t.some((x) => x.includes(`- Name: ${label}`)), t.slice(0, 2)];
            },
            roots: async () => {
                const text = texts(await this.call('get-roots-list', {})).join('\n');
                const has = text.includes(`file://${spec.root}`);
                return [has, has];
            },
            resources: async () => {
                const uris = (await this.c.listResources()).resources
                    .map((r) => r.uri)
                    .filter((u) => u.startsWith(this.uriPrefix))
                    .map((u) => this.strip(u))
                    .sort();
                const doc = this.u('demo://resource/static/document/features.md');
                const contents = (await this.c.readResource({ uri: doc })).contents;
                const ok = uris.includes(this.strip(doc)) && contents[0].text.includes('Everything Server');
                return [ok, { uris, read: contents.map((c) => this.strip(c.uri)) }];
            },
            templates: async () => {
                const ts = (await this.c.listResourceTemplates()).resourceTemplates
                    .map((t) => t.uriTemplate)
                    .filter((u) => u.startsWith(this.uriPrefix))
                    .map((u) => this.strip(u))
                    .sort();
                const contents = (await this.c.readResource({ uri: this.u('demo://resource/dynamic/text/7') })).contents;
                const ok = ts.includes('demo://resource/dynamic/text/{resourceId}') && contents[0].text.startsWith('Resource 7:');
                return [ok, { templates: ts, read: stampFree(contents[0].text), uri: this.strip(contents[0].uri) }];
            },
            prompts: async () => {
                const names = this.mine((await this.c.listPrompts()).prompts.map((p) => p.name));
                const gp = await this.c.getPrompt({ name: this.t('args-prompt'), arguments: { city: 'Paris', state: 'Texas' } });
                const rp = await this.c.getPrompt({ name: this.t('resource-prompt'), arguments: { resourceType: 'Text', resourceId: '2' } });
                const embedded = rp.messages.filter((m) => m.content.type === 'resource').map((m) => m.content.resource.uri);
                const back = embedded.length
                    ? (await this.c.readResource({ uri: embedded[0] })).contents.map((c) => this.strip(c.uri))
                    : [];
                const ok = names.includes('args-prompt') && JSON.stringify(gp.messages).includes('Paris')
                    && embedded.length > 0 && JSON.stringify(back) === JSON.stringify([this.strip(embedded[0])]);
                return [ok, { names, args: gp.messages, embedded: embedded.map((u) => this.strip(u)) }];
            },
            completion: async () => {
                const ref = { type: 'ref/prompt', name: this.t('completable-prompt') };
                const dept = (await this.c.complete({ ref, argument: { name: 'department', value: 'Eng' } })).completion.values;
                const who = (await this.c.complete({
                    ref,
                    argument: { name: 'name', value: 'A' },
                    context: { arguments: { department: 'Engineering' } },
                })).completion.values;
                const tref = { type: 'ref/resource', uri: this.u('demo://resource/dynamic/text/{resourceId}') };
                const rid = (await this.c.complete({ ref: tref, argument: { name: 'resourceId', value: '3' } })).completion.values;
                const ok = JSON.stringify([dept, who, rid]) === JSON.stringify([['Engineering'], ['Alice'], ['3']]);
                return [ok, [dept, who, rid]];
            },
            logging: async () => {
                await this.c.setLoggingLevel('debug');
                const since = now();
                await this.call('toggle-simulated-logging', {});
                let got = [];
                try {
                    const deadline = now() + WAIT_MS;
                    while (now() < deadline && !got.length) {
                        got = logs.filter((l) => l.at >= since && String(l.data).includes('message'));
                        await sleep(50);
                    }
                } finally {
                    await this.call('toggle-simulated-logging', {});
                }
                return [got.length > 0, got.length > 0];
            },
            subscriptions: async () => {
                const uri = this.u('demo://resource/dynamic/text/1');
                await this.c.subscribeResource({ uri });
                const since = now();
                await this.call('toggle-subscriber-updates', {});
                let n;
                try {
                    n = await waitFor((x) => x.method === 'notifications/resources/updated' && x.params.uri === uri, since);
                } finally {
                    await this.call('toggle-subscriber-updates', {});
                    await this.c.unsubscribeResource({ uri });
                }
                return [n !== null, n ? this.strip(n.params.uri) : null];
            },
            list_changed: async () => {
                const since = now();
                const r = await this.call('gzip-file-as-resource', {
                    name: `${label}.gz`,
                    data: 'data:text/plain;base64,aGVsbG8gam91cm5leQ==',
                    outputType: 'resourceLink',
                });
                const links = r.content.filter((c) => c.type === 'resource_link');
                const n = await waitFor((x) => x.method === 'notifications/resources/list_changed', since);
                const back = links.length ? (await this.c.readResource({ uri: links[0].uri })).contents : [];
                const ok = n !== null && back.length > 0 && back[0].mimeType === 'application/gzip';
                return [ok, { notified: n !== null, link: links.map((l) => this.strip(l.uri)) }];
            },
            cancel: async () => {
                const controller = new AbortController();
                let first;
                const progressed = new Promise((r) => { first = r; });
                const call = this.call(
                    'trigger-long-running-operation',
                    { duration: 3, steps: 6 },
                    { signal: controller.signal, onprogress: () => first() },
                ).then(() => 'result', (e) => (controller.signal.aborted ? 'cancelled' : `error: ${e?.message}`));
                await Promise.race([progressed, sleep(10000)]);
                controller.abort('the journey changed its mind');
                const outcome = await call;
                const after = texts(await this.call('echo', { message: 'after cancel' }));
                return [outcome === 'cancelled' && JSON.stringify(after) === JSON.stringify(['Echo: after cancel']), { outcome, after }];
            },
        };
        for (const [name, fn] of Object.entries(steps)) {
            await this.check(name, fn);
        }
    }

    // -- server-memory -------------------------------------------------------------

    async run_memory() {
        const me = `${label}-alice`;
        const friend = `${label}-bob`;
        await this.check('graph', async () => {
            await this.call('create_entities', {
                entities: [
                    { name: me, entityType: 'person', observations: ['likes tea'] },
                    { name: friend, entityType: 'person', observations: [] },
                ],
            });
            await this.call('create_relations', { relations: [{ from: me, to: friend, relationType: 'knows' }] });
            await this.call('add_observations', { observations: [{ entityName: me, contents: ['reads books'] }] });
            const g = JSON.parse(texts(await this.call('read_graph', {}))[0]);
            const ents = g.entities
                .filter((e) => e.name === me || e.name === friend)
                .map((e) => [e.name, [...e.observations].sort()])
                .sort((a, b) => a[0].localeCompare(b[0]));
            const rels = g.relations.filter((r) => r.from === me).map((r) => [r.from, r.relationType, r.to]);
            const found = JSON.parse(texts(await this.call('search_nodes', { query: 'reads books' }))[0]);
            const hit = found.entities.filter((e) => e.name === me).map((e) => e.name);
            const ok = JSON.stringify(ents) === JSON.stringify([[me, ['likes tea', 'reads books']], [friend, []]])
                && JSON.stringify(rels) === JSON.stringify([[me, 'knows', friend]]) && hit.length === 1;
            return [ok, { entities: ents, relations: rels, search: hit }];
        });
    }

    // -- server-filesystem ---------------------------------------------------------

    async run_filesystem() {
        const fname = `${label}-${spec.via}.txt`;
        const path = `${spec.root}/${fname}`;
        const content = `hello from ${label}`;
        await this.check('allowed', async () => {
            const has = texts(await this.call('list_allowed_directories', {})).join('\n').includes(spec.root);
            return [has, has];
        });
        await this.check('write_read', async () => {
            await this.call('write_file', { path, content });
            const got = texts(await this.call('read_text_file', { path }));
            const listing = texts(await this.call('list_directory', { path: spec.root })).join('\n');
            const info = texts(await this.call('get_file_info', { path })).join('\n');
            const listed = listing.includes(`[FILE] ${fname}`);
            return [JSON.stringify(got) === JSON.stringify([content]) && listed && info.includes('size: '), { read: got, listed }];
        });
        await this.check('outside', async () => {
            const r = await this.call('read_text_file', { path: '/etc/hostname' });
            return [Boolean(r.isError), Boolean(r.isError)];
        });
    }

    // A check: `tool` answers with exactly the texts `want`.
    answers(tool, args, want) {
        return async () => {
            const got = texts(await this.call(tool, args));
            return [JSON.stringify(got) === JSON.stringify(want), got];
        };
    }

    // A check: `count` to 3 sends a progress notification per step, then its result.
    counts(args) {
        return async () => {
            const steps = [];
            const got = texts(await this.call('count', args, { onprogress: (p) => steps.push([p.progress, p.total]) }));
            const ok = JSON.stringify(steps) === JSON.stringify([[1, 3], [2, 3], [3, 3]])
                && JSON.stringify(got) === JSON.stringify(['counted to 3']);
            return [ok, steps];
        };
    }

    // -- e2e/python/features_server.py (Python SDK: progress, sampling, ...) --------

    async run_pyfeatures() {
        await this.check('progress', this.counts({ n: 3 }));
        await this.check('sampling', this.answers('ask_llm', { prompt: 'Say hi' }, [`sampled by ${label}`]));
        await this.check('elicitation', this.answers('whoami', {}, [`accept: ${label}`]));
        await this.check('roots', this.answers('roots', {}, [`file://${spec.root}`]));
        await this.check('logging', async () => {
            const since = now();
            const r = texts(await this.call('log', {}));
            const deadline = now() + WAIT_MS;
            let got = [];
            while (now() < deadline && !got.length) {
                got = logs.filter((l) => l.at >= since && l.data === 'hello from the python server').map((l) => l.data);
                await sleep(50);
            }
            return [got.length > 0 && JSON.stringify(r) === JSON.stringify(['logged']), got.slice(0, 1)];
        });
    }

    // -- the rmcp test server (e2e/src/bin/mcp-stdio-server.rs) ----------------------

    async run_rmcp() {
        await this.check('echo', this.answers('echo', { text: 'hi' }, ['stdio: hi']));
        await this.check('progress', this.counts({ n: 3, delay_ms: 20 }));
        await this.check('sampling', this.answers('sample', { text: 'Say hi' }, [`sampled by ${label}`]));
        await this.check('roots', this.answers('roots', {}, [`file://${spec.root}`]));
    }

    // -- mcp-server-time (Python SDK) ------------------------------------------------

    async run_time() {
        await this.check('now', async () => {
            const r = JSON.parse(texts(await this.call('get_current_time', { timezone: 'UTC' }))[0]);
            return [r.timezone === 'UTC', { timezone: r.timezone, is_dst: r.is_dst }];
        });
        await this.check('convert', async () => {
            const r = JSON.parse(texts(await this.call('convert_time', {
                source_timezone: 'UTC', time: '12:00', target_timezone: 'Asia/Tokyo',
            }))[0]);
            return [r.target.datetime.slice(11, 16) === '21:00', r.time_difference];
        });
        await this.check('bad_zone', async () => {
            const r = await this.call('get_current_time', { timezone: 'Mars/Olympus' });
            return [Boolean(r.isError), texts(r)];
        });
    }
}

async function runSession(session) {
    const c = session.connect;
    const transport = c.url
        ? new StreamableHTTPClientTransport(new URL(c.url))
        : new StdioClientTransport({
            command: c.command,
            args: c.args ?? [],
            env: { ...getDefaultEnvironment(), ...(c.env ?? {}) },
            stderr: 'ignore',
        });
    const client = newClient();
    await client.connect(transport);
    try {
        for (const server of session.servers) {
            await new View(client, server).run();
        }
    } finally {
        if (c.url) {
            await transport.terminateSession().catch(() => {});
        }
        await client.close().catch(() => {});
    }
}

const out = { checks };
let code = 0;
try {
    for (const session of spec.sessions) {
        try {
            await runSession(session);
        } catch (e) {
            const names = session.servers.map((s) => s.name).join(',');
            checks[`${names}.session`] = { ok: false, value: String(e?.stack ?? e).slice(0, 2000) };
        }
    }
} catch (e) {
    out.fatal = String(e?.stack ?? e);
    code = 1;
}
console.log(JSON.stringify(out));
process.exit(code);
