"""A full multiplexed session through mcpgw with the official Python SDK (legacy mode).

Usage: full_session.py URL

The gateway fronts the conformance fixture (`fixture__*`, `fixture+test://...`)
and the `alpha` test backend (`alpha__*`). In one session this client lists and
calls tools with progress, reads a namespaced resource and a template
resource, gets a prompt, completes prompt and template arguments, answers a
sampling and an elicitation request raised by the fixture during a tool call,
receives a log message and answers a `roots/list` request that alpha sends on
the session's standalone GET stream (outside any call: with the dynamic module
that stream merges both backends'; the proxy-wasm build answers its GET with
405 and the messages stay with alpha), cancels a long call, resumes a cut SSE stream with `Last-Event-ID`, and ends
the session with DELETE. Every HTTP exchange is recorded by a wrapping httpx2
transport (method, JSON-RPC method and id, status, the SSE events of the
answer and how its body ended). Prints one JSON object, also when a step
fails (`fatal`); the Rust test (`e2e/tests/official_clients.rs`) asserts on
it.
"""

from __future__ import annotations

import codecs
import json
import sys
import time
import traceback
from typing import Any

import anyio
import httpx2
import mcp_types as types
from mcp.client.client import Client
from mcp.client.streamable_http import streamable_http_client
from mcp.shared.exceptions import MCPError

SAMPLING_PROMPT = "What is the capital of France?"
SAMPLING_ANSWER = "Paris, from the python client"
ELICITATION_MESSAGE = "Please identify yourself (python)"
ELICITATION_CONTENT = {"username": "py-user", "email": "py@example.com"}
ANNOUNCEMENT = "hello from alpha (python)"
ROOT = "file:///python-client"


def texts(result: Any) -> list[str]:
    return [c.text for c in result.content if getattr(c, "type", None) == "text"]


def dump(model: Any) -> Any:
    return model.model_dump(mode="json", by_alias=True, exclude_none=True)


class Recorded(httpx2.AsyncByteStream):
    """A response body that records how and when it ended, and its SSE events."""

    def __init__(self, inner: httpx2.AsyncByteStream, entry: dict[str, Any], wire: Wire) -> None:
        self._inner = inner
        self._entry = entry
        self._wire = wire
        self._buffer = ""
        self._decoder = codecs.getincrementaldecoder("utf-8")("replace")

    async def __aiter__(self) -> Any:
        async for chunk in self._inner:
            if self._entry.get("content_type") == "text/event-stream":
                self._buffer += self._decoder.decode(chunk).replace("\r\n", "\n")
                while "\n\n" in self._buffer:
                    event, self._buffer = self._buffer.split("\n\n", 1)
                    self._entry["events"].append(summarize_event(event))
            yield chunk
        self._entry.setdefault("end", {"how": "eof", "at": self._wire.now()})

    async def aclose(self) -> None:
        self._entry.setdefault("end", {"how": "closed", "at": self._wire.now()})
        await self._inner.aclose()


def summarize_event(event: str) -> dict[str, Any]:
    """One SSE event: whether it has an id, and which JSON-RPC message it carries."""
    lines = event.replace("\r\n", "\n").split("\n")
    data = "\n".join(line[5:].lstrip(" ") if line.startswith("data:") else "" for line in lines if line.startswith("data:"))
    out: dict[str, Any] = {"has_id": any(line.startswith("id:") for line in lines)}
    try:
        msg = json.loads(data) if data.strip() else None
    except ValueError:
        msg = None
    if isinstance(msg, dict):
        out["rpc"] = msg.get("method") or ("response" if "result" in msg else "error")
        out["id"] = msg.get("id")
    return out


