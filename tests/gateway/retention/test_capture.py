"""Capture onto the group-commit writer: the contents row commits with the ledger row; full
content is stored sealed or not at all."""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path

import pytest

from appliance.store import open_store
from appliance.vault import KeyFileKek, Vault
from appliance.writer import GroupCommitWriter
from gateway.auth import KeyEntry
from gateway.calls import Call
from gateway.retention import Retain
from gateway.retention.capture import Retainer
from gateway.retention.sealing import KEY_ID

SECRET = "zebracorn"
FULL, META = Retain("full", 2), Retain("metadata", 1)


def _call(trace_id: str) -> Call:
    call = Call(trace_id, "tp", "openai", "chat", model="oa")
    call.key = KeyEntry(
        "k1", "k", "proj", "eng", None, "active", None, frozenset(), (), (), None, None, None, ()
    )
    call.original_body = {"model": "oa", "messages": [{"role": "user", "content": SECRET}]}
    call.answer = {"choices": [{"message": {"content": SECRET}}]}
    return call


@pytest.fixture
def vault(tmp_path: Path) -> Vault:
    return Vault.open(tmp_path / "vault.json", KeyFileKek(tmp_path / "vault.key"))


async def test_rows_share_the_batch_and_hold_no_plaintext(tmp_path: Path, vault: Vault) -> None:
    path = tmp_path / "aigw.db"
    db = open_store(path)
    writer = GroupCommitWriter(path)
    writer.start(asyncio.get_running_loop())
    retainer = Retainer(writer, vault)
    try:
        retainer.capture(_call("t-full"), FULL)
        retainer.capture(_call("t-meta"), META)
        done = writer.insert("INSERT INTO settings (key, value) VALUES ('x', '1')", ())
        assert await done
        assert writer.batches == 1  # one transaction for everything queued in the turn
    finally:
        writer.close()
    rows = {r["trace_id"]: r for r in db.query("SELECT * FROM contents")}
    full, meta = rows["t-full"], rows["t-meta"]
    assert (full["kind"], full["sealed_with"]) == ("full", KEY_ID)
    assert (meta["kind"], meta["sealed_with"]) == ("metadata", None)
    for row in (full, meta):
        assert SECRET.encode() not in bytes(row["body"]) and row["project"] == "proj"
    assert full["purge_after"][:10] > full["ts"][:10]  # two days on
    assert retainer.kept == 2 and retainer.dropped == 0


@pytest.mark.parametrize("sealed", [True, False])
async def test_without_a_usable_key_full_content_is_not_stored(
    tmp_path: Path, vault: Vault, sealed: bool, caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / "aigw.db"
    db = open_store(path)
    writer = GroupCommitWriter(path)
    writer.start(asyncio.get_running_loop())
    if sealed:
        vault.seal()
    retainer = Retainer(writer, vault if sealed else None)
    try:
        with caplog.at_level(logging.WARNING, "gateway.retention"):
            for i in range(3):
                retainer.capture(_call(f"t{i}"), FULL)
            retainer.capture(_call("t-meta"), META)  # metadata needs no key
        assert await writer.insert("INSERT INTO settings (key, value) VALUES ('y', '1')", ())
    finally:
        writer.close()
    assert [r["kind"] for r in db.query("SELECT kind FROM contents")] == ["metadata"]
    assert retainer.dropped == 3
    [warning] = [r for r in caplog.records if r.name.startswith("gateway.retention")]
    assert "not being stored" in warning.getMessage()  # once, not per request
    if sealed:
        vault.unseal()
        retainer.prepare({"p": FULL})  # usable again: warned again on the next failure
        assert retainer._warned is False
