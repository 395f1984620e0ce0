"""Backups, restore and factory reset through the admin API (the console's System screen).

Backups are written by the gateway into `<state>/backups/` and can be listed, downloaded and
deleted. A restore is checked whole (passphrase, every hash, the database) and staged while the
gateway serves; a factory reset is confirmed by the appliance id and left as a marker. Both
are carried out when the gateway next starts (`provisioning.pending`), so after answering the
gateway stops itself with a distinct exit status and systemd (`Restart=on-failure`) starts it
again; `aigw up` says to start it again. Passphrases are never logged, stored or echoed.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import os
import re
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from aiohttp import web

from appliance.config import Config
from appliance.errors import ApplianceError
from appliance.identity import IdentityError, load_identity
from appliance.store import transaction
from gateway.admin.auth import peer_uid
from gateway.admin.body import Field, read_object, take
from gateway.admin.common import ADMIN_GATEWAY, actor, db, listing, no_content, ok
from gateway.admin.errors import AdminError
from gateway.errors import PayloadTooLarge
from gateway.tenancy.audit import record
from provisioning.backup import create_backup, default_name
from provisioning.backup_archive import SUFFIX, BackupError, check_passphrase
from provisioning.pending import request_reset, reset_pending
from provisioning.reset import ResetError
from provisioning.restore import drop_staged, stage_restore

log = logging.getLogger(__name__)

BACKUPS_DIR = "backups"
# An uploaded archive holds the database (ledger included): generous, but bounded.
MAX_ARCHIVE_BYTES = 16 * 1024**3
RESTART_DELAY_S = 0.5  # long enough for the answer to reach the console
PASSPHRASE_HEADER = "X-Aigw-Backup-Passphrase"
VAULT_PASSPHRASE_HEADER = "X-Aigw-Vault-Passphrase"
TAKE_IDENTITY_HEADER = "X-Aigw-Take-Identity"
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,200}")

BACKUP_CREATE = {"passphrase": Field("string", True)}
RESTORE = {
    "name": Field("string", True),
    "passphrase": Field("string", True),
    "vault_passphrase": Field("string?"),
    "take_identity": Field("boolean"),
}
FACTORY_RESET = {"confirm": Field("string", True)}


@dataclass
class Restart:
    """How the admin API stops this gateway so that it starts again (set by `aigw up`)."""

    stop: Callable[[], None]
    reason: str | None = None

    def request(self, reason: str) -> None:
        """Stop shortly, once the answer has been sent."""
        if self.reason is None:
            self.reason = reason
            asyncio.get_running_loop().call_later(RESTART_DELAY_S, self.stop)


# On the gateway's top-level application; the admin sub-application reads it through
# `request.config_dict`. Absent (the CLI's in-process admin API): the next start does the work.
RESTART: web.AppKey[Restart] = web.AppKey("aigw_restart", Restart)

# One backup, restore or reset at a time in this process (they are seconds of disk and CPU).
_BUSY = threading.Lock()

_STR: dict[str, Any] = {"type": "string"}
_BACKUP: dict[str, dict[str, Any]] = {
    "name": {**_STR, "description": "file name in <state>/backups/"},
    "size": {"type": "integer"},
    "created_at": {**_STR, "description": "UTC"},
}
_RESTART: dict[str, dict[str, Any]] = {
    "restart": {
        "type": "boolean",
        "description": "true: the gateway stops now and does it as it starts again; false: "
        "it is done when the gateway next starts",
    },
    "message": _STR,
}
SCHEMAS: dict[str, dict[str, Any]] = {
    "Backup": {"type": "object", "required": list(_BACKUP), "properties": _BACKUP},
    "BackupCreated": {
        "type": "object",
        "required": [*_BACKUP, "sha256"],
        "properties": {**_BACKUP, "sha256": _STR},
    },
    "BackupFile": {
        "type": "string",
        "format": "binary",
        "description": "the encrypted archive (application/octet-stream)",
    },
    "RestoreStaged": {
        "type": "object",
        "required": [*_RESTART, "identity", "vault", "missing_models", "restored_from"],
        "properties": {
            **_RESTART,
            "identity": {"type": "string", "enum": ["restored", "kept"]},
            "vault": _STR,
            "missing_models": {"type": "array", "items": _STR},
            "restored_from": {"type": "object", "description": "what the archive holds"},
        },
    },
    "ResetPending": {
        "type": "object",
        "required": [*_RESTART, "appliance_id"],
        "properties": {**_RESTART, "appliance_id": _STR},
    },
}
LISTS: dict[str, str] = {"BackupList": "Backup"}
QUERY: dict[str, dict[str, Any]] = {}
RESTORE_DESCRIPTION = (
    "A JSON body names an archive in <state>/backups/. Or the archive itself is the body "
    f"(application/octet-stream, at most {MAX_ARCHIVE_BYTES} bytes) with the passphrase in "
    f"the {PASSPHRASE_HEADER} header ({VAULT_PASSPHRASE_HEADER} and "
    f"{TAKE_IDENTITY_HEADER}: true where needed)."
)


# --- helpers ------------------------------------------------------------------------------------


@contextmanager
def _one_at_a_time(cfg: Config) -> Iterator[None]:
    if not _BUSY.acquire(blocking=False):
        raise AdminError(409, "busy", "another backup, restore or reset is running; try again")
    try:
        if reset_pending(cfg):
            raise AdminError(
                409, "reset_pending", "a factory reset is pending: the gateway restarts to do it"
            )
        yield
    finally:
        _BUSY.release()


def backups_dir(cfg: Config) -> Path:
    """`<state>/backups`, private to the gateway's user."""
    path = cfg.state_dir / BACKUPS_DIR
    path.mkdir(mode=0o700, exist_ok=True)
    return path


