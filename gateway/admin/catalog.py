"""Providers and model aliases, through `gateway.catalog` (keys are set through `vault`)."""

from __future__ import annotations

import os
from typing import Any

from aiohttp import web

from appliance.errors import NotFoundError
from gateway import catalog
from gateway.admin.body import Field, read_object, take
from gateway.admin.common import ADMIN_GATEWAY, actor, db, listing, no_content, ok

PROVIDER_CREATE = {
    "name": Field("string", True),
    "kind": Field("string", True),
    "base_url": Field("string?"),
    "api_key_env": Field("string?"),
    "api_version": Field("string?"),
}
MODEL_CREATE = {
    "alias": Field("string", True),
    "provider": Field("string", True),
    "upstream_model": Field("string", True),
}


def _find(rows: list[dict[str, Any]], column: str, value: str, what: str) -> dict[str, Any]:
    for row in rows:
        if row[column] == value:
            return row
    raise NotFoundError(f"no {what} named {value!r}")


def _providers(request: web.Request) -> list[dict[str, Any]]:
    """Provider rows with where each one's API key comes from (never the key itself)."""
    vault = request.app[ADMIN_GATEWAY].vault
    rows = catalog.list_providers(db(request))
    for row in rows:
        if vault is not None and vault.has(catalog.provider_secret_id(row["name"])):
            row["key_source"] = "vault"
        elif row["api_key_env"] and os.environ.get(row["api_key_env"]):
            row["key_source"] = "env"
        else:
            row["key_source"] = None
    return rows


async def list_providers(request: web.Request) -> web.Response:
    """GET /providers."""
    return listing(_providers(request))


async def create_provider(request: web.Request) -> web.Response:
    """POST /providers."""
    f = take(await read_object(request), PROVIDER_CREATE)
    provider = catalog.validate_provider(
        f["name"], f["kind"], f.get("base_url"), f.get("api_key_env"), f.get("api_version")
    )
    catalog.add_provider(db(request), provider, actor=actor(request))
    return ok(_find(_providers(request), "name", provider.name, "provider"), 201)


async def get_provider(request: web.Request) -> web.Response:
    """GET /providers/{name}."""
    return ok(_find(_providers(request), "name", request.match_info["name"], "provider"))


async def delete_provider(request: web.Request) -> web.Response:
    """DELETE /providers/{name}: refused while models use it."""
    catalog.remove_provider(db(request), request.match_info["name"], actor=actor(request))
    return no_content()


async def list_models(request: web.Request) -> web.Response:
    """GET /models."""
    return listing(catalog.list_models(db(request)))


async def create_model(request: web.Request) -> web.Response:
    """POST /models."""
    f = take(await read_object(request), MODEL_CREATE)
    model = catalog.ModelDef(f["alias"], f["provider"], f["upstream_model"])
    catalog.add_model(db(request), model, actor=actor(request))
    return ok(_find(catalog.list_models(db(request)), "alias", model.alias, "model"), 201)


async def get_model(request: web.Request) -> web.Response:
    """GET /models/{alias}."""
    rows = catalog.list_models(db(request))
    return ok(_find(rows, "alias", request.match_info["alias"], "model"))


async def delete_model(request: web.Request) -> web.Response:
    """DELETE /models/{alias}."""
    catalog.remove_model(db(request), request.match_info["alias"], actor=actor(request))
    return no_content()
