"""Engines as systemd units: `aigw engines exec NAME` (the unit's ExecStart) replaces itself with
the engine `aigw up` would run, on the model's kept port; with `[inference] supervisor =
"systemd"` the gateway starts and stops `aigw-engine@NAME.service` and watches its engine; the
unit file passes `systemd-analyze verify`.

systemd itself is the system boundary: a small `systemctl` stand-in (a script that runs the
unit's ExecStart in the background, like systemd would) and a stand-in for vLLM's python (it
records how it was started, then serves what vLLM serves: /health, /v1/models, /metrics).
"""

from __future__ import annotations

import os
import shutil
import signal
import stat
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import orjson
import pytest

from appliance.config import load_config
from appliance.engines import EngineManager
from appliance.store import open_store
from gateway.state import Gateway
from tests.harness import LoopThread, free_port
from tests.inference.fake_models import make_model_folder

ROOT = Path(__file__).resolve().parents[2]
AIGW = str(Path(sys.executable).with_name("aigw"))
FAKE_ENGINE = Path(__file__).with_name("fake_engine.py")
UNIT = ROOT / "systemd" / "aigw-engine@.service"

# vLLM's python, as the engine sees it: records argv, environment and directory, then serves.
FAKE_PYTHON = """#!{python}
import json, os, sys
args = sys.argv[1:]
with open(os.path.join(os.getcwd(), "exec.json"), "w") as fh:
    json.dump({{"argv": args, "env": dict(os.environ), "cwd": os.getcwd()}}, fh)
port = args[args.index("--port") + 1]
name = args[args.index("--served-model-name") + 1]
os.execv(sys.executable, [sys.executable, "{engine}", "--port", port, "--served-model-name", name])
"""
# systemctl, as the gateway calls it: `restart|stop --no-block aigw-engine@N.service`, `show`.
# Like the unit's Environment=, it gives ExecStart the box's configuration file.
FAKE_SYSTEMCTL = """#!{python}
import os, signal, subprocess, sys
log, units = "{state}/systemctl.log", "{state}/units"
os.makedirs(units, exist_ok=True)
with open(log, "a") as fh:
    fh.write(" ".join(sys.argv[1:]) + "\\n")
verb, unit = sys.argv[1], sys.argv[-1]
name = unit.split("@", 1)[1].rsplit(".", 1)[0]
pidfile = os.path.join(units, name)
def running():
    try:
        return int(open(pidfile).read())
    except OSError:
        return None
if verb in ("stop", "restart") and running():
    try:
        os.killpg(running(), signal.SIGTERM)
    except ProcessLookupError:
        pass
    os.unlink(pidfile)
if verb in ("start", "restart"):
    out = open(os.path.join(units, name + ".log"), "ab")
    proc = subprocess.Popen(["{aigw}", "engines", "exec", name], stdout=out, stderr=out,
                            start_new_session=True, env=dict(os.environ, AIGW_CONFIG="{config}"))
    open(pidfile, "w").write(str(proc.pid))
if verb == "show":
    print(f"MainPID={{running() or 0}}\\nNRestarts=0")
"""


def _script(path: Path, text: str) -> Path:
    path.write_text(text)
    path.chmod(path.stat().st_mode | stat.S_IXUSR)
    return path


def wait_for(check: Callable[[], bool], timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError("condition not met in time")
        time.sleep(0.1)


class Box:
    """A state directory with the model `tiny` imported and enabled, engines under systemd."""

    def __init__(self, tmp: Path) -> None:
        self.tmp, self.state = tmp, tmp / "state"
        self.port_base = free_port()
        python = _script(
            tmp / "vllm-python", FAKE_PYTHON.format(python=sys.executable, engine=FAKE_ENGINE)
        )
        self.config = tmp / "aigw.toml"
        self.config.write_text(
            f'[server]\nport = {free_port()}\n[state]\ndir = "{self.state}"\n'
            f'[inference]\nengine_python = "{python}"\ndevice = "cpu"\nsupervisor = "systemd"\n'
            f"port_base = {self.port_base}\nport_count = 5\nwatch_interval_s = 0.2\n"
        )
        self.env = {**os.environ, "AIGW_CONFIG": str(self.config)}
        folder = make_model_folder(tmp / "src", "tiny", context=512)
        self.aigw("models", "import", str(folder), "--license", "mit")
        self.aigw("models", "enable", "tiny")
        self.systemctl = _script(
            tmp / "systemctl",
            FAKE_SYSTEMCTL.format(
                python=sys.executable, state=self.state, aigw=AIGW, config=self.config
            ),
        )

    def aigw(self, *argv: str) -> str:
        done = subprocess.run(
            [AIGW, *argv], env=self.env, capture_output=True, text=True, timeout=60, check=False
        )
        assert done.returncode == 0, done.stderr
        return done.stdout

    def record(self) -> dict[str, object]:
        return orjson.loads((self.state / "engine-cache" / "tiny" / "exec.json").read_bytes())


@pytest.fixture
def box(tmp_path: Path) -> Box:
    return Box(tmp_path)


def _health(port: int) -> bool:
    import http.client

    try:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=1)
        conn.request("GET", "/health")
        return conn.getresponse().status == 200
    except OSError:
        return False


