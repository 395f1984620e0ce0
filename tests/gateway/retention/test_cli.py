"""`aigw audit content TRACE_ID` through the in-process admin API."""

from __future__ import annotations

from pathlib import Path

import orjson
import pytest

from appliance.config import load_config
from appliance.store import open_store
from appliance.vault import open_vault
from gateway.retention.sealing import KEY_ID, ContentKey, seal
from tests.appliance.conftest import Cli

REQUEST = {"model": "oa", "messages": [{"role": "user", "content": "hello zebracorn"}]}


@pytest.fixture
def kept(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> Cli:
    """A box with one full record (trace 'full/1': client ids may hold '/') and one metadata
    record."""
    for name in ("AIGW_URL", "AIGW_ADMIN_TOKEN", "AIGW_CONFIG"):
        monkeypatch.delenv(name, raising=False)
    cli = Cli(tmp_path / "box", capsys, monkeypatch)
    cfg = load_config(str(cli.config))
    db = open_store(cfg.database_path)
    aead = ContentKey(open_vault(cfg)).cipher()
    plain = orjson.dumps({"metadata": {}, "request": REQUEST, "response": None})
    rows = [
        ("full/1", "full", KEY_ID, seal(aead, plain, "full/1", "demo")),
        ("meta-1", "metadata", None, orjson.dumps({"roles": ["user"]})),
    ]
    db.conn.executemany(
        "INSERT INTO contents (trace_id, ts, project, kind, sealed_with, body, purge_after) "
        "VALUES (?, '2026-03-01T00:00:00.000Z', 'demo', ?, ?, ?, '2026-03-31T00:00:00.000Z')",
        rows,
    )
    db.conn.close()
    return cli


def test_content_is_shown_and_each_read_is_audited(kept: Cli) -> None:
    out = kept.ok("audit", "content", "full/1").out
    assert out.startswith("trace_id     full/1\n") and "purge_after  2026-03-31" in out
    assert '"content": "hello zebracorn"' in out
    got = kept.ok("audit", "content", "meta-1", "--json").json
    assert (got["kind"], got["content"]) == ("metadata", {"roles": ["user"]})
    assert "no ledger record has it" in kept.fails("audit", "content", "nothing-here")
    events = kept.ok("audit", "events", "--action", "content.read", "--json").json
    assert sorted(e["object_id"] for e in events) == ["full/1", "meta-1", "nothing-here"]
