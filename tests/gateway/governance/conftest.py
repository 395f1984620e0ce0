"""A real store with an organisation, a controllable clock, and keys as the hot path sees them."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
import sqlite_utils

from appliance.store import open_store
from gateway.auth import KeyEntry
from gateway.ledger.rollups import rebuild_rollups
from gateway.tenancy import store as tenancy

BERLIN = ZoneInfo("Europe/Berlin")
ACTOR = "test:governance"


class Clock:
    """Epoch seconds that move only when a test says so."""

    def __init__(self, start: float) -> None:
        self.now = start

    def __call__(self) -> float:
        return self.now

    def at(self, iso: str) -> float:
        """Jump to a time (ISO-8601 with its offset)."""
        self.now = datetime.fromisoformat(iso).timestamp()
        return self.now

    def advance(self, seconds: float) -> float:
        self.now += seconds
        return self.now


@dataclass
class Recorder:
    """An alert raiser that keeps what it was given and honours dedup keys like the sink."""

    alerts: list[dict[str, Any]] = field(default_factory=list)

    def raise_alert(
        self,
        kind: str,
        severity: str,
        subject: str,
        dedup_key: str,
        message: str,
        details: dict[str, Any] | None = None,
    ) -> bool:
        if any(a["dedup_key"] == dedup_key for a in self.alerts):
            return False
        self.alerts.append(
            {
                "kind": kind,
                "severity": severity,
                "subject": subject,
                "dedup_key": dedup_key,
                "message": message,
                "details": details or {},
            }
        )
        return True


def key_entry(
    key_id: str = "key_a",
    *,
    project: str = "web",
    department: str = "eng",
    user: str | None = "alice",
    rpm: int | None = None,
    tpm: int | None = None,
    budget_micros: int | None = None,
) -> KeyEntry:
    """A KeyEntry as `KeyIndex.load` would build it."""
    return KeyEntry(
        id=key_id,
        name=key_id,
        project=project,
        department=department,
        user=user,
        status="active",
        expires_at=None,
        exact_models=frozenset(),
        model_globs=(),
        networks=(),
        rpm=rpm,
        tpm=tpm,
        budget_micros=budget_micros,
        tags=(),
    )


@pytest.fixture
def db(tmp_path: Path) -> Iterator[sqlite_utils.Database]:
    """A migrated store with departments eng/ops, projects web (eng) and api (ops), users
    alice (eng) and bob."""
    store = open_store(tmp_path / "aigw.db")
    tenancy.create_department(store, ACTOR, name="eng")
    tenancy.create_department(store, ACTOR, name="ops")
    tenancy.create_project(store, ACTOR, name="web", department="eng")
    tenancy.create_project(store, ACTOR, name="api", department="ops")
    tenancy.create_user(store, ACTOR, name="alice", department="eng")
    tenancy.create_user(store, ACTOR, name="bob")
    yield store
    store.conn.close()


@pytest.fixture
def clock() -> Clock:
    """Noon on a Wednesday in Berlin (2025-01-15)."""
    c = Clock(0)
    c.at("2025-01-15T12:00:00+01:00")
    return c


@pytest.fixture
def recorder() -> Recorder:
    return Recorder()


def add_usage(
    db: sqlite_utils.Database,
    ts: str,
    cost_micros: int,
    *,
    key_id: str = "key_a",
    project: str = "web",
    department: str = "eng",
    user: str | None = "alice",
) -> None:
    """One ledger row (the columns the governance reads, and the required ones)."""
    db.execute(
        "INSERT INTO usage (trace_id, ts, api, endpoint, model, stream, status, input_tokens, "
        "output_tokens, cached_tokens, estimated, latency_ms, key_id, project, department, "
        "user, cost_micros) VALUES ('t', ?, 'openai', 'chat', 'm', 0, 200, 1, 1, 0, 0, 1, "
        "?, ?, ?, ?, ?)",
        [ts, key_id, project, department, user, cost_micros],
    )
    rebuild_rollups(db.conn)  # what the writer's batch hook keeps in step
