"""A stdio MCP server written with the official Python SDK (`MCPServer`), for
the published-servers journey (`e2e/tests/published_servers.rs`): the Python
SDK's way of sending progress, sampling, elicitation, roots and log messages
from inside a tool, which `mcp-server-time` does not exercise.

Tools: `count` (progress per step), `ask_llm` (sampling), `whoami`
(elicitation), `roots` (roots/list), `log` (notifications/message).
"""

from __future__ import annotations

import warnings

import anyio
import mcp_types as types
from mcp.server.mcpserver import Context, MCPServer
from pydantic import BaseModel

# Sampling, roots and logging are deprecated in 2026-07-28; this server speaks
# the handshake era too, where they are the way.
warnings.filterwarnings("ignore", message=r".*deprecated as of 2026-07-28")

mcp = MCPServer("py-features")


class Who(BaseModel):
    name: str


@mcp.tool()
async def count(n: int, ctx: Context) -> str:
    """Count to n with a progress notification per step."""
    for i in range(1, n + 1):
        await ctx.report_progress(i, n)
        await anyio.sleep(0.05)
    return f"counted to {n}"


@mcp.tool()
async def ask_llm(prompt: str, ctx: Context) -> str:
    """Ask the client's LLM (sampling)."""
    r = await ctx.session.create_message(
        messages=[types.SamplingMessage(role="user", content=types.TextContent(type="text", text=prompt))],
        max_tokens=20,
        related_request_id=ctx.request_id,
    )
    return r.content.text if isinstance(r.content, types.TextContent) else str(r.content)


@mcp.tool()
async def whoami(ctx: Context) -> str:
    """Ask the user who they are (elicitation)."""
    r = await ctx.elicit("Who are you?", Who)
    return f"{r.action}: {r.data.name if r.action == 'accept' and r.data else ''}"


@mcp.tool()
async def roots(ctx: Context) -> str:
    """The client's roots."""
    r = await ctx.session.list_roots()
    return "\n".join(str(root.uri) for root in r.roots)


@mcp.tool()
async def log(ctx: Context) -> str:
    """Send a log message."""
    await ctx.info("hello from the python server")
    return "logged"


if __name__ == "__main__":
    mcp.run("stdio")
