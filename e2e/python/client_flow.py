"""One multiplexed session through mcpgw with the official Python SDK (legacy mode).

Usage: client_flow.py URL
Prints one JSON object describing what happened; the Rust e2e test asserts on it.
"""

import asyncio
import json
import sys

import httpx2
from mcp.client.client import Client
from mcp.client.streamable_http import streamable_http_client
from mcp.shared.exceptions import MCPError


async def main(url: str) -> dict:
    out: dict = {}
    seen_sessions: list[str] = []

    async def remember_session(response: httpx2.Response) -> None:
        sid = response.headers.get("mcp-session-id")
        if sid and sid not in seen_sessions:
            seen_sessions.append(sid)

    async with httpx2.AsyncClient(
        timeout=httpx2.Timeout(30, read=60), event_hooks={"response": [remember_session]}
    ) as http:
        transport = streamable_http_client(url, http_client=http)
        async with Client(transport, mode="legacy", read_timeout_seconds=30) as client:
            out["protocol_version"] = client.session.protocol_version
            out["server_name"] = client.session.server_info.name if client.session.server_info else None
            tools = await client.list_tools()
            out["tools"] = sorted(t.name for t in tools.tools)

            calls = {}
            for name, args in [("alpha__echo", {"text": "py"}), ("beta__echo", {"text": "py"})]:
                r = await client.call_tool(name, args)
                calls[name] = [c.text for c in r.content if c.type == "text"]
            out["calls"] = calls

            progress: list[float] = []

            async def on_progress(p: float, total: float | None, message: str | None) -> None:
                progress.append(p)

            r = await client.call_tool("alpha__count", {"n": 3, "delay_ms": 20}, progress_callback=on_progress)
            out["count_result"] = [c.text for c in r.content if c.type == "text"]
            out["progress"] = progress

            try:
                await client.call_tool("alpha__admin_reset", {})
                out["hidden_tool"] = "called"
            except MCPError as e:
                out["hidden_tool"] = {"code": e.code, "message": str(e)}

        # The context exit sent DELETE: the old session id must be dead.
        out["session_ids"] = len(seen_sessions)
        if seen_sessions:
            r = await http.post(
                url,
                headers={
                    "content-type": "application/json",
                    "accept": "application/json, text/event-stream",
                    "mcp-session-id": seen_sessions[0],
                    "mcp-protocol-version": out["protocol_version"] or "2025-11-25",
                },
                content=json.dumps({"jsonrpc": "2.0", "id": 99, "method": "tools/list"}),
            )
            out["after_delete_status"] = r.status_code
    return out


if __name__ == "__main__":
    print(json.dumps(asyncio.run(main(sys.argv[1]))))
