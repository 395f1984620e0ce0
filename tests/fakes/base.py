"""Shared machinery for the fake model providers: server lifecycle, faults, recording, replies."""

from __future__ import annotations

import array
import asyncio
import contextlib
import dataclasses
import hashlib
import math
import os
import re
import string
import sys
from collections import deque
from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar, Literal, Self

import orjson
from aiohttp import web

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
FaultKind = Literal[
    "status", "hang", "stall", "reset", "malformed", "no_usage", "garbage_stream", "no_end"
]
SSE_CONTENT_TYPE = "text/event-stream; charset=utf-8"
_ID_TABLE = ((string.ascii_letters + string.digits) * 5)[:256].encode()  # byte -> alnum


@dataclass
class Fault:
    """A fault to inject into the next request(s) a fake receives."""

    kind: FaultKind
    status: int = 500  # kind="status"
    retry_after: str | None = None  # kind="status": Retry-After header
    message: str = "injected fault"
    after_chunks: int = 1  # stall/reset/garbage_stream: SSE events sent before the fault
    seconds: float = 30.0  # hang: delay before headers; stall: delay mid-stream
    times: int = 1  # number of requests it applies to


class Headers(dict[str, str]):
    """Header dict with lower-cased keys that also answers mixed-case lookups."""

    def __getitem__(self, key: str) -> str:
        return super().__getitem__(key.lower())

    def __contains__(self, key: object) -> bool:
        return isinstance(key, str) and super().__contains__(key.lower())

    def get(self, key: str, default: Any = None) -> Any:  # type: ignore[override]
        return super().get(key.lower(), default)


@dataclass
class RecordedRequest:
    method: str
    path: str
    query: dict[str, str]
    headers: dict[str, str]  # a Headers: keys lower-cased, lookups case-insensitive
    body: Any  # parsed JSON, or None


BODY: web.RequestKey[Any] = web.RequestKey("body")  # the parsed JSON body (None if absent)
FAULT: web.RequestKey[Fault | None] = web.RequestKey("fault")  # the fault this request drew


def rand_id(n: int) -> str:
    """n random alphanumerics (cheap: the benchmark calls this per request)."""
    return os.urandom(n).translate(_ID_TABLE).decode()


def json_response(
    obj: Any, status: int = 200, headers: dict[str, str] | None = None
) -> web.Response:
    return web.Response(
        body=orjson.dumps(obj), status=status, headers=headers, content_type="application/json"
    )


def sse(obj: Any, event: str | None = None) -> bytes:
    """One SSE frame: optional `event:` line, then `data: <json>`."""
    data = b"data: " + orjson.dumps(obj) + b"\n\n"
    return b"event: " + event.encode() + b"\n" + data if event else data


def sse_raw(payload: str) -> bytes:
    return f"data: {payload}\n\n".encode()


# --- deterministic replies ---------------------------------------------------------------------

_PIECE = re.compile(r"\s*\S+(?:\s+$)?|\s+$")
ARG_FRAGMENT = 8  # characters per streamed tool-argument fragment


def split_pieces(text: str) -> list[str]:
    """Words with their leading whitespace attached; "".join(pieces) == text."""
    return _PIECE.findall(text)


def count_words(texts: Iterable[str]) -> int:
    return sum(len(t.split()) for t in texts)


@dataclass(slots=True)
class Prompt:
    """A request reduced to what the deterministic reply depends on."""

    texts: list[str]  # every message text: system, user, assistant, tool results
    last_user_text: str = ""
    last_is_user: bool = True  # last message is a user message without a tool result
    tool_result: str | None = None  # text of the tool result(s) in the last message
    tools: list[str] = field(default_factory=list)
    forced_tool: str | None = None
    tools_disabled: bool = False
    stop: Sequence[str] = ()
    max_tokens: int | None = None
    json_mode: bool = False


@dataclass(slots=True)
class Reply:
    pieces: list[str]  # text pieces, or argument fragments for a tool call
    finish: Literal["stop", "length", "stop_sequence", "tool_call"]
    input_tokens: int
    stop_sequence: str | None = None
    tool: str | None = None
    tool_args: dict[str, Any] | None = None

    @property
    def text(self) -> str:
        return "".join(self.pieces)

    @property
    def output_tokens(self) -> int:
        return len(self.pieces)


