"""The `aigw` command line."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from typing import Any

import orjson

from appliance.config import Config, load_config
from appliance.errors import ApplianceError
from appliance.store import open_store


def _table(rows: list[dict[str, Any]], columns: list[str]) -> str:
    """A plain text table; empty cells show as '-'."""
    if not rows:
        return "(none)"
    cells = [[str(r.get(c) if r.get(c) is not None else "-") for c in columns] for r in rows]
    widths = [max(len(c), *(len(row[i]) for row in cells)) for i, c in enumerate(columns)]
    line = lambda vals: "  ".join(v.ljust(w) for v, w in zip(vals, widths, strict=True)).rstrip()  # noqa: E731
    return "\n".join([line([c.upper() for c in columns]), *(line(row) for row in cells)])


def _emit(args: argparse.Namespace, rows: list[dict[str, Any]], columns: list[str]) -> None:
    if args.json:
        sys.stdout.write(orjson.dumps(rows, option=orjson.OPT_INDENT_2).decode() + "\n")
    else:
        print(_table(rows, columns))


def cmd_up(cfg: Config, args: argparse.Namespace) -> None:
    """Run the box in the foreground."""
    from appliance.runner import run

    run(cfg)


def cmd_providers(cfg: Config, args: argparse.Namespace) -> None:
    """providers add|list|remove."""
    from gateway import catalog

    db = open_store(cfg.database_path)
    if args.action == "add":
        p = catalog.validate_provider(
            args.name, args.kind, args.base_url, args.api_key_env, args.api_version
        )
        catalog.add_provider(db, p)
        print(f"provider {p.name} added ({p.kind}, {p.base_url})")
    elif args.action == "remove":
        catalog.remove_provider(db, args.name)
        print(f"provider {args.name} removed")
    else:
        _emit(
            args,
            catalog.list_providers(db),
            ["name", "kind", "base_url", "api_key_env", "api_version"],
        )


def cmd_models(cfg: Config, args: argparse.Namespace) -> None:
    """models add|list|remove."""
    from gateway import catalog

    db = open_store(cfg.database_path)
    if args.action == "add":
        catalog.add_model(db, catalog.ModelDef(args.alias, args.provider, args.upstream_model))
        print(f"model {args.alias} added → {args.provider}/{args.upstream_model}")
    elif args.action == "remove":
        catalog.remove_model(db, args.alias)
        print(f"model {args.alias} removed")
    else:
        _emit(args, catalog.list_models(db), ["alias", "provider", "upstream_model"])


def cmd_config_check(cfg: Config, args: argparse.Namespace) -> None:
    """Validate the configuration and print where it came from."""
    print(f"configuration OK ({cfg.source}); state directory {cfg.state_dir}")


def build_parser() -> argparse.ArgumentParser:
    """The whole command tree."""
    from gateway.catalog import PROVIDER_KINDS

    config_help = "TOML config file (default: $AIGW_CONFIG, /etc/aigw/aigw.toml, ./var/aigw.toml)"
    # Accepted before or after the subcommand; SUPPRESS keeps a subcommand from resetting it.
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--config", default=argparse.SUPPRESS, help=config_help)
    parser = argparse.ArgumentParser(prog="aigw", description="The aigw AI gateway appliance.")
    parser.add_argument("--config", default=None, help=config_help)
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    up = sub.add_parser("up", parents=[common], help="run the gateway in the foreground")
    up.set_defaults(func=cmd_up)

    prov = sub.add_parser("providers", parents=[common], help="manage model providers")
    psub = prov.add_subparsers(dest="action", required=True)
    padd = psub.add_parser("add", parents=[common], help="add a provider")
    padd.add_argument("name")
    padd.add_argument("--kind", required=True, choices=list(PROVIDER_KINDS))
    padd.add_argument("--base-url", help="API base URL (default: the provider's public URL)")
    padd.add_argument("--api-key-env", help="environment variable holding the API key")
    padd.add_argument("--api-version", help="Azure OpenAI api-version")
    plist = psub.add_parser("list", parents=[common], help="list providers")
    plist.add_argument("--json", action="store_true")
    prem = psub.add_parser("remove", parents=[common], help="remove a provider")
    prem.add_argument("name")
    prov.set_defaults(func=cmd_providers)

    mod = sub.add_parser("models", parents=[common], help="manage model aliases")
    msub = mod.add_subparsers(dest="action", required=True)
    madd = msub.add_parser("add", parents=[common], help="add a model alias")
    madd.add_argument("alias")
    madd.add_argument("--provider", required=True)
    madd.add_argument(
        "--upstream-model", required=True, help="the provider's model (or Azure deployment) name"
    )
    mlist = msub.add_parser("list", parents=[common], help="list model aliases")
    mlist.add_argument("--json", action="store_true")
    mrem = msub.add_parser("remove", parents=[common], help="remove a model alias")
    mrem.add_argument("alias")
    mod.set_defaults(func=cmd_models)

    conf = sub.add_parser("config", parents=[common], help="static configuration")
    csub = conf.add_subparsers(dest="action", required=True)
    csub.add_parser("check", parents=[common], help="validate the config file")
    conf.set_defaults(func=cmd_config_check)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Entry point of the `aigw` console script."""
    from gateway.errors import GatewayError

    args = build_parser().parse_args(argv)
    try:
        cfg = load_config(args.config)
        func: Callable[[Config, argparse.Namespace], None] = args.func
        func(cfg, args)
    except (ApplianceError, GatewayError) as exc:
        print(f"aigw: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
