"""What each project retains of its requests' content, as the hot path reads it.

Only projects that keep something are in the map: a request of any other project costs one
dict lookup (none at all while no project retains anything).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any, NamedTuple

NONE = "none"
METADATA = "metadata"
FULL = "full"
MODES = (NONE, METADATA, FULL)


class Retain(NamedTuple):
    """A project's retention: `mode` ('metadata' or 'full') kept for `days` days."""

    mode: str
    days: int


def load_settings(rows: Iterable[Sequence[Any]]) -> dict[str, Retain]:
    """project → Retain from (name, retention, retention_days) rows; 'none' left out."""
    return {
        name: Retain(mode, int(days))
        for name, mode, days in rows
        if mode in (METADATA, FULL)  # the migration's CHECK allows nothing else
    }