def make_reply(name: str, p: Prompt) -> Reply:
    input_tokens = count_words(p.texts) + 1
    if p.tools and not p.tools_disabled and p.last_is_user and p.tool_result is None:
        args = {"query": p.last_user_text}
        raw = orjson.dumps(args).decode()
        frags = [raw[i : i + ARG_FRAGMENT] for i in range(0, len(raw), ARG_FRAGMENT)]
        tool = p.forced_tool or p.tools[0]
        return Reply(frags, "tool_call", input_tokens, tool=tool, tool_args=args)
    if p.tool_result is not None:
        text = f"Tool said: {p.tool_result}"
    else:
        text = f"Hello from {name}! You said: {p.last_user_text}"
    if p.json_mode:
        text = orjson.dumps({"reply": text}).decode()
    finish: Literal["stop", "length", "stop_sequence"] = "stop"
    hits = [(text.find(s), s) for s in p.stop if s and s in text]
    stop_sequence = None
    if hits:
        cut, stop_sequence = min(hits)
        text, finish = text[:cut], "stop_sequence"
    pieces = [text] if p.json_mode and text else split_pieces(text)
    if p.max_tokens is not None and len(pieces) > p.max_tokens:
        pieces, finish, stop_sequence = pieces[: max(p.max_tokens, 0)], "length", None
    return Reply(pieces, finish, input_tokens, stop_sequence=stop_sequence)


def embedding(key: str, dims: int = 8) -> list[float]:
    """A deterministic unit vector (float32 precision) derived from a hash of `key`."""
    raw = hashlib.shake_128(key.encode()).digest(4 * dims)
    ints = [int.from_bytes(raw[i : i + 4], "little") for i in range(0, len(raw), 4)]
    vec = [x / 2**31 - 1.0 for x in ints]
    norm = math.sqrt(sum(v * v for v in vec)) or 1.0
    return array.array("f", [v / norm for v in vec]).tolist()


def float32_le(vec: list[float]) -> bytes:
    arr = array.array("f", vec)
    if sys.byteorder == "big":
        arr.byteswap()
    return arr.tobytes()


# --- the server ------------------------------------------------------------------------------

# no_end: the stream's last frame ([DONE], message_stop, Gemini's final chunk) is left out and
# the body ends cleanly, as some OpenAI-compatible servers do.
_STREAM_FAULTS = frozenset({"stall", "reset", "malformed", "garbage_stream", "no_end"})


