"""The `aigw` command line: the admin API's objects as commands, tables or --json.

Commands reach the admin API by `--url`/`--token`, through the running box's socket, or by
serving it in-process when no box runs (see `appliance.admin_client`). Errors are one line on
stderr and exit status 1.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import sys

from appliance.cli._common import Command, Ctx
from appliance.cli.audit import register_audit
from appliance.cli.backup import register_backup
from appliance.cli.catalog import register_catalog
from appliance.cli.config import register_config
from appliance.cli.console import register_console
from appliance.cli.discover import register_discover
from appliance.cli.engines import register_engines
from appliance.cli.governance import register_governance
from appliance.cli.gpus import register_gpus
from appliance.cli.keys import register_admin, register_keys
from appliance.cli.masking import register_masking
from appliance.cli.media import register_media
from appliance.cli.org import register_org
from appliance.cli.prices import register_prices
from appliance.cli.reports import register_reports
from appliance.cli.routing import register_routing
from appliance.cli.spend import register_spend
from appliance.cli.system import register_system
from appliance.cli.vault import register_vault
from appliance.config import load_config
from appliance.errors import ApplianceError

__all__ = ["build_parser", "main"]

_CONFIG_HELP = "TOML config file (default: $AIGW_CONFIG, /etc/aigw/aigw.toml, ./var/aigw.toml)"


def _global_options(parser: argparse.ArgumentParser, default: object) -> None:
    parser.add_argument("--config", default=default, help=_CONFIG_HELP)
    parser.add_argument(
        "--url", default=default, help="admin API base URL, e.g. https://box:8080 ($AIGW_URL)"
    )
    parser.add_argument(
        "--token", default=default, help="admin token for --url ($AIGW_ADMIN_TOKEN)"
    )


def build_parser() -> argparse.ArgumentParser:
    """The whole command tree."""
    # Global options are accepted before or after the subcommand; SUPPRESS keeps a subcommand
    # from resetting one given earlier.
    common = argparse.ArgumentParser(add_help=False)
    _global_options(common, argparse.SUPPRESS)
    parser = argparse.ArgumentParser(prog="aigw", description="The aigw AI gateway appliance.")
    _global_options(parser, None)
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    register_config(sub, common)
    register_org(sub, common)
    register_keys(sub, common)
    register_catalog(sub, common)
    register_routing(sub, common)
    register_engines(sub, common)
    register_gpus(sub, common)
    register_prices(sub, common)
    register_masking(sub, common)
    register_admin(sub, common)
    register_reports(sub, common)
    register_audit(sub, common)
    register_governance(sub, common)
    register_spend(sub, common)
    register_vault(sub, common)
    register_system(sub, common)
    register_backup(sub, common)
    register_console(sub, common)
    register_discover(sub, common)
    register_media(sub, common)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Entry point of the `aigw` console script: 0 done, 1 an error, 2 a usage error."""
    from gateway.errors import GatewayError

    try:
        args = build_parser().parse_args(argv)
    except SystemExit as exc:  # --help (0) or a usage error (2), already printed
        return exc.code if isinstance(exc.code, int) else 2
    ctx: Ctx | None = None
    try:
        ctx = Ctx(load_config(args.config), args)
        func: Command = args.func
        func(ctx)
    except (ApplianceError, GatewayError) as exc:
        return _fail(str(exc))
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        return 1  # the reader went away (`aigw ... | head`)
    except OSError as exc:
        return _fail(f"{exc.filename + ': ' if exc.filename else ''}{exc.strerror or exc}")
    except Exception as exc:
        if os.environ.get("AIGW_DEBUG"):
            raise
        return _fail(f"unexpected {type(exc).__name__}: {exc} (AIGW_DEBUG=1 shows where)")
    finally:
        if ctx is not None:
            with contextlib.suppress(Exception):
                ctx.close()
    return 0


def _fail(message: str) -> int:
    print(f"aigw: error: {message}", file=sys.stderr)
    return 1
