"""The model store's records: imported local models (enabled or not) and the keys whose
bundles this box trusts.

The files live in `inference.store` (one folder per model under `cfg.models_dir`); the rows
here say what was imported, from where, signed by whom, and whether it is enabled. Every write
is one transaction that also bumps the catalog version (running gateways and their engine
supervisor follow within a second) and, made by an actor, appends an audit row.

What an engine runner needs is `enabled_models(db, models_dir)`: each enabled model's
manifest (as checked at import, from the database) and its folder.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import sqlite_utils
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from appliance.errors import ConflictError, NotFoundError
from appliance.store import transaction, utcnow
from gateway.catalog import bump_version, check_name
from gateway.errors import InvalidRequest
from gateway.tenancy.audit import record
from inference.bundle import BundleError, load_public_key, public_key_b64
from inference.manifest import Manifest, ManifestError, check_model_name, parse_manifest
from inference.store import (
    ModelExistsError,
    ModelStore,
    ModelStoreError,
    NoSuchModelError,
    Staged,
)

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class LocalModel:
    """An imported model: its manifest as checked at import, and where its files are."""

    name: str
    manifest: Manifest
    path: Path
    enabled: bool
    source: str
    signed_by: str | None


def refusal(exc: Exception) -> Exception:
    """The admin API's error for a refusal of the model store (400, 404 or 409)."""
    if isinstance(exc, ModelExistsError):
        return ConflictError(f"{exc}; import it with replace to overwrite it")
    if isinstance(exc, NoSuchModelError):
        return NotFoundError(str(exc))
    if isinstance(exc, ModelStoreError | ManifestError | BundleError):
        return InvalidRequest(str(exc))
    return exc


# --- reading --------------------------------------------------------------------------------


def _row(db: sqlite_utils.Database, name: str) -> dict[str, Any] | None:
    rows = list(db.query("SELECT * FROM local_models WHERE name = ?", [name]))
    return rows[0] if rows else None


def _manifest(row: dict[str, Any]) -> Manifest:
    """The manifest a row keeps; one edited by hand into nonsense is a conflict to resolve."""
    try:
        return parse_manifest(row["manifest"])
    except ManifestError as exc:
        raise ConflictError(
            f"local model {row['name']!r} has an unusable manifest in the database ({exc}); "
            "import it again with replace"
        ) from None


def _manifest_dict(row: dict[str, Any]) -> Any:
    """The manifest as JSON data, for the audit trail (as stored, even if unusable)."""
    try:
        return parse_manifest(row["manifest"]).to_dict()
    except ManifestError:
        return row["manifest"]


def _summary(row: dict[str, Any]) -> dict[str, Any]:
    """A row as the admin API lists it (the manifest summed up)."""
    try:
        manifest: Manifest | None = parse_manifest(row["manifest"])
    except ManifestError as exc:
        manifest, problem = None, f"unusable manifest: {exc}"
    return {
        "name": row["name"],
        "format": row["format"],
        "license": manifest.license if manifest else "",
        "context_length": manifest.context_length if manifest else 0,
        "description": manifest.description if manifest else problem,
        "files": len(manifest.files) if manifest else 0,
        "size_bytes": manifest.total_bytes if manifest else 0,
        "enabled": bool(row["enabled"]),
        "source": row["source"],
        "signed_by": row["signed_by"],
        "imported_at": row["imported_at"],
        "updated_at": row["updated_at"],
    }


def list_local_models(db: sqlite_utils.Database) -> list[dict[str, Any]]:
    """Imported models, by name, summed up."""
    return [_summary(r) for r in db.query("SELECT * FROM local_models ORDER BY name")]


def get_local_model(db: sqlite_utils.Database, name: str) -> dict[str, Any]:
    """One imported model, summed up, with its whole manifest."""
    row = _row(db, name)
    if row is None:
        raise NotFoundError(f"no local model named {name!r}")
    manifest = _manifest_dict(row)
    return {**_summary(row), "manifest": manifest if isinstance(manifest, dict) else {}}


def local_model(db: sqlite_utils.Database, models_dir: Path, name: str) -> LocalModel:
    """One imported model, for code that runs it."""
    row = _row(db, name)
    if row is None:
        raise NotFoundError(f"no local model named {name!r}")
    return _model(row, models_dir)


