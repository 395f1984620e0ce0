"""A gateway and the fake providers running on a private event loop in a background thread.

Tests then drive them with the official, synchronous `openai` and `anthropic` SDKs over real
loopback HTTP, exactly as an application on the LAN would.
"""

from __future__ import annotations

import asyncio
import http.client
import json
import os
import socket
import threading
from collections.abc import Coroutine, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import uvloop
from aiohttp import web

from appliance.config import parse_config
from appliance.store import open_store
from appliance.vault import open_vault
from gateway import catalog
from gateway.app import create_app
from gateway.state import Gateway
from gateway.tenancy import keys
from gateway.tenancy import store as tenancy
from tests.fakes import FakeAnthropic, FakeAzure, FakeGemini, FakeOpenAI, FakeUpstream

T = TypeVar("T")

# alias → (fake, provider kind, upstream model)
MODELS = {
    "oa": ("openai", "openai", "gpt-4o-mini"),
    "an": ("anthropic", "anthropic", "claude-sonnet-4-5"),
    "gm": ("gemini", "gemini", "gemini-2.5-flash"),
    "az": ("azure", "azure-openai", "my-gpt4o-deployment"),
    "oa-embed": ("openai", "openai", "text-embedding-3-small"),
    "gm-embed": ("gemini", "gemini", "text-embedding-004"),
    "az-embed": ("azure", "azure-openai", "my-embedding-deployment"),
}
CHAT_MODELS = ["oa", "an", "gm", "az"]
VAULTED = {"openai"}  # fakes whose key the gateway reads from the vault
KEY_ENV = {
    "openai": "AIGW_TEST_OPENAI_KEY",
    "anthropic": "AIGW_TEST_ANTHROPIC_KEY",
    "gemini": "AIGW_TEST_GEMINI_KEY",
    "azure": "AIGW_TEST_AZURE_KEY",
}


