"""The supervisor against a fake engine (tests/inference/fake_engine.py): readiness, restarts,
backoff, health failures, stopping, logs and orphans, in seconds and without vLLM.

The same behaviour against vLLM's CPU build is in test_vllm_engine.py (slow).
"""

from __future__ import annotations

import asyncio
import itertools
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import AsyncIterator, Callable
from dataclasses import replace
from pathlib import Path

import pytest

from appliance.config import InferenceConfig
from inference.supervisor import (
    LOG_ROTATE_BYTES,
    Engine,
    EngineSpec,
    EngineState,
    Supervisor,
    group_alive,
)
from tests.harness import free_port
from tests.inference.procs import processes_with_marker

FAKE = Path(__file__).with_name("fake_engine.py")
ROOT = Path(__file__).resolve().parents[2]
MARKER = "AIGW_TEST_ENGINE_MARKER"
CFG = InferenceConfig(
    start_timeout_s=10.0, stop_timeout_s=1.0, restart_backoff_max_s=2.0, watch_interval_s=0.2
)


class Events:
    """What the supervisor told the gateway, with the time it did."""

    def __init__(self) -> None:
        self.ready: list[tuple[float, Engine]] = []
        self.down: list[tuple[float, Engine, EngineState]] = []

    def on_ready(self, engine: Engine) -> None:
        self.ready.append((time.monotonic(), engine))

    def on_down(self, engine: Engine) -> None:
        self.down.append((time.monotonic(), engine, engine.state))


def fake_spec(tmp: Path, name: str, *args: str, argv: tuple[str, ...] = ()) -> EngineSpec:
    """An engine spec running the fake engine (or `argv`) with a unique marker in its env."""
    port = free_port()
    argv = argv or (sys.executable, str(FAKE), "--port", str(port), "--served-model-name", name)
    env = {"PATH": os.environ["PATH"], MARKER: uuid.uuid4().hex}
    return EngineSpec(name, (*argv, *args), env, port, name, tmp / "logs" / f"{name}.log", tmp)


async def until(
    predicate: Callable[[], object], timeout: float = 10.0, what: str = "condition"
) -> None:
    """Wait until predicate() is true."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.02)


@pytest.fixture
def events() -> Events:
    return Events()


@pytest.fixture
async def sup(events: Events) -> AsyncIterator[Supervisor]:
    s = Supervisor(CFG, on_ready=events.on_ready, on_down=events.on_down)
    yield s
    await s.stop_all()


def assert_gone(spec: EngineSpec, pgid: int) -> None:
    """Nothing of the engine's group and nothing carrying its marker is left."""
    assert not group_alive(pgid)
    assert processes_with_marker(MARKER, spec.env[MARKER]) == []
    # A child killed after its parent is a zombie until init reaps it: give init a moment.
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        try:
            os.killpg(pgid, 0)
        except ProcessLookupError:
            return
        time.sleep(0.02)
    raise AssertionError(f"process group {pgid} is still there")


async def test_ready_load_and_stop(sup: Supervisor, events: Events, tmp_path: Path) -> None:
    spec = fake_spec(tmp_path, "alpha", "--ready-after", "0.5", "--child")
    await sup.reconcile({"alpha": spec})
    engine = sup.engines()["alpha"]
    assert engine.state is EngineState.STARTING
    await until(lambda: events.ready, what="on_ready")
    assert events.ready[0][1] is engine
    assert engine.state is EngineState.READY and engine.ready_since is not None
    assert engine.base_url == f"http://127.0.0.1:{spec.port}/v1"
    await until(lambda: engine.load is not None, what="a metrics scrape")
    assert engine.load is not None
    assert (engine.load.running, engine.load.waiting, engine.load.kv_cache_usage) == (2, 1, 0.25)
    pgid = engine.pid
    assert pgid is not None and os.getpgid(pgid) == pgid  # a process group of its own
    assert len(processes_with_marker(MARKER, spec.env[MARKER])) == 2  # the server and its child

    started = time.monotonic()
    await sup.stop_all()
    # The server dies on SIGTERM; its child ignores it and is killed after the stop timeout.
    assert CFG.stop_timeout_s - 0.2 <= time.monotonic() - started < CFG.stop_timeout_s + 2
    assert engine.state is EngineState.STOPPED and engine.pid is None
    assert [(e, s) for _, e, s in events.down] == [(engine, EngineState.STOPPING)]
    assert engine.last_exit == -signal.SIGTERM
    assert_gone(spec, pgid)
    assert sup.engines() == {}
    assert "fake engine alpha on port" in spec.log_path.read_text()