def enabled_models(db: sqlite_utils.Database, models_dir: Path) -> list[LocalModel]:
    """The enabled models, by name: what the engines should serve, and from which folder.
    A model whose stored manifest no longer parses (edited by hand) is left out, logged."""
    models, unusable = checked_enabled_models(db, models_dir)
    for why in unusable.values():
        log.error("%s", why)
    return models


def checked_enabled_models(
    db: sqlite_utils.Database, models_dir: Path
) -> tuple[list[LocalModel], dict[str, str]]:
    """The enabled models whose manifests parse, and why each of the others cannot run."""
    out: list[LocalModel] = []
    unusable: dict[str, str] = {}
    for row in db.query("SELECT * FROM local_models WHERE enabled = 1 ORDER BY name"):
        try:
            out.append(_model(row, models_dir))
        except ConflictError as exc:
            unusable[row["name"]] = str(exc)
    return out, unusable


def _model(row: dict[str, Any], models_dir: Path) -> LocalModel:
    return LocalModel(
        row["name"],
        _manifest(row),
        models_dir / row["name"],
        bool(row["enabled"]),
        row["source"],
        row["signed_by"],
    )


# --- imports --------------------------------------------------------------------------------


def stage(
    store: ModelStore,
    path: str,
    trusted: Mapping[str, Ed25519PublicKey],
    *,
    name: str | None = None,
    license: str | None = None,
    context_length: int | None = None,
) -> Staged:
    """Copy and check a folder or a bundle on this box into the store's staging area (slow:
    run it off the event loop). Refusals come as the admin API's errors."""
    if not path.startswith("/") or "\x00" in path:
        raise InvalidRequest("'path' must be an absolute path on the box", param="path")
    try:
        if name is not None:
            check_model_name(name)
        return store.stage(
            Path(path), trusted, name=name, license=license, context_length=context_length
        )
    except (ModelStoreError, ManifestError, BundleError) as exc:
        raise refusal(exc) from None


def commit_import(
    db: sqlite_utils.Database, actor: str, staged: Staged, *, replace: bool = False
) -> dict[str, Any]:
    """Put a staged model under its name and record it, as one change: a refusal (the name is
    taken, the model is enabled) or a failure of either leaves the store as it was."""
    with staged, transaction(db):
        _upsert(db, actor, staged.manifest, staged.source, staged.signer, replace)
        # The database says which models exist: a folder without a row is a leftover.
        staged.commit(replace=True)
    return get_local_model(db, staged.name)


def record_import(
    db: sqlite_utils.Database,
    actor: str,
    manifest: Manifest,
    source: str,
    signed_by: str | None,
    *,
    replace: bool = False,
) -> dict[str, Any]:
    """Record a model already put in the store (a new one, disabled; or its replacement)."""
    with transaction(db):
        _upsert(db, actor, manifest, source, signed_by, replace)
    return get_local_model(db, manifest.name)


def _upsert(
    db: sqlite_utils.Database,
    actor: str,
    manifest: Manifest,
    source: str,
    signed_by: str | None,
    replace: bool,
) -> None:
    before = _row(db, manifest.name)
    if before is not None and not replace:
        raise ConflictError(
            f"a local model named {manifest.name!r} already exists; import it with replace to "
            "overwrite it"
        )
    if before is not None and before["enabled"]:
        raise ConflictError(
            f"local model {manifest.name!r} is enabled; disable it before replacing it"
        )
    now = utcnow()
    row = {
        "name": manifest.name,
        "format": manifest.format,
        "manifest": manifest.to_json().decode(),
        "source": source,
        "signed_by": signed_by,
        "enabled": 0,
        "imported_at": now,
        "updated_at": now,
    }
    db.table("local_models").upsert(row, pk="name")
    after = {**row, "manifest": manifest.to_dict()}
    if before is None:
        record(db, actor, "import", "local_model", manifest.name, None, after)
    else:
        old = {**before, "manifest": _manifest_dict(before)}
        record(db, actor, "replace", "local_model", manifest.name, old, after)
    bump_version(db)


# --- changes --------------------------------------------------------------------------------


