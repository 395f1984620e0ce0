"""A private model on the box, end to end, as an administrator and an application meet it: the
tiny model imported and enabled with the `aigw` CLI, `aigw up` starting its vLLM engine (the
real CPU build), chat (streamed and not) and completions through the gateway with the OpenAI
and Anthropic SDKs, usage and cost in the ledger, a kill -9 of the engine (a clear 503 while
it restarts, then served again), and a shutdown that leaves no process behind.
"""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import anthropic
import openai
import orjson
import pytest

from tests.harness import free_port

pytestmark = pytest.mark.slow
AIGW = str(Path(sys.executable).with_name("aigw"))


@dataclass
class Box:
    """`aigw up` with the tiny model enabled, and an application's key."""

    state: Path
    env: dict[str, str]
    proc: subprocess.Popen[str]
    url: str
    key: str
    log: Path

    def aigw(self, *argv: str) -> str:
        done = subprocess.run(
            [AIGW, *argv], env=self.env, capture_output=True, text=True, timeout=120, check=False
        )
        assert done.returncode == 0, done.stderr
        return done.stdout

    def engine(self) -> dict[str, Any]:
        rows = orjson.loads(self.aigw("engines", "list", "--json"))
        return next(r for r in rows if r["model"] == "tiny")

    def oai(self) -> openai.OpenAI:
        return openai.OpenAI(base_url=self.url + "/v1", api_key=self.key, max_retries=0)

    def usage(self, trace: str) -> dict[str, Any] | None:
        db = sqlite3.connect(self.state / "aigw.db")
        db.row_factory = sqlite3.Row
        try:
            row = db.execute("SELECT * FROM usage WHERE trace_id = ?", [trace]).fetchone()
            return dict(row) if row else None
        finally:
            db.close()


def wait_for(check: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.5)


def engine_processes(state: Path) -> list[int]:
    """Processes whose command line names this box's model store (the engines and children)."""
    needle = str(state / "models").encode()
    found = []
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            with open(f"/proc/{entry.name}/cmdline", "rb") as fh:
                if needle in fh.read():
                    found.append(int(entry.name))
        except OSError:
            continue
    return found


@pytest.fixture(scope="module")
def box(
    engine_python: Path, tiny_model: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Box]:
    tmp = tmp_path_factory.mktemp("e2e")
    state, port = tmp / "state", free_port()
    config = tmp / "aigw.toml"
    config.write_text(
        f'[server]\nport = {port}\n[state]\ndir = "{state}"\n[log]\nformat = "text"\n'
        f'[inference]\nengine_python = "{engine_python}"\ndevice = "cpu"\n'
        f"cpu_kv_cache_bytes = {64 * 1024 * 1024}\nport_base = {free_port()}\nport_count = 1\n"
        "restart_backoff_max_s = 2.0\nwatch_interval_s = 0.5\nstart_timeout_s = 300.0\n"
    )
    env = {**os.environ, "AIGW_CONFIG": str(config)}

    def aigw(*argv: str) -> str:
        done = subprocess.run(
            [AIGW, *argv], env=env, capture_output=True, text=True, timeout=120, check=False
        )
        assert done.returncode == 0, done.stderr
        return done.stdout

    # The administrator: import and enable the model, price it, give an application a key.
    assert "tiny" in aigw("models", "import", str(tiny_model), "--license", "apache-2.0")
    aigw("models", "enable", "tiny")
    aigw("prices", "local", "local", "tiny", "--per-million", "2.00")
    aigw("departments", "add", "eng")
    aigw("projects", "add", "demo", "--department", "eng")
    key = orjson.loads(aigw("keys", "create", "--project", "demo", "--name", "app", "--json"))
    log = tmp / "up.log"
    proc = subprocess.Popen(
        [AIGW, "up"], env=env, stdout=subprocess.PIPE, stderr=log.open("a"), text=True
    )
    assert proc.stdout is not None
    banner = ""
    while "Press Ctrl-C" not in banner:
        line = proc.stdout.readline()
        assert line, "aigw up stopped:\n" + banner + log.read_text()[-3000:]
        banner += line
    assert "series G" in banner  # no GPU here; the engine runs on vLLM's CPU build
    b = Box(state, env, proc, f"http://127.0.0.1:{port}", key["secret"], log)
    try:
        wait_for(lambda: b.engine()["state"] == "ready", 300, "the engine to be ready")
        yield b
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            proc.wait(60)


def test_chat_and_completions_through_the_gateway(box: Box) -> None:
    client = box.oai()
    assert "tiny" in {m.id for m in client.models.list()}
    raw = client.chat.completions.with_raw_response.create(
        model="tiny", messages=[{"role": "user", "content": "Hello there"}], max_tokens=8
    )
    chat = raw.parse()
    assert chat.choices[0].message.content is not None
    assert chat.usage is not None and chat.usage.completion_tokens > 0
    stream = client.chat.completions.create(
        model="tiny",
        messages=[{"role": "user", "content": "Tell me"}],
        max_tokens=8,
        stream=True,
        stream_options={"include_usage": True},
    )
    chunks = list(stream)
    assert any(c.choices and c.choices[0].delta.content for c in chunks)
    assert chunks[-1].usage is not None and chunks[-1].usage.completion_tokens > 0
    done = client.completions.create(model="tiny", prompt="Once upon a time", max_tokens=8)
    assert done.choices[0].text is not None and done.usage is not None
    # An Anthropic client reaches the same private model; the gateway translates.
    msg = anthropic.Anthropic(base_url=box.url, api_key=box.key, max_retries=0).messages.create(
        model="tiny", max_tokens=8, messages=[{"role": "user", "content": "Hi"}]
    )
    assert msg.usage.output_tokens > 0
    trace = raw.headers["x-request-id"]
    wait_for(lambda: box.usage(trace) is not None, 10, "the usage row")
    row = box.usage(trace)
    assert row is not None
    assert (row["provider"], row["upstream_model"], row["status"]) == ("local", "tiny", 200)
    assert row["input_tokens"] == chat.usage.prompt_tokens
    assert row["output_tokens"] == chat.usage.completion_tokens
    assert row["cost_micros"] > 0 and row["priced"] == 1  # the amortized local price


def test_a_killed_engine_is_a_clear_503_then_restarted(box: Box) -> None:
    engine = box.engine()
    os.kill(engine["pid"], signal.SIGKILL)
    wait_for(lambda: box.engine()["state"] != "ready", 30, "the engine to leave routing")
    with pytest.raises(openai.InternalServerError) as err:
        box.oai().chat.completions.create(
            model="tiny", messages=[{"role": "user", "content": "Hi"}], max_tokens=4
        )
    assert err.value.status_code == 503
    assert isinstance(err.value.body, dict) and err.value.body["code"] == "engine_unavailable"
    wait_for(lambda: box.engine()["state"] == "ready", 300, "the engine to be restarted")
    restarted = box.engine()
    assert restarted["restarts"] == 1 and restarted["pid"] != engine["pid"]
    answer = box.oai().chat.completions.create(
        model="tiny", messages=[{"role": "user", "content": "Again"}], max_tokens=4
    )
    assert answer.choices[0].message is not None


def test_shutdown_leaves_no_process_behind(box: Box) -> None:
    assert engine_processes(box.state)  # the engine runs, from the model store
    box.proc.send_signal(signal.SIGTERM)
    assert box.proc.wait(90) == 0
    wait_for(lambda: not engine_processes(box.state), 10, "every engine process to be gone")