class Wire(httpx2.AsyncBaseTransport):
    """Every HTTP exchange of the session, as this client sent and received it."""

    def __init__(self) -> None:
        self._inner = httpx2.AsyncHTTPTransport()
        self._started = time.monotonic()
        self.entries: list[dict[str, Any]] = []
        self.session_ids: list[str] = []

    def now(self) -> float:
        return round(time.monotonic() - self._started, 3)

    async def wait_for(self, predicate: Any, timeout: float = 10) -> dict[str, Any]:
        """The first exchange matching `predicate`, once there is one."""
        with anyio.fail_after(timeout):
            while True:
                for e in self.entries:
                    if predicate(e):
                        return e
                await anyio.sleep(0.01)

    def entries_named(self, name: str) -> list[dict[str, Any]]:
        return [e for e in self.entries if e.get("rpc") == "tools/call" and e.get("name") == name]

    async def handle_async_request(self, request: httpx2.Request) -> httpx2.Response:
        entry: dict[str, Any] = {
            "method": request.method,
            "last_event_id": request.headers.get("last-event-id"),
            "has_session": "mcp-session-id" in request.headers,
            "version": request.headers.get("mcp-protocol-version"),
            "mcp_method": request.headers.get("mcp-method"),
            "mcp_name": request.headers.get("mcp-name"),
            "at": self.now(),
            "events": [],
        }
        if request.method == "POST":
            try:
                body = json.loads(request.content)
            except ValueError:
                body = {}
            if "method" in body:
                entry["rpc"] = body["method"]
            elif "result" in body or "error" in body:
                entry["rpc"] = "response" if "result" in body else "error"
            entry["id"] = body.get("id")
            params = body.get("params") or {}
            if "name" in params:
                entry["name"] = params["name"]
            if body.get("method") == "notifications/cancelled":
                entry["cancelled_id"] = params.get("requestId")
            token = (params.get("_meta") or {}).get("progressToken")
            if token is not None:
                entry["progress_token"] = token
        self.entries.append(entry)
        response = await self._inner.handle_async_request(request)
        entry["status"] = response.status_code
        entry["content_type"] = response.headers.get("content-type", "").split(";")[0].strip()
        sid = response.headers.get("mcp-session-id")
        if sid and sid not in self.session_ids:
            self.session_ids.append(sid)
        assert isinstance(response.stream, httpx2.AsyncByteStream)
        response.stream = Recorded(response.stream, entry, self)
        return response

    async def aclose(self) -> None:
        await self._inner.aclose()


