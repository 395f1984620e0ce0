"""`aigw report` and `aigw outcomes` through the in-process admin API."""

from __future__ import annotations

from pathlib import Path

import pytest

from appliance.config import load_config
from appliance.store import open_store
from tests.appliance.conftest import Cli
from tests.gateway.ledger.conftest import ledger_row, write

BASE = 1_772_323_200.0  # 2026-03-01T00:00:00Z


@pytest.fixture
def cli(tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> Cli:
    for name in ("AIGW_URL", "AIGW_ADMIN_TOKEN", "AIGW_CONFIG"):
        monkeypatch.delenv(name, raising=False)
    box = Cli(tmp_path / "box", capsys, monkeypatch)
    db = open_store(load_config(str(box.config)).database_path)
    write(
        db.conn,
        [
            ledger_row(BASE + 60, department="eng", model="m1", cost_micros=1_250_000),
            ledger_row(BASE + 90, department="ops", model="m2", cost_micros=3),
        ],
    )
    db.conn.close()
    return box


def test_report_spend_table_json_and_csv(cli: Cli, tmp_path: Path) -> None:
    args = (
        "report",
        "spend",
        "--by",
        "department",
        "--since",
        "2026-03-01",
        "--until",
        "2026-03-02",
    )
    out = cli.ok(*args).out.splitlines()
    assert out[0] == "2026-03-01T00:00:00Z to 2026-03-02T00:00:00Z, costs in USD"
    header = ["DEPARTMENT", "REQUESTS", "ERRORS", "INPUT_TOKENS", "OUTPUT_TOKENS"]
    assert out[1].split() == [*header, "CACHED_TOKENS", "COST"]
    assert out[2].split() == ["eng", "1", "0", "10", "5", "0", "1.250000"]
    assert [r["department"] for r in cli.ok(*args, "--json").json["data"]] == ["eng", "ops"]
    target = tmp_path / "spend.csv"
    cli.ok(*args, "--top", "1", "--bucket", "day", "--csv", str(target))
    assert target.read_bytes().decode() == (
        "bucket,department,requests,errors,input_tokens,output_tokens,cached_tokens,cost,currency\n"
        "2026-03-01,eng,1,0,10,5,0,1.250000,USD\n"
    ).replace("\n", "\r\n")
    assert "tag reports combine only" in cli.fails("report", "spend", "--by", "tag,user")


def test_outcomes_add_list_and_roi(cli: Cli) -> None:
    r = cli.ok("outcomes", "add", "--tag", "support", "--line", "Care", "--value", "1234.50")
    assert r.out == "outcome 1 recorded: 1234.500000 for Care\n"
    row = cli.ok("outcomes", "add", "--trace-id", "t-1", "--line", "Care", "--value", "1", "--json")
    assert row.json["value_micros"] == 1_000_000 and row.json["trace_id"] == "t-1"
    assert cli("outcomes", "add", "--line", "Care", "--value", "1").rc == 2  # no target
    assert cli("outcomes", "add", "--tag", "x", "--line", "C", "--value", "1.0000001").rc == 2
    listed = cli.ok("outcomes", "list").out.splitlines()
    assert listed[0].split()[:4] == ["ID", "TS", "BUSINESS_LINE", "VALUE"]
    assert len(listed) == 3 and "1234.500000" in listed[2]
    roi = cli.ok("report", "roi", "--json").json["data"]
    assert [(r["business_line"], r["outcomes"], r["value_micros"]) for r in roi] == [
        ("Care", 2, 1_235_500_000)
    ]
    assert cli.ok("report", "roi", "--csv", "-").out.startswith("business_line,outcomes,value,")
