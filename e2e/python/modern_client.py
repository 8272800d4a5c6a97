"""One client journey through mcpgw with the official Python SDK (`mcp` 2.3.0).

Usage: modern_client.py URL MODE LABEL

MODE is the SDK's: `2026-07-28` (pinned, stateless), `auto` (probes
`server/discover`, falls back to `initialize` only for a legacy server) or
`legacy` (the `initialize` handshake). The gateway fronts `py` (the SDK's
`MCPServer`, both eras), `modern` (rmcp, 2026-07-28 only) and `legacy` (the
TypeScript SDK, 2025 era only), all prefixed.

The journey: discover (modern modes), lists with their cache hints, a call
with progress and per-request logging, calls to each backend, MRTR
elicitation and sampling round trips (answered by this client's callbacks;
`modern__confirm` asks even a 2025-era client, which gets an error),
prompts/get, resources/read of a namespaced URI, and (modern modes) a
`subscriptions/listen` acknowledgement followed by a tools list change, and
what a 2025-only backend's request to the client becomes. Every HTTP exchange
is recorded (method, JSON-RPC method, routing headers, status). Prints one
JSON object, also when a step fails (`fatal`); `e2e/tests/modern.rs` asserts
on it.
"""

from __future__ import annotations

import json
import sys
import traceback
from typing import Any

import anyio
import httpx2
import mcp_types as types
from full_session import Wire, dump, texts
from mcp.client.client import Client
from mcp.client.streamable_http import streamable_http_client
from mcp.client.subscriptions import ToolsListChanged
from mcp.shared.exceptions import MCPError


async def main(url: str, mode: str, label: str, out: dict[str, Any], wire: Wire) -> None:
    modern = mode != "legacy"
    seen: dict[str, Any] = {"elicitations": [], "samplings": [], "logs": []}

    async def on_sampling(ctx: Any, params: types.CreateMessageRequestParams) -> types.CreateMessageResult:
        seen["samplings"].append([dump(m) for m in params.messages])
        return types.CreateMessageResult(
            role="assistant",
            content=types.TextContent(type="text", text=f"five seven five ({label})"),
            model="test-model",
            stop_reason="endTurn",
        )

    async def on_elicitation(ctx: Any, params: Any) -> types.ElicitResult:
        seen["elicitations"].append(params.message)
        return types.ElicitResult(action="accept", content={"ok": True})

    async def on_log(params: types.LoggingMessageNotificationParams) -> None:
        seen["logs"].append([params.level, params.data])

    async with httpx2.AsyncClient(transport=wire, timeout=httpx2.Timeout(30, read=60)) as http:
        transport = streamable_http_client(url, http_client=http)
        async with Client(
            transport,
            mode=mode,
            read_timeout_seconds=30,
            sampling_callback=on_sampling,
            elicitation_callback=on_elicitation,
            logging_callback=on_log,
            log_level="warning",
        ) as client:
            out["protocol_version"] = client.session.protocol_version
            if modern:
                out["discover"] = await client.session.send_discover("2026-07-28")

            tools = await client.list_tools()
            out["tools"] = sorted(t.name for t in tools.tools)
            out["tools_hints"] = [getattr(tools, "ttl_ms", None), getattr(tools, "cache_scope", None)]
            out["prompts"] = sorted(p.name for p in (await client.list_prompts()).prompts)
            out["resources"] = sorted(str(r.uri) for r in (await client.list_resources()).resources)

            progress: list[list[Any]] = []

            async def on_progress(p: float, total: float | None, message: str | None) -> None:
                progress.append([p, total, message])

            r = await client.call_tool("py__slow_count", {"n": 3}, progress_callback=on_progress)
            out["count"] = texts(r)
            out["progress"] = progress

            calls: dict[str, Any] = {}
            for name, args in [
                ("modern__echo", {"text": label}),
                ("legacy__echo", {"text": label}),
                ("py__confirm", {"item": f"book-{label}"}),
                ("py__haiku", {"topic": "gateways"}),
                ("modern__confirm", {"item": f"gadget-{label}"}),
            ]:
                try:
                    r = await client.call_tool(name, args)
                    calls[name] = {"text": texts(r), "error": bool(r.is_error)}
                except MCPError as e:
                    calls[name] = {"code": e.code, "message": str(e)}
            out["calls"] = calls

            prompt = await client.get_prompt("py__greet", {"name": label})
            out["prompt"] = [m.content.text for m in prompt.messages if isinstance(m.content, types.TextContent)]
            read = await client.read_resource("py+py://doc")
            out["read"] = [getattr(c, "text", None) for c in read.contents]
            out["read_hints"] = [getattr(read, "ttl_ms", None), getattr(read, "cache_scope", None)]

            if modern:
                # A 2025-only backend's request to this client: refused for it.
                for name in ("legacy__ask_anyway", "legacy__ask"):
                    try:
                        r = await client.call_tool(name, {})
                        calls[name] = {"text": texts(r), "error": bool(r.is_error)}
                    except MCPError as e:
                        calls[name] = {"code": e.code, "message": str(e)}

                # Listen: acknowledgement, then a tools list change (when the
                # acknowledgement says tools changes will be delivered).
                async with client.listen(tools_list_changed=True, prompts_list_changed=True) as sub:
                    out["honored"] = dump(sub.honored)
                    added = f"extra_{label.replace('-', '_')}"
                    await client.call_tool("py__add_tool", {"name": added})
                    if sub.honored.tools_list_changed:
                        with anyio.fail_after(10):
                            async for event in sub:
                                if isinstance(event, ToolsListChanged):
                                    out["listen_event"] = "tools_list_changed"
                                    break
                out["tools_after"] = sorted(t.name for t in (await client.list_tools()).tools)

    out["elicitations"] = seen["elicitations"]
    out["samplings"] = seen["samplings"]
    out["logs"] = seen["logs"]


def run() -> None:
    url, mode, label = sys.argv[1], sys.argv[2], sys.argv[3]
    out: dict[str, Any] = {"mode": mode}
    wire = Wire()
    try:
        anyio.run(main, url, mode, label, out, wire)
    except BaseException as e:  # report, never hang or die silently
        out["fatal"] = "".join(traceback.format_exception(e))
    out["wire"] = wire.entries
    for entry in out["wire"]:
        entry.pop("events", None)
    print(json.dumps(out, default=str))


if __name__ == "__main__":
    run()
