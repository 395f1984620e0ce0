"""The supervisor with a real vLLM (the CPU build) serving the tiny model: readiness, chat and
completions with the OpenAI SDK, metrics, a kill -9 and its restart, a stop that leaves
nothing behind.

One engine for the whole module (vLLM takes 25-70 s to start on two cores); the tests run in
file order and the last one stops it.
"""

from __future__ import annotations

import os
import signal
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import aiohttp
import openai
import pytest

from appliance.config import InferenceConfig
from inference.engine_args import engine_command, engine_environment, ensure_cache_dirs
from inference.supervisor import Engine, EngineSpec, EngineState, Supervisor, group_alive
from inference.vllm_metrics import EngineLoad, scrape
from tests.harness import LoopThread, free_port
from tests.inference.procs import processes_with_marker
from tests.inference.tiny import tiny_manifest

pytestmark = pytest.mark.slow

MARKER = "AIGW_TEST_ENGINE_MARKER"
CFG = InferenceConfig(
    device="cpu",
    cpu_kv_cache_bytes=64 * 1024 * 1024,
    start_timeout_s=300.0,
    stop_timeout_s=30.0,
    restart_backoff_max_s=5.0,
    watch_interval_s=0.5,
)


@dataclass
class Running:
    """The module's engine, its supervisor and what the supervisor reported."""

    loop: LoopThread
    sup: Supervisor
    spec: EngineSpec
    ready: list[tuple[float, Engine]]
    down: list[tuple[float, Engine, EngineState]]
    start_s: float

    @property
    def engine(self) -> Engine:
        return self.sup.engines()["tiny"]

    def client(self) -> openai.OpenAI:
        return openai.OpenAI(base_url=self.engine.base_url, api_key="none", max_retries=0)


