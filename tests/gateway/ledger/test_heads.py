"""Both chains' heads go to the system log at start, every interval and at shutdown, and are
kept for `verify`; a line from the log can be checked instead."""

from __future__ import annotations

import asyncio
import logging
import sqlite3
from pathlib import Path

import pytest

from appliance.store import open_store, transaction
from appliance.writer import GroupCommitWriter
from gateway.audit.heads import Head, HeadLogger, parse_heads, stored_heads
from gateway.audit.verify import verify
from gateway.ledger.chain import LedgerChain
from gateway.state import _USAGE_SQL
from gateway.tenancy.audit import GENESIS, record
from tests.gateway.ledger.conftest import ledger_row

T0 = 1_780_000_000.0


def _lines(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [
        r.getMessage()
        for r in caplog.records
        if r.name == "aigw.audit" and r.levelno == logging.INFO
    ]


async def test_heads_are_logged_on_the_interval_and_at_shutdown(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="aigw.audit")
    path = tmp_path / "aigw.db"
    db = open_store(path)
    with transaction(db):
        record(db, "test", "create", "department", "eng", None, {"name": "eng"})
    admin_hash = db.execute("SELECT hash FROM audit").fetchone()[0]
    chain = LedgerChain(_USAGE_SQL)
    writer = GroupCommitWriter(path, before_insert=chain.before_insert)
    writer.start(asyncio.get_running_loop())
    heads = HeadLogger(writer, interval=0.05)
    heads.start()
    assert _lines(caplog) == [
        f"audit head: admin id=1 hash={admin_hash}; ledger id=0 hash={GENESIS}"
    ]
    await asyncio.gather(*(writer.insert(_USAGE_SQL, ledger_row(T0 + i)) for i in range(3)))
    await asyncio.sleep(0.2)  # a few intervals
    assert len(_lines(caplog)) >= 3
    assert _lines(caplog)[-1].endswith(f"ledger id=3 hash={chain.head}")
    writer.insert(_USAGE_SQL, ledger_row(T0 + 9))  # queued, not yet committed
    await heads.stop()
    assert _lines(caplog)[-1].endswith(f"ledger id=4 hash={chain.head}")  # committed first
    writer.close()
    kept = stored_heads(db.conn)
    assert kept is not None and kept.ledger == Head(4, chain.head)
    assert kept.line() == _lines(caplog)[-1]
    db.conn.close()


def test_a_logged_line_parses_and_is_checked_instead(tmp_path: Path) -> None:
    db = open_store(tmp_path / "aigw.db")
    with transaction(db):
        record(db, "test", "create", "department", "eng", None, {"name": "eng"})
    hashed = db.execute("SELECT hash FROM audit").fetchone()[0]
    line = f"Jun 01 aigw[42]: audit head: admin id=1 hash={hashed}; ledger id=0 hash=-"
    assert parse_heads(line) == {"admin": Head(1, hashed), "ledger": Head(0, None)}
    conn = sqlite3.connect(tmp_path / "aigw.db", isolation_level=None)
    assert verify(conn, parse_heads(line)).problem is None
    later = parse_heads(f"admin id=2 hash={hashed}")
    report = verify(conn, later)
    assert report.problem is not None and report.problem.kind == "truncated"
    assert report.logged_at == "given"
    with pytest.raises(ValueError, match="expected a logged head"):
        parse_heads("nothing here")
