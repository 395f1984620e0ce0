"""What every command shares: the context, output (tables or JSON), argument parsers, secrets."""

from __future__ import annotations

import argparse
import getpass
import re
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson

from appliance.admin_client import AdminClient, open_client
from appliance.config import Config
from appliance.errors import ApplianceError
from tui.format import cell as _cell

# An option given as "none" (or "") clears the value; distinct from "not given" (None).
CLEAR = object()
_DURATION = re.compile(r"^(\d+)([smhdw]?)$")
_UNIT_SECONDS = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}

SubParsers = Any  # argparse's private _SubParsersAction


@dataclass
class Ctx:
    """One command's configuration, arguments and (opened on first use) admin API client."""

    cfg: Config
    args: argparse.Namespace
    _client: AdminClient | None = field(default=None, repr=False)

    @property
    def json(self) -> bool:
        """Whether output is JSON for scripts."""
        return bool(getattr(self.args, "json", False))

    @property
    def client(self) -> AdminClient:
        """The admin API client, opened on first use."""
        if self._client is None:
            self._client = open_client(
                self.cfg, getattr(self.args, "url", None), getattr(self.args, "token", None)
            )
        return self._client

    def call(
        self, method: str, path: str, body: Any = None, query: dict[str, Any] | None = None
    ) -> Any:
        """One admin API request; the parsed answer."""
        return self.client.call(method, path, body, query)[1]

    def close(self) -> None:
        """Close the client (and any in-process server it started)."""
        if self._client is not None:
            self._client.close()
            self._client = None


Command = Callable[[Ctx], None]


# --- output ---------------------------------------------------------------------------------


def table(rows: list[dict[str, Any]], columns: list[str]) -> str:
    """A plain text table; empty cells show as '-'."""
    if not rows:
        return "(none)"
    cells = [[_cell(r.get(c)) for c in columns] for r in rows]
    widths = [max(len(c), *(len(row[i]) for row in cells)) for i, c in enumerate(columns)]

    def line(values: list[str]) -> str:
        return "  ".join(v.ljust(w) for v, w in zip(values, widths, strict=True)).rstrip()

    return "\n".join([line([c.upper() for c in columns]), *(line(row) for row in cells)])


def print_json(data: Any) -> None:
    """JSON on stdout, indented."""
    sys.stdout.write(orjson.dumps(data, option=orjson.OPT_INDENT_2).decode() + "\n")


def emit_rows(ctx: Ctx, rows: list[dict[str, Any]], columns: list[str]) -> None:
    """A list: a table, or the rows as JSON."""
    if ctx.json:
        print_json(rows)
    else:
        print(table(rows, columns))


def emit_object(ctx: Ctx, obj: dict[str, Any], message: str | None = None) -> None:
    """One object: `message` (or every field, one per line), or the object as JSON."""
    if ctx.json:
        print_json(obj)
    elif message is not None:
        print(message)
    else:
        width = max((len(k) for k in obj), default=0)
        for key, value in obj.items():
            print(f"{key.ljust(width)}  {_cell(value)}")


def emit_done(ctx: Ctx, message: str, **data: Any) -> None:
    """A change without an object to show (a delete): a line, or `data` as JSON."""
    if ctx.json:
        print_json(data)
    else:
        print(message)


def add_json(parser: argparse.ArgumentParser) -> None:
    """--json on a command that prints data."""
    parser.add_argument("--json", action="store_true", help="print JSON for scripts")


# --- argument types -------------------------------------------------------------------------


def csv_list(raw: str) -> list[str]:
    """`a,b*` → ['a', 'b*']; an empty string is the empty list."""
    return [part.strip() for part in raw.split(",") if part.strip()]


def seconds(raw: str) -> int:
    """A duration: `90d`, `24h`, `30m`, `45s`, `2w` or plain seconds."""
    match = _DURATION.match(raw.strip().lower())
    if match is None:
        raise argparse.ArgumentTypeError(f"{raw!r} is not a duration such as 90d, 24h, 30m or 0")
    return int(match.group(1)) * _UNIT_SECONDS[match.group(2)]


def expiry(raw: str) -> Any:
    """An ISO-8601 time, a duration from now (`90d`), or `none` to clear."""
    if raw.strip().lower() in ("", "none", "never"):
        return CLEAR
    if _DURATION.match(raw.strip().lower()):
        when = datetime.now(UTC) + timedelta(seconds=seconds(raw))
        return when.isoformat(timespec="seconds").replace("+00:00", "Z")
    return raw  # the admin API checks the time and says what it wants


def limit(raw: str) -> Any:
    """A non-negative integer, or `none` to clear the limit."""
    if raw.strip().lower() in ("", "none"):
        return CLEAR
    try:
        value = int(raw)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{raw!r} is not an integer (or 'none')") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"{raw!r} must not be negative")
    return value


_YES, _NO = ("yes", "on", "true", "1"), ("no", "off", "false", "0")


def on_off(raw: str) -> bool:
    """`on`/`off` (or yes/no, true/false, 1/0) as a boolean."""
    value = raw.strip().lower()
    if value not in _YES and value not in _NO:
        raise argparse.ArgumentTypeError(f"{raw!r}: use on or off (yes or no)")
    return value in _YES


def optional_text(raw: str) -> Any:
    """A string, or `none` to clear it."""
    return CLEAR if raw.strip().lower() == "none" else raw


def body_of(args: argparse.Namespace, names: dict[str, str]) -> dict[str, Any]:
    """The request body from the options given: attribute → field; CLEAR becomes null."""
    out: dict[str, Any] = {}
    for attr, name in names.items():
        value = getattr(args, attr, None)
        if value is not None:
            out[name] = None if value is CLEAR else value
    return out


# --- secrets --------------------------------------------------------------------------------


def read_secret(prompt: str, *, confirm: bool = False) -> str:
    """A secret from the terminal without echo (twice when `confirm`), or one line of stdin."""
    if sys.stdin.isatty():
        value = getpass.getpass(prompt)
        if confirm and getpass.getpass("Again: ") != value:
            raise ApplianceError("the two entries differ; nothing was changed")
    else:
        value = sys.stdin.readline().rstrip("\r\n")
    if not value:
        raise ApplianceError("no secret given (type it, or pipe it on standard input)")
    return value
