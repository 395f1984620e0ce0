"""A real box for the console: the gateway, its fakes and its admin socket on a temporary state
directory, seeded through the admin API with fixed names so screens are deterministic."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web

from appliance.admin_client import AdminClient
from appliance.config import load_config
from appliance.identity import Identity, save_identity
from appliance.store import open_store
from appliance.vault import ScryptParams, Vault, open_vault
from gateway.admin import start_admin_socket
from gateway.app import create_app
from gateway.state import Gateway
from tests.harness import LoopThread, Stack, free_port, request


class Box:
    """A running gateway (fake providers behind it) reached by its admin socket."""

    def __init__(self, state: Path) -> None:
        self.state = state
        self.stack = Stack(state).start()
        assert self.stack.runner is not None
        self.stack.lt.run(start_admin_socket(self.stack.runner, state))
        self.socket_path = str(state / "admin.sock")

    def call(self, method: str, path: str, body: Any = None, **query: Any) -> Any:
        """One admin API request over the socket, as the box's root would make it."""
        with AdminClient("test", socket_path=self.socket_path, timeout=10) as client:
            return client.call(method, path, body, query or None)[1]

    def chat(self, model: str = "oa") -> int:
        """One chat completion through the gateway with the harness key; the status."""
        body = b'{"model": "%s", "messages": [{"role": "user", "content": "hi"}]}' % model.encode()
        return request(self.stack, "POST", "/v1/chat/completions", body).status_code

    def stop(self) -> None:
        """Stop the gateway: the socket stops answering."""
        self.stack.stop()
        (self.state / "admin.sock").unlink(missing_ok=True)


@pytest.fixture
def box(tmp_path: Path) -> Iterator[Box]:
    """A fresh box per test, with one department, project, key and a budget."""
    b = Box(tmp_path / "state")
    yield b
    b.stop()


PASSPHRASE = "correct horse battery"


class SealedBox:
    """A box whose vault has a passphrase KEK: it starts sealed, as after every reboot."""

    def __init__(self, state: Path, port: int, sealed: bool = True) -> None:
        self.state = state
        state.mkdir(parents=True, exist_ok=True)
        self.config = state.parent / "aigw.toml"
        kek = '[vault]\nkek = "passphrase"\n' if sealed else ""
        self.config.write_text(f'[server]\nport = {port}\n[state]\ndir = "{state}"\n{kek}')
        self.cfg = load_config(str(self.config))
        if sealed:
            self.cfg.vault_path.parent.mkdir(parents=True, exist_ok=True)
            cheap = ScryptParams(n=2**4, r=1, p=1)
            Vault.create(self.cfg.vault_path, passphrase=PASSPHRASE, scrypt=cheap)
        self.lt = LoopThread()
        self.runner: web.AppRunner | None = None
        self.lt.run(self._start())

    async def _start(self) -> None:
        gateway = Gateway(self.cfg, open_store(self.cfg.database_path), open_vault(self.cfg))
        self.runner = web.AppRunner(create_app(gateway), access_log=None)
        await self.runner.setup()
        await start_admin_socket(self.runner, self.state)

    def call(self, method: str, path: str, body: Any = None) -> Any:
        """One admin API request over the socket."""
        with AdminClient("test", socket_path=str(self.state / "admin.sock"), timeout=10) as c:
            return c.call(method, path, body)[1]

    def vault(self) -> Any:
        """The vault's state."""
        return self.call("GET", "/vault")

    def stop(self) -> None:
        if self.runner is not None:
            self.lt.run(self.runner.cleanup())
        self.lt.stop()


@pytest.fixture
def sealed_box(tmp_path: Path) -> Iterator[SealedBox]:
    """A running box with a sealed passphrase vault."""
    b = SealedBox(tmp_path / "state", free_port())
    yield b
    b.stop()


@pytest.fixture
def quiet_box(tmp_path: Path) -> Iterator[SealedBox]:
    """A running box with fixed names only (no keys, no traffic): for snapshots."""
    state = tmp_path / "state"
    save_identity(
        state,
        Identity("0123456789abcdef0123456789abcdef", "aigw-0123", "2025-01-01T00:00:00+00:00"),
    )
    # Nothing listens on the TCP port (the console uses the socket): a fixed one keeps the
    # URLs on screen the same from run to run.
    b = SealedBox(state, 8080, sealed=False)
    b.call("POST", "/departments", {"name": "eng", "description": "engineering"})
    b.call("POST", "/projects", {"name": "demo", "department": "eng"})
    b.call("POST", "/users", {"name": "ana", "email": "ana@example.com", "department": "eng"})
    b.call(
        "POST",
        "/budgets",
        {
            "level": "project",
            "target": "demo",
            "period": "monthly",
            "limit_micros": 500_000_000,
            "enforcement": "hard",
            "thresholds": [50, 80, 100],
        },
    )
    yield b
    b.stop()
