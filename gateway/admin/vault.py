"""The vault through the admin API: its state, unsealing, KEK rotation, provider keys.

A provider key goes in (`PUT /providers/{name}/key`) and never comes out: responses say only
whether a provider has one. Every change is audited without the secret, and the gateway
reloads its credentials at once so the next request uses the new key.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from aiohttp import web

from appliance.errors import NotFoundError
from appliance.store import transaction
from appliance.vault import Vault, VaultError, VaultSealed
from gateway import catalog
from gateway.admin.body import Field, read_object, take
from gateway.admin.common import ADMIN_GATEWAY, actor, db, no_content, ok
from gateway.admin.errors import AdminError
from gateway.tenancy.audit import record

UNSEAL = {"passphrase": Field("string?")}  # a key file or credential vault needs none
ROTATE = {"passphrase": Field("string?"), "credential_file": Field("string?")}
SET_KEY = {"api_key": Field("string", True)}
MAX_API_KEY = 8192


def _vault(request: web.Request) -> Vault:
    vault = request.app[ADMIN_GATEWAY].vault
    if vault is None:
        raise AdminError(409, "vault_unavailable", "this gateway runs without a vault")
    return vault


def _refused(exc: VaultError) -> AdminError:
    """A vault failure the operator can act on (the messages never carry secret material).
    A sealed vault is a state to change first (409), not an outage of the admin API."""
    if isinstance(exc, VaultSealed):
        return AdminError(409, "vault_sealed", str(exc))
    return AdminError(400, "vault_error", str(exc))


def _status(vault: Vault) -> dict[str, Any]:
    s = vault.status()
    return {"sealed": s["sealed"], "kek": s["kek"], "secrets": s["secrets"], "path": s["path"]}


def _changed(request: web.Request, action: str, object_id: str, after: dict[str, Any]) -> None:
    """Audit a vault change and make the gateway pick up credentials now."""
    store = db(request)
    with transaction(store):
        record(store, actor(request), action, "vault", object_id, None, after)
        catalog.bump_version(store)
    request.app[ADMIN_GATEWAY].reload()


async def vault_status(request: web.Request) -> web.Response:
    """GET /vault."""
    return ok(_status(_vault(request)))


async def unseal(request: web.Request) -> web.Response:
    """POST /vault/unseal: open a passphrase vault."""
    vault = _vault(request)
    fields = take(await read_object(request), UNSEAL)
    try:
        vault.unseal(fields.get("passphrase"))
    except VaultError as exc:
        raise _refused(exc) from None
    _changed(request, "unseal", "vault", {"sealed": False})
    return ok(_status(vault))


async def seal(request: web.Request) -> web.Response:
    """POST /vault/seal: forget the key-encryption key until the next unseal."""
    vault = _vault(request)
    vault.seal()
    _changed(request, "seal", "vault", {"sealed": True})
    return ok(_status(vault))


async def rotate_kek(request: web.Request) -> web.Response:
    """POST /vault/rotate-kek: rewrap every data key under a new key-encryption key."""
    vault = _vault(request)
    fields = take(await read_object(request), ROTATE)
    credential = fields.get("credential_file")
    try:
        vault.rotate_kek(
            passphrase=fields.get("passphrase"),
            credential_file=Path(credential) if credential else None,
        )
    except VaultError as exc:
        raise _refused(exc) from None
    _changed(request, "rotate-kek", "vault", {"kek": vault.kek_kind})
    return ok(_status(vault))


def _provider(request: web.Request) -> str:
    name = request.match_info["name"]
    if name not in {p["name"] for p in catalog.list_providers(db(request))}:
        raise NotFoundError(f"no provider named {name!r}")
    return name


async def set_provider_key(request: web.Request) -> web.Response:
    """PUT /providers/{name}/key: store a new version of the provider's API key."""
    vault = _vault(request)
    name = _provider(request)
    key = take(await read_object(request), SET_KEY)["api_key"].strip()
    if not key or len(key) > MAX_API_KEY or any(c.isspace() for c in key):
        raise AdminError(
            400, "invalid_request", f"'api_key' must be 1-{MAX_API_KEY} characters, no spaces"
        )
    try:
        version = vault.put(catalog.provider_secret_id(name), key)
    except VaultError as exc:
        raise _refused(exc) from None
    _changed(request, "set-key", f"provider/{name}", {"version": version})
    return ok({"provider": name, "has_key": True, "version": version})


async def clear_provider_key(request: web.Request) -> web.Response:
    """DELETE /providers/{name}/key: remove the provider's key from the vault."""
    vault = _vault(request)
    name = _provider(request)
    try:
        removed = vault.delete(catalog.provider_secret_id(name))
    except VaultError as exc:
        raise _refused(exc) from None
    if not removed:
        raise NotFoundError(f"provider {name!r} has no key in the vault")
    _changed(request, "clear-key", f"provider/{name}", {"has_key": False})
    return no_content()
