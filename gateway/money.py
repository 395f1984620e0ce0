"""Amounts of money: integer micro-units of the box currency, never floats.

One place for writing amounts (`format_amount` for people, `format_fixed` for files such as
CSV, `money` with the currency) and for reading an amount someone typed (`parse_amount`).
"""

from __future__ import annotations

import re

MICROS = 1_000_000
_AMOUNT = re.compile(r"(\d{1,13})(?:\.(\d{1,6}))?")


def format_amount(micros: int) -> str:
    """`2_500_000` → `2.50`, `1_234_500` → `1.2345`: at least two decimals, more only where
    they are not zero."""
    sign = "-" if micros < 0 else ""
    units, frac = divmod(abs(micros), MICROS)
    return f"{sign}{units}.{f'{frac:06d}'.rstrip('0').ljust(2, '0')}"


def format_fixed(micros: int) -> str:
    """`2_500_000` → `2.500000`: always six decimals (columns of a report line up)."""
    sign = "-" if micros < 0 else ""
    units, frac = divmod(abs(micros), MICROS)
    return f"{sign}{units}.{frac:06d}"


def money(micros: int, currency: str) -> str:
    """`1_234_500, "USD"` → `1.2345 USD`."""
    return f"{format_amount(micros)} {currency}"


def parse_amount(text: str) -> int:
    """`100`, `99.50`, `0.000001` → micro-units, exactly (decimal text, never a float)."""
    match = _AMOUNT.fullmatch(text.strip())
    if match is None:
        raise ValueError(f"{text!r} is not an amount such as 100 or 99.50 (at most 6 decimals)")
    return int(match.group(1)) * MICROS + int((match.group(2) or "").ljust(6, "0"))
