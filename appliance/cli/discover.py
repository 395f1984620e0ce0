"""`aigw discover`: the boxes advertising on the LAN (mDNS), as a table or --json."""

from __future__ import annotations

import argparse
import asyncio

from appliance.cli._common import Ctx, SubParsers, add_json, emit_rows
from appliance.discovery import discover as browse

_COLUMNS = ["name", "url", "series", "fingerprint"]


def register_discover(sub: SubParsers, common: argparse.ArgumentParser) -> None:
    """Add `aigw discover`."""
    parser = sub.add_parser(
        "discover", parents=[common], help="list the aigw boxes on the LAN (mDNS)"
    )
    parser.add_argument(
        "--timeout", type=_timeout, default=3.0, help="seconds to listen (default 3)"
    )
    parser.add_argument(
        "--interface",
        action="append",
        metavar="ADDR",
        help="IPv4 address of an interface to browse on; repeatable "
        "(default: [discovery] interfaces, else every interface)",
    )
    add_json(parser)
    parser.set_defaults(func=discover)


def _timeout(raw: str) -> float:
    try:
        value = float(raw)
    except ValueError:
        value = -1.0
    if not 0 < value <= 60:
        raise argparse.ArgumentTypeError(f"{raw!r} is not a number of seconds from 0 to 60")
    return value


def discover(ctx: Ctx) -> None:
    """discover: browse _aigw._tcp for --timeout seconds."""
    interfaces = ctx.args.interface or ctx.cfg.discovery_interfaces or None
    boxes = asyncio.run(browse(ctx.args.timeout, interfaces))
    emit_rows(ctx, [b.to_dict() for b in boxes], _COLUMNS)
