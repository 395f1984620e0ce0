"""`aigw console`: the Textual console over the admin API (the box's socket, or --url/--token)."""

from __future__ import annotations

import argparse
import os

from appliance.cli._common import Ctx, SubParsers
from appliance.errors import ApplianceError


def register_console(sub: SubParsers, common: argparse.ArgumentParser) -> None:
    """Add `aigw console`."""
    parser = sub.add_parser(
        "console", parents=[common], help="the keyboard console (what tty1 shows on the box)"
    )
    parser.add_argument(
        "--refresh", type=float, default=2.0, help="seconds between live updates (default 2)"
    )
    parser.set_defaults(func=console)


def console(ctx: Ctx) -> None:
    """Run the console until the admin quits; a box that is down is shown, not an error."""
    from tui import ConsoleApp, connect

    url = getattr(ctx.args, "url", None) or os.environ.get("AIGW_URL") or None
    token = getattr(ctx.args, "token", None) or os.environ.get("AIGW_ADMIN_TOKEN") or None
    if url is not None and token is None:
        raise ApplianceError(
            f"--url {url} needs an admin token: --token TOKEN or $AIGW_ADMIN_TOKEN"
        )
    if ctx.args.refresh <= 0:
        raise ApplianceError("--refresh must be a positive number of seconds")
    ConsoleApp(connect(ctx.cfg.state_dir, url, token), refresh_seconds=ctx.args.refresh).run()
