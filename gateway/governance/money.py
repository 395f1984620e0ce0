"""Amounts in micro-units of the box currency, written and read without going through floats."""

from __future__ import annotations

import re

MICROS = 1_000_000
_AMOUNT = re.compile(r"(\d{1,13})(?:\.(\d{1,6}))?")


def money(micros: int, currency: str) -> str:
    """`1234500` → `1.2345 USD`: at least two decimals, more only where they are not zero."""
    sign = "-" if micros < 0 else ""
    units, frac = divmod(abs(micros), MICROS)
    decimals = f"{frac:06d}".rstrip("0").ljust(2, "0")
    return f"{sign}{units}.{decimals} {currency}"


def parse_money(text: str) -> int:
    """`100`, `99.50`, `0.000001` → micro-units, exactly (decimal text, never a float)."""
    match = _AMOUNT.fullmatch(text.strip())
    if match is None:
        raise ValueError(f"{text!r} is not an amount such as 100 or 99.50 (at most 6 decimals)")
    return int(match.group(1)) * MICROS + int((match.group(2) or "").ljust(6, "0"))