def _archive(cfg: Config, name: str) -> Path:
    """A backup by its file name: one plain name in the backups folder, never a path."""
    if not name.endswith(SUFFIX) or not _NAME.fullmatch(name) or ".." in name:
        raise AdminError(
            400, "invalid_name", f"a backup name is a file name ending in {SUFFIX}, not a path"
        )
    path = backups_dir(cfg) / name
    if not path.is_file() or path.is_symlink():
        raise AdminError(404, "not_found", f"there is no backup named {name}")
    return path


def _utc(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


def _listing(cfg: Config) -> list[dict[str, Any]]:
    rows = []
    for path in backups_dir(cfg).iterdir():
        name = path.name
        if name.endswith(SUFFIX) and _NAME.fullmatch(name) and path.is_file():
            st = path.stat()
            rows.append({"name": name, "size": st.st_size, "created_at": _utc(st.st_mtime)})
    return sorted(rows, key=lambda r: (r["created_at"], r["name"]), reverse=True)


def _new_path(cfg: Config) -> Path:
    """`aigw-<host>-<UTC time>.aigw-backup`, with -2, -3 ... for more within one second."""
    try:
        ident = load_identity(cfg.state_dir)
    except IdentityError:
        ident = None
    base = default_name(ident.hostname if ident else cfg.box.name)
    folder = backups_dir(cfg)
    path, n = folder / base, 1
    while path.exists():
        n += 1
        path = folder / f"{base.removesuffix(SUFFIX)}-{n}{SUFFIX}"
    return path


def _create(cfg: Config, passphrase: str) -> dict[str, Any]:
    with _one_at_a_time(cfg):
        out = _new_path(cfg)
        create_backup(cfg, out, passphrase)
    st = out.stat()
    return {
        "name": out.name,
        "size": st.st_size,
        "created_at": _utc(st.st_mtime),
        "sha256": _sha256(out),
    }


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        while chunk := fh.read(1024 * 1024):
            digest.update(chunk)
    return digest.hexdigest()


def _restart(request: web.Request, reason: str) -> bool:
    """Ask the running gateway to stop and start again; False when nothing runs it."""
    restart = request.config_dict.get(RESTART)
    if restart is None:
        return False
    restart.request(reason)
    return True


def _audit(request: web.Request, action: str, kind: str, oid: str, after: dict[str, Any]) -> None:
    store = db(request)
    with transaction(store):
        record(store, actor(request), action, kind, oid, None, after)


def _backup_error(exc: BackupError) -> AdminError:
    """Why an archive was refused: 409 for one this software cannot run yet, 400 otherwise."""
    message = str(exc)
    if "newer than this software" in message or "use the aigw that made it" in message:
        return AdminError(409, "backup_too_new", message)
    if message.startswith("wrong passphrase"):
        return AdminError(400, "wrong_passphrase", message)
    return AdminError(400, "backup_invalid", message)


# --- handlers -----------------------------------------------------------------------------------


async def list_backups(request: web.Request) -> web.Response:
    """GET /system/backups: the archives on the box, newest first."""
    cfg = request.app[ADMIN_GATEWAY].cfg
    return listing(await asyncio.to_thread(_listing, cfg))


async def create_backup_file(request: web.Request) -> web.Response:
    """POST /system/backups: write an encrypted archive of this box into <state>/backups."""
    cfg = request.app[ADMIN_GATEWAY].cfg
    fields = take(await read_object(request), BACKUP_CREATE)
    try:
        passphrase = check_passphrase(fields["passphrase"])
        made = await asyncio.to_thread(_create, cfg, passphrase)
    except BackupError as exc:
        raise AdminError(400, "backup_failed", str(exc)) from None
    _audit(request, "create", "backup", made["name"], {"size": made["size"]})
    log.info("backup %s written (%d bytes)", made["name"], made["size"])
    return ok(made, 201)


async def download_backup(request: web.Request) -> web.StreamResponse:
    """GET /system/backups/{name}: the archive's bytes (it is encrypted)."""
    path = _archive(request.app[ADMIN_GATEWAY].cfg, request.match_info["name"])
    _audit(request, "download", "backup", path.name, {"size": path.stat().st_size})
    return web.FileResponse(
        path,
        headers={
            "Content-Type": "application/octet-stream",
            "Content-Disposition": f'attachment; filename="{path.name}"',
        },
    )


async def delete_backup(request: web.Request) -> web.Response:
    """DELETE /system/backups/{name}."""
    path = _archive(request.app[ADMIN_GATEWAY].cfg, request.match_info["name"])
    path.unlink(missing_ok=True)
    _audit(request, "delete", "backup", path.name, {})
    return no_content()


async def _upload(request: web.Request, cfg: Config) -> Path:
    """Stream the request body into a private file in the state directory."""
    if request.content_length is not None and request.content_length > MAX_ARCHIVE_BYTES:
        raise PayloadTooLarge(f"an archive may be at most {MAX_ARCHIVE_BYTES} bytes")
    path = cfg.state_dir / f".upload-{os.urandom(6).hex()}{SUFFIX}"
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
    size = 0
    try:
        with os.fdopen(fd, "wb") as fh:
            async for chunk in request.content.iter_chunked(1024 * 1024):
                size += len(chunk)
                if size > MAX_ARCHIVE_BYTES:
                    raise PayloadTooLarge(f"an archive may be at most {MAX_ARCHIVE_BYTES} bytes")
                await asyncio.to_thread(fh.write, chunk)
    except BaseException:
        path.unlink(missing_ok=True)
        raise
    if size == 0:
        path.unlink()
        raise AdminError(400, "invalid_request", "the request body holds no archive")
    return path


async def _restore_args(request: web.Request, cfg: Config) -> tuple[Path, bool, dict[str, Any]]:
    """(archive, uploaded?, passphrases and options) from a JSON body or an upload."""
    if request.content_type == "application/octet-stream":
        passphrase = request.headers.get(PASSPHRASE_HEADER, "")
        if not passphrase:
            raise AdminError(
                400, "invalid_request", f"give the backup passphrase in {PASSPHRASE_HEADER}"
            )
        take_id = request.headers.get(TAKE_IDENTITY_HEADER, "").lower() in ("1", "true", "yes")
        opts = {
            "passphrase": passphrase,
            "vault_passphrase": request.headers.get(VAULT_PASSPHRASE_HEADER) or None,
            "take_identity": take_id,
        }
        return await _upload(request, cfg), True, opts
    fields = take(await read_object(request), RESTORE)
    path = _archive(cfg, fields.pop("name"))
    return path, False, fields


def _stage(cfg: Config, archive: Path, opts: dict[str, Any]) -> dict[str, Any]:
    with _one_at_a_time(cfg):
        stage, result = stage_restore(
            cfg,
            archive,
            opts["passphrase"],
            take_identity=bool(opts.get("take_identity")),
            vault_passphrase=opts.get("vault_passphrase"),
        )
        drop_staged(cfg, keep=stage)  # an earlier one, never begun, is superseded
    out = result.as_dict()
    out.pop("installed")
    return out


async def restore(request: web.Request) -> web.Response:
    """POST /system/restore: check an archive whole, stage it, and restart to install it."""
    cfg = request.app[ADMIN_GATEWAY].cfg
    archive, uploaded, opts = await _restore_args(request, cfg)
    label = "upload" if uploaded else archive.name
    try:
        result = await asyncio.to_thread(_stage, cfg, archive, opts)
    except BackupError as exc:
        raise _backup_error(exc) from None
    except ApplianceError as exc:
        raise AdminError(400, "restore_failed", str(exc)) from None
    finally:
        if uploaded:
            archive.unlink(missing_ok=True)
    source = result["restored_from"]
    _audit(
        request,
        "restore",
        "backup",
        label,
        {"from": source.get("appliance_id"), "created_at": source.get("created_at")},
    )
    restarting = _restart(request, "restore")
    log.warning("restore of %s staged; it is installed as the gateway starts again", label)
    message = (
        "the backup is checked and staged: the gateway is restarting to install it"
        if restarting
        else "the backup is checked and staged: it is installed when the gateway next starts"
    )
    return ok({"restart": restarting, "message": message, **result})


async def factory_reset(request: web.Request) -> web.Response:
    """POST /system/factory-reset: confirmed by the appliance id, over the local socket only."""
    if peer_uid(request) is None:
        raise AdminError(
            403,
            "local_only",
            "a factory reset is done only at the box: the console, or `aigw factory-reset`",
        )
    cfg = request.app[ADMIN_GATEWAY].cfg
    fields = take(await read_object(request), FACTORY_RESET)

    def mark() -> str:
        with _one_at_a_time(cfg):
            return request_reset(cfg, fields["confirm"], actor(request))

    try:
        appliance_id = await asyncio.to_thread(mark)
    except ResetError as exc:
        raise AdminError(400, "confirmation_mismatch", str(exc)) from None
    _audit(request, "factory_reset", "system", appliance_id or "box", {"pending": True})
    restarting = _restart(request, "factory reset")
    log.warning("factory reset of %s requested; it is done as the gateway starts", appliance_id)
    message = (
        "the gateway is restarting: it wipes the box and provisions it anew"
        if restarting
        else "the box is wiped and provisioned anew when the gateway next starts"
    )
    return ok({"restart": restarting, "message": message, "appliance_id": appliance_id})
