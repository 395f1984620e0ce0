"""Prices in SQLite: the admin's writes (validated, audited, versioned) and the shipped list.

Amounts here are integers: micro-units of the box currency per million tokens (`input_micros`,
`output_micros`, `cached_micros`) and per request (`request_micros`). Humans type decimals
(the CLI converts them with `to_micros`). Every write validates, records an audit row and bumps
`settings.catalog_version` in one transaction, so a running gateway reloads its price book
within a second.
"""

from __future__ import annotations

import re
import tomllib
from datetime import UTC, datetime
from decimal import Decimal
from fractions import Fraction
from importlib import resources
from typing import Any

import orjson
import sqlite_utils

from appliance.errors import NotFoundError
from appliance.store import transaction, utcnow
from gateway.catalog import bump_version
from gateway.errors import InvalidRequest
from gateway.money import format_amount
from gateway.pricing._values import (
    MAX_MICROS,
    MICROS,
    parse_when,
    to_micros,
    utc_text,
)
from gateway.pricing.vendors import VENDORS
from gateway.tenancy.audit import record

SHIPPED_CURRENCY = "USD"
SEED_ACTOR = "system:seed"
_SEEDED = "prices_seeded"  # settings key: JSON list of the shipped entries ever inserted
_MODEL = re.compile(r"[^\s\x00-\x1f\x7f]{1,256}")
_CURRENCY = re.compile(r"[A-Z]{3}")
_MAX_SOURCE = 1024


def _now_text() -> str:
    return utc_text(datetime.now(UTC))


def _with_effect(rows: list[dict[str, Any]], now: str) -> list[dict[str, Any]]:
    """Mark, per (provider, model), the row in effect at `now` (rows sorted by time)."""
    current: dict[tuple[str, str], dict[str, Any]] = {}
    for row in rows:
        row["in_effect"] = False
        if row["effective_from"] <= now:
            current[(row["provider"], row["model"])] = row
    for row in current.values():
        row["in_effect"] = True
    return rows


def list_prices(
    db: sqlite_utils.Database, provider: str | None = None, model: str | None = None
) -> list[dict[str, Any]]:
    """Price rows by provider, model and date, each with `in_effect` (the one that applies now)."""
    where, args = [], []
    if provider is not None:
        where.append("provider = ?")
        args.append(provider)
    if model is not None:
        where.append("model = ?")
        args.append(model)
    sql = "SELECT * FROM prices" + (" WHERE " + " AND ".join(where) if where else "")
    rows = list(db.query(sql + " ORDER BY provider, model, effective_from", args))
    return _with_effect(rows, _now_text())


def _amount(field: str, value: Any, *, optional: bool = False) -> int | None:
    if value is None and optional:
        return None
    if not isinstance(value, int) or isinstance(value, bool) or not 0 <= value <= MAX_MICROS:
        raise InvalidRequest(
            f"{field!r} must be an integer 0-{MAX_MICROS} (micro-units; 2.50 is 2500000)",
            param=field,
        )
    return value


def _owner(db: sqlite_utils.Database, provider: Any) -> str:
    """A price belongs to a provider of this box or to a vendor of the shipped list."""
    if not isinstance(provider, str) or not provider:
        raise InvalidRequest("'provider' must be a provider's name or a vendor", param="provider")
    if provider in VENDORS:
        return provider
    if not db.execute("SELECT 1 FROM providers WHERE name = ?", [provider]).fetchone():
        raise NotFoundError(
            f"no provider named {provider!r}; price a provider of this box "
            f"(aigw providers list) or a vendor: {', '.join(VENDORS)}"
        )
    return provider


def _model(model: Any) -> str:
    if not isinstance(model, str) or not _MODEL.fullmatch(model):
        raise InvalidRequest(
            "'model' must be the upstream model name: 1-256 characters, no spaces", param="model"
        )
    return model


def _effective(value: Any) -> str:
    if value is None:
        return _now_text()
    if not isinstance(value, str):
        raise InvalidRequest("'effective_from' must be a date or time", param="effective_from")
    try:
        return parse_when(value)
    except ValueError as exc:
        raise InvalidRequest(str(exc), param="effective_from") from None


def _currency(currency: Any, box_currency: str) -> str:
    if not isinstance(currency, str) or not _CURRENCY.fullmatch(currency):
        raise InvalidRequest("'currency' must be an ISO 4217 code such as USD", param="currency")
    if currency != box_currency:
        raise InvalidRequest(
            f"prices must be in the box currency {box_currency} ([box] currency); convert the "
            f"{currency} amounts to {box_currency} first",
            param="currency",
        )
    return currency


def _source(source: Any) -> str:
    if not isinstance(source, str) or len(source) > _MAX_SOURCE or "\x00" in source:
        raise InvalidRequest(
            f"'source' must be text of at most {_MAX_SOURCE} characters", param="source"
        )
    return source


