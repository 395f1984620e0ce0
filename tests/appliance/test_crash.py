"""kill -9 under load: every request whose client received a complete response has its ledger
record after the restart (the record is committed before the response finishes)."""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from pathlib import Path

import openai
import pytest

from tests.harness import free_port

pytestmark = pytest.mark.slow
AIGW = str(Path(sys.executable).with_name("aigw"))
UPSTREAM_KEY = "sk-crash-upstream"


def _aigw(env: dict[str, str], *args: str, stdin: str | None = None) -> str:
    done = subprocess.run(
        [AIGW, *args], env=env, input=stdin, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    return done.stdout


def test_kill_9_under_load_loses_no_answered_request(tmp_path: Path) -> None:
    port, up_port = free_port(), free_port()
    config = tmp_path / "aigw.toml"
    config.write_text(f'[server]\nport = {port}\n[state]\ndir = "{tmp_path / "state"}"\n')
    env = {**os.environ, "AIGW_CONFIG": str(config)}
    fake_cmd = [sys.executable, "-m", "tests.fakes", "openai", "--port", str(up_port)]
    fake = subprocess.Popen([*fake_cmd, "--key", UPSTREAM_KEY], stdout=subprocess.PIPE, text=True)
    assert fake.stdout is not None and fake.stdout.readline().startswith("READY")
    gateway: subprocess.Popen[bytes] | None = None
    try:
        _aigw(env, "providers", "add", "up", "--kind", "openai", "--base-url",
              f"http://127.0.0.1:{up_port}/v1")  # fmt: skip
        _aigw(env, "providers", "set-key", "up", stdin=UPSTREAM_KEY + "\n")
        _aigw(env, "models", "add", "m", "--provider", "up", "--upstream-model", "gpt-4o")
        _aigw(env, "departments", "add", "eng")
        _aigw(env, "projects", "add", "demo", "--department", "eng")
        created = _aigw(env, "keys", "create", "--project", "demo", "--name", "load")
        secret = next(w for w in created.split() if w.startswith("sk-aigw-"))
        client = openai.OpenAI(
            base_url=f"http://127.0.0.1:{port}/v1", api_key=secret, max_retries=0, timeout=10
        )

        def start() -> subprocess.Popen[bytes]:
            proc = subprocess.Popen(
                [AIGW, "up"], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
            )
            deadline = time.monotonic() + 30
            while True:  # until the gateway answers
                try:
                    client.models.list()
                    return proc
                except openai.APIConnectionError:
                    assert time.monotonic() < deadline, "aigw up did not start"
                    time.sleep(0.2)

        gateway = start()

        answered: list[str] = []
        lock = threading.Lock()
        stop = threading.Event()

        def worker(stream: bool) -> None:
            while not stop.is_set():
                try:
                    if stream:
                        raw = client.chat.completions.with_raw_response.create(
                            model="m", messages=[{"role": "user", "content": "hi"}], stream=True
                        )
                        chunks = list(raw.parse())  # complete: the stream reached [DONE]
                        assert chunks
                    else:
                        raw = client.chat.completions.with_raw_response.create(
                            model="m", messages=[{"role": "user", "content": "hi"}]
                        )
                        raw.parse()
                except (openai.APIError, AssertionError):
                    continue  # cut by the kill: not answered, may or may not be recorded
                with lock:
                    answered.append(raw.headers["x-request-id"])

        threads = [threading.Thread(target=worker, args=(i % 2 == 0,)) for i in range(8)]
        for t in threads:
            t.start()
        deadline = time.monotonic() + 20  # load until enough answers, on a busy machine too
        while time.monotonic() < deadline:
            time.sleep(0.25)
            with lock:
                if len(answered) >= 40:
                    break
        gateway.send_signal(signal.SIGKILL)
        gateway.wait(10)
        stop.set()
        for t in threads:
            t.join(30)
        with lock:
            done = list(answered)
        assert len(done) >= 40, "too little load to mean anything"
        gateway = start()  # the restart recovers the database (WAL) and serves again
        gateway.send_signal(signal.SIGTERM)
        gateway.wait(15)
        db = sqlite3.connect(tmp_path / "state" / "aigw.db")
        try:
            recorded = {r[0] for r in db.execute("SELECT trace_id FROM usage")}
        finally:
            db.close()
        missing = [t for t in done if t not in recorded]
        assert not missing, f"{len(missing)} of {len(done)} answered requests have no record"
    finally:
        if gateway is not None and gateway.poll() is None:
            gateway.kill()
        fake.terminate()
        fake.wait(10)
