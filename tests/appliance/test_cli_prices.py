"""`aigw prices` and `aigw projects update --unpriced`, through the in-process admin API."""

from __future__ import annotations

from tests.appliance.conftest import Cli


def test_prices_round_trip(cli: Cli) -> None:
    out = cli.ok(
        "prices", "set", "openai", "gpt-cli", "--input", "2.50", "--output", "10",
        "--cached-input", "1.25", "--request-fee", "0.001", "--from", "2025-08-01",
        "--source", "https://openai.com/api/pricing/",
    ).out  # fmt: skip
    assert out == (
        "openai/gpt-cli from 2025-08-01T00:00:00Z: input 2.50, output 10.00, cached input 1.25, "
        "per request 0.001 USD (per million tokens)\n"
    )
    cli.ok(
        "prices",
        "set",
        "openai",
        "gpt-cli",
        "--input",
        "3",
        "--output",
        "12",
        "--from",
        "2999-01-01",
    )
    table = cli.ok("prices", "list", "--model", "gpt-cli").out.splitlines()
    assert table[0].split()[:5] == ["PROVIDER", "MODEL", "EFFECTIVE_FROM", "INPUT", "OUTPUT"]
    assert table[1].split()[3:9] == ["2.50", "10.00", "1.25", "0.001", "USD", "yes"]
    assert table[2].split()[3:9] == ["3.00", "12.00", "-", "0.00", "USD", "no"]
    rows = cli.ok("prices", "list", "--provider", "openai", "--model", "gpt-cli", "--json").json
    assert [(r["input_micros"], r["request_micros"]) for r in rows] == [
        (2_500_000, 1000),
        (3_000_000, 0),
    ]
    assert "removed" in cli.ok("prices", "remove", "openai", "gpt-cli", "--from", "2999-01-01").out
    assert len(cli.ok("prices", "list", "--model", "gpt-cli", "--json").json) == 1
    cli.ok("prices", "remove", "openai", "gpt-cli")
    assert cli.ok("prices", "list", "--model", "gpt-cli").out == "(none)\n"
    assert "no price for 'gpt-cli'" in cli.fails("prices", "remove", "openai", "gpt-cli")


def test_bad_amounts_and_currencies(cli: Cli) -> None:
    r = cli("prices", "set", "openai", "m", "--input", "1.1234567", "--output", "1")
    assert r.rc == 2 and "more than 6 decimals" in r.err
    r = cli("prices", "set", "openai", "m", "--input", "-1", "--output", "1")
    assert r.rc == 2 and "non-negative" in r.err
    err = cli.fails(
        "prices", "set", "openai", "m", "--input", "1", "--output", "1", "--currency", "EUR"
    )
    assert "box currency USD" in err
    assert "no provider named 'nope'" in cli.fails(
        "prices", "set", "nope", "m", "--input", "1", "--output", "1"
    )


def test_local_prices(cli: Cli) -> None:
    cli.ok("providers", "add", "vllm", "--kind", "openai", "--base-url", "http://127.0.0.1:8000/v1")
    row = cli.ok(
        "prices", "local", "vllm", "llama", "--gpu-hour", "2.50", "--tokens-per-second", "1500",
        "--gpus", "2", "--json",
    ).json  # fmt: skip
    assert row["input_micros"] == row["output_micros"] == 925_926
    out = cli.ok("prices", "local", "local", "qwen", "--per-million", "0.10").out
    assert "input 0.10, output 0.10" in out
    assert "--tokens-per-second" in cli.fails("prices", "local", "local", "q", "--gpu-hour", "2")
    assert cli("prices", "local", "local", "q").rc == 2  # one of the two ways is required


def test_projects_unpriced(cli: Cli) -> None:
    cli.ok("departments", "add", "eng")
    cli.ok("projects", "add", "web", "--department", "eng")
    row = cli.ok("projects", "update", "web", "--unpriced", "allow", "--json").json
    assert row["unpriced"] == "allow"
    assert cli("projects", "update", "web", "--unpriced", "maybe").rc == 2