def _get(db: sqlite_utils.Database, key: tuple[str, str, str]) -> dict[str, Any] | None:
    rows = list(
        db.query(
            "SELECT * FROM prices WHERE provider = ? AND model = ? AND effective_from = ?", key
        )
    )
    return rows[0] if rows else None


def _object_id(row: dict[str, Any]) -> str:
    return f"{row['provider']}/{row['model']}@{row['effective_from']}"


def set_price(
    db: sqlite_utils.Database,
    actor: str,
    *,
    provider: str,
    model: str,
    input_micros: int,
    output_micros: int,
    cached_micros: int | None = None,
    request_micros: int | None = None,
    currency: str,
    box_currency: str,
    effective_from: str | None = None,
    source: str = "",
) -> dict[str, Any]:
    """Create or replace the price of `model` at `provider` (a provider name or a vendor) from
    `effective_from` (default: now); amounts in micro-units per million tokens."""
    name, when = _model(model), _effective(effective_from)
    fields = {
        "currency": _currency(currency, box_currency),
        "input_micros": _amount("input_micros", input_micros),
        "output_micros": _amount("output_micros", output_micros),
        "cached_micros": _amount("cached_micros", cached_micros, optional=True),
        "request_micros": _amount("request_micros", request_micros, optional=True) or 0,
        "source": _source(source),
    }
    with transaction(db):
        owner = _owner(db, provider)
        row = {"provider": owner, "model": name, "effective_from": when, **fields}
        row["created_at"] = utcnow()
        before = _get(db, (owner, name, when))
        if before is not None:
            db.execute(
                "DELETE FROM prices WHERE provider = ? AND model = ? AND effective_from = ?",
                [owner, name, when],
            )
        db.table("prices").insert(row)
        action = "create" if before is None else "update"
        record(db, actor, action, "price", _object_id(row), before, row)
        bump_version(db)
    return next(r for r in list_prices(db, owner, name) if r["effective_from"] == when)


def remove_price(
    db: sqlite_utils.Database,
    actor: str,
    *,
    provider: str,
    model: str,
    effective_from: str | None = None,
) -> int:
    """Delete the price of `model` at `provider` from `effective_from`, or, without a date,
    all its dated prices; returns how many rows went."""
    when = None if effective_from is None else _effective(effective_from)
    with transaction(db):
        rows = [
            r
            for r in db.query(
                "SELECT * FROM prices WHERE provider = ? AND model = ? ORDER BY effective_from",
                [provider, model],
            )
            if when is None or r["effective_from"] == when
        ]
        if not rows:
            at = f" from {when}" if when else ""
            raise NotFoundError(f"no price for {model!r} at {provider!r}{at}")
        for row in rows:
            key = (row["provider"], row["model"], row["effective_from"])
            db.execute(
                "DELETE FROM prices WHERE provider = ? AND model = ? AND effective_from = ?", key
            )
            record(db, actor, "delete", "price", _object_id(row), row, None)
        bump_version(db)
    return len(rows)


