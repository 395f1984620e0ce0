"""`aigw up` with `[provisioning] watch_media = true`, end to end: a real gateway process, a real
`systemd-udevd`, ext4 seed images on loop devices. The gateway's watcher runs `aigw media
handle DEV` in a child process, which reaches the running box over its admin socket; a good
seed is applied and answered on the stick, a bad one changes nothing while the gateway serves on.

Root and the tools are needed (see `test_media`); the test says so when it skips."""

from __future__ import annotations

import http.client
import os
import secrets
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import orjson
import pytest

from appliance.admin_client import AdminClient
from tests.harness import free_port
from tests.provisioning.test_media import TOOLS, image, loop, read_file, udevd
from tests.provisioning.test_seed import _secrets, make_seed

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(os.geteuid() != 0, reason="loop devices and mounts need root"),
    pytest.mark.skipif(
        any(shutil.which(t) is None for t in TOOLS),
        reason=f"needs {', '.join(TOOLS)} (apt packages udev e2fsprogs mount)",
    ),
]

AIGW = str(Path(sys.executable).with_name("aigw"))
PROVIDER_SECRET = f"sk-media-up-{secrets.token_hex(8)}"
START_S = 120.0  # the machine may be busy: the first start makes keys, certificates, the store
HANDLED_S = 90.0  # udev's event, the child process, mount, check, apply, write back, unmount

GOOD = f"""\
version = 1

[providers.openai]
kind = "openai"
base_url = "http://127.0.0.1:9/v1"
api_key = "{PROVIDER_SECRET}"

[departments.eng]
description = "Engineering"

[projects.web]
department = "eng"

[models.gpt]
provider = "openai"
upstream_model = "gpt-4o-mini"

[keys.web-app]
project = "web"
"""

# Good tables first: none of them may be applied, since the key on line 8 names no project.
BAD = """\
version = 1
[departments.ops]
[projects.mobile]
department = "ops"
[keys.phone]
project = "mobile"
[keys.tablet]
project = "nope"
"""


class Up:
    """`aigw up` as a process of its own, on a temporary state directory."""

    def __init__(self, tmp: Path) -> None:
        self.state = tmp / "state"
        self.port = free_port()
        self.mnt = tmp / "mnt"
        self.config = tmp / "aigw.toml"
        tmp.mkdir(parents=True, exist_ok=True)
        self.config.write_text(
            f'[server]\nport = {self.port}\n[state]\ndir = "{self.state}"\n'
            '[log]\nformat = "text"\nlevel = "info"\n'
            f'[provisioning]\nwatch_media = true\nmedia_mount_dir = "{self.mnt}"\n'
        )
        self.out, self.err = tmp / "up.out", tmp / "up.err"
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        env = {k: v for k, v in os.environ.items() if not k.startswith("AIGW_")}
        env["AIGW_CONFIG"] = str(self.config)
        with self.out.open("wb") as out, self.err.open("wb") as err:
            self.proc = subprocess.Popen([AIGW, "up"], env=env, stdout=out, stderr=err)
        deadline = time.monotonic() + START_S
        while "Press Ctrl-C" not in self.out.read_text(errors="replace"):
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise AssertionError(f"aigw up did not start:\n{self.log()}")
            time.sleep(0.2)

    def stop(self) -> int | None:
        """SIGTERM, then SIGKILL if it lingers; its exit status."""
        if self.proc is None or self.proc.poll() is not None:
            return None if self.proc is None else self.proc.returncode
        self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(60)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(10)
            return None

    def errors(self, since: int = 0) -> str:
        """The gateway's log (stderr) from character `since` on."""
        return self.err.read_text(errors="replace")[since:]

    def log(self) -> str:
        return self.out.read_text(errors="replace") + self.err.read_text(errors="replace")

    def admin(self, method: str, path: str, body: Any = None) -> Any:
        """The running box's admin API over its socket (never the in-process fallback)."""
        sock = str(self.state / "admin.sock")
        status, data = AdminClient(sock, socket_path=sock, timeout=15).call(method, path, body)
        assert status < 300, (path, status, data)
        return data

    def http(self, path: str, token: str = "") -> tuple[int, Any]:
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=15)
        try:
            headers = {"Authorization": f"Bearer {token}"} if token else {}
            conn.request("GET", path, headers=headers)
            resp = conn.getresponse()
            raw = resp.read()
        finally:
            conn.close()
        try:
            return resp.status, orjson.loads(raw) if raw else None
        except orjson.JSONDecodeError:
            return resp.status, raw.decode(errors="replace")

    def snapshot(self) -> dict[str, Any]:
        """What a seed could change here (names only: no secrets, no timestamps)."""

        def names(path: str, field: str = "name") -> list[str]:
            return sorted(str(r[field]) for r in self.admin("GET", path)["data"])

        return {
            "departments": names("/departments"),
            "projects": names("/projects"),
            "providers": names("/providers"),
            "models": names("/models", "alias"),
            "keys": names("/keys", "id"),
            "trust": names("/trusted-keys"),
        }


