"""The bench's CPU ratios: paired by round, so a slow spell of the machine does not pick sides."""

from __future__ import annotations

from typing import Any

from bench.__main__ import paired_ratio, target_ratios


def row(target: str, rounds: list[float], errors: int = 0) -> dict[str, Any]:
    ordered = sorted(rounds)
    return {
        "target": target,
        "mode": "stream",
        "errors": errors,
        "cpu_ms_per_req": ordered[(len(ordered) - 1) // 2],
        "cpu_ms_per_req_rounds": rounds,
    }


def test_a_slow_round_weighs_on_both_sides_of_its_ratio() -> None:
    # The machine is twice as slow in rounds 2 and 3; aigw costs 1.1x the proxy in every round.
    proxy = [0.5, 1.0, 1.0, 0.5, 0.5]
    aigw = [0.55, 1.1, 1.1, 0.55, 0.55]
    c = paired_ratio([row("proxy", proxy), row("aigw", aigw)], "aigw", "proxy", "stream")
    assert round(c["value"], 6) == 1.1
    assert [round(x, 6) for x in c["rounds"]] == [1.1] * 5


def test_the_median_of_an_even_number_of_rounds_is_the_mean_of_the_middle_two() -> None:
    c = paired_ratio(
        [row("proxy", [1.0, 1.0, 1.0, 1.0]), row("aigw", [1.0, 1.2, 1.4, 2.0])],
        "aigw",
        "proxy",
        "stream",
    )
    assert round(c["value"], 6) == 1.3


def test_a_target_that_stopped_early_is_paired_over_the_rounds_it_ran() -> None:
    c = paired_ratio([row("proxy", [1.0, 1.0, 1.0]), row("aigw", [1.2])], "aigw", "proxy", "stream")
    assert c["rounds"] == [1.2]


def test_errors_or_a_missing_target_give_no_ratio() -> None:
    rows = [row("proxy", [1.0]), row("aigw", [1.2], errors=3)]
    assert paired_ratio(rows, "aigw", "proxy", "stream")["value"] is None
    assert paired_ratio([row("proxy", [1.0])], "aigw", "proxy", "stream")["note"] == "not measured"


def test_the_report_line_gives_the_rounds_spread_and_the_verdict() -> None:
    rows = [row("proxy", [1.0, 1.0, 1.0]), row("aigw", [1.5, 1.2, 1.1])]
    ratios, lines = target_ratios(rows, "cpu_ms_per_req", "CPU/request", "cpu")
    c = ratios["cpu_aigw_over_proxy_stream"]
    assert round(c["value"], 6) == 1.2 and c["met"] is True
    line = next(x for x in lines if "aigw / proxy, stream" in x)
    assert "**1.20x**" in line and "(1.10-1.50)" in line and "met" in line
