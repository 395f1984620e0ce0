"""Spent amounts from rollups plus raw edges equal a brute-force sum over the records."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
import sqlite_utils

from gateway.ledger.hours import ts_text
from gateway.ledger.queries import spent, spent_by
from tests.gateway.ledger.conftest import ledger_row, write

KOLKATA = ZoneInfo("Asia/Kolkata")
DEPTS = ["eng", "ops", None]
KEYS = {"k1": ("eng", "web", "ann"), "k2": ("eng", "api", None), "k3": ("ops", "infra", "bob")}


@pytest.fixture
def ledger(db: sqlite_utils.Database) -> sqlite_utils.Database:
    """Three days of random requests around local midnights of Asia/Kolkata (UTC+5:30)."""
    rng = random.Random(7)
    start = datetime(2026, 3, 1, tzinfo=KOLKATA).timestamp() - 86400
    rows = []
    for i in range(3000):
        ts = start + i * 86.4 + rng.random()  # spread over three days, in id order
        key = rng.choice([*KEYS, None])
        dep, proj, user = KEYS[key] if key else (None, None, None)
        rows.append(
            ledger_row(
                ts,
                key_id=key,
                department=dep,
                project=proj,
                user=user,
                cost_micros=rng.randrange(0, 5000),
            )
        )
    for i in range(0, len(rows), 250):
        write(db.conn, rows[i : i + 250])
    return db


def _brute(db: sqlite_utils.Database, since: datetime, until: datetime | None, **eq: str) -> int:
    where = "".join(f" AND {c} = ?" for c in eq)
    bound = ts_text(until) if until else "~"
    return int(
        db.execute(
            f"SELECT coalesce(sum(cost_micros), 0) FROM usage WHERE ts >= ? AND ts < ?{where}",
            [ts_text(since), bound, *eq.values()],
        ).fetchone()[0]
    )


@pytest.mark.parametrize(
    "filters",
    [{}, {"department": "eng"}, {"project": "infra"}, {"user": "ann"}, {"key_id": "k2"}],
)
@pytest.mark.parametrize(
    "until",
    [
        None,
        datetime(2026, 3, 2, tzinfo=KOLKATA),  # the next local midnight: 18:30 UTC
        datetime(2026, 3, 1, 7, 45, 10, 123000, tzinfo=KOLKATA),  # inside an hour
        datetime(2026, 3, 1, 0, 10, tzinfo=KOLKATA),  # inside the first partial hour
    ],
)
def test_spent_from_a_half_hour_midnight_matches_the_records(
    ledger: sqlite_utils.Database, filters: dict[str, str], until: datetime | None
) -> None:
    since = datetime(2026, 3, 1, tzinfo=KOLKATA)
    expected = _brute(ledger, since, until, **filters)
    assert expected > 0
    assert spent(ledger, since_utc=since.astimezone(UTC), until_utc=until, **filters) == expected


def test_spent_by_gives_every_target_of_a_level_at_once(ledger: sqlite_utils.Database) -> None:
    since = datetime(2026, 2, 28, 12, 30, tzinfo=UTC)
    until = since + timedelta(days=1, minutes=17)
    by_dep = spent_by(ledger, "department", since_utc=since, until_utc=until)
    assert by_dep == {d: _brute(ledger, since, until, department=d) for d in ("eng", "ops")}
    by_key = spent_by(ledger, "key", since_utc=since)
    assert by_key == {k: _brute(ledger, since, None, key_id=k) for k in KEYS}
    with pytest.raises(ValueError, match="level"):
        spent_by(ledger, "model", since_utc=since)


def test_spent_of_an_empty_range_is_zero(db: sqlite_utils.Database) -> None:
    since = datetime(2026, 1, 1, tzinfo=UTC)
    assert spent(db, since_utc=since) == 0
    write(db.conn, [ledger_row(since.timestamp() + 10)])
    assert spent(db, department="nobody", since_utc=since) == 0
    assert spent(db, since_utc=since, until_utc=since + timedelta(seconds=5)) == 0
    assert spent(db, since_utc=since, until_utc=since + timedelta(seconds=11)) == 100
