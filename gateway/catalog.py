"""What the gateway can reach: providers and model aliases, in SQLite and in memory.

Writes go through the functions here (used by the CLI and, later, the admin API); each bumps
`settings.catalog_version` in the same transaction, and a running gateway polls that one row
once a second to reload its in-memory snapshot. The hot path reads only the snapshot.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import sqlite_utils

from appliance.errors import ConflictError, NotFoundError
from appliance.store import transaction, utcnow
from gateway.errors import InvalidRequest
from gateway.tenancy.audit import record

# kind → (wire protocol, default base URL). Every OpenAI-compatible service is kind "openai".
PROVIDER_KINDS: dict[str, tuple[str, str | None]] = {
    "openai": ("openai", "https://api.openai.com/v1"),
    "anthropic": ("anthropic", "https://api.anthropic.com"),
    "gemini": ("gemini", "https://generativelanguage.googleapis.com"),
    "azure-openai": ("openai", None),
}
DEFAULT_AZURE_API_VERSION = "2024-10-21"
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._:/-]{0,127}$")
_ENV = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


@dataclass(frozen=True, slots=True)
class ProviderDef:
    """A provider as stored: where it is and where its credential comes from."""

    name: str
    kind: str
    base_url: str
    api_key_env: str | None = None
    api_version: str | None = None

    @property
    def protocol(self) -> str:
        """The wire protocol this provider speaks."""
        return PROVIDER_KINDS[self.kind][0]

    def api_key(self) -> str | None:
        """The provider's API key, read from its environment variable (None when unset)."""
        return os.environ.get(self.api_key_env) if self.api_key_env else None


@dataclass(frozen=True, slots=True)
class ModelDef:
    """A model alias that clients call, mapped to a provider's upstream model."""

    alias: str
    provider: str
    upstream_model: str


@dataclass(frozen=True, slots=True)
class Snapshot:
    """The catalog as the hot path sees it."""

    version: int
    providers: dict[str, ProviderDef]
    models: dict[str, ModelDef]


def check_name(what: str, name: str) -> None:
    """Refuse a name that would not read safely in URLs, CLIs and logs."""
    if not _NAME.match(name):
        raise InvalidRequest(
            f"{what} {name!r} is not valid: use 1-128 letters, digits and . _ : / -, "
            "starting with a letter or digit"
        )


def validate_provider(
    name: str,
    kind: str,
    base_url: str | None,
    api_key_env: str | None,
    api_version: str | None = None,
) -> ProviderDef:
    """Check a provider definition and fill in defaults."""
    check_name("provider name", name)
    if name == "local":
        raise InvalidRequest(
            "the provider name 'local' is the box's own engines (`aigw models import`, "
            "`aigw engines add-remote`); choose another name"
        )
    if kind not in PROVIDER_KINDS:
        raise InvalidRequest(
            f"provider kind {kind!r} is unknown; use one of {', '.join(PROVIDER_KINDS)}"
        )
    url = base_url or PROVIDER_KINDS[kind][1]
    if not url:
        raise InvalidRequest(f"a provider of kind {kind} needs --base-url (its resource endpoint)")
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise InvalidRequest(f"base URL {url!r} must be an http:// or https:// URL")
    if api_key_env is not None and not _ENV.match(api_key_env):
        raise InvalidRequest(f"{api_key_env!r} is not a valid environment variable name")
    if kind == "azure-openai":
        api_version = api_version or DEFAULT_AZURE_API_VERSION
    return ProviderDef(name, kind, url.rstrip("/"), api_key_env, api_version)


def bump_version(db: sqlite_utils.Database) -> None:
    """Bump the shared change counter (inside the writer's transaction), so a running gateway
    reloads what it holds in memory within a second."""
    db.execute(
        "INSERT INTO settings(key, value) VALUES ('catalog_version', '1') "
        "ON CONFLICT(key) DO UPDATE SET value = CAST(value AS INTEGER) + 1"
    )


def _created(
    db: sqlite_utils.Database,
    actor: str | None,
    table: str,
    what: str,
    name: str,
    row: dict[str, Any],
) -> None:
    """Insert a new row, audited when an actor made it, and tell running gateways."""
    db.table(table).insert(row)
    if actor is not None:
        record(db, actor, "create", what, name, None, row)
    bump_version(db)


def catalog_version(db: sqlite_utils.Database) -> int:
    """The catalog's change counter (one cheap query; polled, never per request)."""
    row = db.execute("SELECT value FROM settings WHERE key = 'catalog_version'").fetchone()
    return int(row[0]) if row else 0