@contextmanager
def running(tmp: Path) -> Iterator[Up]:
    up = Up(tmp)
    try:
        up.start()
        yield up
    finally:
        up.stop()


def wait_for(what: str, done: Callable[[], bool], up: Up, timeout: float = HANDLED_S) -> None:
    deadline = time.monotonic() + timeout
    while not done():
        assert up.proc is not None and up.proc.poll() is None, f"aigw up died:\n{up.log()}"
        assert time.monotonic() < deadline, f"{what} within {timeout:g} s:\n{up.log()}"
        time.sleep(0.3)


def test_aigw_up_applies_a_seed_stick_and_refuses_a_bad_one(tmp_path: Path) -> None:
    good = image(
        tmp_path / "good.img", make_seed(tmp_path / "good", GOOD, bundle=False).parent, "AIGW-SEED"
    )
    bad = image(
        tmp_path / "bad.img", make_seed(tmp_path / "bad", BAD, bundle=False).parent, "AIGW-SEED"
    )
    with udevd(), running(tmp_path / "box") as up:
        assert up.http("/healthz")[0] == 200
        before = up.snapshot()
        assert "eng" not in before["departments"]

        # A good seed stick: applied through the running box, answered on the stick.
        mark = len(up.errors())
        with loop(good) as dev:
            handled = f"medium {dev}: done"
            wait_for("the seed stick was not handled", lambda: handled in up.errors(mark), up)
        log = up.errors(mark)
        for line in (
            f"medium {dev}: aigw media {dev} (AIGW-SEED)",
            "+ department eng",
            "+ project web",
            "+ provider openai",
            "+ API key of provider openai stored in the vault",
            "result written to the medium as aigw-seed.result.txt",
        ):
            assert line in log, log
        after = up.snapshot()
        added = {k: sorted(set(after[k]) - set(before[k])) for k in after}
        assert {k: v for k, v in added.items() if k != "keys"} == {
            "departments": ["eng"],
            "projects": ["web"],
            "providers": ["openai"],
            "models": ["gpt"],
            "trust": [],
        }
        provider = up.admin("GET", "/providers/openai")
        assert provider["key_source"] == "vault"
        assert PROVIDER_SECRET not in orjson.dumps(provider).decode()
        result = read_file(good, "aigw-seed.result.txt")
        assert result is not None and "+ department eng" in result, result
        assert result.split("API keys issued by a seed.")[0].rstrip().endswith("done"), result
        assert PROVIDER_SECRET not in result
        [(key_id, key_secret)] = _secrets(result).items()
        assert added["keys"] == [key_id]
        last = orjson.loads((up.state / "media" / "last-result.json").read_bytes())
        assert last["ok"] is True and last["device"] == dev
        for secret in (PROVIDER_SECRET, key_secret):
            assert secret not in up.log()
            assert secret not in (up.state / "media" / "last-result.json").read_text()

        # The key the seed issued works on the running gateway (it reloads within seconds).
        def serves() -> bool:
            status, body = up.http("/v1/models", key_secret)
            return status == 200 and "gpt" in {m["id"] for m in body["data"]}

        wait_for("the gateway did not serve the seed's key", serves, up, 15)

        # A bad seed stick: refused whole, the line named on the stick, the gateway serves on.
        # Handled once: writing the result back makes udev send `change`, which is no new medium.
        first = up.errors(mark)
        assert first.count(f"medium {dev}: aigw media {dev}") == 1, first
        mark = len(up.errors())
        with loop(bad) as dev2:
            failed = f"medium {dev2}: aigw: error: "  # the child's one-line error, logged last
            wait_for("the bad seed stick was not handled", lambda: failed in up.errors(mark), up)
        log = up.errors(mark)
        assert "line 8" in log and "(nothing was changed)" in log, log
        assert f"medium {dev2}: FAILED: " in log, log
        assert "Traceback" not in up.log()
        assert up.snapshot() == after
        assert up.admin("GET", "/providers/openai")["key_source"] == "vault"
        result = read_file(bad, "aigw-seed.result.txt")
        assert result is not None and "FAILED: " in result, result
        assert "line 8" in result and "'nope'" in result, result
        # Named as the stick's holder sees it, not by the box's temporary mount point.
        assert "aigw-seed.toml, line 8" in result and str(up.mnt) not in result, result
        assert "(nothing was changed)" in result
        last = orjson.loads((up.state / "media" / "last-result.json").read_bytes())
        assert last["ok"] is False and last["device"] == dev2
        assert up.http("/healthz")[0] == 200
        assert serves()
        assert up.proc is not None and up.proc.poll() is None
        assert up.stop() == 0, up.log()
