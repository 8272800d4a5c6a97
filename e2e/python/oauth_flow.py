"""One complete OAuth flow with the official Python SDK's OAuth client, through mcpgw.

Usage: oauth_flow.py URL

The SDK's `OAuthClientProvider` does everything from the gateway's 401 on:
protected-resource metadata (RFC 9728), authorization server metadata
(RFC 8414), dynamic client registration (RFC 7591), authorization code with
PKCE (RFC 7636) and the resource indicator (RFC 8707). The "browser" is the
redirect handler here: it GETs the authorization URL without following
redirects and hands the code, state and iss from the Location header to the
callback handler.

Prints one JSON object: every HTTP exchange in order (`wire`), the tokens
the SDK stored, the registration it got, and the MCP results. The Rust e2e
test asserts on it.
"""

import asyncio
import json
import sys
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx2
from mcp.client.auth import AuthorizationCodeResult, OAuthClientProvider
from mcp.client.client import Client
from mcp.client.streamable_http import streamable_http_client
from mcp.shared.auth import OAuthClientInformationFull, OAuthClientMetadata, OAuthToken

REDIRECT_URI = "http://127.0.0.1:33418/callback"


class MemoryStorage:
    """`TokenStorage` in memory; what it holds is reported at the end."""

    def __init__(self) -> None:
        self.tokens: OAuthToken | None = None
        self.client_info: OAuthClientInformationFull | None = None

    async def get_tokens(self) -> OAuthToken | None:
        return self.tokens

    async def set_tokens(self, tokens: OAuthToken) -> None:
        self.tokens = tokens

    async def get_client_info(self) -> OAuthClientInformationFull | None:
        return self.client_info

    async def set_client_info(self, client_info: OAuthClientInformationFull) -> None:
        self.client_info = client_info


def exchange(response: httpx2.Response, by: str) -> dict[str, Any]:
    req = response.request
    auth = req.headers.get("authorization", "")
    return {
        "by": by,
        "method": req.method,
        "url": str(req.url.copy_with(query=None)),
        "query": sorted(parse_qs(req.url.query.decode()).keys()) if req.url.query else [],
        "bearer": auth[7:] if auth.lower().startswith("bearer ") else None,
        "status": response.status_code,
        "www_authenticate": response.headers.get("www-authenticate"),
        "location": response.headers.get("location"),
        "content_type": response.headers.get("content-type"),
    }


async def main(url: str) -> dict[str, Any]:
    out: dict[str, Any] = {}
    wire: list[dict[str, Any]] = []
    storage = MemoryStorage()
    pending: list[AuthorizationCodeResult] = []

    async def on_response(response: httpx2.Response) -> None:
        wire.append(exchange(response, "sdk"))

    async with httpx2.AsyncClient(timeout=httpx2.Timeout(15), follow_redirects=False) as browser:

        async def redirect_handler(authorization_url: str) -> None:
            """The user's browser: the authorization server approves at once and redirects."""
            r = await browser.get(authorization_url)
            wire.append(exchange(r, "browser"))
            out["authorization_request"] = {k: v[0] for k, v in parse_qs(urlsplit(authorization_url).query).items()}
            if r.status_code not in (302, 303):
                raise RuntimeError(f"authorization endpoint answered {r.status_code}: {r.text}")
            back = parse_qs(urlsplit(r.headers["location"]).query)
            if "error" in back:
                raise RuntimeError(f"authorization refused: {back}")
            out["authorization_response"] = sorted(back.keys())
            pending.append(
                AuthorizationCodeResult(
                    code=back["code"][0],
                    state=back.get("state", [None])[0],
                    iss=back.get("iss", [None])[0],
                )
            )

        async def callback_handler() -> AuthorizationCodeResult:
            """The redirect URI's listener: what the browser brought back."""
            return pending.pop()

        provider = OAuthClientProvider(
            server_url=url,
            client_metadata=OAuthClientMetadata(
                client_name="mcpgw e2e",
                redirect_uris=[REDIRECT_URI],
                token_endpoint_auth_method="none",
            ),
            storage=storage,
            redirect_handler=redirect_handler,
            callback_handler=callback_handler,
        )
        async with httpx2.AsyncClient(
            auth=provider,
            timeout=httpx2.Timeout(30, read=60),
            event_hooks={"response": [on_response]},
        ) as http:
            transport = streamable_http_client(url, http_client=http)
            async with Client(transport, mode="legacy", read_timeout_seconds=30) as client:
                out["protocol_version"] = client.session.protocol_version
                info = client.session.server_info
                out["server_name"] = info.name if info else None
                tools = await client.list_tools()
                out["tools"] = sorted(t.name for t in tools.tools)
                r = await client.call_tool("alpha__echo", {"text": "through OAuth"})
                # exclude_unset: the fields the answer carried, not the model's defaults.
                out["echo"] = r.model_dump(mode="json", by_alias=True, exclude_unset=True)

    ctx = provider.context
    out["wire"] = wire
    out["tokens"] = storage.tokens.model_dump(mode="json", exclude_none=True) if storage.tokens else None
    out["client_info"] = (
        storage.client_info.model_dump(mode="json", exclude_none=True) if storage.client_info else None
    )
    out["protected_resource_metadata"] = (
        ctx.protected_resource_metadata.model_dump(mode="json", exclude_none=True)
        if ctx.protected_resource_metadata
        else None
    )
    out["auth_server_url"] = ctx.auth_server_url
    out["resource_param"] = ctx.get_resource_url()
    return out


if __name__ == "__main__":
    result = asyncio.run(asyncio.wait_for(main(sys.argv[1]), timeout=90))
    print(json.dumps(result))
