"""Engines through the admin API: the box's vLLM engines and remote ones, with their state and
load, and the registration of remote engines by URL.

The state and load live in the gateway process (`aigw up`'s engine manager sets
`Gateway.engine_report`); a remote engine's registration is stored and audited like any admin
write, and the running gateway starts watching it within a second.
"""

from __future__ import annotations

import asyncio
import os
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from aiohttp import web

from appliance.engine_units import UNIT
from appliance.errors import ConflictError, NotFoundError
from appliance.logs import redact
from appliance.store import transaction, utcnow
from gateway.admin.body import Field, query_int, read_object, take
from gateway.admin.common import ADMIN_GATEWAY, actor, db, listing, no_content, ok
from gateway.catalog import bump_version
from gateway.errors import InvalidRequest
from gateway.tenancy.audit import record
from inference.manifest import ManifestError, check_model_name
from inference.remote import normalize_url

REMOTE_CREATE = {
    "name": Field("string", True),
    "url": Field("string", True),
    "model": Field("string", True),
    "api_key_env": Field("string?"),
}
_NSTR: dict[str, Any] = {"type": "string", "nullable": True}
_NNUM: dict[str, Any] = {"type": "number", "nullable": True}
_NINT: dict[str, Any] = {"type": "integer", "nullable": True}
_ENGINE: dict[str, dict[str, Any]] = {
    "name": {"type": "string"},
    "model": {"type": "string", "description": "the served model name (an alias clients call)"},
    "kind": {"type": "string", "enum": ["local", "remote"]},
    "state": {
        "type": "string",
        "description": "local: starting, ready, backoff, stopping, stopped, failed; "
        "remote: checking, ready, unreachable",
    },
    "url": {**_NSTR, "description": "its OpenAI-compatible API"},
    "error": {**_NSTR, "description": "why it is not ready, when it is not"},
    "kv_cache_usage": {**_NNUM, "description": "0-1, from the engine's /metrics"},
    "running": {**_NINT, "description": "requests running, from the engine's /metrics"},
    "waiting": {**_NINT, "description": "requests queued, from the engine's /metrics"},
}
_REMOTE: dict[str, dict[str, Any]] = {
    "name": {"type": "string"},
    "url": {"type": "string"},
    "model": {"type": "string"},
    "api_key_env": _NSTR,
    "enabled": {"type": "boolean"},
    "created_at": {"type": "string"},
    "updated_at": {"type": "string"},
}
_LOG: dict[str, dict[str, Any]] = {
    "name": {"type": "string"},
    "source": {
        "type": "string",
        "enum": ["file", "journal", "none"],
        "description": "file: the engine's log under the state folder (aigw up); journal: "
        "systemd's journal (aigw-engine@NAME.service); none: not kept on this box",
    },
    "where": {**_NSTR, "description": "the log file, or the journalctl command that shows it"},
    "lines": {"type": "array", "items": {"type": "string"}, "description": "oldest first"},
    "note": {**_NSTR, "description": "why there are no lines, when there are none"},
}
SCHEMAS: dict[str, dict[str, Any]] = {
    "Engine": {"type": "object", "required": list(_ENGINE), "properties": _ENGINE},
    "RemoteEngine": {"type": "object", "required": list(_REMOTE), "properties": _REMOTE},
    "EngineLog": {"type": "object", "required": list(_LOG), "properties": _LOG},
}
LISTS = {"EngineList": "Engine", "RemoteEngineList": "RemoteEngine"}
MAX_LOG_LINES = 500
QUERY: dict[str, dict[str, Any]] = {
    "lines": {"type": "integer", "minimum": 1, "maximum": MAX_LOG_LINES, "default": 50},
}
JOURNAL_TIMEOUT_S = 5.0
_BLOCK = 16384
_MAX_LINE = 2000  # characters kept of one line (vLLM can print very long ones)


async def list_engines(request: web.Request) -> web.Response:
    """GET /engines: every engine, local and remote, with its state and load."""
    gw = request.app[ADMIN_GATEWAY]
    return listing(gw.engine_report())


def _remote(row: dict[str, Any]) -> dict[str, Any]:
    return {**row, "enabled": bool(row["enabled"])}


def _check_url(url: str) -> str:
    parts = urlsplit(url.strip())
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise InvalidRequest(f"url {url!r} must be an http:// or https:// URL", param="url")
    if parts.query or parts.fragment:
        raise InvalidRequest("url must not carry a query or a fragment", param="url")
    return normalize_url(url)


