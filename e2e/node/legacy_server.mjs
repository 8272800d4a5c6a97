// A 2025-era-only MCP backend on the TypeScript SDK
// (@modelcontextprotocol/sdk 1.32.2, McpServer + StreamableHTTPServerTransport,
// stateful sessions): it knows `initialize` and nothing of 2026-07-28.
//
// Usage: node legacy_server.mjs PORT
//
// Tools:
//   echo(text)        "legacy: <text>"
//   ask()             asks the client for input with elicitInput (the SDK
//                     refuses when the client did not declare elicitation)
//   ask_anyway()      sends elicitation/create whatever the client declared,
//                     and reports how it ended
// Resource: legacy://note
//
// Prints `ready PORT` once listening.

import { createServer } from 'node:http';
import { randomUUID } from 'node:crypto';
import { McpServer } from '@modelcontextprotocol/sdk/server/mcp.js';
import { StreamableHTTPServerTransport } from '@modelcontextprotocol/sdk/server/streamableHttp.js';
import { ElicitResultSchema } from '@modelcontextprotocol/sdk/types.js';
import { z } from 'zod';

const port = Number(process.argv[2] ?? 0);

function newServer() {
    const server = new McpServer(
        { name: 'legacy', version: '1.0.0' },
        { instructions: 'Legacy speaks 2025-11-25 only.' },
    );
    server.registerTool(
        'echo',
        { description: "Echo the text back, prefixed with 'legacy: '", inputSchema: { text: z.string() } },
        async ({ text }) => ({ content: [{ type: 'text', text: `legacy: ${text}` }] }),
    );
    server.registerTool('ask', { description: 'Ask the user (elicitation)' }, async () => {
        const r = await server.server.elicitInput({
            message: 'Proceed?',
            requestedSchema: { type: 'object', properties: { ok: { type: 'boolean' } } },
        });
        return { content: [{ type: 'text', text: `answer: ${JSON.stringify(r)}` }] };
    });
    server.registerTool('ask_anyway', { description: 'Ask the user without checking capabilities' }, async (extra) => {
        try {
            // On this call's own stream, as a 2025-era server would.
            const r = await extra.sendRequest(
                {
                    method: 'elicitation/create',
                    params: {
                        message: 'Proceed anyway?',
                        requestedSchema: { type: 'object', properties: { ok: { type: 'boolean' } } },
                    },
                },
                ElicitResultSchema,
            );
            return { content: [{ type: 'text', text: `answer: ${JSON.stringify(r)}` }] };
        } catch (e) {
            return { content: [{ type: 'text', text: `refused: ${e.message}` }], isError: true };
        }
    });
    server.registerResource('note', 'legacy://note', { mimeType: 'text/plain' }, async (uri) => ({
        contents: [{ uri: uri.href, text: 'a legacy note' }],
    }));
    return server;
}

const transports = new Map();

async function readBody(req) {
    const chunks = [];
    for await (const c of req) chunks.push(c);
    const text = Buffer.concat(chunks).toString('utf8');
    return text ? JSON.parse(text) : undefined;
}

const http = createServer(async (req, res) => {
    try {
        if (!req.url?.startsWith('/mcp')) {
            res.writeHead(404).end();
            return;
        }
        const sid = req.headers['mcp-session-id'];
        const body = req.method === 'POST' ? await readBody(req) : undefined;
        let transport = sid ? transports.get(sid) : undefined;
        if (!transport) {
            if (sid || req.method !== 'POST' || body?.method !== 'initialize') {
                res.writeHead(sid ? 404 : 400, { 'content-type': 'application/json' }).end(
                    JSON.stringify({
                        jsonrpc: '2.0',
                        id: null,
                        error: { code: -32000, message: 'Bad Request: No valid session ID provided' },
                    }),
                );
                return;
            }
            transport = new StreamableHTTPServerTransport({
                sessionIdGenerator: () => randomUUID(),
                onsessioninitialized: (id) => transports.set(id, transport),
            });
            transport.onclose = () => transport.sessionId && transports.delete(transport.sessionId);
            await newServer().connect(transport);
        }
        await transport.handleRequest(req, res, body);
    } catch (e) {
        if (!res.headersSent) res.writeHead(500).end(String(e));
    }
});

http.listen(port, '127.0.0.1', () => {
    console.log(`ready ${http.address().port}`);
});
