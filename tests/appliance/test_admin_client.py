"""How the CLI reaches the admin API: --url/--token over TCP, the box's socket, or in-process."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from aiohttp import web

from appliance.admin_client import AdminAPIError, AdminClient, open_client
from appliance.config import load_config
from appliance.store import open_store
from gateway.admin import build_admin_app, start_admin_socket
from gateway.state import Gateway
from gateway.tenancy import store as tenancy
from tests.appliance.conftest import Cli
from tests.harness import LoopThread, free_port


class Server:
    """A real admin API (the same app the box mounts) on a loopback port and/or a socket."""

    def __init__(self, cfg_path: Path, db_path: Path) -> None:
        self.cfg = load_config(str(cfg_path))
        self.db = open_store(db_path)
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.lt = LoopThread()
        self.runner: web.AppRunner | None = None

    async def _start(self, unix: bool) -> None:
        app = web.Application()
        app.add_subapp("/admin/v1", build_admin_app(Gateway(self.cfg, self.db)))
        self.runner = web.AppRunner(app, access_log=None)
        await self.runner.setup()
        await web.TCPSite(self.runner, "127.0.0.1", self.port).start()
        if unix:
            self.cfg.state_dir.mkdir(parents=True, exist_ok=True)
            await start_admin_socket(self.runner, self.cfg.state_dir)

    def start(self, unix: bool = False) -> Server:
        self.lt.run(self._start(unix))
        return self

    def stop(self) -> None:
        if self.runner is not None:
            self.lt.run(self.runner.cleanup())
        self.lt.stop()
        self.db.conn.close()


@pytest.fixture
def server(cli: Cli) -> Iterator[Server]:
    """The admin API of `cli`'s box, on loopback TCP."""
    s = Server(cli.config, cli.state / "aigw.db").start()
    yield s
    s.stop()


def test_url_and_token(cli: Cli, server: Server, monkeypatch: pytest.MonkeyPatch) -> None:
    row, admin = tenancy.create_admin_token(server.db, "test", "ops", "admin")
    _, auditor = tenancy.create_admin_token(server.db, "test", "viewer", "auditor")
    remote = ("--url", server.url, "--token", admin)
    cli.ok(*remote, "departments", "add", "eng")
    assert [d["name"] for d in cli.ok(*remote, "departments", "list", "--json").json] == ["eng"]
    rows = cli.ok("audit", "--object-type", "department", "--json").json
    assert [r["actor"] for r in rows] == [f"token:{row['id']}"]

    assert "the admin token is unknown or revoked" in cli.fails(
        "--url", server.url, "--token", "aigw-admin-wrong", "departments", "list"
    )
    assert "the auditor role may not POST" in cli.fails(
        "departments", "add", "ops", "--url", server.url, "--token", auditor
    )
    assert "needs an admin token" in cli.fails("--url", server.url, "departments", "list")
    assert "must be an http:// or https:// URL" in cli.fails(
        "--url", "ftp://x", "--token", admin, "departments", "list"
    )
    dead = f"http://127.0.0.1:{free_port()}"
    assert f"cannot reach the admin API at {dead}" in cli.fails(
        "--url", dead, "--token", admin, "departments", "list"
    )

    # The environment works as the options do.
    monkeypatch.setenv("AIGW_URL", server.url + "/")
    monkeypatch.setenv("AIGW_ADMIN_TOKEN", auditor)
    assert [d["name"] for d in cli.ok("departments", "list", "--json").json] == ["eng"]


def test_the_running_box_socket_is_used(cli: Cli, tmp_path: Path) -> None:
    # The box behind the socket keeps its data elsewhere: a change made through the CLI shows
    # up there and not in the state directory's database, so the socket was used.
    elsewhere = tmp_path / "elsewhere.db"
    s = Server(cli.config, elsewhere).start(unix=True)
    try:
        cli.ok("departments", "add", "via-socket")
        with AdminClient("socket", socket_path=str(cli.state / "admin.sock")) as client:
            assert client.call("GET", "/departments/via-socket")[0] == 200
        assert [d["name"] for d in tenancy.list_departments(s.db)] == ["via-socket"]
    finally:
        s.stop()
    assert tenancy.list_departments(open_store(cli.state / "aigw.db")) == []
    # The box is gone; its socket file stays behind: the CLI serves the API itself.
    assert (cli.state / "admin.sock").exists()
    assert cli.ok("departments", "list", "--json").json == []


def test_a_stale_socket_falls_back_to_in_process(cli: Cli) -> None:
    cli.state.mkdir(parents=True)
    stale = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    stale.bind(str(cli.state / "admin.sock"))  # bound, never listening: connection refused
    try:
        cli.ok("departments", "add", "eng")
    finally:
        stale.close()
    assert [d["name"] for d in tenancy.list_departments(open_store(cli.state / "aigw.db"))] == [
        "eng"
    ]


def test_client_errors_carry_the_envelope(cli: Cli) -> None:
    cfg = load_config(str(cli.config))
    with open_client(cfg) as client:
        assert client.where.startswith("in-process")
        with pytest.raises(AdminAPIError) as err:
            client.call("POST", "/departments", {"name": "x", "colour": "red"})
        assert (err.value.status, err.value.code) == (400, "invalid_request")
        assert "unknown field(s): colour" in err.value.message
        with pytest.raises(AdminAPIError, match="no such admin endpoint"):
            client.call("GET", "/nowhere")
        status, body = client.call("GET", "/departments", query={"ignored": None})
        assert (status, body) == (200, {"data": []})
    # The temporary socket and its directory are gone once the client is closed.
    assert not Path(client._socket_path or "").exists()


@pytest.mark.slow
def test_against_a_running_aigw_up(cli: Cli) -> None:
    port = free_port()
    cli.config.write_text(f'[server]\nport = {port}\n[state]\ndir = "{cli.state}"\n')
    env = {**os.environ, "AIGW_CONFIG": str(cli.config)}
    proc = subprocess.Popen(
        [sys.executable, "-m", "appliance.cli", "up"],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    try:
        assert proc.stdout is not None
        banner = []
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and "Press Ctrl-C" not in "".join(banner):
            banner.append(proc.stdout.readline())
        # stdout is a pipe (a log): the first admin token is kept in its file, not printed.
        token = (cli.state / "first-admin-token").read_text().strip()
        cli.ok("departments", "add", "local")  # through the box's socket, no token
        url = f"http://127.0.0.1:{port}"
        cli.ok("--url", url, "--token", token, "departments", "add", "remote")
        names = [d["name"] for d in cli.ok("departments", "list", "--json").json]
        assert names == ["local", "remote"]
        actors = [r["actor"] for r in cli.ok("audit", "--object-type", "department", "--json").json]
        assert actors[0].startswith("token:") and actors[1] == f"local:uid={os.getuid()}"
    finally:
        proc.send_signal(signal.SIGINT)
        proc.wait(15)