def free_port() -> int:
    """A free TCP port on loopback."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class LoopThread:
    """An event loop (uvloop, as in production) on a daemon thread."""

    def __init__(self) -> None:
        self.loop = uvloop.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()

    def run(self, coro: Coroutine[Any, Any, T], timeout: float = 30) -> T:
        """Run a coroutine on the loop and wait for its result."""
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    def stop(self) -> None:
        """Stop the loop and join the thread."""
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)


class Stack:
    """Four fake providers and one gateway configured to reach all of them."""

    def __init__(self, state_dir: Path, **config: Any) -> None:
        self.lt = LoopThread()
        self.fakes: dict[str, FakeUpstream] = {
            "openai": FakeOpenAI(),
            "anthropic": FakeAnthropic(),
            "gemini": FakeGemini(),
            "azure": FakeAzure(),
        }
        self.port = free_port()
        raw: dict[str, dict[str, Any]] = {
            "server": {"port": self.port, "max_body_bytes": 64 * 1024},
            "state": {"dir": str(state_dir)},
            "upstream": {"connect_timeout": 2, "first_byte_timeout": 2, "idle_timeout": 1},
        }
        for section, values in config.items():
            raw.setdefault(section, {}).update(values)
        self.cfg = parse_config(raw)
        self.url = f"http://127.0.0.1:{self.port}"
        self.runner: web.AppRunner | None = None
        self.gateway: Gateway | None = None

    def start(self) -> Stack:
        """Start the fakes, register them, start the gateway. The OpenAI fake's key is kept in
        the vault (as on a box); the others come from environment variables."""
        for name, fake in self.fakes.items():
            self.lt.run(fake.start())
            if name not in VAULTED:
                os.environ[KEY_ENV[name]] = fake.key
        self.db = open_store(self.cfg.database_path)
        self.vault = open_vault(self.cfg)
        for name, fake in self.fakes.items():
            kind = {"azure": "azure-openai"}.get(name, name)
            base = fake.url + "/v1" if name == "openai" else fake.url
            env = None if name in VAULTED else KEY_ENV[name]
            catalog.add_provider(
                self.db, catalog.validate_provider(f"fake-{name}", kind, base, env)
            )
            if name in VAULTED:
                self.vault.put(catalog.provider_secret_id(f"fake-{name}"), fake.key)
        for alias, (fake_name, _, upstream) in MODELS.items():
            catalog.add_model(self.db, catalog.ModelDef(alias, f"fake-{fake_name}", upstream))
        tenancy.create_department(self.db, "test", name="eng")
        tenancy.create_project(self.db, "test", name="demo", department="eng")
        self.key_row, self.key = self.new_key("harness")
        self.lt.run(self._start_gateway())
        return self

    async def _start_gateway(self) -> None:
        self.gateway = Gateway(self.cfg, open_store(self.cfg.database_path), self.vault)
        self.runner = web.AppRunner(
            create_app(self.gateway), handler_cancellation=True, access_log=None
        )
        await self.runner.setup()
        await web.TCPSite(self.runner, "127.0.0.1", self.port).start()

    def stop(self) -> None:
        """Stop everything."""
        if self.runner is not None:
            self.lt.run(self.runner.cleanup())
        for fake in self.fakes.values():
            self.lt.run(fake.stop())
        self.lt.stop()

    def new_key(self, name: str, **fields: Any) -> tuple[dict[str, Any], str]:
        """Issue a gateway key in project `demo` (fields as `create_key` takes them)."""
        return keys.create_key(
            self.db, "test", name=name, project=fields.pop("project", "demo"), **fields
        )

    def reload(self) -> None:
        """Make the gateway reload its catalog and credentials now."""
        assert self.gateway is not None
        gateway = self.gateway

        async def reload() -> None:
            gateway.reload()

        self.lt.run(reload())

    @contextmanager
    def provider_key(self, fake: str, value: str | None) -> Iterator[None]:
        """Run with another API key (None: no key) for one fake's provider."""
        secret_id = catalog.provider_secret_id(f"fake-{fake}")
        env = KEY_ENV[fake]
        old = self.vault.get(secret_id) if fake in VAULTED else os.environ.get(env)
        self._set_key(fake, value)
        try:
            yield
        finally:
            self._set_key(fake, old)

    def _set_key(self, fake: str, value: str | None) -> None:
        if fake in VAULTED:
            secret_id = catalog.provider_secret_id(f"fake-{fake}")
            if value is None:
                self.vault.delete(secret_id)
            else:
                self.vault.put(secret_id, value)
        elif value is None:
            os.environ.pop(KEY_ENV[fake], None)
        else:
            os.environ[KEY_ENV[fake]] = value
        self.reload()

    def fake_for(self, alias: str) -> FakeUpstream:
        """The fake provider behind a model alias."""
        return self.fakes[MODELS[alias][0]]

    def usage_rows(self, trace_id: str | None = None) -> list[dict[str, Any]]:
        """Committed usage rows, newest last (optionally for one trace id)."""
        db = open_store(self.cfg.database_path)
        try:
            if trace_id is None:
                return list(db.query("SELECT * FROM usage ORDER BY id"))
            return list(db.query("SELECT * FROM usage WHERE trace_id = ? ORDER BY id", [trace_id]))
        finally:
            db.conn.close()


@dataclass
class Reply:
    """A plain HTTP reply."""

    status_code: int
    headers: dict[str, str]
    content: bytes

    def json(self) -> Any:
        """The body as JSON."""
        return json.loads(self.content)


def request(
    stack: Stack,
    method: str,
    path: str,
    body: bytes | None = None,
    headers: dict[str, str] | None = None,
) -> Reply:
    """One raw HTTP request to the gateway (for what the SDKs cannot send), with the stack's
    key unless `headers` carry one."""
    conn = http.client.HTTPConnection("127.0.0.1", stack.port, timeout=10)
    headers = dict(headers or {})
    if not {"authorization", "x-api-key", "api-key"} & {h.lower() for h in headers}:
        headers["Authorization"] = f"Bearer {stack.key}"
    try:
        conn.request(method, path, body=body, headers=headers)
        resp = conn.getresponse()
        return Reply(resp.status, {k.lower(): v for k, v in resp.getheaders()}, resp.read())
    finally:
        conn.close()