def local_price_from_gpu_hour(
    cost_per_gpu_hour_micros: int, tokens_per_second: float, gpus: int = 1
) -> int:
    """The amortized price per million tokens of a local model, in micro-units, rounded up.

    price = cost per GPU-hour * GPUs * 1,000,000 / (tokens per second * 3600): what the
    hardware costs for the time it takes the engine to process a million tokens at its measured
    throughput (prompt and generated tokens together). Exact rational arithmetic, no floats
    in the result.
    """
    if cost_per_gpu_hour_micros < 0 or gpus < 1:
        raise ValueError("the GPU-hour cost must be >= 0 and the GPU count >= 1")
    rate = Fraction(Decimal(str(tokens_per_second)))
    if rate <= 0:
        raise ValueError("the throughput must be more than 0 tokens per second")
    price = Fraction(cost_per_gpu_hour_micros * gpus * MICROS) / (rate * 3600)
    return -(-price.numerator // price.denominator)


def set_local_price(
    db: sqlite_utils.Database,
    actor: str,
    *,
    provider: str,
    model: str,
    box_currency: str,
    per_million_micros: int | None = None,
    gpu_hour_micros: int | None = None,
    tokens_per_second: float | None = None,
    gpus: int = 1,
    effective_from: str | None = None,
    source: str = "",
) -> dict[str, Any]:
    """Price a local model by amortized cost: a price per million tokens, or a cost per GPU-hour
    at a measured throughput. Prompt, cached and generated tokens cost the same."""
    if (per_million_micros is None) == (gpu_hour_micros is None):
        raise InvalidRequest(
            "give either per_million_micros, or gpu_hour_micros with tokens_per_second",
            param="per_million_micros",
        )
    if per_million_micros is None:
        hourly = _amount("gpu_hour_micros", gpu_hour_micros)
        assert hourly is not None
        if not isinstance(gpus, int) or isinstance(gpus, bool) or not 1 <= gpus <= 1024:
            raise InvalidRequest("'gpus' must be an integer 1-1024", param="gpus")
        if not isinstance(tokens_per_second, int | float) or not 0 < tokens_per_second < 1e9:
            raise InvalidRequest(
                "'tokens_per_second' must be the engine's measured throughput, > 0",
                param="tokens_per_second",
            )
        per_million_micros = local_price_from_gpu_hour(hourly, tokens_per_second, gpus)
        source = source or (
            f"amortized: {format_amount(hourly)} {box_currency} per GPU-hour x {gpus} GPU(s) "
            f"at {tokens_per_second:g} tokens/s"
        )
    return set_price(
        db,
        actor,
        provider=provider,
        model=model,
        input_micros=per_million_micros,
        output_micros=per_million_micros,
        currency=box_currency,
        box_currency=box_currency,
        effective_from=effective_from,
        source=source or "amortized local cost",
    )


# The shipped list


def _shipped_entry(n: int, entry: Any) -> dict[str, Any]:
    """One `[[price]]` of prices.toml as a table row; a bad entry names itself."""
    where = f"prices.toml entry {n}"
    if not isinstance(entry, dict):
        raise ValueError(f"{where} is not a table")
    known = {"vendor", "model", "input", "output", "cached_input", "request_fee"}
    known |= {"currency", "effective_from", "source"}
    unknown = set(entry) - known
    missing = {"vendor", "model", "input", "output", "currency", "effective_from", "source"}
    missing -= set(entry)
    if unknown or missing:
        raise ValueError(f"{where}: unknown {sorted(unknown)}, missing {sorted(missing)}")
    if entry["vendor"] not in VENDORS or not _MODEL.fullmatch(str(entry["model"])):
        raise ValueError(f"{where}: bad vendor or model {entry['vendor']}/{entry['model']}")
    if entry["currency"] != SHIPPED_CURRENCY or not str(entry["source"]).startswith("https://"):
        raise ValueError(f"{where}: currency must be {SHIPPED_CURRENCY}, source an https URL")
    try:
        cached, fee = entry.get("cached_input"), entry.get("request_fee")
        return {
            "provider": entry["vendor"],
            "model": entry["model"],
            "effective_from": parse_when(entry["effective_from"]),
            "currency": entry["currency"],
            "input_micros": to_micros(entry["input"]),
            "output_micros": to_micros(entry["output"]),
            "cached_micros": None if cached is None else to_micros(cached),
            "request_micros": 0 if fee is None else to_micros(fee),
            "source": entry["source"],
        }
    except (ValueError, TypeError) as exc:
        raise ValueError(f"{where} ({entry.get('model')}): {exc}") from None


def shipped_prices(text: str | None = None) -> list[dict[str, Any]]:
    """The shipped price list (or `text` in its format) as rows; numbers read as Decimal."""
    if text is None:
        text = resources.files("gateway.pricing").joinpath("prices.toml").read_text("utf-8")
    data = tomllib.loads(text, parse_float=Decimal)
    return [_shipped_entry(n, e) for n, e in enumerate(data.get("price", []), 1)]


def seed_defaults(db: sqlite_utils.Database, currency: str = SHIPPED_CURRENCY) -> int:
    """Insert the shipped prices not yet inserted into this database; returns how many.

    Call at gateway start with the box currency. Each shipped entry (vendor, model,
    effective_from) is inserted once in the database's life and only where no row has that
    key, so an admin's edit or removal of a shipped price survives restarts and upgrades, and
    a new release adds only its new entries. A box in another currency gets none: the list is
    in USD and the box does not guess exchange rates.
    """
    if currency != SHIPPED_CURRENCY:
        return 0
    rows = shipped_prices()
    with transaction(db):
        got = db.execute("SELECT value FROM settings WHERE key = ?", [_SEEDED]).fetchone()
        seeded = {tuple(k) for k in orjson.loads(got[0])} if got else set()
        added, known = [], len(seeded)
        for row in rows:
            key = (row["provider"], row["model"], row["effective_from"])
            if key in seeded:
                continue
            seeded.add(key)
            if _get(db, key) is None:
                db.table("prices").insert({**row, "created_at": utcnow()})
                added.append("/".join(key))
        if len(seeded) == known:
            return 0
        value = orjson.dumps(sorted(seeded)).decode()
        db.execute(
            "INSERT INTO settings(key, value) VALUES (?, ?) "
            "ON CONFLICT(key) DO UPDATE SET value = excluded.value",
            [_SEEDED, value],
        )
        if added:
            record(db, SEED_ACTOR, "seed", "price", "prices.toml", None, {"added": added})
            bump_version(db)
    return len(added)