def set_enabled(
    db: sqlite_utils.Database,
    actor: str,
    name: str,
    enabled: bool,
    store: ModelStore | None = None,
) -> dict[str, Any]:
    """Enable or disable a model. Enabling checks its folder first (with `store`: every file
    there with its size; the hashes were checked at import) and refuses saying why."""
    row = _row(db, name)
    if row is None:
        raise NotFoundError(f"no local model named {name!r}")
    if enabled and store is not None:
        problems = store.check(name, _manifest(row))
        if problems:
            raise ConflictError(
                f"local model {name!r} cannot be enabled: {'; '.join(problems[:3])}"
                f"{' ...' if len(problems) > 3 else ''}; import it again"
            )
    with transaction(db):
        before = _row(db, name)
        if before is None:
            raise NotFoundError(f"no local model named {name!r}")
        if bool(before["enabled"]) != enabled:
            now = utcnow()
            db.execute(
                "UPDATE local_models SET enabled = ?, updated_at = ? WHERE name = ?",
                [int(enabled), now, name],
            )
            action = "enable" if enabled else "disable"
            record(
                db,
                actor,
                action,
                "local_model",
                name,
                {"enabled": bool(before["enabled"])},
                {"enabled": enabled},
            )
            bump_version(db)
    return get_local_model(db, name)


def delete_local_model(db: sqlite_utils.Database, actor: str, name: str) -> None:
    """Forget a disabled model (its folder is then removed by the caller, `store.remove`)."""
    with transaction(db):
        before = _row(db, name)
        if before is None:
            raise NotFoundError(f"no local model named {name!r}")
        if before["enabled"]:
            raise ConflictError(f"local model {name!r} is enabled; disable it first")
        db.execute("DELETE FROM local_models WHERE name = ?", [name])
        before["manifest"] = _manifest_dict(before)
        record(db, actor, "delete", "local_model", name, before, None)
        bump_version(db)


# --- trusted keys ---------------------------------------------------------------------------


def list_trusted_keys(db: sqlite_utils.Database) -> list[dict[str, Any]]:
    """The trusted keys, by name."""
    return list(db.query("SELECT name, public_key, added_at FROM trusted_keys ORDER BY name"))


def trusted_keys(db: sqlite_utils.Database) -> dict[str, Ed25519PublicKey]:
    """Name → public key, for checking a bundle's signature (a row spoilt by hand is left out)."""
    keys = {}
    for row in list_trusted_keys(db):
        try:
            keys[row["name"]] = load_public_key(row["public_key"])
        except BundleError as exc:
            log.error("trusted key %s is unusable: %s", row["name"], exc)
    return keys


def add_trusted_key(
    db: sqlite_utils.Database, actor: str, name: str, public_key: str
) -> dict[str, Any]:
    """Trust bundles signed by this Ed25519 key (base64 of its 32 bytes, PEM or OpenSSH)."""
    check_name("key name", name)
    try:
        b64 = public_key_b64(load_public_key(public_key))
    except BundleError as exc:
        raise InvalidRequest(str(exc), param="public_key") from None
    with transaction(db):
        if _key_row(db, "name", name) is not None:
            raise ConflictError(f"a trusted key named {name!r} already exists")
        same = _key_row(db, "public_key", b64)
        if same is not None:
            raise ConflictError(f"this key is already trusted, as {same['name']!r}")
        row = {"name": name, "public_key": b64, "added_at": utcnow()}
        db.table("trusted_keys").insert(row)
        record(db, actor, "create", "trusted_key", name, None, row)
        bump_version(db)
    return row


def remove_trusted_key(db: sqlite_utils.Database, actor: str, name: str) -> None:
    """Stop trusting a key for new imports (models it signed stay, checked at their import)."""
    with transaction(db):
        before = _key_row(db, "name", name)
        if before is None:
            raise NotFoundError(f"no trusted key named {name!r}")
        db.execute("DELETE FROM trusted_keys WHERE name = ?", [name])
        record(db, actor, "delete", "trusted_key", name, before, None)
        bump_version(db)


def _key_row(db: sqlite_utils.Database, column: str, value: str) -> dict[str, Any] | None:
    rows = list(db.query(f"SELECT * FROM trusted_keys WHERE {column} = ?", [value]))
    return rows[0] if rows else None