def test_exec_replaces_itself_with_the_engine_aigw_up_would_run(box: Box) -> None:
    proc = subprocess.Popen([AIGW, "engines", "exec", "tiny"], env=box.env)
    try:
        wait_for(lambda: _health(box.port_base))  # the first port of the range, now kept
        rec = box.record()
        argv = rec["argv"]
        assert isinstance(argv, list)
        assert argv[:2] == ["-m", "vllm.entrypoints.openai.api_server"]
        flags = dict(zip(argv[2::2], argv[3::2], strict=False))
        assert flags["--port"] == str(box.port_base) and flags["--host"] == "127.0.0.1"
        assert flags["--served-model-name"] == "tiny" and flags["--max-model-len"] == "512"
        assert flags["--model"] == str(box.state / "models" / "tiny")
        env = rec["env"]
        assert isinstance(env, dict) and env["HF_HUB_OFFLINE"] == "1"
        assert "AIGW_CONFIG" not in env  # the engine gets only what it needs
        db = open_store(box.state / "aigw.db")
        assert db.execute("SELECT port FROM local_models").fetchone()[0] == box.port_base
        db.conn.close()
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(10)


def test_exec_refuses_a_model_that_is_not_enabled(box: Box) -> None:
    box.aigw("models", "disable", "tiny")
    done = subprocess.run(
        [AIGW, "engines", "exec", "tiny"], env=box.env, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 1
    assert "not enabled" in done.stderr and "Traceback" not in done.stderr


@pytest.fixture
def running(box: Box) -> Iterator[tuple[Box, Gateway, EngineManager, LoopThread]]:
    cfg = load_config(str(box.config))
    lt = LoopThread()
    gw = Gateway(cfg, open_store(cfg.database_path))

    async def start() -> EngineManager:
        gw.reload()
        manager = EngineManager(cfg, gw, 0, systemctl=[str(box.systemctl)])
        await manager.start()
        return manager

    manager = lt.run(start())
    yield box, gw, manager, lt
    lt.run(manager.stop())
    lt.stop()
    gw.db.conn.close()


def test_the_gateway_runs_engines_as_units_and_watches_them(
    running: tuple[Box, Gateway, EngineManager, LoopThread],
) -> None:
    box, gw, manager, lt = running
    calls = box.state / "systemctl.log"
    assert calls.read_text().splitlines()[0] == "restart --no-block aigw-engine@tiny.service"
    wait_for(lambda: gw.engines.ready("tiny"))
    row = next(r for r in manager.report() if r["name"] == "tiny")
    assert row["state"] == "ready" and row["port"] == box.port_base and row["pid"]
    assert row["url"] == f"http://127.0.0.1:{box.port_base}/v1"
    wait_for(lambda: next(r for r in manager.report() if r["name"] == "tiny")["waiting"] == 1)
    # The operator disables the model: the unit is stopped and the engine leaves routing.
    box.aigw("models", "disable", "tiny")

    async def reload() -> None:
        gw.reload()

    lt.run(reload())
    wait_for(lambda: "stop --no-block aigw-engine@tiny.service" in calls.read_text())
    wait_for(lambda: not gw.engines.ready("tiny"))
    wait_for(lambda: not _health(box.port_base))


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="no systemd-analyze")
def test_the_unit_file_verifies(tmp_path: Path) -> None:
    # The unit as installed, its ExecStart pointed at this environment's aigw.
    text = UNIT.read_text().replace("/opt/aigw/venv/bin/aigw", AIGW)
    unit = tmp_path / "aigw-engine@tiny.service"
    unit.write_text(text)
    done = subprocess.run(
        ["systemd-analyze", "verify", str(unit)], capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    assert done.stderr == ""
    assert "ExecStart=/opt/aigw/venv/bin/aigw engines exec %i" in UNIT.read_text()
