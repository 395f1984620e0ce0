"""What every provider adapter shares: the pooled session, timeouts and error mapping."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import orjson

from gateway.catalog import ProviderDef
from gateway.deadline import Deadline
from gateway.errors import (
    GatewayError,
    ServiceUnavailable,
    UpstreamError,
    UpstreamRateLimited,
    UpstreamRejected,
    UpstreamTimeout,
)
from gateway.providers.http import UpstreamClient, UpstreamResponse
from gateway.providers.wire import UpstreamConnectionError, UpstreamDisconnected

_ERROR_BODY_LIMIT = 64 * 1024


@dataclass(frozen=True, slots=True)
class Timeouts:
    """Per-call upstream timeouts, in seconds."""

    connect: float
    first_byte: float
    idle: float
    max_retry_after: int = 60


class Adapter:
    """One provider: its pooled HTTP session and how to address and authenticate to it."""

    protocol = "openai"

    def __init__(self, provider: ProviderDef, timeouts: Timeouts) -> None:
        self.provider = provider
        self.name = provider.name
        self.timeouts = timeouts
        self._client: UpstreamClient | None = None
        self._sweeper = IdleSweeper()
        self._headers: dict[str, str] | None = None
        self._missing = f"provider {self.name!r} has no API key available"

    @property
    def client(self) -> UpstreamClient:
        """The provider's one pool of keep-alive connections, made on first use."""
        if self._client is None or self._client.closed:
            self._client = UpstreamClient(self.timeouts.connect)
        return self._client

    async def close(self) -> None:
        """Close the pooled connections."""
        if self._client is not None:
            await self._client.close()

    def set_credential(self, key: str | None, missing: str) -> None:
        """Take the provider's key (the gateway reads it from the vault or the environment
        when the catalog loads); the request headers are built once here, not per request.
        `missing` is what a request hears while there is no key."""
        self._headers = (
            {"Content-Type": "application/json", **self.auth_headers(key)} if key else None
        )
        self._missing = missing

    @property
    def has_credential(self) -> bool:
        """True when the provider's key is loaded."""
        return self._headers is not None

    @property
    def token_limit_field(self) -> str:
        """Where an OpenAI-protocol upstream takes the output token limit."""
        return "max_tokens"

    def url(self, endpoint: str, upstream_model: str) -> str:
        """The URL of `endpoint` ("chat", "chat_stream", "completions", "embeddings")."""
        raise NotImplementedError

    def auth_headers(self, key: str) -> dict[str, str]:
        """Headers that authenticate the box to this provider with `key`."""
        raise NotImplementedError

    def error_message(self, body: Any) -> str | None:
        """The provider's own error message from its error envelope (OpenAI and Azure shape)."""
        if isinstance(body, dict):
            err = body.get("error")
            if isinstance(err, dict) and isinstance(err.get("message"), str):
                return err["message"]
        return None

    async def post(self, url: str, body: bytes, trace_headers: dict[str, str]) -> UpstreamResponse:
        """POST and wait for the response headers; an HTTP error is raised as a GatewayError."""
        if self._headers is None:
            raise ServiceUnavailable(self._missing, code="provider_credentials_missing")
        headers = {**self._headers, **trace_headers}
        try:
            with Deadline(self.timeouts.first_byte):
                resp = await self.client.post(url, body, headers)
        except UpstreamConnectionError as exc:  # the connect timeout included
            raise UpstreamError(
                f"cannot reach provider {self.name!r}: {_describe(exc)}",
                code="upstream_unreachable",
            ) from None
        except UpstreamDisconnected as exc:
            raise UpstreamError(
                f"provider {self.name!r} closed the connection without answering: {_describe(exc)}",
                code="upstream_disconnected",
            ) from None
        except TimeoutError:
            raise UpstreamTimeout(
                f"provider {self.name!r} sent no response within "
                f"{self.timeouts.first_byte:g} s; retry later or raise "
                "[upstream] first_byte_timeout"
            ) from None
        if resp.status >= 300:
            try:
                raise await self._http_error(resp)
            finally:
                resp.release()
        return resp

    async def read_json(self, resp: UpstreamResponse) -> tuple[bytes, Any]:
        """Read a whole JSON body under the idle timeout; garbage becomes a 502."""
        try:
            if resp.at_eof():  # the whole body came with the headers: nothing to wait for
                raw = await resp.read()
            else:
                with Deadline(self.timeouts.idle):
                    raw = await resp.read()
        except TimeoutError:
            raise UpstreamTimeout(
                f"provider {self.name!r} stalled while sending its response"
            ) from None
        except UpstreamDisconnected as exc:
            raise UpstreamError(
                f"provider {self.name!r} cut its response short: {_describe(exc)}",
                code="upstream_disconnected",
            ) from None
        finally:
            resp.release()
        try:
            return raw, orjson.loads(raw)
        except orjson.JSONDecodeError:
            raise UpstreamError(
                f"provider {self.name!r} returned a response that is not valid JSON",
                code="upstream_bad_response",
            ) from None

    async def events(self, resp: UpstreamResponse) -> AsyncIterator[bytes]:
        """Yield, per read, the complete SSE events received (separated by blank lines,
        without the final one); a partial event waits for the next read.

        A stream silent for the idle timeout, or cut, raises a GatewayError. The caller releases
        `resp` (an unfinished response then closes its connection).
        """
        buf = b""
        watch = self._sweeper.watch(resp, self.timeouts.idle)
        clock = asyncio.get_running_loop().time
        try:
            while True:
                try:
                    data = await resp.readany()
                except UpstreamDisconnected as exc:
                    if watch.expired:
                        break
                    raise UpstreamError(
                        f"provider {self.name!r} cut the stream: {_describe(exc)}",
                        code="upstream_disconnected",
                    ) from None
                if not data:
                    break
                watch.last = clock()
                if buf:  # only a partial event pending costs a copy
                    data = buf + data
                if data.find(b"\r") >= 0:  # CRLF framing; a lone CR at the end waits in buf
                    data = data.replace(b"\r\n", b"\n")
                end = data.rfind(b"\n\n")
                if end < 0:
                    buf = data
                    continue
                buf = data[end + 2 :]
                yield data[:end]
        finally:
            self._sweeper.unwatch(watch)
        if watch.expired:
            raise UpstreamTimeout(
                f"provider {self.name!r} stopped sending the stream for {self.timeouts.idle:g} s",
                code="upstream_stream_stalled",
            )
        if buf.strip():
            yield buf

    async def _http_error(self, resp: UpstreamResponse) -> GatewayError:
        """Turn an upstream HTTP error into the error the client should see."""
        try:
            async with asyncio.timeout(self.timeouts.idle):
                raw = await resp.read_prefix(_ERROR_BODY_LIMIT)
            detail = self.error_message(orjson.loads(raw))
        except (TimeoutError, UpstreamDisconnected, orjson.JSONDecodeError):
            detail = None
        status = resp.status
        said = f": {detail}" if detail else ""
        if status < 400:  # the client follows no redirect: a provider's URL is configured
            where = resp.headers.get("Location") or "elsewhere"
            return UpstreamError(
                f"provider {self.name!r} redirects the request (HTTP {status} to {where[:200]}); "
                "an administrator must set its base URL to the final address",
                code="upstream_redirect",
            )
        if status == 429:
            retry = _retry_after(resp.headers.get("Retry-After"), self.timeouts.max_retry_after)
            return UpstreamRateLimited(
                f"provider {self.name!r} is rate limiting the box{said}; retry in {retry} s",
                retry_after=retry,
            )
        if status in (401, 403):
            return UpstreamError(
                f"provider {self.name!r} rejected the box's credentials (HTTP {status}); "
                "an administrator must check its API key",
                code="upstream_auth_failed",
            )
        if status == 404:
            return UpstreamError(
                f"provider {self.name!r} does not know the requested model or endpoint"
                f" (HTTP 404){said}; an administrator must check the model's upstream name",
                code="upstream_not_found",
            )
        if status in (400, 413, 422):
            return UpstreamRejected(
                f"provider {self.name!r} rejected the request{said}", status=status
            )
        if status in (503, 529):
            return UpstreamError(
                f"provider {self.name!r} is overloaded (HTTP {status}){said}; retry later",
                code="upstream_overloaded",
                status=503,
            )
        return UpstreamError(f"provider {self.name!r} failed with HTTP {status}{said}")