async def main(url: str, out: dict[str, Any], wire: Wire) -> None:
    seen: dict[str, Any] = {}

    async def on_sampling(ctx: Any, params: types.CreateMessageRequestParams) -> types.CreateMessageResult:
        seen["sampling"] = {
            "request_id": ctx.request_id,
            "messages": [dump(m) for m in params.messages],
            "max_tokens": params.max_tokens,
        }
        return types.CreateMessageResult(
            role="assistant",
            content=types.TextContent(type="text", text=SAMPLING_ANSWER),
            model="python-test-model",
            stop_reason="endTurn",
        )

    async def on_elicitation(ctx: Any, params: Any) -> types.ElicitResult:
        seen["elicitation"] = {
            "request_id": ctx.request_id,
            "mode": getattr(params, "mode", None),
            "message": params.message,
            "requested_schema": getattr(params, "requested_schema", None),
        }
        return types.ElicitResult(action="accept", content=dict(ELICITATION_CONTENT))

    async def on_roots(ctx: Any) -> types.ListRootsResult:
        seen["roots_request_id"] = ctx.request_id
        return types.ListRootsResult(roots=[types.Root(uri=ROOT, name="python client")])

    async def on_log(params: types.LoggingMessageNotificationParams) -> None:
        seen.setdefault("logs", []).append({"level": params.level, "logger": params.logger, "data": params.data})

    async with httpx2.AsyncClient(transport=wire, timeout=httpx2.Timeout(30, read=60)) as http:
        transport = streamable_http_client(url, http_client=http)
        async with Client(
            transport,
            mode="legacy",
            read_timeout_seconds=30,
            sampling_callback=on_sampling,
            elicitation_callback=on_elicitation,
            list_roots_callback=on_roots,
            logging_callback=on_log,
        ) as client:
            out["protocol_version"] = client.protocol_version
            out["server_name"] = client.server_info.name if client.server_info else None
            out["capabilities"] = sorted(k for k, v in dump(client.server_capabilities).items() if v is not None)

            # Lists (merged, namespaced).
            out["tools"] = sorted(t.name for t in (await client.list_tools()).tools)
            out["prompts"] = sorted(p.name for p in (await client.list_prompts()).prompts)
            out["resources"] = sorted(r.uri for r in (await client.list_resources()).resources)
            out["templates"] = sorted(
                t.uri_template for t in (await client.list_resource_templates()).resource_templates
            )

            # Tools with progress, on both backends.
            for name, args in [
                ("alpha__count", {"n": 5, "delay_ms": 30}),
                ("fixture__test_tool_with_progress", {}),
            ]:
                progress: list[list[Any]] = []

                async def on_progress(
                    p: float, total: float | None, message: str | None, sink: list[list[Any]] = progress
                ) -> None:
                    sink.append([p, total, message])

                r = await client.call_tool(name, args, progress_callback=on_progress)
                sent = [e for e in wire.entries if e.get("rpc") == "tools/call" and e.get("name") == name]
                out[name] = {
                    "text": texts(r),
                    "is_error": bool(r.is_error),
                    "progress": progress,
                    "sent_token": sent[-1].get("progress_token") if sent else None,
                }
            out["alpha__echo"] = texts(await client.call_tool("alpha__echo", {"text": "py"}))

            # Resources: a static one and one from the template, both namespaced.
            reads = {}
            for uri in ["fixture+test://static-text", "fixture+test://template/42/data"]:
                reads[uri] = [dump(c) for c in (await client.read_resource(uri)).contents]
            out["reads"] = reads

            # A prompt with arguments.
            gp = await client.get_prompt("fixture__test_prompt_with_arguments", {"arg1": "hello", "arg2": "world"})
            out["prompt"] = [dump(m) for m in gp.messages]

            # Completions: a prompt argument and a template argument.
            c1 = await client.complete(
                types.PromptReference(type="ref/prompt", name="fixture__test_prompt_with_arguments"),
                {"name": "arg1", "value": "par"},
            )
            c2 = await client.complete(
                types.ResourceTemplateReference(type="ref/resource", uri="fixture+test://template/{id}/data"),
                {"name": "id", "value": "1"},
            )
            out["completions"] = {"prompt": c1.completion.values, "template": c2.completion.values}

            # Sampling and elicitation raised by the fixture during a tool call;
            # the answers are POSTed back with the gateway's request ids.
            r = await client.call_tool("fixture__test_sampling", {"prompt": SAMPLING_PROMPT})
            out["sampling"] = {"text": texts(r), "is_error": bool(r.is_error), "seen": seen.get("sampling")}
            r = await client.call_tool("fixture__test_elicitation", {"message": ELICITATION_MESSAGE})
            out["elicitation"] = {"text": texts(r), "is_error": bool(r.is_error), "seen": seen.get("elicitation")}
            answers = []
            for e in wire.entries:
                if e.get("rpc") in ("response", "error"):
                    done = await wire.wait_for(lambda x, e=e: x is e and "status" in x)
                    answers.append({"rpc": done["rpc"], "id": done["id"], "status": done["status"]})
            out["answers_posted"] = answers

            # alpha pushes a log message and a roots/list request on the
            # session's standalone stream, outside any call.
            r = await client.call_tool("alpha__announce", {"text": ANNOUNCEMENT})
            announce: dict[str, Any] = {"text": texts(r)}
            standalone = any(e["method"] == "GET" and not e.get("last_event_id") and e.get("status") == 200 for e in wire.entries)
            try:
                # Without a standalone stream the messages cannot arrive.
                with anyio.fail_after(10 if standalone else 0.5):
                    while not any(lg["data"] == ANNOUNCEMENT for lg in seen.get("logs", [])):
                        await anyio.sleep(0.02)
                    roots = ["none"]
                    while roots == ["none"]:
                        roots = texts(await client.call_tool("alpha__roots", {}))
                        if roots == ["none"]:
                            await anyio.sleep(0.1)
                announce["roots"] = roots
            except TimeoutError:
                announce["timeout"] = standalone
            announce["logs"] = [lg for lg in seen.get("logs", []) if lg["data"] == ANNOUNCEMENT]
            announce["roots_request_id"] = seen.get("roots_request_id")
            announce["get_events"] = [
                ev for e in wire.entries if e["method"] == "GET" and not e.get("last_event_id") for ev in e["events"]
            ]
            out["announce"] = announce

            # Cancel a long call: in legacy mode the SDK POSTs notifications/cancelled.
            cancel: dict[str, Any] = {"result": None, "outcome": None}

            async def long_call() -> None:
                try:
                    res = await client.call_tool("alpha__sleep", {"ms": 20000})
                    cancel["result"] = texts(res)
                    cancel["outcome"] = "result"
                except MCPError as e:
                    cancel["result"] = {"error": e.code, "message": str(e)}
                    cancel["outcome"] = "error"
                except anyio.get_cancelled_exc_class():
                    cancel["outcome"] = "cancelled"
                    raise

            with anyio.fail_after(15):
                async with anyio.create_task_group() as tg:
                    tg.start_soon(long_call)
                    sleep_call = await wire.wait_for(
                        lambda e: e.get("name") == "alpha__sleep" and "status" in e
                    )
                    await anyio.sleep(0.3)
                    cancel["at"] = wire.now()
                    tg.cancel_scope.cancel()
                # The notice goes out from a shielded task: wait for its answer.
                await wire.wait_for(lambda e: e.get("rpc") == "notifications/cancelled" and "status" in e)
                # The backend stops the tool and drops its answer; its stream ends.
                await wire.wait_for(lambda e: e is sleep_call and "end" in e)
            cancel["sleep_request_id"] = sleep_call["id"]
            cancel["sleep_status"] = sleep_call["status"]
            cancel["sleep_stream_end"] = sleep_call["end"]
            cancel["sleep_stream_events"] = sleep_call["events"]
            cancel["notifications"] = [
                {"request_id": e.get("cancelled_id"), "status": e.get("status")}
                for e in wire.entries
                if e.get("rpc") == "notifications/cancelled"
            ]
            # The session still works afterwards.
            cancel["after"] = texts(await client.call_tool("alpha__echo", {"text": "after cancel"}))
            out["cancel"] = cancel

            # The fixture cuts this call's SSE stream after its priming event;
            # the SDK resumes it with GET + Last-Event-ID.
            started = time.monotonic()
            try:
                r = await client.call_tool("fixture__test_reconnection", {}, read_timeout_seconds=15)
                result: dict[str, Any] = {"text": texts(r), "is_error": bool(r.is_error)}
            except MCPError as e:
                result = {"error": e.code, "message": str(e)}
            call = wire.entries_named("fixture__test_reconnection")[-1]
            out["reconnection"] = {
                **result,
                "elapsed_s": round(time.monotonic() - started, 3),
                "request_id": call["id"],
                "post_events": call["events"],
                "post_end": call.get("end", {}).get("how"),
                "resume_gets": [
                    {"status": e.get("status"), "content_type": e.get("content_type"), "events": e["events"]}
                    for e in wire.entries
                    if e["method"] == "GET" and e.get("last_event_id")
                ],
            }
            out["plain_gets"] = sorted(
                {e.get("status") for e in wire.entries if e["method"] == "GET" and not e.get("last_event_id")}, key=str
            )
            out["after_resume"] = texts(await client.call_tool("alpha__echo", {"text": "after resume"}))

        # Leaving the client sent DELETE: the session id must be dead.
        out["session_ids"] = len(wire.session_ids)
        out["deletes"] = [e.get("status") for e in wire.entries if e["method"] == "DELETE"]
        if wire.session_ids:
            r = await http.post(
                url,
                headers={
                    "content-type": "application/json",
                    "accept": "application/json, text/event-stream",
                    "mcp-session-id": wire.session_ids[0],
                    "mcp-protocol-version": out["protocol_version"] or "2025-11-25",
                },
                content=json.dumps({"jsonrpc": "2.0", "id": 99, "method": "tools/list"}),
            )
            out["after_delete_status"] = r.status_code


def run(url: str) -> int:
    """Run the session; always print what was seen (a failed step as `fatal`)."""
    out: dict[str, Any] = {}
    wire = Wire()
    code = 0
    try:
        anyio.run(main, url, out, wire)
    except BaseException:  # noqa: BLE001 - reported in the summary
        out["fatal"] = traceback.format_exc()
        code = 1
    out["wire"] = wire.entries
    print(json.dumps(out))
    return code


if __name__ == "__main__":
    sys.exit(run(sys.argv[1]))
