"""The box itself through the admin API: identity, first boot, TLS, URLs, mDNS; the first admin
token handed out once; a reload of the TLS certificate.

Nothing here is secret except the first admin token, which `POST /system/first-token` gives
once, over the root-only UNIX socket only (the console on tty1), and then deletes.
"""

from __future__ import annotations

import asyncio
import os
import secrets
from pathlib import Path
from typing import Any

from aiohttp import web

from appliance.files import version as _version
from appliance.identity import IdentityError, load_identity, read_marker
from appliance.store import transaction
from gateway.admin.auth import peer_uid
from gateway.admin.common import ADMIN_GATEWAY, actor, db, ok
from gateway.admin.errors import AdminError
from gateway.state import Gateway
from gateway.tenancy.audit import record
from provisioning.tls import CertInfo, TlsError, read_info

FIRST_TOKEN = "first-admin-token"  # provisioning.firstboot.FIRST_TOKEN

# OpenAPI components of these routes (merged into the document by gateway.admin.openapi).
_NSTR: dict[str, Any] = {"type": "string", "nullable": True}
_TLS: dict[str, dict[str, Any]] = {
    "enabled": {"type": "boolean", "description": "whether HTTPS is served on [tls]"},
    "fingerprint": {**_NSTR, "description": "SHA-256 of the certificate (hex), for pinning"},
    "subject": _NSTR,
    "issuer": _NSTR,
    "sans": {"type": "array", "items": {"type": "string"}},
    "not_after": {**_NSTR, "description": "UTC"},
    "days_left": {"type": "integer", "nullable": True},
    "self_signed": {"type": "boolean", "nullable": True},
    "expired": {"type": "boolean", "nullable": True},
}
_SYSTEM: dict[str, dict[str, Any]] = {
    "appliance_id": {**_NSTR, "description": "random 128-bit id; null before first boot"},
    "hostname": _NSTR,
    "series": {"type": "string", "enum": ["G", "S"]},
    "version": {"type": "string"},
    "provisioned_at": {**_NSTR, "description": "UTC; null until first boot completed"},
    "first_boot": {
        "type": "object",
        "additionalProperties": {"type": "string"},
        "description": "each first-boot step and its outcome (created, kept, set, ...)",
    },
    "tls": {"type": "object", "required": list(_TLS), "properties": _TLS},
    "urls": {
        "type": "object",
        "required": ["https", "http"],
        "properties": {"https": _NSTR, "http": {"type": "string"}},
    },
    "mdns": {
        "type": "object",
        "required": ["enabled", "instance"],
        "properties": {"enabled": {"type": "boolean"}, "instance": _NSTR},
    },
}
SCHEMAS: dict[str, dict[str, Any]] = {
    "System": {"type": "object", "required": list(_SYSTEM), "properties": _SYSTEM},
    "FirstToken": {
        "type": "object",
        "required": ["token"],
        "properties": {"token": {"type": "string", "description": "shown this once"}},
    },
    "TlsReload": {
        "type": "object",
        "required": ["fingerprint"],
        "properties": {"fingerprint": {"type": "string"}},
    },
}
LISTS: dict[str, str] = {}
QUERY: dict[str, dict[str, Any]] = {}


def _url(scheme: str, host: str, port: int) -> str:
    return f"{scheme}://[{host}]:{port}" if ":" in host else f"{scheme}://{host}:{port}"


def _tls(gw: Gateway, info: CertInfo | None) -> dict[str, Any]:
    base: dict[str, Any] = {"enabled": gw.cfg.tls.enabled, "sans": []}
    if info is None:
        keys = ("fingerprint", "subject", "issuer", "not_after", "days_left", "self_signed")
        return {**base, **dict.fromkeys(keys), "expired": None}
    return {
        **base,
        "fingerprint": info.fingerprint,
        "subject": info.subject,
        "issuer": info.issuer,
        "sans": info.sans,
        "not_after": info.not_after,
        "days_left": info.days_left,
        "self_signed": info.self_signed,
        "expired": info.expired,
    }


def system_report(gw: Gateway) -> dict[str, Any]:
    """Everything the console shows about the box (blocking file reads: call off the loop)."""
    cfg = gw.cfg
    try:
        ident = load_identity(cfg.state_dir)
    except IdentityError:
        ident = None
    marker = read_marker(cfg.state_dir)
    hostname = ident.hostname if ident is not None else None
    https = None
    if cfg.tls.enabled:
        https = f"https://{hostname}.local:{cfg.tls.port}" if hostname else None
        https = https or _url("https", cfg.tls.host, cfg.tls.port)
    steps = (marker or {}).get("steps")
    return {
        "appliance_id": ident.appliance_id if ident is not None else None,
        "hostname": hostname,
        "series": gw.series,
        "version": _version(),
        "provisioned_at": (marker or {}).get("at") or None,
        "first_boot": {str(k): str(v) for k, v in steps.items()} if isinstance(steps, dict) else {},
        "tls": _tls(gw, read_info(cfg.tls_cert_file)),
        "urls": {"https": https, "http": _url("http", cfg.server.host, cfg.server.port)},
        "mdns": {"enabled": cfg.discovery.enabled, "instance": gw.mdns_instance or None},
    }


async def get_system(request: web.Request) -> web.Response:
    """GET /system: the box's identity, first boot, certificate, URLs and mDNS name."""
    return ok(await asyncio.to_thread(system_report, request.app[ADMIN_GATEWAY]))


def _take_token(state_dir: Path) -> str | None:
    """Move the token file aside (one caller wins a race), read it, and delete it."""
    path = state_dir / FIRST_TOKEN
    taken = path.with_name(f".{FIRST_TOKEN}.{secrets.token_hex(8)}")
    try:
        os.rename(path, taken)
    except FileNotFoundError:
        return None
    try:
        return taken.read_text().strip() or None
    finally:
        taken.unlink(missing_ok=True)


async def first_token(request: web.Request) -> web.Response:
    """POST /system/first-token: the first admin token, once, over the local socket only."""
    if peer_uid(request) is None:
        # 404, not 403: over the network nobody learns whether an unread token exists.
        raise AdminError(
            404,
            "not_found",
            "the first admin token is given only over the box's local admin socket "
            "(the console); use an admin token you hold",
        )
    gw = request.app[ADMIN_GATEWAY]
    token = await asyncio.to_thread(_take_token, gw.cfg.state_dir)
    if token is None:
        raise AdminError(
            404,
            "not_found",
            "the first admin token was already read (it is given once); create another with "
            "POST /admin/v1/admin-tokens",
        )
    store = db(request)
    with transaction(store):
        record(store, actor(request), "read", "first_admin_token", "bootstrap", None, None)
    return ok({"token": token})


async def reload_tls(request: web.Request) -> web.Response:
    """POST /system/tls/reload: serve the certificate files' pair on new connections."""
    gw = request.app[ADMIN_GATEWAY]
    if gw.tls_reload is None:
        raise AdminError(409, "tls_disabled", "this gateway serves no HTTPS ([tls] enabled=false)")
    try:
        fingerprint = await gw.tls_reload()
    except TlsError as exc:
        raise AdminError(400, "tls_error", f"{exc}; the previous certificate stays") from None
    store = db(request)
    with transaction(store):
        record(store, actor(request), "reload", "tls", "certificate", None, {"fp": fingerprint})
    return ok({"fingerprint": fingerprint})