def _retry_after(value: str | None, cap: int) -> int:
    """A Retry-After in whole seconds, capped (the Anthropic SDK waits whatever it is told)."""
    try:
        seconds = int(float(value)) if value else 1
    except ValueError:
        seconds = 1
    return max(1, min(seconds, cap))


def _describe(exc: BaseException) -> str:
    text = str(exc) or type(exc).__name__
    return text[:300]


class _Watch:
    """One stream under the sweeper's eye."""

    __slots__ = ("expired", "idle", "last", "resp")

    def __init__(self, resp: UpstreamResponse, idle: float, now: float) -> None:
        self.resp = resp
        self.idle = idle
        self.last = now
        self.expired = False


class IdleSweeper:
    """Closes streams that stay silent for their idle timeout.

    One timer for all the streams of a provider, firing twice a second, instead of a timer per
    stream: a read only stamps the time. A stall is caught within half a second of its limit.
    """

    PERIOD = 0.5

    def __init__(self) -> None:
        self._watches: set[_Watch] = set()
        self._handle: asyncio.TimerHandle | None = None

    def watch(self, resp: UpstreamResponse, idle: float) -> _Watch:
        """Start watching a stream."""
        loop = asyncio.get_running_loop()
        w = _Watch(resp, idle, loop.time())
        self._watches.add(w)
        if self._handle is None:
            self._handle = loop.call_later(self.PERIOD, self._sweep, loop)
        return w

    def unwatch(self, w: _Watch) -> None:
        """The stream is over."""
        self._watches.discard(w)

    def _sweep(self, loop: asyncio.AbstractEventLoop) -> None:
        now = loop.time()
        for w in list(self._watches):
            if now - w.last >= w.idle:
                w.expired = True
                self._watches.discard(w)
                w.resp.close()
        self._handle = loop.call_later(self.PERIOD, self._sweep, loop) if self._watches else None
