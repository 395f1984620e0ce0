"""A real gateway with its admin API on loopback TCP and on a UNIX socket, per test module."""

from __future__ import annotations

import http.client
import json
import socket
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web

from appliance.config import parse_config
from appliance.store import open_store
from appliance.vault import open_vault
from gateway.admin import start_admin_socket
from gateway.app import create_app
from gateway.state import Gateway
from gateway.tenancy import store
from tests.harness import LoopThread, free_port

BOOTSTRAP = "test:bootstrap"


@dataclass
class Reply:
    """One HTTP reply, body parsed when it is JSON."""

    status: int
    headers: dict[str, str]
    raw: bytes

    @property
    def body(self) -> Any:
        return json.loads(self.raw) if self.raw else None


class _UnixConnection(http.client.HTTPConnection):
    def __init__(self, path: str) -> None:
        super().__init__("localhost", timeout=10)
        self.path = path

    def connect(self) -> None:
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.connect(self.path)


class Admin:
    """The gateway under test and one admin token per role."""

    def __init__(self, state_dir: Path) -> None:
        self.lt = LoopThread()
        self.port = free_port()
        self.state_dir = state_dir
        self.cfg = parse_config({"server": {"port": self.port}, "state": {"dir": str(state_dir)}})
        self.db = open_store(self.cfg.database_path)
        self.tokens = {
            role: store.create_admin_token(self.db, BOOTSTRAP, f"test-{role}", role)[1]
            for role in store.ROLES
        }
        self.runner: web.AppRunner | None = None
        self.lt.run(self._start())
        self.socket_path = str(state_dir / "admin.sock")

    async def _start(self) -> None:
        self.gateway = Gateway(self.cfg, open_store(self.cfg.database_path), open_vault(self.cfg))
        self.runner = web.AppRunner(create_app(self.gateway), access_log=None)
        await self.runner.setup()
        await web.TCPSite(self.runner, "127.0.0.1", self.port).start()
        await start_admin_socket(self.runner, self.state_dir)

    def stop(self) -> None:
        if self.runner is not None:
            self.lt.run(self.runner.cleanup())
        self.lt.stop()

    def call(
        self,
        method: str,
        path: str,
        body: Any = None,
        *,
        role: str | None = "admin",
        token: str | None = None,
        raw: bytes | None = None,
        unix: bool = False,
    ) -> Reply:
        """One request to /admin/v1 + path, as `role` (None: no credential)."""
        headers = {"Content-Type": "application/json"}
        secret = token if token is not None else self.tokens.get(role or "")
        if secret is not None:
            headers["Authorization"] = f"Bearer {secret}"
        data = raw if raw is not None else (None if body is None else json.dumps(body).encode())
        conn: http.client.HTTPConnection = (
            _UnixConnection(self.socket_path)
            if unix
            else http.client.HTTPConnection("127.0.0.1", self.port, timeout=10)
        )
        try:
            conn.request(method, "/admin/v1" + path, body=data, headers=headers)
            resp = conn.getresponse()
            return Reply(resp.status, {k.lower(): v for k, v in resp.getheaders()}, resp.read())
        finally:
            conn.close()


@pytest.fixture(scope="module")
def admin(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Admin]:
    """A fresh box per test module."""
    a = Admin(tmp_path_factory.mktemp("aigw-admin"))
    yield a
    a.stop()