async def test_crash_restarts_with_backoff(sup: Supervisor, events: Events, tmp_path: Path) -> None:
    spec = fake_spec(tmp_path, "beta", "--child")
    await sup.reconcile({"beta": spec})
    engine = sup.engines()["beta"]
    await until(lambda: events.ready, what="on_ready")
    first = engine.pid
    assert first is not None
    killed = time.monotonic()
    os.kill(first, signal.SIGKILL)
    await until(lambda: events.down, what="on_down")
    assert events.down[0][0] - killed < 0.5  # at once, not at the next health check
    assert events.down[0][2] is EngineState.BACKOFF
    assert "killed by SIGKILL" in engine.last_error
    await until(lambda: not group_alive(first), timeout=2, what="the old group to die")
    await until(lambda: len(events.ready) == 2, what="ready again")
    assert events.ready[1][0] - killed >= 1.0  # the first backoff
    assert engine.state is EngineState.READY and engine.restarts == 1
    assert engine.pid != first and engine.last_exit == -signal.SIGKILL
    # Each start is marked in the log, which is appended to.
    assert spec.log_path.read_text().count("--- aigw ") == 2


async def test_exits_at_once_backoff(sup: Supervisor, events: Events, tmp_path: Path) -> None:
    code = "import sys, time; print('no model here', flush=True); sys.exit(3)"
    spec = fake_spec(tmp_path, "gamma", argv=(sys.executable, "-c", code))
    await sup.reconcile({"gamma": spec})
    engine = sup.engines()["gamma"]
    await until(lambda: engine.state is EngineState.BACKOFF, what="backoff")
    assert engine.last_exit == 3
    assert engine.last_error == "exited with code 3: no model here"
    assert "no model here" in spec.log_path.read_text()
    await until(lambda: engine.restarts == 1, timeout=3, what="a restart")
    assert events.ready == [] and events.down == []


async def test_backoff_doubles_to_the_maximum(events: Events, tmp_path: Path) -> None:
    sup = Supervisor(
        replace(CFG, restart_backoff_max_s=1.5), on_ready=events.on_ready, on_down=events.on_down
    )
    stamps = tmp_path / "stamps"
    code = f"import time; open({str(stamps)!r}, 'a').write(f'{{time.monotonic()}}\\n'); exit(1)"
    spec = fake_spec(tmp_path, "delta", argv=(sys.executable, "-c", code))
    try:
        await sup.reconcile({"delta": spec})
        await until(lambda: stamps.exists(), what="a start")
        await until(lambda: len(stamps.read_text().split()) == 4, timeout=8, what="4 starts")
    finally:
        await sup.stop_all()
    times = [float(t) for t in stamps.read_text().split()]
    gaps = [b - a for a, b in itertools.pairwise(times)]
    assert 1.0 <= gaps[0] < 1.4  # 1 s, then doubling, capped at restart_backoff_max_s
    assert 1.5 <= gaps[1] < 1.9 and 1.5 <= gaps[2] < 1.9


async def test_never_ready_is_killed_at_start_timeout(events: Events, tmp_path: Path) -> None:
    cfg = replace(CFG, start_timeout_s=1.0, restart_backoff_max_s=30.0)
    sup = Supervisor(cfg, on_ready=events.on_ready, on_down=events.on_down)
    spec = fake_spec(tmp_path, "eps", "--never-ready", "--ignore-sigterm")
    try:
        await sup.reconcile({"eps": spec})
        engine = sup.engines()["eps"]
        await until(lambda: engine.pid is not None, what="a pid")
        pgid = engine.pid
        assert pgid is not None
        started = time.monotonic()
        await until(lambda: engine.state is EngineState.BACKOFF, what="backoff")
        assert 0.5 < time.monotonic() - started < 2.5
        assert engine.last_error.startswith("not ready after 1 s (/health answered HTTP 503)")
        assert engine.last_exit == -signal.SIGKILL
        assert_gone(spec, pgid)
        assert events.ready == [] and events.down == []
    finally:
        await sup.stop_all()


async def test_failed_health_checks_restart(
    sup: Supervisor, events: Events, tmp_path: Path
) -> None:
    spec = fake_spec(tmp_path, "zeta", "--sick-after", "1.5")
    await sup.reconcile({"zeta": spec})
    engine = sup.engines()["zeta"]
    await until(lambda: events.ready, what="on_ready")
    first = engine.pid
    await until(lambda: events.down, timeout=5, what="on_down")
    assert events.ready[0][0] + 2 * CFG.watch_interval_s <= events.down[0][0]
    assert engine.last_error.startswith("3 health checks failed in a row")
    assert "/health answered HTTP 500" in engine.last_error
    await until(lambda: len(events.ready) == 2, what="ready again")
    assert engine.restarts == 1 and engine.pid != first