def add_provider(
    db: sqlite_utils.Database, provider: ProviderDef, *, actor: str | None = None
) -> None:
    """Store a new provider; with an `actor` (the admin API) the change is audited."""
    with transaction(db):
        if db.execute("SELECT 1 FROM providers WHERE name = ?", [provider.name]).fetchone():
            raise ConflictError(f"provider {provider.name!r} already exists")
        row = {
            "name": provider.name,
            "kind": provider.kind,
            "base_url": provider.base_url,
            "api_key_env": provider.api_key_env,
            "api_version": provider.api_version,
            "created_at": utcnow(),
        }
        _created(db, actor, "providers", "provider", provider.name, row)


def remove_provider(db: sqlite_utils.Database, name: str, *, actor: str | None = None) -> None:
    """Delete a provider that no model uses; with an `actor` the change is audited."""
    if name == "local":
        raise ConflictError("provider 'local' is the box's own engines and cannot be removed")
    with transaction(db):
        users = [r[0] for r in db.execute("SELECT alias FROM models WHERE provider = ?", [name])]
        if users:
            raise ConflictError(
                f"provider {name!r} is used by models {', '.join(users)}; remove them first"
            )
        routes = [
            r[0]
            for r in db.execute(
                "SELECT DISTINCT route FROM deployments WHERE provider = ? ORDER BY route", [name]
            )
        ]
        if routes:
            raise ConflictError(
                f"provider {name!r} is used by routes {', '.join(routes)}; change them first"
            )
        before = _row(db, "providers", "name", name)
        if before is None:
            raise NotFoundError(f"no provider named {name!r}")
        db.execute("DELETE FROM providers WHERE name = ?", [name])
        if actor is not None:
            record(db, actor, "delete", "provider", name, before, None)
        bump_version(db)


def add_model(db: sqlite_utils.Database, model: ModelDef, *, actor: str | None = None) -> None:
    """Store a new model alias; with an `actor` the change is audited."""
    check_name("model alias", model.alias)
    if not model.upstream_model:
        raise InvalidRequest("the upstream model name must not be empty")
    with transaction(db):
        if not db.execute("SELECT 1 FROM providers WHERE name = ?", [model.provider]).fetchone():
            raise NotFoundError(f"no provider named {model.provider!r}; add it first")
        if db.execute("SELECT 1 FROM models WHERE alias = ?", [model.alias]).fetchone():
            raise ConflictError(f"model {model.alias!r} already exists")
        if db.execute("SELECT 1 FROM routes WHERE alias = ?", [model.alias]).fetchone():
            raise ConflictError(
                f"{model.alias!r} is a route; remove the route or pick another alias"
            )
        row = {
            "alias": model.alias,
            "provider": model.provider,
            "upstream_model": model.upstream_model,
            "created_at": utcnow(),
        }
        _created(db, actor, "models", "model", model.alias, row)


def remove_model(db: sqlite_utils.Database, alias: str, *, actor: str | None = None) -> None:
    """Delete a model alias; with an `actor` the change is audited."""
    with transaction(db):
        before = _row(db, "models", "alias", alias)
        if before is None:
            raise NotFoundError(f"no model named {alias!r}")
        users = [
            r[0]
            for r in db.execute(
                "SELECT alias FROM routes WHERE fallback_alias = ? ORDER BY alias", [alias]
            )
        ]
        if users:
            raise ConflictError(
                f"model {alias!r} is the fallback of route(s) {', '.join(users)}; change them first"
            )
        db.execute("DELETE FROM models WHERE alias = ?", [alias])
        if actor is not None:
            record(db, actor, "delete", "model", alias, before, None)
        bump_version(db)


def _row(db: sqlite_utils.Database, table: str, column: str, value: str) -> dict[str, Any] | None:
    rows = list(db.query(f"SELECT * FROM {table} WHERE {column} = ?", [value]))
    return rows[0] if rows else None


def list_providers(db: sqlite_utils.Database) -> list[dict[str, Any]]:
    """Providers as rows, by name."""
    return list(db.query("SELECT * FROM providers ORDER BY name"))


def list_models(db: sqlite_utils.Database) -> list[dict[str, Any]]:
    """Model aliases as rows, by alias."""
    return list(db.query("SELECT * FROM models ORDER BY alias"))


def load_snapshot(db: sqlite_utils.Database) -> Snapshot:
    """Read the whole catalog into memory."""
    version = catalog_version(db)
    providers = {
        r["name"]: ProviderDef(
            r["name"], r["kind"], r["base_url"], r["api_key_env"], r["api_version"]
        )
        for r in db.query("SELECT * FROM providers")
    }
    models = {
        r["alias"]: ModelDef(r["alias"], r["provider"], r["upstream_model"])
        for r in db.query("SELECT * FROM models")
    }
    return Snapshot(version, providers, models)


def provider_secret_id(name: str) -> str:
    """The vault id of a provider's API key."""
    return "provider/" + name.lower()
