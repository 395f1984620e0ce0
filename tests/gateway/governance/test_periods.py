"""Period windows on the box's calendar: local midnights, ISO weeks, month ends, DST."""

from __future__ import annotations

import math
from datetime import datetime
from zoneinfo import ZoneInfo

import pytest

from gateway.governance.periods import local_iso, window
from tests.gateway.governance.conftest import BERLIN


def _ts(iso: str) -> float:
    return datetime.fromisoformat(iso).timestamp()


def _window(period: str, iso: str, tz: ZoneInfo = BERLIN) -> tuple[str, str]:
    start, end = window(period, tz, _ts(iso))
    return local_iso(start, tz), local_iso(end, tz)


@pytest.mark.parametrize(
    ("period", "at", "expected"),
    [
        (
            "daily",
            "2025-01-15T00:00:00+01:00",
            ("2025-01-15T00:00:00+01:00", "2025-01-16T00:00:00+01:00"),
        ),
        (
            "daily",
            "2025-01-15T23:59:59+01:00",
            ("2025-01-15T00:00:00+01:00", "2025-01-16T00:00:00+01:00"),
        ),
        # Wednesday → the week of Monday the 13th
        (
            "weekly",
            "2025-01-15T12:00:00+01:00",
            ("2025-01-13T00:00:00+01:00", "2025-01-20T00:00:00+01:00"),
        ),
        (
            "weekly",
            "2025-01-19T23:30:00+01:00",
            ("2025-01-13T00:00:00+01:00", "2025-01-20T00:00:00+01:00"),
        ),
        (
            "weekly",
            "2025-01-20T00:00:00+01:00",
            ("2025-01-20T00:00:00+01:00", "2025-01-27T00:00:00+01:00"),
        ),
        (
            "monthly",
            "2025-01-31T23:59:00+01:00",
            ("2025-01-01T00:00:00+01:00", "2025-02-01T00:00:00+01:00"),
        ),
        (
            "monthly",
            "2024-02-29T12:00:00+01:00",
            ("2024-02-01T00:00:00+01:00", "2024-03-01T00:00:00+01:00"),
        ),
        (
            "monthly",
            "2025-12-31T23:00:00+01:00",
            ("2025-12-01T00:00:00+01:00", "2026-01-01T00:00:00+01:00"),
        ),
        # across DST: March's month starts in CET and ends in CEST
        (
            "monthly",
            "2025-03-31T12:00:00+02:00",
            ("2025-03-01T00:00:00+01:00", "2025-04-01T00:00:00+02:00"),
        ),
        # in UTC it is 23:30 on the 31st, in Berlin already February
        (
            "monthly",
            "2025-01-31T23:30:00+00:00",
            ("2025-02-01T00:00:00+01:00", "2025-03-01T00:00:00+01:00"),
        ),
    ],
)
def test_calendar_windows(period: str, at: str, expected: tuple[str, str]) -> None:
    assert _window(period, at) == expected


def test_days_around_dst_changes_are_23_and_25_hours() -> None:
    spring = window("daily", BERLIN, _ts("2025-03-30T12:00:00+02:00"))
    autumn = window("daily", BERLIN, _ts("2025-10-26T12:00:00+01:00"))
    assert spring[1] - spring[0] == 23 * 3600
    assert autumn[1] - autumn[0] == 25 * 3600
    week = window("weekly", BERLIN, _ts("2025-03-27T12:00:00+01:00"))
    assert week[1] - week[0] == 7 * 86400 - 3600


def test_a_skipped_local_midnight_starts_the_day_at_the_change() -> None:
    sao_paulo = ZoneInfo("America/Sao_Paulo")  # 2018-11-04 00:00 became 01:00
    start, end = window("daily", sao_paulo, _ts("2018-11-04T12:00:00-02:00"))
    assert start == _ts("2018-11-04T01:00:00-02:00")
    assert end - start == 23 * 3600


def test_total_is_forever() -> None:
    assert window("total", BERLIN, 0.0) == (-math.inf, math.inf)
