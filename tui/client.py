"""How the console reaches the admin API: the box's socket or a URL, never in-process.

Unlike the CLI, the console does not serve the admin app itself when no box runs: a gateway
that is down must be shown as down. Every call is blocking (http.client) with a short timeout,
so screens make them from worker threads.
"""

from __future__ import annotations

import copy
import http.client
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from appliance.admin_client import API_PREFIX, AdminAPIError, AdminClient, segment
from appliance.admin_client import _answer as answer

CONSOLE_TIMEOUT = 5.0
SOCKET_NAME = "admin.sock"

__all__ = ["AdminAPIError", "ConsoleClient", "Problem", "connect", "problem_of", "segment"]


@dataclass(frozen=True)
class Problem:
    """Why the console cannot show a screen, and what the admin can do about it."""

    kind: str  # "down", "sealed", "denied", "error"
    title: str
    todo: str


class ConsoleClient:
    """Admin API calls for the console: `get`, `post`, ... return the parsed JSON answer."""

    def __init__(self, client: AdminClient, where: str) -> None:
        self._client = client
        self.where = where

    def call(
        self, method: str, path: str, body: Any = None, query: dict[str, Any] | None = None
    ) -> Any:
        """One request to `/admin/v1` + path; AdminAPIError when refused or unreachable."""
        return self._client.call(method, path, body, query)[1]

    def get(self, path: str, **query: Any) -> Any:
        """GET, with query parameters."""
        return self.call("GET", path, None, query or None)

    def post(self, path: str, body: Any = None) -> Any:
        """POST with a JSON body."""
        return self.call("POST", path, body)

    def put(self, path: str, body: Any) -> Any:
        """PUT with a JSON body."""
        return self.call("PUT", path, body)

    def patch(self, path: str, body: Any) -> Any:
        """PATCH with a JSON body."""
        return self.call("PATCH", path, body)

    def delete(self, path: str) -> Any:
        """DELETE."""
        return self.call("DELETE", path)

    def slow(self, method: str, path: str, body: Any = None, timeout: float = 3600.0) -> Any:
        """One request that may take long (an import copies and checks gigabytes)."""
        client = copy.copy(self._client)  # its own timeout; the beat keeps the short one
        client.timeout = timeout
        return client.call(method, path, body)[1]

    def upload(
        self, path: str, source: Path, headers: dict[str, str], timeout: float = 3600.0
    ) -> Any:
        """POST a file on this machine as the body (streamed, application/octet-stream)."""
        conn = self._client._connection()
        conn.timeout = timeout
        sent = {"Content-Type": "application/octet-stream", "Accept": "application/json"}
        if self._client.token:
            sent["Authorization"] = f"Bearer {self._client.token}"
        try:
            with source.open("rb") as fh:
                sent["Content-Length"] = str(os.fstat(fh.fileno()).st_size)
                conn.request("POST", self._client._base + API_PREFIX + path, fh, sent | headers)
                resp = conn.getresponse()
                status, raw = resp.status, resp.read()
        except (OSError, http.client.HTTPException) as exc:
            if isinstance(exc, OSError) and exc.filename:
                why = f"cannot read {source}: {exc.strerror}"
                raise AdminAPIError(400, "unreadable", why) from None
            raise AdminAPIError(0, "unreachable", f"cannot reach {self.where}: {exc}") from None
        finally:
            conn.close()
        return answer(status, raw, self.where)

    def metrics(self) -> str:
        """The gateway's Prometheus text (served beside the admin API); "" when refused."""
        conn = self._client._connection()  # the same transport as the admin calls
        headers = {"Authorization": f"Bearer {self._client.token}"} if self._client.token else {}
        try:
            conn.request("GET", self._client._base + "/metrics", headers=headers)
            resp = conn.getresponse()
            body = resp.read()
        except (OSError, http.client.HTTPException) as exc:
            raise AdminAPIError(0, "unreachable", f"cannot reach {self.where}: {exc}") from None
        finally:
            conn.close()
        return body.decode("utf-8", "replace") if resp.status == 200 else ""


def connect(state_dir: Path, url: str | None = None, token: str | None = None) -> ConsoleClient:
    """A client by URL (with a token) or by `<state_dir>/admin.sock`; nothing is contacted."""
    url = url or os.environ.get("AIGW_URL") or None
    token = token or os.environ.get("AIGW_ADMIN_TOKEN") or None
    if url is not None:
        return ConsoleClient(AdminClient(url, url=url, token=token, timeout=CONSOLE_TIMEOUT), url)
    path = str(Path(state_dir) / SOCKET_NAME)
    client = AdminClient(path, socket_path=path, token=token, timeout=CONSOLE_TIMEOUT)
    return ConsoleClient(client, path)


def problem_of(exc: AdminAPIError, where: str) -> Problem:
    """What an admin API failure means at the console."""
    if exc.status == 0:
        return Problem(
            "down",
            f"The gateway is not answering ({exc.message}).",
            "Start it: `systemctl start aigw-gateway` on the box (or `aigw up`), then wait a "
            f"few seconds; the console retries by itself. Admin API: {where}",
        )
    if exc.code == "vault_sealed":
        return Problem(
            "sealed",
            "The vault is sealed: provider keys cannot be read or stored.",
            "Press 7 (System) and u to unseal it with the passphrase.",
        )
    if exc.status in (401, 403):
        return Problem(
            "denied",
            f"The admin API refused the console: {exc.message}",
            "Run the console as root on the box, or give --url with an admin --token.",
        )
    return Problem("error", exc.message, "")
