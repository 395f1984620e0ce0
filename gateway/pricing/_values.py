"""Amounts and dates as prices take them: decimal text to micro-units, dates to one UTC form.

Money never passes through a float: decimal text is read with `decimal.Decimal` and must be
exact in micro-units. Effective dates are stored as `YYYY-MM-DDTHH:MM:SSZ`, one fixed-width
UTC form, so text order in SQLite is time order.
"""

from __future__ import annotations

from datetime import UTC, date, datetime
from decimal import Decimal, InvalidOperation

from gateway.money import MICROS

# A price above a million currency units per million tokens is a typo, not a price.
MAX_MICROS = 10**12


def to_micros(amount: str | int | Decimal) -> int:
    """`"2.50"` → 2_500_000: major units as decimal text (or int / Decimal), exactly."""
    if isinstance(amount, bool):
        raise ValueError(f"{amount!r} is not an amount")
    try:
        value = Decimal(amount.strip() if isinstance(amount, str) else amount)
    except (InvalidOperation, ValueError, TypeError):
        raise ValueError(f"{amount!r} is not an amount such as 2.50") from None
    if not value.is_finite() or value < 0:
        raise ValueError(f"{amount!r} must be a non-negative amount such as 2.50")
    micros = value * MICROS
    if micros != micros.to_integral_value():
        raise ValueError(f"{amount!r} has more than 6 decimals")
    if micros > MAX_MICROS:
        raise ValueError(f"{amount!r} is implausibly large for a price per million tokens")
    return int(micros)


def utc_text(when: datetime) -> str:
    """A moment as stored: UTC, seconds, a Z."""
    return when.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def parse_when(value: str | date | datetime) -> str:
    """A date (midnight UTC) or an ISO-8601 time (no zone: UTC) in the stored form."""
    if isinstance(value, datetime):
        when = value
    elif isinstance(value, date):
        when = datetime(value.year, value.month, value.day)
    else:
        text = value.strip()
        try:
            when = datetime.fromisoformat(text.replace("Z", "+00:00") if text else "-")
        except ValueError:
            raise ValueError(
                f"{value!r} is not a date or time such as 2025-08-01 or 2025-08-01T12:00:00Z"
            ) from None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    if not 2000 <= when.astimezone(UTC).year <= 9998:
        raise ValueError(f"{value!r} is not a plausible effective date")
    return utc_text(when)


def epoch(stored: str) -> float:
    """Epoch seconds of a stored effective time."""
    return datetime.strptime(stored, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC).timestamp()
