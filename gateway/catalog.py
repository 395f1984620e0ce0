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


def _check_name(what: str, name: str) -> None:
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
    _check_name("provider name", name)
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


def _bump(db: sqlite_utils.Database) -> None:
    db.execute(
        "INSERT INTO settings(key, value) VALUES ('catalog_version', '1') "
        "ON CONFLICT(key) DO UPDATE SET value = CAST(value AS INTEGER) + 1"
    )


def catalog_version(db: sqlite_utils.Database) -> int:
    """The catalog's change counter (one cheap query; polled, never per request)."""
    row = db.execute("SELECT value FROM settings WHERE key = 'catalog_version'").fetchone()
    return int(row[0]) if row else 0


def add_provider(db: sqlite_utils.Database, provider: ProviderDef) -> None:
    """Store a new provider."""
    with transaction(db):
        if db.execute("SELECT 1 FROM providers WHERE name = ?", [provider.name]).fetchone():
            raise ConflictError(f"provider {provider.name!r} already exists")
        db.table("providers").insert(
            {
                "name": provider.name,
                "kind": provider.kind,
                "base_url": provider.base_url,
                "api_key_env": provider.api_key_env,
                "api_version": provider.api_version,
                "created_at": utcnow(),
            }
        )
        _bump(db)


def remove_provider(db: sqlite_utils.Database, name: str) -> None:
    """Delete a provider that no model uses."""
    with transaction(db):
        users = [r[0] for r in db.execute("SELECT alias FROM models WHERE provider = ?", [name])]
        if users:
            raise ConflictError(
                f"provider {name!r} is used by models {', '.join(users)}; remove them first"
            )
        if db.execute("DELETE FROM providers WHERE name = ?", [name]).rowcount == 0:
            raise NotFoundError(f"no provider named {name!r}")
        _bump(db)


def add_model(db: sqlite_utils.Database, model: ModelDef) -> None:
    """Store a new model alias."""
    _check_name("model alias", model.alias)
    if not model.upstream_model:
        raise InvalidRequest("the upstream model name must not be empty")
    with transaction(db):
        if not db.execute("SELECT 1 FROM providers WHERE name = ?", [model.provider]).fetchone():
            raise NotFoundError(f"no provider named {model.provider!r}; add it first")
        if db.execute("SELECT 1 FROM models WHERE alias = ?", [model.alias]).fetchone():
            raise ConflictError(f"model {model.alias!r} already exists")
        db.table("models").insert(
            {
                "alias": model.alias,
                "provider": model.provider,
                "upstream_model": model.upstream_model,
                "created_at": utcnow(),
            }
        )
        _bump(db)


def remove_model(db: sqlite_utils.Database, alias: str) -> None:
    """Delete a model alias."""
    with transaction(db):
        if db.execute("DELETE FROM models WHERE alias = ?", [alias]).rowcount == 0:
            raise NotFoundError(f"no model named {alias!r}")
        _bump(db)


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
