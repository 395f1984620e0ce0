"""vLLM servers elsewhere on the company network, watched like the box's own engines.

An administrator registers a remote engine by URL and the model it serves (`aigw engines
add-remote`). Its `/health`, `/v1/models` and `/metrics` are read every watch interval: it
takes requests while it answers and lists its model, and leaves routing at the first failed
check. Its load (requests waiting and running, KV-cache use) is what the gateway compares
when it picks the least-loaded replica, and what `aigw gpus` and `/metrics` show beside the
box's own capacity.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass

import aiohttp

from inference.vllm_metrics import EngineLoad, scrape

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class RemoteSpec:
    """A registered remote engine: its root URL (no `/v1`) and the model name it serves."""

    name: str
    url: str
    model: str
    api_key: str | None = None

    @property
    def base_url(self) -> str:
        """Its OpenAI-compatible API."""
        return self.url + "/v1"


def normalize_url(url: str) -> str:
    """`http://host:8000/v1/` and `http://host:8000` name the same server."""
    url = url.strip().rstrip("/")
    return url[: -len("/v1")] if url.endswith("/v1") else url


class RemoteEngine:
    """One remote engine under watch."""

    def __init__(self, spec: RemoteSpec) -> None:
        self.spec = spec
        self.state = "checking"  # checking, ready, unreachable
        self.load: EngineLoad | None = None
        self.last_error = ""
        self.ready_since: float | None = None
        self.checked_at: float | None = None
        self.max_model_len: int | None = None
        self.task: asyncio.Task[None] | None = None

    @property
    def base_url(self) -> str:
        """Its OpenAI-compatible API."""
        return self.spec.base_url


class RemoteWatcher:
    """Checks each remote engine every `interval` seconds and reports changes of readiness."""

    def __init__(
        self,
        interval: float,
        *,
        on_ready: Callable[[RemoteEngine], None],
        on_down: Callable[[RemoteEngine], None],
        timeout: float = 5.0,
    ) -> None:
        self.interval = interval
        self.timeout = aiohttp.ClientTimeout(total=timeout, connect=timeout)
        self._on_ready, self._on_down = on_ready, on_down
        self._engines: dict[str, RemoteEngine] = {}
        self._session: aiohttp.ClientSession | None = None

    def engines(self) -> dict[str, RemoteEngine]:
        """The remote engines under watch, by name."""
        return dict(self._engines)

    async def reconcile(self, wanted: Mapping[str, RemoteSpec]) -> None:
        """Watch what is registered, stop watching what is gone or changed."""
        for name, engine in list(self._engines.items()):
            if wanted.get(name) != engine.spec:
                await self._forget(engine)
                del self._engines[name]
        for name, spec in wanted.items():
            if name not in self._engines:
                engine = RemoteEngine(spec)
                self._engines[name] = engine
                engine.task = asyncio.create_task(self._watch(engine), name=f"aigw-remote-{name}")

    async def stop(self) -> None:
        """Stop every watch and close the session."""
        for engine in self._engines.values():
            await self._forget(engine)
        self._engines.clear()
        if self._session is not None:
            await self._session.close()
            self._session = None

    async def _forget(self, engine: RemoteEngine) -> None:
        if engine.task is not None:
            engine.task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await engine.task
        if engine.state == "ready":
            self._on_down(engine)
        engine.state = "checking"

    def _http(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            self._session = aiohttp.ClientSession(timeout=self.timeout)
        return self._session

    async def check(self, engine: RemoteEngine) -> str | None:
        """One check: None when the engine is healthy and serves its model, else why not."""
        spec = engine.spec
        headers = {"Authorization": "Bearer " + spec.api_key} if spec.api_key else {}
        session = self._http()
        try:
            async with session.get(spec.url + "/health", headers=headers) as resp:
                if resp.status != 200:
                    return f"/health answered HTTP {resp.status}"
            async with session.get(spec.base_url + "/models", headers=headers) as resp:
                if resp.status != 200:
                    return f"/v1/models answered HTTP {resp.status}"
                listing = await resp.json(content_type=None)
        except (aiohttp.ClientError, TimeoutError, ValueError) as exc:
            return f"unreachable: {str(exc)[:200] or type(exc).__name__}"
        data = listing.get("data") if isinstance(listing, dict) else None
        cards = [m for m in data or () if isinstance(m, dict) and m.get("id") == spec.model]
        if not cards:
            return f"it does not serve the model {spec.model!r}"
        mml = cards[0].get("max_model_len")
        engine.max_model_len = mml if isinstance(mml, int) else None
        try:
            engine.load = await scrape(session, spec.url, self.timeout.total or 5.0)
        except (aiohttp.ClientError, TimeoutError, ValueError) as exc:
            log.debug("remote engine %s: /metrics not read: %s", spec.name, exc)
        return None

    async def _watch(self, engine: RemoteEngine) -> None:
        while True:
            problem = await self.check(engine)
            engine.checked_at = time.time()
            if problem is None and engine.state != "ready":
                engine.state, engine.last_error = "ready", ""
                engine.ready_since = time.time()
                log.info("remote engine %s (%s) is ready", engine.spec.name, engine.spec.url)
                self._on_ready(engine)
            elif problem is not None:
                if engine.state == "ready":
                    log.warning("remote engine %s is down: %s", engine.spec.name, problem)
                    self._on_down(engine)
                engine.state, engine.last_error = "unreachable", problem
                engine.ready_since = None
            await asyncio.sleep(self.interval)
