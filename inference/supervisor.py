"""Engines as supervised child processes of `aigw up`.

Each engine is a process group of its own (vLLM's API server, its engine core and workers):
started in a new session, with its output appended to its log, and with PR_SET_PDEATHSIG so
that a gateway killed outright does not leave it behind (the API server then shuts its
children down). An engine is ready only when `/health` answers 200 and `/v1/models` lists
its served name; then it is watched: its exit or three failed health checks in a row take it
down at once (on_down), the rest of its group is killed, and it is started again after a
backoff (1 s, doubling up to the configured maximum; back to 1 s once it stayed ready five
minutes). Stopping sends SIGTERM to the group, then SIGKILL after the stop timeout.

A ready engine's `/metrics` is read at each watch and kept in `Engine.load`.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import io
import logging
import os
import signal
import sys
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from typing import Any

import aiohttp

from appliance.config import InferenceConfig
from inference.vllm_metrics import EngineLoad, scrape

log = logging.getLogger(__name__)

READY_POLL_S = 0.5
HTTP_TIMEOUT_S = 5.0  # one /health, /v1/models or /metrics request
HEALTH_FAILURES = 3  # in a row, while ready: the engine is taken down and restarted
BACKOFF_START_S = 1.0
BACKOFF_RESET_S = 300.0  # ready this long: the next crash restarts after BACKOFF_START_S again
LOG_ROTATE_BYTES = 10 * 1024 * 1024  # checked at each start; the previous log is kept as .1
PR_SET_PDEATHSIG = 1


@dataclass(frozen=True)
class EngineSpec:
    """How to run one engine; a changed spec means a restart."""

    name: str
    argv: tuple[str, ...]
    env: Mapping[str, str]
    port: int  # on 127.0.0.1
    served_name: str
    log_path: Path
    cwd: Path


class EngineState(StrEnum):
    """Where an engine is in its life."""

    STARTING = "starting"
    READY = "ready"
    BACKOFF = "backoff"  # down, waiting to be started again
    STOPPING = "stopping"
    STOPPED = "stopped"
    FAILED = "failed"  # cannot be started at all (no such program, no log folder): not retried


class Engine:
    """One supervised engine; the gateway, the admin API and the CLI read its attributes."""

    def __init__(self, spec: EngineSpec) -> None:
        self.spec = spec
        self.state = EngineState.STOPPED
        self.pid: int | None = None  # the API server's, also its process group's id
        self.restarts = 0
        self.last_exit: int | None = None  # a negative number: killed by that signal
        self.last_error = ""
        self.ready_since: float | None = None  # wall-clock time
        self.load: EngineLoad | None = None
        self._proc: asyncio.subprocess.Process | None = None
        self._exited: asyncio.Future[int] | None = None
        self._task: asyncio.Task[None] | None = None
        self._ready_at = 0.0  # monotonic

    @property
    def root_url(self) -> str:
        """The server itself: /health and /metrics are here."""
        return f"http://127.0.0.1:{self.spec.port}"

    @property
    def base_url(self) -> str:
        """Its OpenAI-compatible API."""
        return self.root_url + "/v1"

    def __repr__(self) -> str:
        return f"<Engine {self.spec.name} {self.state} pid={self.pid}>"


def _load_prctl() -> Callable[..., int] | None:
    if not sys.platform.startswith("linux"):
        return None
    try:
        return ctypes.CDLL(None, use_errno=True).prctl  # type: ignore[no-any-return]
    except (OSError, AttributeError):
        return None


_PRCTL = _load_prctl()


def _die_with(parent: int) -> Callable[[], None]:
    """The child's set-up (after fork, before exec): SIGTERM when its parent thread dies."""

    def setup() -> None:
        if _PRCTL is not None:
            _PRCTL(PR_SET_PDEATHSIG, signal.SIGTERM)
            if os.getppid() != parent:  # the parent died before the prctl
                os.kill(os.getpid(), signal.SIGTERM)

    return setup


def _signal_group(pgid: int, sig: signal.Signals) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, sig)


def group_alive(pgid: int) -> bool:
    """Whether a process of the group still runs (zombies, waiting for their reaper, do not)."""
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    if not os.path.isdir("/proc"):
        return True
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            with open(f"/proc/{entry.name}/stat", "rb") as fh:
                fields = fh.read().rsplit(b")", 1)[1].split()
        except (OSError, IndexError):
            continue
        if len(fields) > 2 and int(fields[2]) == pgid and fields[0] != b"Z":
            return True
    return False


