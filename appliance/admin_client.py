"""How the CLI reaches the admin API (`/admin/v1`): a URL, the box's socket, or in-process.

`open_client` picks the first that applies:

1. a URL (`--url` or `$AIGW_URL`) with an admin token (`--token` or `$AIGW_ADMIN_TOKEN`):
   HTTP(S) with `Authorization: Bearer`;
2. the running box's UNIX socket `<state_dir>/admin.sock`, where root and the gateway's own
   user are trusted without a token;
3. no box running (no socket, or nobody listening on it): the same admin application, served
   in this process on a private temporary socket for the one command, so validation and audit
   are the running box's.

Every request has a timeout; a failure is an `AdminAPIError` whose message is the admin API's
own (`{"error": {"code", "message"}}`) or says which endpoint could not be reached.
"""

from __future__ import annotations

import asyncio
import http.client
import os
import shutil
import socket
import tempfile
import threading
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Any
from urllib.parse import quote, urlencode, urlsplit

import orjson

from appliance.errors import ApplianceError

if TYPE_CHECKING:
    from aiohttp import web

    from appliance.config import Config

API_PREFIX = "/admin/v1"
SOCKET_NAME = "admin.sock"
DEFAULT_TIMEOUT = 30.0


class AdminAPIError(ApplianceError):
    """The admin API refused a request, or could not be reached; the message says which."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status, self.code, self.message = status, code, message


def segment(value: str) -> str:
    """A name or id as a path segment (names may hold '/', which the admin routes accept)."""
    return quote(value, safe="/:@")


class _UnixConnection(http.client.HTTPConnection):
    """HTTP over a UNIX stream socket."""

    def __init__(self, path: str, timeout: float) -> None:
        super().__init__("localhost", timeout=timeout)
        self.socket_path = path

    def connect(self) -> None:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.settimeout(self.timeout)
        try:
            sock.connect(self.socket_path)
        except BaseException:
            sock.close()
            raise
        self.sock = sock


class AdminClient:
    """Synchronous requests to one admin API endpoint; use as a context manager."""

    def __init__(
        self,
        where: str,
        *,
        url: str | None = None,
        socket_path: str | None = None,
        token: str | None = None,
        timeout: float = DEFAULT_TIMEOUT,
        server: InProcessAdmin | None = None,
    ) -> None:
        self.where = where
        self.token = token
        self.timeout = timeout
        self._socket_path = socket_path
        self._server = server
        self._base = ""
        self._target: tuple[str, str, int | None] | None = None
        if url is not None:
            parts = urlsplit(url)
            if parts.scheme not in ("http", "https") or not parts.hostname:
                raise ApplianceError(f"--url {url!r} must be an http:// or https:// URL")
            self._target = (parts.scheme, parts.hostname, parts.port)
            self._base = parts.path.rstrip("/")

    @property
    def in_process(self) -> bool:
        """True when this client serves the admin API itself (no box is running)."""
        return self._server is not None

    def _connection(self) -> http.client.HTTPConnection:
        if self._target is None:
            assert self._socket_path is not None
            return _UnixConnection(self._socket_path, self.timeout)
        scheme, host, port = self._target
        cls = http.client.HTTPSConnection if scheme == "https" else http.client.HTTPConnection
        return cls(host, port, timeout=self.timeout)

    def call(
        self,
        method: str,
        path: str,
        body: Any = None,
        query: dict[str, Any] | None = None,
    ) -> tuple[int, Any]:
        """One request to `/admin/v1` + `path`; returns (status, parsed JSON or None)."""
        if self._server is not None:
            self._server.check(path)
        target = self._base + API_PREFIX + path
        params = {k: v for k, v in (query or {}).items() if v is not None}
        if params:
            target += "?" + urlencode(params)
        headers = {"Accept": "application/json"}
        data = None
        if body is not None:
            data = orjson.dumps(body)
            headers["Content-Type"] = "application/json"
        if self.token:
            headers["Authorization"] = f"Bearer {self.token}"
        conn = self._connection()
        try:
            conn.request(method, target, body=data, headers=headers)
            resp = conn.getresponse()
            status, raw = resp.status, resp.read()
        except TimeoutError:
            raise AdminAPIError(
                0,
                "timeout",
                f"the admin API at {self.where} did not answer within {self.timeout:g} s",
            ) from None
        except (OSError, http.client.HTTPException) as exc:
            why = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
            raise AdminAPIError(
                0, "unreachable", f"cannot reach the admin API at {self.where}: {why or exc!r}"
            ) from None
        finally:
            conn.close()
        return status, _answer(status, raw, self.where)

    def close(self) -> None:
        """Stop the in-process server, if this client started one."""
        if self._server is not None:
            self._server.stop()
            self._server = None

    def __enter__(self) -> AdminClient:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


def _answer(status: int, raw: bytes, where: str) -> Any:
    """The parsed body of a success; an AdminAPIError carrying the envelope's message else."""
    try:
        data = orjson.loads(raw) if raw.strip() else None
    except orjson.JSONDecodeError:
        if status < 400:
            raise AdminAPIError(
                status, "bad_response", f"the admin API at {where} answered with non-JSON data"
            ) from None
        data = None
    if status < 400:
        return data
    err = data.get("error") if isinstance(data, dict) else None
    if isinstance(err, dict) and isinstance(err.get("message"), str):
        raise AdminAPIError(status, str(err.get("code", "error")), err["message"])
    text = raw[:200].decode("utf-8", "replace").strip() or http.client.responses.get(status, "")
    raise AdminAPIError(status, "http_error", f"the admin API at {where} answered {status}: {text}")


