"""Talk to a running mcpgw with the official Python SDK: list and call tools.

Usage: demo_client.py [URL]   (default http://127.0.0.1:1975/mcp)
"""

import asyncio
import sys

from mcp.client.client import Client


async def main(url: str) -> None:
    async with Client(url, mode="legacy") as client:
        info = client.session.server_info
        print(f"connected to {info.name if info else '?'} (protocol {client.session.protocol_version})")
        tools = await client.list_tools()
        print("tools:")
        for t in tools.tools:
            print(f"  {t.name:24} {t.description or ''}")
        for name in [t.name for t in tools.tools if t.name.endswith("__echo")]:
            result = await client.call_tool(name, {"text": "hello through mcpgw"})
            texts = [c.text for c in result.content if c.type == "text"]
            print(f"{name} -> {texts}")


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1] if len(sys.argv) > 1 else "http://127.0.0.1:1975/mcp"))