def wait_for(predicate: Callable[[], object], timeout: float, what: str) -> None:
    """Poll predicate() until it is true."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:g} s waiting for {what}")
        time.sleep(0.05)


@pytest.fixture(scope="module")
def vllm(
    engine_python: Path, tiny_model: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Running]:
    tmp = tmp_path_factory.mktemp("engine")
    port = free_port()
    manifest = tiny_manifest(tiny_model)
    argv = engine_command(
        manifest, tiny_model, port, python=engine_python, gpu_count=0, device="cpu", cfg=CFG
    )
    cache = tmp / "cache"
    ensure_cache_dirs(cache)
    env = {**engine_environment(cache, "cpu", os.environ), MARKER: uuid.uuid4().hex}
    spec = EngineSpec("tiny", tuple(argv), env, port, "tiny", tmp / "engine-tiny.log", cache)
    ready: list[tuple[float, Engine]] = []
    down: list[tuple[float, Engine, EngineState]] = []
    loop = LoopThread()
    sup = Supervisor(
        CFG,
        on_ready=lambda e: ready.append((time.monotonic(), e)),
        on_down=lambda e: down.append((time.monotonic(), e, e.state)),
    )
    started = time.monotonic()
    loop.run(sup.reconcile({"tiny": spec}))
    try:
        wait_for(lambda: ready or _crashed(sup), CFG.start_timeout_s, "vLLM to be ready")
        engine = sup.engines()["tiny"]
        assert ready, f"vLLM does not start: {engine.last_error} (log: {spec.log_path})"
        running = Running(loop, sup, spec, ready, down, time.monotonic() - started)
        print(f"\nvLLM ready in {running.start_s:.1f} s")
        yield running
    finally:
        loop.run(sup.stop_all(), timeout=CFG.stop_timeout_s + 30)
        loop.stop()


def test_ready_when_it_serves_the_model(vllm: Running) -> None:
    engine = vllm.engine
    assert vllm.ready[0][1] is engine and engine.state is EngineState.READY
    assert [m.id for m in vllm.client().models.list()] == ["tiny"]
    log = vllm.spec.log_path.read_text()
    assert "--- aigw " in log and "version 0.32.0" in log


def test_chat(vllm: Running) -> None:
    reply = vllm.client().chat.completions.create(
        model="tiny", messages=[{"role": "user", "content": "Hello there"}], max_tokens=8
    )
    assert reply.model == "tiny"
    assert isinstance(reply.choices[0].message.content, str)
    assert reply.usage is not None and 0 < reply.usage.completion_tokens <= 8
    assert reply.usage.prompt_tokens > 0


def test_chat_stream(vllm: Running) -> None:
    stream = vllm.client().chat.completions.create(
        model="tiny",
        messages=[{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi"}],
        max_tokens=6,
        stream=True,
        stream_options={"include_usage": True},
    )
    chunks = list(stream)
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    finish = [
        c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason
    ]
    assert finish in (["length"], ["stop"])
    usage = chunks[-1].usage
    assert usage is not None and 0 < usage.completion_tokens <= 6
    assert isinstance(text, str)


def test_completions(vllm: Running) -> None:
    reply = vllm.client().completions.create(model="tiny", prompt="The quick brown", max_tokens=5)
    assert isinstance(reply.choices[0].text, str)
    assert reply.usage is not None and 0 < reply.usage.completion_tokens <= 5


def test_metrics(vllm: Running) -> None:
    engine = vllm.engine
    # The watch reads /metrics every watch interval; the requests above are counted there.
    wait_for(
        lambda: engine.load is not None and (engine.load.prompt_tokens_total or 0) > 0,
        10,
        "a scrape that counts the requests",
    )

    async def direct() -> EngineLoad:
        async with aiohttp.ClientSession() as session:
            return await scrape(session, f"http://127.0.0.1:{vllm.spec.port}", 5.0)

    load = vllm.loop.run(direct())
    assert load.running == 0 and load.waiting == 0
    assert load.kv_cache_usage is not None and 0.0 <= load.kv_cache_usage <= 1.0
    assert (load.prompt_tokens_total or 0) > 0 and (load.generation_tokens_total or 0) >= 19


def test_kill_9_restarts(vllm: Running) -> None:
    engine = vllm.engine
    pid = engine.pid
    assert pid is not None
    group = processes_with_marker(MARKER, vllm.spec.env[MARKER])
    assert pid in group and len(group) >= 3  # the API server, the engine core, its worker
    killed = time.monotonic()
    os.kill(pid, signal.SIGKILL)
    wait_for(lambda: vllm.down, 5, "on_down")
    assert vllm.down[0][0] - killed < 1.0
    assert vllm.down[0][2] is EngineState.BACKOFF
    assert engine.state in (EngineState.BACKOFF, EngineState.STARTING)
    # vLLM's engine core and worker do not outlive their API server.
    wait_for(lambda: not group_alive(pid), 10, "the old process group to be gone")
    wait_for(lambda: len(vllm.ready) == 2, CFG.start_timeout_s, "vLLM to be ready again")
    print(f"\nvLLM ready again {time.monotonic() - killed:.1f} s after kill -9")
    assert engine.state is EngineState.READY and engine.restarts == 1
    assert engine.last_exit == -signal.SIGKILL and engine.pid != pid
    assert not set(group) & set(processes_with_marker(MARKER, vllm.spec.env[MARKER]))
    reply = vllm.client().completions.create(model="tiny", prompt="Again", max_tokens=2)
    assert reply.usage is not None and reply.usage.completion_tokens > 0


def test_stop_all_leaves_nothing(vllm: Running) -> None:
    engine = vllm.engine
    pgid = engine.pid
    assert pgid is not None
    started = time.monotonic()
    vllm.loop.run(vllm.sup.stop_all(), timeout=CFG.stop_timeout_s + 30)
    print(f"\nvLLM stopped in {time.monotonic() - started:.1f} s (exit {engine.last_exit})")
    assert engine.state is EngineState.STOPPED
    assert vllm.down[-1][2] is EngineState.STOPPING
    assert not group_alive(pgid)
    wait_for(lambda: _group_gone(pgid), 5, "the process group to be reaped")
    assert processes_with_marker(MARKER, vllm.spec.env[MARKER]) == []


def _crashed(sup: Supervisor) -> bool:
    """The engine did not start twice: it will not (see its last_error)."""
    engine = sup.engines()["tiny"]
    return engine.restarts >= 1 and engine.state is EngineState.BACKOFF


def _group_gone(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return True
    return False
