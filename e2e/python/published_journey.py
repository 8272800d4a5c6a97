"""One client journey over the published MCP servers, with the official Python SDK.

Usage: published_journey.py SPEC_JSON

SPEC: {"label", "mode" ("legacy" | "auto"), "via" ("direct" | "gateway"),
"root" (the filesystem server's directory), "sessions": [{"connect": {"url"}
| {"command", "args", "env"}, "servers": [{"name", "kind", "prefix",
"uri_prefix"}]}]}. Directly, each server has its own session (stdio or its
URL); through mcpgw, one session holds them all, their names prefixed
(`everything__echo`) and URIs namespaced (`everything+demo://...`).

Every check records whether it passed and what it saw, with names and URIs
un-prefixed, so the Rust test (`e2e/tests/published_servers.rs`) can require
that whatever passes directly passes through mcpgw, with the same values.
Prints one JSON object: {"checks": {"<server>.<check>": {"ok", "value"}}}.
"""

from __future__ import annotations

import json
import re
import sys
import time
import traceback
from typing import Any, Awaitable, Callable

import anyio
import mcp_types as types
from mcp import StdioServerParameters
from mcp.client.client import Client

STEP_TIMEOUT = 20
WAIT = 5.0


def texts(result: Any) -> list[str]:
    return [c.text for c in result.content if getattr(c, "type", None) == "text"]


def dump(model: Any) -> Any:
    return model.model_dump(mode="json", by_alias=True, exclude_none=True)


def stamp_free(s: str) -> str:
    """Dynamic resources carry the time they were made."""
    return re.sub(r"created at .*$", "created at <time>", s)


class Journey:
    def __init__(self, spec: dict[str, Any]) -> None:
        self.spec = spec
        self.label: str = spec["label"]
        self.via: str = spec["via"]
        self.root: str = spec["root"]
        self.checks: dict[str, dict[str, Any]] = {}
        self.notes: list[dict[str, Any]] = []
        self.logs: list[dict[str, Any]] = []
        self.seen: dict[str, Any] = {}

    # -- the client's side of server requests and notifications -----------------

    async def on_sampling(self, ctx: Any, params: types.CreateMessageRequestParams) -> types.CreateMessageResult:
        self.seen.setdefault("sampling", []).append([dump(m) for m in params.messages])
        return types.CreateMessageResult(
            role="assistant",
            content=types.TextContent(type="text", text=f"sampled by {self.label}"),
            model="journey-model",
            stop_reason="endTurn",
        )

    async def on_elicitation(self, ctx: Any, params: Any) -> types.ElicitResult:
        self.seen.setdefault("elicitation", []).append(params.message)
        return types.ElicitResult(
            action="accept",
            content={"name": self.label, "check": True, "email": "journey@example.com", "integer": 7},
        )

    async def on_roots(self, ctx: Any) -> types.ListRootsResult:
        self.seen["roots_asked"] = self.seen.get("roots_asked", 0) + 1
        return types.ListRootsResult(roots=[types.Root(uri=f"file://{self.root}", name="journey-root")])

    async def on_log(self, params: Any) -> None:
        self.logs.append({"level": params.level, "data": params.data, "at": time.monotonic()})

    async def on_message(self, message: Any) -> None:
        method = getattr(message, "method", None)
        if method:
            params = getattr(message, "params", None)
            self.notes.append(
                {"method": method, "params": dump(params) if params is not None else {}, "at": time.monotonic()}
            )

    async def wait_note(self, pred: Callable[[dict[str, Any]], bool], since: float) -> dict[str, Any] | None:
        deadline = time.monotonic() + WAIT
        while time.monotonic() < deadline:
            for n in self.notes:
                if n["at"] >= since and pred(n):
                    return n
            await anyio.sleep(0.05)
        return None

    async def check(self, name: str, fn: Callable[[], Awaitable[tuple[bool, Any]]]) -> None:
        try:
            with anyio.fail_after(STEP_TIMEOUT):
                ok, value = await fn()
        except BaseException as e:  # noqa: BLE001 - recorded as a failed check
            if isinstance(e, anyio.get_cancelled_exc_class()):
                raise
            ok, value = False, f"{type(e).__name__}: {e}"
        self.checks[name] = {"ok": bool(ok), "value": value}

    # -- a session ---------------------------------------------------------------

    async def run_session(self, session: dict[str, Any]) -> None:
        connect = session["connect"]
        if "url" in connect:
            target: Any = connect["url"]
        else:
            target = StdioServerParameters(
                command=connect["command"], args=connect.get("args", []), env=connect.get("env") or None
            )
        async with Client(
            target,
            mode=self.spec["mode"],
            read_timeout_seconds=STEP_TIMEOUT,
            sampling_callback=self.on_sampling,
            elicitation_callback=self.on_elicitation,
            list_roots_callback=self.on_roots,
            logging_callback=self.on_log,
            message_handler=self.on_message,
        ) as client:
            for server in session["servers"]:
                view = View(self, client, server)
                await view.run()