def _log_tail(path: Path, limit: int = 300) -> str:
    """The last line of an engine's log: after a crash, usually the reason."""
    try:
        with open(path, "rb") as fh:
            fh.seek(max(0, fh.seek(0, os.SEEK_END) - 4096))
            lines = fh.read().decode(errors="replace").strip().splitlines()
    except OSError:
        return ""
    return lines[-1].strip()[-limit:] if lines else ""


def _open_log(path: Path) -> io.BufferedWriter:
    """The engine's log, opened for appending; a log over LOG_ROTATE_BYTES becomes `.1`."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with contextlib.suppress(FileNotFoundError):
        if path.stat().st_size > LOG_ROTATE_BYTES:
            os.replace(path, path.with_name(path.name + ".1"))
    return open(path, "ab")  # closed by the caller once the child holds it


class Supervisor:
    """Starts, watches, restarts and stops the engines it is given."""

    def __init__(
        self,
        cfg: InferenceConfig,
        *,
        on_ready: Callable[[Engine], None],
        on_down: Callable[[Engine], None],
        session: aiohttp.ClientSession | None = None,
    ) -> None:
        self.cfg = cfg
        self._on_ready = on_ready
        self._on_down = on_down
        self._session = session
        self._own_session = session is None
        self._engines: dict[str, Engine] = {}
        self._lock = asyncio.Lock()
        self._pid = os.getpid()

    def engines(self) -> dict[str, Engine]:
        """The engines under supervision, by name (a copy of the mapping)."""
        return dict(self._engines)

    async def reconcile(self, wanted: Mapping[str, EngineSpec]) -> None:
        """Start what is new, stop what is gone, restart what changed; returns once the
        stopped engines are gone (the new ones are starting)."""
        async with self._lock:
            stale = [n for n, e in self._engines.items() if wanted.get(n) != e.spec]
            await asyncio.gather(*(self._stop(self._engines[n]) for n in stale))
            for name in stale:
                del self._engines[name]
            for name, spec in wanted.items():
                if name not in self._engines:
                    engine = self._engines[name] = Engine(spec)
                    engine.state = EngineState.STARTING
                    engine._task = asyncio.get_running_loop().create_task(
                        self._supervise(engine), name=f"engine {name}"
                    )

    async def stop_all(self) -> None:
        """Stop every engine (and close the HTTP session the supervisor made)."""
        async with self._lock:
            engines = list(self._engines.values())
            self._engines.clear()
            await asyncio.gather(*(self._stop(e) for e in engines))
        if self._own_session and self._session is not None:
            await self._session.close()
            self._session = None

    # -- one engine's life ------------------------------------------------------------------

    async def _supervise(self, engine: Engine) -> None:
        try:
            await self._lifecycle(engine)
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # a bug here must not leave an engine running unwatched
            log.exception("engine %s: supervision failed", engine.spec.name)
            was_ready = engine.state is EngineState.READY
            engine.state, engine.last_error = EngineState.FAILED, f"supervision failed: {exc}"
            if was_ready:
                self._call(self._on_down, engine)
            await self._kill(engine)

    async def _lifecycle(self, engine: Engine) -> None:
        name = engine.spec.name
        backoff = BACKOFF_START_S
        while True:
            if not await self._spawn(engine):
                return
            why = await self._until_ready(engine)
            if why is None:
                engine.state, engine.last_error = EngineState.READY, ""
                engine.ready_since, engine._ready_at = time.time(), time.monotonic()
                log.info("engine %s is ready on %s (pid %s)", name, engine.base_url, engine.pid)
                self._call(self._on_ready, engine)
                why = await self._watch(engine)
                engine.state, engine.last_error = EngineState.BACKOFF, why
                engine.ready_since = None
                self._call(self._on_down, engine)  # out of routing before anything else
                if time.monotonic() - engine._ready_at >= BACKOFF_RESET_S:
                    backoff = BACKOFF_START_S
            await self._kill(engine)  # the engine core and workers must not outlive it
            engine.state, engine.last_error = EngineState.BACKOFF, why
            log.warning("engine %s: %s; starting it again in %g s", name, why, backoff)
            await asyncio.sleep(backoff)
            backoff = min(backoff * 2, max(self.cfg.restart_backoff_max_s, BACKOFF_START_S))
            engine.restarts += 1

    async def _spawn(self, engine: Engine) -> bool:
        """Start the engine's process; False (and FAILED) when it cannot be started at all."""
        spec = engine.spec
        engine.state, engine.load, engine.pid = EngineState.STARTING, None, None
        try:
            spec.cwd.mkdir(parents=True, exist_ok=True)
            out = _open_log(spec.log_path)
        except OSError as exc:
            return self._failed(engine, f"cannot write its log {spec.log_path}: {exc}")
        with out:
            stamp = time.strftime("%Y-%m-%d %H:%M:%S")
            out.write(f"--- aigw {stamp}: starting {spec.name}: {' '.join(spec.argv)}\n".encode())
            out.flush()
            spawning = asyncio.ensure_future(
                asyncio.create_subprocess_exec(
                    *spec.argv,
                    stdin=asyncio.subprocess.DEVNULL,
                    stdout=out,
                    stderr=asyncio.subprocess.STDOUT,
                    cwd=spec.cwd,
                    env=dict(spec.env),
                    start_new_session=True,
                    preexec_fn=_die_with(self._pid),
                )
            )
            try:
                proc = await asyncio.shield(spawning)
            except asyncio.CancelledError:  # stopped while starting: kill what did start
                spawning.add_done_callback(_kill_spawned)
                raise
            except OSError as exc:
                return self._failed(engine, f"cannot start {spec.argv[0]}: {exc}")
        engine._proc, engine.pid = proc, proc.pid
        engine._exited = asyncio.ensure_future(proc.wait())
        log.info("engine %s started (pid %s, port %s)", spec.name, proc.pid, spec.port)
        return True

    def _failed(self, engine: Engine, why: str) -> bool:
        engine.state, engine.last_error = EngineState.FAILED, why
        log.error("engine %s cannot be started: %s", engine.spec.name, why)
        return False

    async def _until_ready(self, engine: Engine) -> str | None:
        """None once the engine serves its model, else why it never did (exit, timeout)."""
        assert engine._exited is not None
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.cfg.start_timeout_s
        while True:
            why = await self._race(engine, self._check_ready(engine))
            if engine._exited.done():
                return self._exit_reason(engine)
            if why is None:
                return None
            remaining = deadline - loop.time()
            if remaining <= 0:
                return f"not ready after {self.cfg.start_timeout_s:g} s ({why})"
            await asyncio.wait({engine._exited}, timeout=min(READY_POLL_S, remaining))

    async def _watch(self, engine: Engine) -> str:
        """Returns why the ready engine went down: its exit, or failed health checks."""
        assert engine._exited is not None
        failures = 0
        while True:
            why = await self._race(engine, self._check_health(engine))
            if engine._exited.done():
                return self._exit_reason(engine)
            if why is None:
                failures = 0
            else:
                failures += 1
                log.warning("engine %s: health check failed: %s", engine.spec.name, why)
                if failures >= HEALTH_FAILURES:
                    return f"{failures} health checks failed in a row (last: {why})"
            await asyncio.wait({engine._exited}, timeout=self.cfg.watch_interval_s)
            if engine._exited.done():
                return self._exit_reason(engine)

    async def _race(self, engine: Engine, check: Awaitable[str | None]) -> str | None:
        """Run a check, abandoned as soon as the process exits."""
        assert engine._exited is not None
        task = asyncio.ensure_future(check)
        either: set[asyncio.Future[Any]] = {engine._exited, task}
        try:
            await asyncio.wait(either, return_when=asyncio.FIRST_COMPLETED)
        finally:
            if not task.done():
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
        return task.result() if not task.cancelled() else "the process exited"

    def _exit_reason(self, engine: Engine) -> str:
        assert engine._proc is not None
        rc = engine._proc.returncode
        engine.last_exit = rc
        if rc is not None and rc < 0:
            why = f"killed by {signal.Signals(-rc).name}"
        else:
            why = f"exited with code {rc}"
        tail = _log_tail(engine.spec.log_path)
        return f"{why}: {tail}" if tail else why

    # -- HTTP checks ------------------------------------------------------------------------

    def _http(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            self._session = aiohttp.ClientSession()
            self._own_session = True
        return self._session

    async def _check_ready(self, engine: Engine) -> str | None:
        """None when /health is 200 and /v1/models lists the served name, else why not."""
        why = await self._check_health(engine, metrics=False)
        if why is not None:
            return why
        timeout = aiohttp.ClientTimeout(total=HTTP_TIMEOUT_S)
        try:
            async with self._http().get(engine.base_url + "/models", timeout=timeout) as resp:
                if resp.status != 200:
                    return f"/v1/models answered HTTP {resp.status}"
                listing = await resp.json(content_type=None)
        except (aiohttp.ClientError, TimeoutError, ValueError) as exc:
            return f"/v1/models: {_describe(exc)}"
        data = listing.get("data") if isinstance(listing, dict) else None
        ids = {m.get("id") for m in data or () if isinstance(m, dict)}
        if engine.spec.served_name not in ids:
            return f"/v1/models does not list {engine.spec.served_name!r}"
        return None

    async def _check_health(self, engine: Engine, metrics: bool = True) -> str | None:
        """None when /health answers 200 (and, with metrics, after reading the load)."""
        timeout = aiohttp.ClientTimeout(total=HTTP_TIMEOUT_S)
        try:
            async with self._http().get(engine.root_url + "/health", timeout=timeout) as resp:
                if resp.status != 200:
                    return f"/health answered HTTP {resp.status}"
        except (aiohttp.ClientError, TimeoutError) as exc:
            return f"/health: {_describe(exc)}"
        if metrics:
            try:
                engine.load = await scrape(self._http(), engine.root_url, HTTP_TIMEOUT_S)
            except (aiohttp.ClientError, TimeoutError, ValueError) as exc:
                log.debug("engine %s: /metrics not read: %s", engine.spec.name, _describe(exc))
        return None

    # -- stopping ---------------------------------------------------------------------------

    async def _stop(self, engine: Engine) -> None:
        """Stop supervising the engine and end its process group."""
        was_ready = engine.state is EngineState.READY
        if engine._task is not None:
            engine._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await engine._task
        engine.state = EngineState.STOPPING
        if was_ready:
            engine.ready_since = None
            self._call(self._on_down, engine)
        await self._terminate(engine)
        engine.state, engine.pid, engine.load = EngineState.STOPPED, None, None
        log.info("engine %s stopped", engine.spec.name)

    async def _terminate(self, engine: Engine) -> None:
        """SIGTERM to the group; SIGKILL to what is left of it after the stop timeout."""
        proc, exited = engine._proc, engine._exited
        if proc is None or exited is None:
            return
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.cfg.stop_timeout_s
        _signal_group(proc.pid, signal.SIGTERM)
        await asyncio.wait({exited}, timeout=max(0.0, deadline - loop.time()))
        while group_alive(proc.pid) and loop.time() < deadline:
            await asyncio.sleep(0.1)
        if group_alive(proc.pid):
            log.warning(
                "engine %s did not stop within %g s; killing it",
                engine.spec.name,
                self.cfg.stop_timeout_s,
            )
        await self._kill(engine)

    async def _kill(self, engine: Engine) -> None:
        """SIGKILL to the engine's whole group, and reap the process."""
        proc, exited = engine._proc, engine._exited
        if proc is None or exited is None:
            return
        _signal_group(proc.pid, signal.SIGKILL)
        await asyncio.shield(exited)  # a cancelled stop must not cancel the shared future
        engine.last_exit = proc.returncode
        for _ in range(100):  # SIGKILL is not instant: return once the whole group is gone
            if not group_alive(proc.pid):
                break
            await asyncio.sleep(0.05)

    def _call(self, callback: Callable[[Engine], None], engine: Engine) -> None:
        try:
            callback(engine)
        except Exception:
            log.exception("engine %s: callback %r failed", engine.spec.name, callback)


def _kill_spawned(spawning: asyncio.Future[asyncio.subprocess.Process]) -> None:
    """A process that started after its engine was stopped is killed with its group."""
    if not spawning.cancelled() and spawning.exception() is None:
        _signal_group(spawning.result().pid, signal.SIGKILL)


def _describe(exc: BaseException) -> str:
    text = str(exc)[:200]
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__
