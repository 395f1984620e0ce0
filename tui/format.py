"""How the console writes money, counts and missing values."""

from __future__ import annotations

from typing import Any


def money(micros: int | None, currency: str = "") -> str:
    """Integer micro-units as an amount with two decimals (no floats on the way)."""
    if micros is None:
        return "-"
    sign = "-" if micros < 0 else ""
    cents = (abs(micros) + 5_000) // 10_000
    text = f"{sign}{cents // 100}.{cents % 100:02d}"
    return f"{text} {currency}".rstrip()


def cell(value: Any) -> str:
    """A table cell: '-' for nothing, lists joined, booleans as yes/no."""
    if value is None or value == "" or value == []:
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, list):
        return ",".join(str(v) for v in value)
    return str(value)


def bar(fraction: float, width: int = 20) -> str:
    """A horizontal gauge of `width` characters."""
    filled = max(0, min(width, round(fraction * width)))
    return "█" * filled + "░" * (width - filled)