async def test_reconcile_starts_stops_and_restarts(
    sup: Supervisor, events: Events, tmp_path: Path
) -> None:
    a, b = fake_spec(tmp_path, "eta"), fake_spec(tmp_path, "theta")
    await sup.reconcile({"eta": a, "theta": b})
    await until(lambda: len(events.ready) == 2, what="both ready")
    old = sup.engines()["eta"]
    old_pid, b_pid = old.pid, sup.engines()["theta"].pid
    assert old_pid is not None and b_pid is not None
    await sup.reconcile({"eta": a, "theta": b})  # nothing changed: nothing happens
    assert events.down == [] and sup.engines()["eta"] is old
    changed = replace(a, env={**a.env, "EXTRA": "1"})
    await sup.reconcile({"eta": changed})
    assert {e.spec.name for _, e, _ in events.down} == {"eta", "theta"}
    assert set(sup.engines()) == {"eta"} and sup.engines()["eta"] is not old
    assert not group_alive(old_pid) and not group_alive(b_pid)
    await until(lambda: len(events.ready) == 3, what="eta ready again")
    assert sup.engines()["eta"].spec == changed


async def test_missing_program_fails(sup: Supervisor, tmp_path: Path) -> None:
    spec = fake_spec(tmp_path, "iota", argv=(str(tmp_path / "no-such-python"),))
    await sup.reconcile({"iota": spec})
    engine = sup.engines()["iota"]
    await until(lambda: engine.state is EngineState.FAILED, what="failed")
    assert engine.last_error.startswith(f"cannot start {tmp_path / 'no-such-python'}")
    await asyncio.sleep(0.1)
    assert engine.state is EngineState.FAILED and engine.restarts == 0


async def test_log_is_rotated_at_start(sup: Supervisor, events: Events, tmp_path: Path) -> None:
    spec = fake_spec(tmp_path, "kappa")
    spec.log_path.parent.mkdir(parents=True)
    with open(spec.log_path, "wb") as fh:
        fh.truncate(LOG_ROTATE_BYTES + 1)
    await sup.reconcile({"kappa": spec})
    await until(lambda: events.ready, what="on_ready")
    old = spec.log_path.with_name("kappa.log.1")
    assert old.stat().st_size == LOG_ROTATE_BYTES + 1
    assert spec.log_path.stat().st_size < 10_000


async def test_a_failing_callback_does_not_stop_supervision(tmp_path: Path) -> None:
    def boom(engine: Engine) -> None:
        raise RuntimeError("callback bug")

    sup = Supervisor(CFG, on_ready=boom, on_down=boom)
    spec = fake_spec(tmp_path, "lam")
    try:
        await sup.reconcile({"lam": spec})
        engine = sup.engines()["lam"]
        await until(lambda: engine.state is EngineState.READY, what="ready")
        await until(lambda: engine.load is not None, what="a scrape")
    finally:
        await sup.stop_all()
    assert engine.state is EngineState.STOPPED


DRIVER = """
import asyncio, sys
from appliance.config import InferenceConfig
from inference.supervisor import EngineSpec, Supervisor
from pathlib import Path

async def main():
    spec = EngineSpec(**eval(sys.argv[1]))
    ready = asyncio.Event()
    sup = Supervisor(InferenceConfig(), on_ready=lambda e: ready.set(), on_down=lambda e: None)
    await sup.reconcile({spec.name: spec})
    await ready.wait()
    print(sup.engines()[spec.name].pid, flush=True)
    await asyncio.Event().wait()

asyncio.run(main())
"""


def test_no_orphan_when_the_gateway_is_killed(tmp_path: Path) -> None:
    """PR_SET_PDEATHSIG: a SIGKILLed supervisor's engine gets SIGTERM and goes."""
    spec = fake_spec(tmp_path, "mu")
    fields = {
        "name": spec.name,
        "argv": spec.argv,
        "env": dict(spec.env),
        "port": spec.port,
        "served_name": spec.served_name,
        "log_path": Path(spec.log_path),
        "cwd": Path(spec.cwd),
    }
    gateway = subprocess.Popen(
        [sys.executable, "-c", DRIVER, repr(fields).replace("PosixPath", "Path")],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert gateway.stdout is not None
        pid = int(gateway.stdout.readline())
        assert processes_with_marker(MARKER, spec.env[MARKER]) == [pid]
        gateway.kill()
        gateway.wait(5)
        deadline = time.monotonic() + 5
        while group_alive(pid) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert not group_alive(pid)
        assert processes_with_marker(MARKER, spec.env[MARKER]) == []
    finally:
        gateway.kill()
        gateway.wait(5)
