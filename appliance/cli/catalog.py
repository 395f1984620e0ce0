"""`aigw providers|models`: what the gateway can reach, and providers' API keys in the vault."""

from __future__ import annotations

import argparse

from appliance.admin_client import segment
from appliance.cli._common import Ctx, SubParsers, add_json, emit_done, read_secret
from appliance.cli._crud import Collection, Opt, register
from appliance.cli.local_models import register_local_models


def _providers() -> Collection:
    from gateway.catalog import PROVIDER_KINDS

    return Collection(
        "providers",
        "provider",
        "name",
        ["name", "kind", "base_url", "api_key_env", "api_version", "key_source"],
        create=[
            Opt("--kind", "kind", {"required": True, "choices": list(PROVIDER_KINDS)}),
            Opt("--base-url", "base_url", {"help": "API base URL (default: the public one)"}),
            Opt("--api-key-env", "api_key_env", {"help": "env variable holding the API key"}),
            Opt("--api-version", "api_version", {"help": "Azure OpenAI api-version"}),
        ],
        help="manage model providers",
        added=lambda r: f"provider {r['name']} added ({r['kind']}, {r['base_url']})",
    )


MODELS = Collection(
    "models",
    "model",
    "alias",
    ["alias", "provider", "upstream_model"],
    create=[
        Opt("--provider", "provider", {"required": True}),
        Opt(
            "--upstream-model",
            "upstream_model",
            {"required": True, "help": "the provider's model (or Azure deployment) name"},
        ),
    ],
    help="manage model aliases and the local model store",
    added=lambda r: f"model {r['alias']} added → {r['provider']}/{r['upstream_model']}",
)


def register_catalog(sub: SubParsers, common: argparse.ArgumentParser) -> None:
    """Add `providers` (with set-key / clear-key), `models` (with the model store's commands)
    and `trust`."""
    actions = register(sub, common, _providers())
    register_local_models(sub, register(sub, common, MODELS), common)
    setk = actions.add_parser(
        "set-key", parents=[common], help="store a provider's API key in the vault (from stdin)"
    )
    setk.add_argument("name")
    add_json(setk)
    setk.set_defaults(func=set_key)
    clear = actions.add_parser(
        "clear-key", parents=[common], help="remove a provider's API key from the vault"
    )
    clear.add_argument("name")
    add_json(clear)
    clear.set_defaults(func=clear_key)


def set_key(ctx: Ctx) -> None:
    """Read the key without echo (or from stdin) and store it; never from an argument."""
    name = ctx.args.name
    secret = read_secret(f"API key for provider {name}: ")
    ctx.call("PUT", f"/providers/{segment(name)}/key", {"api_key": secret})
    emit_done(ctx, f"provider {name}: API key stored in the vault", provider=name, key="set")


def clear_key(ctx: Ctx) -> None:
    """Remove the provider's key from the vault (its environment variable, if any, applies)."""
    name = ctx.args.name
    ctx.call("DELETE", f"/providers/{segment(name)}/key")
    emit_done(ctx, f"provider {name}: API key removed from the vault", provider=name, key="cleared")
