"""A Python SDK (`mcp` 2.3.0) `MCPServer` backend for the 2026-07-28 tests.

Usage: modern_server.py PORT (0: any free port)

Speaks both eras (as every SDK server does); to 2026-07-28 clients it asks
for input with multi-round-trip results (MRTR) and serves
`subscriptions/listen`:

* `confirm(item)`: elicits a yes/no from the user (MRTR elicitation);
* `haiku(topic)`: samples the client's LLM (MRTR sampling);
* `slow_count(n)`: reports progress n times, logs at info and error;
* `add_tool(name)`: registers a tool and announces the tools list change
  on listen streams;
* `touch(uri)`: announces an update of a resource on listen streams;
* prompt `greet(name)`, resources `py://doc` and `py://items/{id}`.

Prints `ready PORT` (the bound port) once listening.
"""

from __future__ import annotations

import sys
from typing import Annotated

import anyio
import mcp_types as types
import uvicorn
from mcp.server.caching import CacheHint
from mcp.server.mcpserver import Context, MCPServer
from mcp.server.mcpserver.resolve import Elicit, Resolve, Sample
from mcp.server.transport_security import TransportSecuritySettings
from pydantic import BaseModel


class Answer(BaseModel):
    ok: bool


def ask(item: str) -> Elicit[Answer]:
    return Elicit(f"Really order {item}?", Answer)


def write_poem(topic: str) -> Sample:
    return Sample(
        [types.SamplingMessage(role="user", content=types.TextContent(type="text", text=f"A haiku about {topic}"))],
        max_tokens=64,
    )


server = MCPServer(
    "py",
    instructions="Python backend: confirm orders, write haiku.",
    cache_hints={
        "tools/list": CacheHint(ttl_ms=30_000, scope="public"),
        "prompts/list": CacheHint(ttl_ms=30_000, scope="public"),
        "resources/list": CacheHint(ttl_ms=30_000, scope="public"),
        "resources/read": CacheHint(ttl_ms=5_000, scope="public"),
    },
)


@server.tool()
def confirm(item: str, answer: Annotated[Answer, Resolve(ask)]) -> str:
    """Order an item after the user confirms."""
    return f"ordered {item}" if answer.ok else f"cancelled {item}"


@server.tool()
def haiku(topic: str, poem: Annotated[types.CreateMessageResult, Resolve(write_poem)]) -> str:
    """A haiku from the client's model."""
    text = poem.content.text if isinstance(poem.content, types.TextContent) else "?"
    return f"haiku: {text}"


@server.tool()
async def slow_count(n: int, ctx: Context) -> str:
    """Count to n with progress."""
    await ctx.info("counting")  # pyright: ignore[reportDeprecated]
    for i in range(1, n + 1):
        await ctx.report_progress(i, n, f"step {i}")
        await anyio.sleep(0.01)
    await ctx.error("counted")  # pyright: ignore[reportDeprecated]
    return f"counted to {n}"


@server.tool()
async def add_tool(name: str, ctx: Context) -> str:
    """Register a new tool and announce the change."""

    def extra() -> str:
        return f"I am {name}"

    server.add_tool(extra, name=name, description="added at runtime")
    await ctx.notify_tools_changed()
    return f"added {name}"


@server.tool()
async def touch(uri: str, ctx: Context) -> str:
    """Announce that a resource changed."""
    await ctx.notify_resource_updated(uri)
    return f"touched {uri}"


@server.prompt()
def greet(name: str) -> str:
    """A greeting."""
    return f"Hello, {name}, from py"


@server.resource("py://doc")
def doc() -> str:
    """A document."""
    return "the py document"


@server.resource("py://items/{id}")
def item(id: str) -> str:
    """An item by id."""
    return f"item {id}"


def main() -> None:
    port = int(sys.argv[1])
    app = server.streamable_http_app(
        transport_security=TransportSecuritySettings(enable_dns_rebinding_protection=False),
    )
    config = uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning")
    srv = uvicorn.Server(config)

    async def run() -> None:
        async with anyio.create_task_group() as tg:
            tg.start_soon(srv.serve)
            while not srv.started:
                await anyio.sleep(0.02)
            bound = srv.servers[0].sockets[0].getsockname()[1]
            print(f"ready {bound}", flush=True)

    anyio.run(run)


if __name__ == "__main__":
    main()