def socket_path(cfg: Config) -> Path:
    """Where a running box serves its admin API locally."""
    return cfg.state_dir / SOCKET_NAME


def box_listening(path: Path) -> bool:
    """True when something accepts connections on the socket; False when nobody is there."""
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.settimeout(2.0)
    try:
        sock.connect(str(path))
    except (FileNotFoundError, ConnectionRefusedError):
        return False
    except PermissionError:
        raise ApplianceError(
            f"permission denied on {path}: run as root or as the gateway's user, or use "
            "--url with --token"
        ) from None
    except OSError as exc:
        raise ApplianceError(f"cannot connect to {path}: {exc.strerror or exc}") from None
    finally:
        sock.close()
    return True


def open_client(
    cfg: Config,
    url: str | None = None,
    token: str | None = None,
    timeout: float = DEFAULT_TIMEOUT,
) -> AdminClient:
    """A client for the admin API, by URL, by the box's socket, or served in-process."""
    url = url or os.environ.get("AIGW_URL") or None
    token = token or os.environ.get("AIGW_ADMIN_TOKEN") or None
    if url is not None:
        if token is None:
            raise ApplianceError(
                f"--url {url} needs an admin token: --token TOKEN or $AIGW_ADMIN_TOKEN"
            )
        return AdminClient(url, url=url, token=token, timeout=timeout)
    path = socket_path(cfg)
    if box_listening(path):
        return AdminClient(str(path), socket_path=str(path), token=token, timeout=timeout)
    server = InProcessAdmin(cfg)
    server.start()
    return AdminClient(
        f"in-process ({cfg.state_dir})",
        socket_path=server.socket_path,
        token=token,
        timeout=timeout,
        server=server,
    )


class InProcessAdmin:
    """The admin application on a private temporary socket, for when no box is running.

    The gateway is built but never started: the admin handlers need only its store and vault.
    """

    def __init__(self, cfg: Config) -> None:
        self.cfg = cfg
        self._dir = tempfile.mkdtemp(prefix="aigw-cli-")
        self.socket_path = os.path.join(self._dir, SOCKET_NAME)
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self._runner: web.AppRunner | None = None
        self._gateway: Any = None
        self._db: Any = None
        self.vault_error: str | None = None

    def start(self) -> None:
        """Open the store and the vault, and serve the admin app on the private socket."""
        from appliance.store import open_store
        from appliance.vault import VaultError, open_vault

        try:
            self._db = open_store(self.cfg.database_path)
            vault = None
            try:
                vault = open_vault(self.cfg)
            except VaultError as exc:
                self.vault_error = str(exc)  # fine for every command that leaves the vault alone
            self._thread.start()
            fut = asyncio.run_coroutine_threadsafe(self._serve(vault), self._loop)
            fut.result(DEFAULT_TIMEOUT)
        except BaseException:
            self.stop()
            raise

    async def _serve(self, vault: Any) -> None:
        from aiohttp import web

        from gateway.admin import build_admin_app
        from gateway.state import Gateway

        self._gateway = Gateway(self.cfg, self._db, vault)
        app = web.Application()
        app.add_subapp(API_PREFIX, build_admin_app(self._gateway))
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        await web.UnixSite(self._runner, self.socket_path).start()

    async def _shutdown(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
        if self._gateway is not None:
            await self._gateway.stop()  # closes provider sessions a credential reload opened

    def check(self, path: str) -> None:
        """Refuse at once a vault request when the vault could not be opened, saying why."""
        needs_vault = path.startswith("/vault") or (
            path.startswith("/providers/") and path.endswith("/key")
        )
        if needs_vault and self.vault_error is not None:
            raise AdminAPIError(503, "vault_unavailable", self.vault_error)

    def stop(self) -> None:
        """Stop serving, close the store, remove the temporary directory."""
        if self._thread.is_alive():
            fut = asyncio.run_coroutine_threadsafe(self._shutdown(), self._loop)
            fut.result(DEFAULT_TIMEOUT)
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(DEFAULT_TIMEOUT)
        if not self._loop.is_running():
            self._loop.close()
        if self._db is not None:
            self._db.conn.close()
            self._db = None
        shutil.rmtree(self._dir, ignore_errors=True)