async def add_remote_engine(request: web.Request) -> web.Response:
    """POST /engines/remote: register a vLLM server elsewhere on the network by URL."""
    f = take(await read_object(request), REMOTE_CREATE)
    try:
        name = check_model_name(f["name"])
        model = check_model_name(f["model"])
    except ManifestError as exc:
        raise InvalidRequest(str(exc), param="name") from None
    url = _check_url(f["url"])
    env = f.get("api_key_env")
    if env is not None and not env.replace("_", "a").isalnum():
        raise InvalidRequest(f"{env!r} is not an environment variable name", param="api_key_env")
    store = db(request)
    now = utcnow()
    row = {
        "name": name,
        "url": url,
        "model": model,
        "api_key_env": env,
        "enabled": 1,
        "created_at": now,
        "updated_at": now,
    }
    with transaction(store):
        if store.execute("SELECT 1 FROM remote_engines WHERE name = ?", [name]).fetchone():
            raise ConflictError(f"a remote engine named {name!r} exists")
        store.table("remote_engines").insert(row)
        record(store, actor(request), "create", "remote_engine", name, None, row)
        bump_version(store)
    return ok(_remote(row), 201)


async def list_remote_engines(request: web.Request) -> web.Response:
    """GET /engines/remote: the registered remote engines."""
    rows = db(request).query("SELECT * FROM remote_engines ORDER BY name")
    return listing([_remote(r) for r in rows])


async def delete_remote_engine(request: web.Request) -> web.Response:
    """DELETE /engines/remote/{name}: stop watching and routing to it."""
    name = request.match_info["name"]
    store = db(request)
    with transaction(store):
        rows = list(store.query("SELECT * FROM remote_engines WHERE name = ?", [name]))
        if not rows:
            raise NotFoundError(f"no remote engine named {name!r}")
        store.execute("DELETE FROM remote_engines WHERE name = ?", [name])
        record(store, actor(request), "delete", "remote_engine", name, rows[0], None)
        bump_version(store)
    return no_content()


# --- engine logs ------------------------------------------------------------------------------


def tail_lines(path: Path, n: int) -> list[str]:
    """The last `n` lines of a file, read backwards block by block (logs grow to 10 MiB)."""
    with open(path, "rb") as fh:
        end = fh.seek(0, os.SEEK_END)
        pos, data = end, b""
        while pos > 0 and data.count(b"\n") <= n:
            step = min(_BLOCK, pos)
            pos -= step
            fh.seek(pos)
            data = fh.read(step) + data
    lines = data.decode("utf-8", "replace").splitlines()
    return lines[-n:]


async def journal_lines(unit: str, n: int) -> tuple[list[str], str | None]:
    """The unit's last `n` journal lines, or why they cannot be read."""
    try:
        proc = await asyncio.create_subprocess_exec(
            "journalctl", "--no-pager", "-u", unit, "-n", str(n), "-o", "cat",
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )  # fmt: skip
    except OSError as exc:
        return [], f"cannot run journalctl: {exc.strerror or exc}"
    try:
        out, err = await asyncio.wait_for(proc.communicate(), JOURNAL_TIMEOUT_S)
    except TimeoutError:
        proc.kill()
        await proc.wait()
        return [], f"journalctl did not answer within {JOURNAL_TIMEOUT_S:g} s"
    if proc.returncode != 0:
        why = err.decode("utf-8", "replace").strip().splitlines()
        return [], f"journalctl failed: {why[-1] if why else f'exit status {proc.returncode}'}"
    return out.decode("utf-8", "replace").splitlines()[-n:], None


def _clean(lines: list[str]) -> list[str]:
    # The engine's command line and environment hold no secret, but a model's own output or a
    # traceback could quote one: every line goes through the log redaction.
    return [redact(line.rstrip())[:_MAX_LINE] for line in lines]


async def engine_log(request: web.Request) -> web.Response:
    """GET /engines/{name}/log?lines=N: the last lines of a local engine's log."""
    gw = request.app[ADMIN_GATEWAY]
    try:
        name = check_model_name(request.match_info["name"])
    except ManifestError as exc:
        raise InvalidRequest(str(exc), param="name") from None
    n = query_int(request, "lines", 50, 1, MAX_LOG_LINES) or 50
    store = db(request)
    local = store.execute("SELECT 1 FROM local_models WHERE name = ?", [name]).fetchone()
    out: dict[str, Any] = {"name": name, "source": "none", "where": None, "lines": [], "note": None}
    if not local:
        if store.execute("SELECT 1 FROM remote_engines WHERE name = ?", [name]).fetchone():
            out["note"] = "a remote engine: its log is kept on the server that runs it"
            return ok(out)
        raise NotFoundError(f"no local model or engine named {name!r}")
    if gw.cfg.inference.supervisor == "systemd":
        unit = UNIT.format(name)
        out.update(source="journal", where=f"journalctl -u {unit}")
        lines, why = await journal_lines(unit, n)
        out.update(lines=_clean(lines), note=why)
        if why is None and not lines:
            out["note"] = "the journal holds no line of it yet (has it been enabled?)"
        return ok(out)
    path = gw.cfg.state_dir / "logs" / f"engine-{name}.log"  # appliance.engine_spec
    out.update(source="file", where=str(path))
    try:
        out["lines"] = _clean(await asyncio.to_thread(tail_lines, path, n))
    except FileNotFoundError:
        out["note"] = "no log yet: its engine has not been started (enable the model)"
    except OSError as exc:
        out["note"] = f"cannot read {path}: {exc.strerror or exc}"
    return ok(out)