class View:
    """One server as the client sees it (directly, or inside the gateway's session)."""

    def __init__(self, j: Journey, client: Client, server: dict[str, Any]) -> None:
        self.j = j
        self.c = client
        self.name: str = server["name"]
        self.kind: str = server["kind"]
        self.prefix: str = server["prefix"]
        self.uri_prefix: str = server["uri_prefix"]

    def t(self, name: str) -> str:
        return self.prefix + name

    def u(self, uri: str) -> str:
        return self.uri_prefix + uri

    def strip(self, uri: str) -> str:
        return uri[len(self.uri_prefix) :] if self.uri_prefix and uri.startswith(self.uri_prefix) else uri

    def mine(self, names: list[str]) -> list[str]:
        return sorted(n[len(self.prefix) :] for n in names if n.startswith(self.prefix))

    async def check(self, name: str, fn: Callable[[], Awaitable[tuple[bool, Any]]]) -> None:
        await self.j.check(f"{self.name}.{name}", fn)

    async def call(self, name: str, args: dict[str, Any], **kw: Any) -> Any:
        return await self.c.call_tool(self.t(name), args, **kw)

    def answers(self, tool: str, args: dict[str, Any], want: list[str]) -> Callable[[], Awaitable[tuple[bool, Any]]]:
        """A check: `tool` answers with exactly the texts `want`."""

        async def step() -> tuple[bool, Any]:
            got = texts(await self.call(tool, args))
            return got == want, got

        return step

    def counts(self, args: dict[str, Any]) -> Callable[[], Awaitable[tuple[bool, Any]]]:
        """A check: `count` to 3 sends a progress notification per step, then its result."""

        async def step() -> tuple[bool, Any]:
            steps: list[list[Any]] = []

            async def on_progress(p: float, total: float | None, message: str | None) -> None:
                steps.append([p, total])

            got = texts(await self.call("count", args, progress_callback=on_progress))
            return steps == [[1, 3], [2, 3], [3, 3]] and got == ["counted to 3"], steps

        return step

    async def tools(self) -> tuple[bool, Any]:
        names = self.mine([t.name for t in (await self.c.list_tools()).tools])
        return bool(names), names

    async def run(self) -> None:
        await self.check("tools", self.tools)
        await getattr(self, f"run_{self.kind}")()

    # -- server-everything (stdio and streamable HTTP) ----------------------------

    async def run_everything(self) -> None:
        j = self.j

        async def echo() -> tuple[bool, Any]:
            got = texts(await self.call("echo", {"message": "hello"}))
            return got == ["Echo: hello"], got

        async def image() -> tuple[bool, Any]:
            r = await self.call("get-tiny-image", {})
            kinds = [c.type for c in r.content]
            img = [c for c in r.content if c.type == "image"]
            ok = bool(img) and img[0].mime_type == "image/png" and len(img[0].data) > 100
            return ok, {"kinds": kinds, "mime": img[0].mime_type if img else None}

        async def annotated() -> tuple[bool, Any]:
            r = await self.call("get-annotated-message", {"messageType": "error", "includeImage": True})
            ann = [dump(c.annotations) if c.annotations else None for c in r.content]
            return any(ann), ann

        async def structured() -> tuple[bool, Any]:
            r = await self.call("get-structured-content", {"location": "New York"})
            sc = r.structured_content
            text = texts(r)
            ok = isinstance(sc, dict) and bool(text) and json.loads(text[0]) == sc
            return ok, sc

        async def resource_links() -> tuple[bool, Any]:
            r = await self.call("get-resource-links", {"count": 2})
            links = [c for c in r.content if c.type == "resource_link"]
            out = []
            ok = len(links) == 2
            for link in links:
                contents = (await self.c.read_resource(link.uri)).contents
                back = [self.strip(c.uri) for c in contents]
                ok = ok and back == [self.strip(link.uri)] and link.uri.startswith(self.uri_prefix)
                out.append({"uri": self.strip(link.uri), "name": link.name, "read_back": back})
            return ok, out

        async def embedded() -> tuple[bool, Any]:
            r = await self.call("get-resource-reference", {"resourceType": "Text", "resourceId": 3})
            res = [c.resource for c in r.content if c.type == "resource"]
            if not res:
                return False, None
            again = (await self.c.read_resource(res[0].uri)).contents
            ok = res[0].uri.startswith(self.uri_prefix) and [self.strip(c.uri) for c in again] == [self.strip(res[0].uri)]
            return ok, {"uri": self.strip(res[0].uri), "text": stamp_free(res[0].text)}

        async def progress() -> tuple[bool, Any]:
            steps: list[list[Any]] = []

            async def on_progress(p: float, total: float | None, message: str | None) -> None:
                steps.append([p, total])

            r = await self.call(
                "trigger-long-running-operation", {"duration": 0.6, "steps": 3}, progress_callback=on_progress
            )
            ok = steps == [[1, 3], [2, 3], [3, 3]] and bool(texts(r))
            return ok, {"progress": steps, "text": texts(r)}

        async def sampling() -> tuple[bool, Any]:
            r = await self.call("trigger-sampling-request", {"prompt": "Say hi", "maxTokens": 20})
            text = "\n".join(texts(r))
            asked = j.seen.get("sampling", [])
            ok = f"sampled by {j.label}" in text and bool(asked) and "Say hi" in json.dumps(asked[-1])
            return ok, f"sampled by {j.label}" in text

        async def elicitation() -> tuple[bool, Any]:
            r = await self.call("trigger-elicitation-request", {})
            text = texts(r)
            ok = any(f"- Name: {j.label}" in t for t in text)
            return ok, text[:2]

        async def roots() -> tuple[bool, Any]:
            text = "\n".join(texts(await self.call("get-roots-list", {})))
            return f"file://{j.root}" in text, f"file://{j.root}" in text

        async def resources() -> tuple[bool, Any]:
            uris = sorted(
                self.strip(r.uri) for r in (await self.c.list_resources()).resources if r.uri.startswith(self.uri_prefix)
            )
            doc = self.u("demo://resource/static/document/features.md")
            contents = (await self.c.read_resource(doc)).contents
            ok = doc[len(self.uri_prefix) :] in uris and "Everything Server" in contents[0].text
            return ok, {"uris": uris, "read": [self.strip(c.uri) for c in contents]}

        async def templates() -> tuple[bool, Any]:
            ts = sorted(
                self.strip(t.uri_template)
                for t in (await self.c.list_resource_templates()).resource_templates
                if t.uri_template.startswith(self.uri_prefix)
            )
            contents = (await self.c.read_resource(self.u("demo://resource/dynamic/text/7"))).contents
            ok = "demo://resource/dynamic/text/{resourceId}" in ts and contents[0].text.startswith("Resource 7:")
            return ok, {"templates": ts, "read": stamp_free(contents[0].text), "uri": self.strip(contents[0].uri)}

        async def prompts() -> tuple[bool, Any]:
            names = self.mine([p.name for p in (await self.c.list_prompts()).prompts])
            gp = await self.c.get_prompt(self.t("args-prompt"), {"city": "Paris", "state": "Texas"})
            msgs = [dump(m) for m in gp.messages]
            rp = await self.c.get_prompt(self.t("resource-prompt"), {"resourceType": "Text", "resourceId": "2"})
            embedded = [m.content.resource.uri for m in rp.messages if getattr(m.content, "type", None) == "resource"]
            read_back = [self.strip(c.uri) for c in (await self.c.read_resource(embedded[0])).contents] if embedded else []
            ok = "args-prompt" in names and "Paris" in json.dumps(msgs) and read_back == [self.strip(embedded[0])]
            return ok, {"names": names, "args": msgs, "embedded": [self.strip(u) for u in embedded]}

        async def completion() -> tuple[bool, Any]:
            ref = types.PromptReference(type="ref/prompt", name=self.t("completable-prompt"))
            dept = (await self.c.complete(ref, {"name": "department", "value": "Eng"})).completion.values
            who = (
                await self.c.complete(ref, {"name": "name", "value": "A"}, context_arguments={"department": "Engineering"})
            ).completion.values
            tref = types.ResourceTemplateReference(
                type="ref/resource", uri=self.u("demo://resource/dynamic/text/{resourceId}")
            )
            rid = (await self.c.complete(tref, {"name": "resourceId", "value": "3"})).completion.values
            return dept == ["Engineering"] and who == ["Alice"] and rid == ["3"], [dept, who, rid]

        async def logging() -> tuple[bool, Any]:
            await self.c.set_logging_level("debug")
            since = time.monotonic()
            await self.call("toggle-simulated-logging", {})
            try:
                deadline = time.monotonic() + WAIT
                got = []
                while time.monotonic() < deadline and not got:
                    got = [entry for entry in j.logs if entry["at"] >= since and "message" in str(entry["data"])]
                    await anyio.sleep(0.05)
            finally:
                await self.call("toggle-simulated-logging", {})
            return bool(got), bool(got)

        async def subscriptions() -> tuple[bool, Any]:
            uri = self.u("demo://resource/dynamic/text/1")
            await self.c.subscribe_resource(uri)
            since = time.monotonic()
            await self.call("toggle-subscriber-updates", {})
            try:
                n = await j.wait_note(
                    lambda n: n["method"] == "notifications/resources/updated" and n["params"].get("uri") == uri, since
                )
            finally:
                await self.call("toggle-subscriber-updates", {})
                await self.c.unsubscribe_resource(uri)
            return n is not None, self.strip(n["params"]["uri"]) if n else None

        async def list_changed() -> tuple[bool, Any]:
            since = time.monotonic()
            r = await self.call(
                "gzip-file-as-resource",
                {"name": f"{j.label}.gz", "data": "data:text/plain;base64,aGVsbG8gam91cm5leQ==", "outputType": "resourceLink"},
            )
            links = [c for c in r.content if c.type == "resource_link"]
            n = await j.wait_note(lambda n: n["method"] == "notifications/resources/list_changed", since)
            back = (await self.c.read_resource(links[0].uri)).contents if links else []
            ok = n is not None and bool(back) and getattr(back[0], "mime_type", None) == "application/gzip"
            return ok, {"notified": n is not None, "link": [self.strip(x.uri) for x in links]}

        async def cancel() -> tuple[bool, Any]:
            outcome: dict[str, Any] = {}
            first = anyio.Event()

            async def on_progress(p: float, total: float | None, message: str | None) -> None:
                first.set()

            async def long_call() -> None:
                try:
                    await self.call(
                        "trigger-long-running-operation", {"duration": 3, "steps": 6}, progress_callback=on_progress
                    )
                    outcome["result"] = True
                except anyio.get_cancelled_exc_class():
                    outcome["cancelled"] = True
                    raise

            async with anyio.create_task_group() as tg:
                tg.start_soon(long_call)
                with anyio.fail_after(10):
                    await first.wait()
                tg.cancel_scope.cancel()
            after = texts(await self.call("echo", {"message": "after cancel"}))
            ok = outcome.get("cancelled") is True and after == ["Echo: after cancel"]
            return ok, {"outcome": sorted(outcome), "after": after}

        for name, fn in [
            ("echo", echo),
            ("image", image),
            ("annotated", annotated),
            ("structured", structured),
            ("resource_links", resource_links),
            ("embedded_resource", embedded),
            ("progress", progress),
            ("sampling", sampling),
            ("elicitation", elicitation),
            ("roots", roots),
            ("resources", resources),
            ("templates", templates),
            ("prompts", prompts),
            ("completion", completion),
            ("logging", logging),
            ("subscriptions", subscriptions),
            ("list_changed", list_changed),
            ("cancel", cancel),
        ]:
            await self.check(name, fn)

    # -- server-memory --------------------------------------------------------------

    async def run_memory(self) -> None:
        me = f"{self.j.label}-alice"
        friend = f"{self.j.label}-bob"

        async def graph() -> tuple[bool, Any]:
            await self.call(
                "create_entities",
                {
                    "entities": [
                        {"name": me, "entityType": "person", "observations": ["likes tea"]},
                        {"name": friend, "entityType": "person", "observations": []},
                    ]
                },
            )
            await self.call("create_relations", {"relations": [{"from": me, "to": friend, "relationType": "knows"}]})
            await self.call("add_observations", {"observations": [{"entityName": me, "contents": ["reads books"]}]})
            g = json.loads(texts(await self.call("read_graph", {}))[0])
            ents = sorted(
                ([e["name"], sorted(e["observations"])] for e in g["entities"] if e["name"] in (me, friend)),
                key=lambda e: e[0],
            )
            rels = [[r["from"], r["relationType"], r["to"]] for r in g["relations"] if r["from"] == me]
            found = json.loads(texts(await self.call("search_nodes", {"query": "reads books"}))[0])
            hit = [e["name"] for e in found["entities"] if e["name"] == me]
            ok = ents == [[me, ["likes tea", "reads books"]], [friend, []]] and rels == [[me, "knows", friend]] and hit
            return ok, {"entities": ents, "relations": rels, "search": hit}

        await self.check("graph", graph)

    # -- server-filesystem ----------------------------------------------------------

    async def run_filesystem(self) -> None:
        j = self.j
        fname = f"{j.label}-{j.via}.txt"
        path = f"{j.root}/{fname}"
        content = f"hello from {j.label}"

        async def allowed() -> tuple[bool, Any]:
            text = "\n".join(texts(await self.call("list_allowed_directories", {})))
            return j.root in text, j.root in text

        async def write_read() -> tuple[bool, Any]:
            await self.call("write_file", {"path": path, "content": content})
            got = texts(await self.call("read_text_file", {"path": path}))
            listing = "\n".join(texts(await self.call("list_directory", {"path": j.root})))
            info = "\n".join(texts(await self.call("get_file_info", {"path": path})))
            ok = got == [content] and f"[FILE] {fname}" in listing and "size: " in info
            return ok, {"read": got, "listed": f"[FILE] {fname}" in listing}

        async def outside() -> tuple[bool, Any]:
            # Access outside the allowed directory is refused the same way.
            r = await self.call("read_text_file", {"path": "/etc/hostname"})
            return bool(r.is_error), bool(r.is_error)

        for name, fn in [("allowed", allowed), ("write_read", write_read), ("outside", outside)]:
            await self.check(name, fn)

    # -- mcp-server-time (Python SDK) -------------------------------------------------

    async def run_time(self) -> None:
        async def now() -> tuple[bool, Any]:
            r = json.loads(texts(await self.call("get_current_time", {"timezone": "UTC"}))[0])
            return r.get("timezone") == "UTC", {"timezone": r.get("timezone"), "is_dst": r.get("is_dst")}

        async def convert() -> tuple[bool, Any]:
            r = json.loads(
                texts(
                    await self.call(
                        "convert_time", {"source_timezone": "UTC", "time": "12:00", "target_timezone": "Asia/Tokyo"}
                    )
                )[0]
            )
            return r["target"]["datetime"][11:16] == "21:00", r["time_difference"]

        async def bad_zone() -> tuple[bool, Any]:
            r = await self.call("get_current_time", {"timezone": "Mars/Olympus"})
            return bool(r.is_error), texts(r)

        for name, fn in [("now", now), ("convert", convert), ("bad_zone", bad_zone)]:
            await self.check(name, fn)


    # -- e2e/python/features_server.py (Python SDK: progress, sampling, ...) --------

    async def run_pyfeatures(self) -> None:
        j = self.j

        async def logging() -> tuple[bool, Any]:
            since = time.monotonic()
            r = texts(await self.call("log", {}))
            deadline = time.monotonic() + WAIT
            got: list[Any] = []
            while time.monotonic() < deadline and not got:
                got = [e["data"] for e in j.logs if e["at"] >= since and e["data"] == "hello from the python server"]
                await anyio.sleep(0.05)
            return bool(got) and r == ["logged"], got[:1]

        for name, fn in [
            ("progress", self.counts({"n": 3})),
            ("sampling", self.answers("ask_llm", {"prompt": "Say hi"}, [f"sampled by {j.label}"])),
            ("elicitation", self.answers("whoami", {}, [f"accept: {j.label}"])),
            ("roots", self.answers("roots", {}, [f"file://{j.root}"])),
            ("logging", logging),
        ]:
            await self.check(name, fn)


    # -- the rmcp test server (e2e/src/bin/mcp-stdio-server.rs) ----------------------

    async def run_rmcp(self) -> None:
        j = self.j
        for name, fn in [
            ("echo", self.answers("echo", {"text": "hi"}, ["stdio: hi"])),
            ("progress", self.counts({"n": 3, "delay_ms": 20})),
            ("sampling", self.answers("sample", {"text": "Say hi"}, [f"sampled by {j.label}"])),
            ("roots", self.answers("roots", {}, [f"file://{j.root}"])),
        ]:
            await self.check(name, fn)


async def main(spec: dict[str, Any], out: dict[str, Any]) -> None:
    j = Journey(spec)
    out["checks"] = j.checks
    for session in spec["sessions"]:
        try:
            await j.run_session(session)
        except BaseException as e:  # noqa: BLE001 - a session that cannot even start
            if isinstance(e, anyio.get_cancelled_exc_class()):
                raise
            names = ",".join(s["name"] for s in session["servers"])
            j.checks[f"{names}.session"] = {"ok": False, "value": traceback.format_exc()[-2000:]}


def run(spec_text: str) -> int:
    out: dict[str, Any] = {}
    code = 0
    try:
        anyio.run(main, json.loads(spec_text), out)
    except BaseException:  # noqa: BLE001 - reported in the summary
        out["fatal"] = traceback.format_exc()
        code = 1
    print(json.dumps(out))
    return code


if __name__ == "__main__":
    sys.exit(run(sys.argv[1]))