class FakeUpstream:
    """A fake provider on 127.0.0.1. Subclasses supply routes, auth and the error envelope."""

    name: ClassVar[str] = "fake"
    default_key: ClassVar[str] = ""
    request_id_header: ClassVar[str] = "x-request-id"
    record: bool = True  # append every request to `requests`

    def __init__(self, key: str | None = None, port: int = 0) -> None:
        self.key = self.default_key if key is None else key
        self.port = port
        self.url = ""
        self.requests: list[RecordedRequest] = []
        self.cached_tokens = 0
        self._faults: deque[Fault] = deque()
        self._runner: web.AppRunner | None = None
        self._closing = asyncio.Event()

    # -- protocol hooks ------------------------------------------------------------------------

    def routes(self) -> list[web.RouteDef]:
        raise NotImplementedError

    def error(
        self, status: int, message: str, *, headers: dict[str, str] | None = None, **extra: Any
    ) -> web.Response:
        """An error response in the protocol's envelope."""
        raise NotImplementedError

    def check_request(self, request: web.Request) -> web.Response | None:
        """Auth (and header) checks; return an error response to reject the request."""
        return None

    def is_stream(self, request: web.Request, body: Any) -> bool:
        return isinstance(body, dict) and body.get("stream") is True

    def bad_frame(self, payload: str, *, array_mode: bool = False) -> bytes:
        """An undecodable stream frame carrying `payload` (malformed / garbage_stream faults)."""
        return f",\r\n{payload}".encode() if array_mode else sse_raw(payload)

    def new_request_id(self) -> str:
        return "req_" + rand_id(24)

    # -- public API ----------------------------------------------------------------------------

    def inject(self, fault: Fault) -> None:
        """Queue a fault (a copy); each request consumes one use of the head fault."""
        self._faults.append(dataclasses.replace(fault))

    def clear_faults(self) -> None:
        """Drop every queued fault."""
        self._faults.clear()

    @property
    def pending_faults(self) -> list[Fault]:
        return list(self._faults)

    def make_app(self) -> web.Application:
        app = web.Application(middlewares=[self._middleware], client_max_size=64 * 2**20)
        app.add_routes(self.routes())
        app.on_response_prepare.append(self._on_prepare)
        return app

    async def start(self) -> None:
        self._closing = asyncio.Event()
        self._runner = web.AppRunner(
            self.make_app(), access_log=None, handler_cancellation=True, shutdown_timeout=1.0
        )
        await self._runner.setup()
        await web.TCPSite(self._runner, "127.0.0.1", self.port).start()
        self.port = self._runner.addresses[0][1]
        self.url = f"http://127.0.0.1:{self.port}"

    async def stop(self) -> None:
        self._closing.set()
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    # -- machinery -----------------------------------------------------------------------------

    async def _on_prepare(self, request: web.Request, response: web.StreamResponse) -> None:
        response.headers[self.request_id_header] = self.new_request_id()

    async def sleep(self, seconds: float) -> None:
        """Sleep that ends early when the fake stops."""
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._closing.wait(), seconds)

    def _pop_fault(self) -> Fault | None:
        if not self._faults:
            return None
        fault = self._faults[0]
        fault.times -= 1
        if fault.times <= 0:
            self._faults.popleft()
        return fault

    @web.middleware
    async def _middleware(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        if request.match_info.http_exception is not None:
            return self.not_found(request)
        raw = await request.read()
        body: Any = None
        bad_json = False
        if raw:
            try:
                body = orjson.loads(raw)
            except orjson.JSONDecodeError:
                bad_json = True
        request[BODY] = body
        if self.record:
            headers = Headers((k.lower(), v) for k, v in request.headers.items())
            self.requests.append(
                RecordedRequest(request.method, request.path, dict(request.query), headers, body)
            )
        fault = self._pop_fault()
        request[FAULT] = fault
        if fault is not None:
            if fault.kind == "status":
                retry = {"Retry-After": fault.retry_after} if fault.retry_after else None
                return self.error(fault.status, fault.message, headers=retry)
            stream = self.is_stream(request, body)
            if fault.kind == "hang" or (fault.kind == "stall" and not stream):
                await self.sleep(fault.seconds)
            elif fault.kind == "reset" and not stream:
                request.transport.abort()  # type: ignore[union-attr]
                return web.Response()  # writing fails; aiohttp drops the ConnectionError quietly
            elif fault.kind == "malformed" and not stream:
                return web.Response(body=b'{"id": "broken", ', content_type="application/json")
            elif fault.kind == "garbage_stream" and not stream:
                return web.Response(text="<html>oops</html>", content_type="text/html")
        if (rejection := self.check_request(request)) is not None:
            return rejection
        if bad_json:
            return self.error(400, "We could not parse the JSON body of your request.")
        return await handler(request)

    def not_found(self, request: web.Request) -> web.Response:
        return self.error(404, f"Invalid URL ({request.method} {request.path})")

    @staticmethod
    def no_usage(request: web.Request) -> bool:
        fault = request.get(FAULT)
        return fault is not None and fault.kind == "no_usage"

    async def stream(
        self,
        request: web.Request,
        frames: Iterable[bytes],
        *,
        content_type: str = SSE_CONTENT_TYPE,
        array_mode: bool = False,
    ) -> web.StreamResponse:
        """Send `frames` as a chunked response, applying any streaming fault."""
        resp = web.StreamResponse(
            headers={"Content-Type": content_type, "Cache-Control": "no-cache"}
        )
        await resp.prepare(request)
        frames = list(frames)
        fault = request.get(FAULT)
        if fault is None or fault.kind not in _STREAM_FAULTS:
            for frame in frames:
                await resp.write(frame)
            await resp.write_eof()
            return resp
        if fault.kind == "no_end":
            for frame in frames[:-1]:
                await resp.write(frame)
            await resp.write_eof()
            return resp
        # The fault strikes after `at` frames.
        at = min(1 if fault.kind == "malformed" else max(fault.after_chunks, 0), len(frames))
        for frame in frames[:at]:
            await resp.write(frame)
        if fault.kind == "stall":
            await self.sleep(fault.seconds)
            for frame in frames[at:]:
                await resp.write(frame)
        elif fault.kind == "reset":
            if (transport := request.transport) is not None:
                # abort() drops unsent bytes, close() flushes them first; either way the
                # chunked body is never terminated.
                (transport.close if transport.get_write_buffer_size() else transport.abort)()
            return resp
        else:
            payload = "{not json" if fault.kind == "malformed" else "<html>oops</html>"
            await resp.write(self.bad_frame(payload, array_mode=array_mode))
        await resp.write_eof()
        return resp
