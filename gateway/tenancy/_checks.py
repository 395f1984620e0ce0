"""Validation of tenancy fields where they enter the store (the admin API and the CLI)."""

from __future__ import annotations

import fnmatch
import ipaddress
import re
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

import orjson
import sqlite_utils

from appliance.errors import NotFoundError
from gateway.errors import InvalidRequest

MAX_TEXT = 1024
MAX_LIST = 256
MAX_INT = 2**63 - 1  # SQLite's INTEGER
_TAG = re.compile(r"^[a-z0-9][a-z0-9_.-]{0,63}$")
_MODEL = re.compile(r"^[A-Za-z0-9._:/*?\[\]!-]{1,128}$")
_EMAIL = re.compile(r"^[^@\s]{1,64}@[^@\s]{1,255}$")


def text(field: str, value: Any, limit: int = MAX_TEXT) -> str:
    """A string of at most `limit` characters, without NULs."""
    if not isinstance(value, str):
        raise InvalidRequest(f"{field!r} must be a string", param=field)
    if len(value) > limit or "\x00" in value:
        raise InvalidRequest(f"{field!r} must be at most {limit} characters", param=field)
    return value


def email(value: Any) -> str | None:
    """An email address, loosely checked (it is contact data, not a login)."""
    if value is None:
        return None
    if not isinstance(value, str) or not _EMAIL.match(value):
        raise InvalidRequest(f"email {value!r} is not an email address", param="email")
    return value


def limit(field: str, value: Any) -> int | None:
    """A non-negative integer limit, or None for no limit."""
    if value is None:
        return None
    if not isinstance(value, int) or isinstance(value, bool) or not 0 <= value <= MAX_INT:
        raise InvalidRequest(f"{field!r} must be a non-negative integer or null", param=field)
    return value


def _strings(field: str, value: Any) -> list[str]:
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise InvalidRequest(f"{field!r} must be an array of strings", param=field)
    if len(value) > MAX_LIST:
        raise InvalidRequest(f"{field!r} may hold at most {MAX_LIST} entries", param=field)
    return list(dict.fromkeys(value))  # de-duplicated, order kept


def models(value: Any) -> list[str]:
    """Model aliases or fnmatch globs (`gpt-4o*`); an empty list allows every model."""
    out = _strings("models", value)
    for pattern in out:
        if not _MODEL.match(pattern):
            raise InvalidRequest(
                f"model pattern {pattern!r} is not valid: use an alias or a glob such as 'gpt-4o*'",
                param="models",
            )
        fnmatch.translate(pattern)
    return out


def cidrs(value: Any) -> list[str]:
    """Client networks, normalised (`10.1.2.3/8` becomes `10.0.0.0/8`); empty allows all."""
    out = []
    for raw in _strings("cidrs", value):
        try:
            out.append(str(ipaddress.ip_network(raw, strict=False)))
        except ValueError:
            raise InvalidRequest(
                f"{raw!r} is not an IP network such as 10.0.0.0/8", param="cidrs"
            ) from None
    return list(dict.fromkeys(out))


def tags(value: Any) -> list[str]:
    """Lower-case labels for reports: letters, digits, `_ . -`, at most 64 characters."""
    out = _strings("tags", value)
    for tag in out:
        if not _TAG.match(tag):
            raise InvalidRequest(
                f"tag {tag!r} is not valid: use 1-64 lower-case letters, digits and _ . -, "
                "starting with a letter or digit",
                param="tags",
            )
    return out


def future_utc(field: str, value: Any) -> str | None:
    """An ISO-8601 time with a zone, in the future, normalised to UTC with a Z."""
    if value is None:
        return None
    raw = text(field, value, 64)
    try:
        when: datetime | None = datetime.fromisoformat(raw)
        when = when.astimezone(UTC) if when and when.tzinfo is not None else None
    except (ValueError, OverflowError):
        when = None
    if when is None:
        raise InvalidRequest(
            f"{field!r} must be an ISO-8601 time with a zone, e.g. 2030-01-31T00:00:00Z",
            param=field,
        )
    if when <= datetime.now(UTC):
        raise InvalidRequest(f"{field!r} must be in the future", param=field)
    return when.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def only(changes: Mapping[str, Any], allowed: set[str]) -> None:
    """Refuse fields an update does not know (a typo must not pass silently)."""
    unknown = sorted(set(changes) - allowed)
    if unknown:
        raise InvalidRequest(
            f"unknown or read-only field(s): {', '.join(unknown)}; "
            f"editable: {', '.join(sorted(allowed))}",
            param=unknown[0],
        )


def exists(db: sqlite_utils.Database, table: str, column: str, value: str, what: str) -> None:
    """A referenced object must exist."""
    if not db.execute(f"SELECT 1 FROM {table} WHERE {column} = ?", [value]).fetchone():
        raise NotFoundError(f"no {what} named {value!r}; create it first")


def json_list(value: list[str]) -> str:
    """A list as stored in a JSON column."""
    return orjson.dumps(value).decode()
