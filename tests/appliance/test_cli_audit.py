"""`aigw audit verify|search|events|show|export` through the in-process admin API."""

from __future__ import annotations

import asyncio
import json
import sqlite3
import time
from pathlib import Path

import pytest

from appliance.config import load_config
from appliance.store import open_store
from appliance.writer import GroupCommitWriter
from gateway.ledger.chain import LedgerChain
from gateway.state import _USAGE_SQL
from gateway.trace import _trace_id
from tests.appliance.conftest import Cli
from tests.gateway.ledger.conftest import ledger_row


def _seed(cli: Cli, n: int = 6) -> tuple[Path, list[str]]:
    """A department (audited) and `n` ledger records written by the chained writer."""
    cli.ok("departments", "add", "eng")
    path = load_config(str(cli.config)).database_path
    traces = [_trace_id() for _ in range(n)]
    now = time.time()
    rows = [
        ledger_row(now - 120 + i / 10, trace_id=t, key_id="key-a" if i % 2 else "key-b", user="ann")
        for i, t in enumerate(traces)
    ]

    async def write() -> None:
        chain = LedgerChain(_USAGE_SQL)
        writer = GroupCommitWriter(path, before_insert=chain.before_insert)
        writer.start(asyncio.get_running_loop())
        assert all(await asyncio.gather(*(writer.insert(_USAGE_SQL, r) for r in rows)))
        writer.close()

    open_store(path).conn.close()
    asyncio.run(write())
    return path, traces


def test_verify_ok_then_broken(cli: Cli) -> None:
    path, _ = _seed(cli)
    out = cli.ok("audit", "verify").out.splitlines()
    assert out[0].startswith("admin trail: ok, 1 records, head id=1 hash=")
    assert out[1].startswith("ledger:      ok, 6 records, head id=6 hash=")
    assert cli.ok("audit", "verify", "--json").json["ok"] is True
    conn = sqlite3.connect(path)
    conn.execute("UPDATE usage SET status = 500 WHERE id = 3")
    conn.commit()
    r = cli("audit", "verify")
    assert r.rc == 1 and "ledger:      BROKEN at usage id 3 (edited)" in r.out
    assert r.err.startswith("aigw: error: the audit trail does not verify: usage record 3")
    assert "expected a logged head" in cli.fails("audit", "verify", "--logged-head", "no")


def test_verify_against_a_logged_head(cli: Cli) -> None:
    _seed(cli)
    head = cli.ok("audit", "verify", "--json").json["admin"]["head"]
    line = f"audit head: admin id={head['id'] + 2} hash={head['hash']}"
    message = cli.fails("audit", "verify", "--logged-head", line)
    assert "audit record 2 (truncated)" in message


def test_search_events_and_show(cli: Cli) -> None:
    _, traces = _seed(cli)
    rows = cli.ok("audit", "search", "--key", "key-a", "--since", "1h", "--json").json
    assert [r["trace_id"] for r in rows] == [traces[5], traces[3], traces[1]]
    table = cli.ok("audit", "search", "--user", "ann", "--limit", "2").out.splitlines()
    assert table[0].split()[:4] == ["ID", "TS", "TRACE_ID", "STATUS"] and len(table) == 3
    lines = cli.ok("audit", "search", "--limit", "0", "--jsonl").out.splitlines()
    assert len(lines) == 6 and json.loads(lines[0])["trace_id"] == traces[5]
    events = cli.ok("audit", "events", "--object-type", "department", "--json").json
    assert [(e["action"], e["object_id"]) for e in events] == [("create", "eng")]
    shown = cli.ok("audit", "show", traces[2], "--json").json
    assert shown["requests"][0]["trace_id"] == traces[2] and shown["events"] == []
    assert traces[2] in cli.ok("audit", "show", traces[2]).out
    assert "no ledger record has trace id" in cli.fails("audit", "show", "nope")
    assert "'status' must be" in cli.fails("audit", "search", "--status", "bad")
    # The plain listing is as before.
    assert cli.ok("audit", "--json").json[0]["object_id"] == "eng"


def test_export(cli: Cli, tmp_path: Path) -> None:
    _, traces = _seed(cli, n=1200)  # more than one page
    out = tmp_path / "ledger.jsonl"
    assert cli.ok("audit", "export", "--out", str(out)).out == (
        f"1200 ledger records written to {out}\n"
    )
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert [r["trace_id"] for r in rows] == traces  # oldest first
    events = tmp_path / "events.jsonl"
    cli.ok("audit", "export", "--events", "--object-type", "department", "--out", str(events))
    assert json.loads(events.read_text())["object_id"] == "eng"
    assert "--actor needs --events" in cli.fails("audit", "export", "--out", "x", "--actor", "a")
    stdout = cli.ok("audit", "export", "--key", "key-b", "--out", "-").out.splitlines()
    assert len(stdout) == 600


@pytest.mark.parametrize("argv", [["audit", "show"], ["audit", "export"]])
def test_usage_errors(cli: Cli, argv: list[str]) -> None:
    assert cli(*argv).rc == 2
