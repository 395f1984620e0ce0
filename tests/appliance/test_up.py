"""`aigw up` as a new user meets it: first start, the admin API over TCP and the UNIX socket,
provider keys in the vault, and no planted secret anywhere it must not be."""

from __future__ import annotations

import http.client
import os
import socket
import stat
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import openai
import orjson
import pytest

from tests.harness import free_port

pytestmark = pytest.mark.slow
AIGW = str(Path(sys.executable).with_name("aigw"))
PROVIDER_KEY = "sk-upstream-planted-0123456789abcdef"


class UnixHTTPConnection(http.client.HTTPConnection):
    def __init__(self, path: str) -> None:
        super().__init__("localhost", timeout=10)
        self._path = path

    def connect(self) -> None:
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.settimeout(10)
        self.sock.connect(self._path)


def call(
    conn: http.client.HTTPConnection, method: str, path: str, body: Any = None, token: str = ""
) -> tuple[int, Any]:
    headers = {"Content-Type": "application/json"}
    if token:
        headers["Authorization"] = f"Bearer {token}"
    data = orjson.dumps(body) if body is not None else None
    conn.request(method, "/admin/v1" + path, body=data, headers=headers)
    resp = conn.getresponse()
    raw = resp.read()
    return resp.status, orjson.loads(raw) if raw else None


class Box:
    def __init__(self, tmp: Path) -> None:
        self.state = tmp / "state"
        self.port = free_port()
        self.config = tmp / "aigw.toml"
        self.config.write_text(
            f'[server]\nport = {self.port}\n[state]\ndir = "{self.state}"\n[log]\nlevel = "debug"\n'
        )
        self.env = {**os.environ, "AIGW_CONFIG": str(self.config)}
        self.stderr = tmp / "up.err"

    def start(self) -> tuple[subprocess.Popen[str], str]:
        proc = subprocess.Popen(
            [AIGW, "up"],
            env=self.env,
            stdout=subprocess.PIPE,
            stderr=self.stderr.open("a"),
            text=True,
        )
        assert proc.stdout is not None
        out = []
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            line = proc.stdout.readline()
            if not line:
                break
            out.append(line)
            if "Press Ctrl-C" in line:
                return proc, "".join(out)
        proc.kill()
        raise AssertionError("aigw up did not start:\n" + "".join(out) + self.stderr.read_text())

    def tcp(self) -> http.client.HTTPConnection:
        return http.client.HTTPConnection("127.0.0.1", self.port, timeout=10)


@pytest.fixture
def fake_openai(tmp_path: Path) -> Iterator[str]:
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "tests.fakes", "openai", "--port", str(port), "--key", PROVIDER_KEY],
        stdout=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout is not None and proc.stdout.readline().startswith("READY")
    yield f"http://127.0.0.1:{port}/v1"
    proc.terminate()
    proc.wait(10)


def test_first_start_vault_keys_and_no_secret_leaks(tmp_path: Path, fake_openai: str) -> None:
    box = Box(tmp_path)
    proc, banner = box.start()
    try:
        # stdout is a pipe here, as the journal is on the box: the banner says where the first
        # admin token is, never the token itself.
        token_file = box.state / "first-admin-token"
        assert "aigw-admin-" not in banner and str(token_file) in banner, banner
        token = token_file.read_text().strip()
        assert token.startswith("aigw-admin-")
        sock_path = box.state / "admin.sock"
        assert stat.S_IMODE(sock_path.stat().st_mode) == 0o600
        # Over TCP the admin API wants the token; over the socket the owner needs none.
        assert call(box.tcp(), "GET", "/status")[0] == 401
        assert call(box.tcp(), "GET", "/status", token=token)[0] == 200
        sock = UnixHTTPConnection(str(sock_path))
        steps = [
            ("POST", "/providers", {"name": "up", "kind": "openai", "base_url": fake_openai}),
            ("PUT", "/providers/up/key", {"api_key": PROVIDER_KEY}),
            ("POST", "/models", {"alias": "m", "provider": "up", "upstream_model": "gpt-4o"}),
            ("POST", "/departments", {"name": "eng"}),
            ("POST", "/projects", {"name": "demo", "department": "eng"}),
        ]
        for method, path, body in steps:
            status, reply = call(sock, method, path, body)
            assert status in (200, 201), (path, reply)
        status, key = call(sock, "POST", "/keys", {"name": "app", "project": "demo"})
        assert status == 201
        secret = key["secret"]
        client = openai.OpenAI(
            base_url=f"http://127.0.0.1:{box.port}/v1", api_key=secret, max_retries=0
        )
        deadline = time.monotonic() + 3  # the gateway reloads within a second
        while True:
            try:
                reply = client.chat.completions.create(
                    model="m", messages=[{"role": "user", "content": "hi"}]
                )
                break
            except openai.AuthenticationError:
                assert time.monotonic() < deadline
                time.sleep(0.1)
        assert reply.choices[0].message.content
        listed = [call(sock, "GET", p)[1] for p in ("/providers", "/keys", "/admin-tokens")]
        listed.append(call(sock, "GET", "/audit?limit=500")[1])
    finally:
        proc.terminate()
        proc.wait(15)
    assert proc.returncode == 0
    # A second start creates no second bootstrap token.
    proc, banner = box.start()
    proc.terminate()
    proc.wait(15)
    assert "aigw-admin-" not in banner
    planted = {"provider key": PROVIDER_KEY, "gateway key": secret, "admin token": token}
    files = {
        "logs": box.stderr.read_bytes(),
        "database": b"".join(p.read_bytes() for p in box.state.glob("aigw.db*")),
        "vault": (box.state / "vault.json").read_bytes(),
        "admin API listings": orjson.dumps(listed),
    }
    for what, value in planted.items():
        for where, blob in files.items():
            assert value.encode() not in blob, f"the {what} appears in the {where}"
