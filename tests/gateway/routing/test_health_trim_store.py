"""Health (breaker, cooldown) with a fake clock, trimming, features, and routes from SQLite."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from hypothesis import given
from hypothesis import strategies as st

from appliance.store import open_store, utcnow
from gateway.catalog import ModelDef
from gateway.routing import Health, load_routes, request_features, trim_to_fit, with_models
from gateway.routing.health import BreakerPolicy
from gateway.tokens import prompt_bound


def test_breaker_opens_probes_and_closes() -> None:
    h = Health(BreakerPolicy(consecutive_failures=3, cooldown_s=10))
    for _ in range(3):
        assert h.available("d", 0.0)
        h.record_failure("d", "error", None, 0.0)
    assert not h.available("d", 5.0)
    assert h.available("d", 10.0)  # half-open: one probe
    assert h.start("d", 10.0)
    assert not h.start("d", 10.5)  # the probe is taken
    h.record_failure("d", "error", None, 11.0)  # probe failed: open again
    assert not h.available("d", 15.0)
    assert h.start("d", 21.0)
    h.record_success("d", 0.1, 0.2, 21.5)
    assert h.available("d", 21.5) and h.snapshot(21.5)["d"]["circuit"] == "closed"


def test_breaker_opens_on_error_rate() -> None:
    h = Health(BreakerPolicy(consecutive_failures=100, error_rate=0.5, window=10))
    for i in range(10):
        if i % 3 == 2:
            h.record_success("d", None, 0.1, 0.0)
        else:
            h.record_failure("d", "error", None, 0.0)
    assert not h.available("d", 0.0)


def test_429_cools_down_for_retry_after() -> None:
    h = Health()
    h.record_failure("d", "rate_limited", 30, 100.0)
    assert not h.available("d", 129.0)
    assert h.ready_at("d") == 130.0
    assert h.available("d", 130.0)
    assert h.snapshot(100.0)["d"]["circuit"] == "closed"  # a 429 is no failure


def test_all_available_agrees_with_available() -> None:
    h = Health(BreakerPolicy(consecutive_failures=1, cooldown_s=10))
    ids = ("a", "b", "c")
    assert h.all_available(ids, 0.0)  # never seen: healthy
    h.record_success("a", None, 0.1, 0.0)
    h.record_failure("b", "rate_limited", 5, 0.0)
    assert not h.all_available(ids, 1.0) and h.all_available(ids, 5.0)
    h.record_failure("c", "error", None, 6.0)  # opens at once (one failure)
    for now in (7.0, 15.9, 16.0):
        assert h.all_available(ids, now) == all(h.available(i, now) for i in ids)
    assert h.start("c", 16.0) and not h.all_available(ids, 16.5)  # the probe is in flight


def test_ewma() -> None:
    h = Health(BreakerPolicy(ewma_alpha=0.5))
    h.record_success("d", 1.0, 2.0, 0.0)
    h.record_success("d", 3.0, 4.0, 0.0)
    assert h.latency("d") == 2.0 and h.snapshot(0.0)["d"]["latency_ms"] == 3000.0


def test_features_from_bodies() -> None:
    oai = {
        "messages": [
            {"role": "user", "content": [
                {"type": "text", "text": "```py\nx = 1\n```"},
                {"type": "image_url", "image_url": {"url": "data:..."}},
            ]}
        ],
        "response_format": {"type": "json_schema"},
        "max_tokens": 50,
    }  # fmt: skip
    f = request_features(oai, {}, confidential=True)
    assert (f.vision, f.code, f.json_mode, f.tools, f.confidential) == (
        True,
        True,
        True,
        False,
        True,
    )
    assert f.prompt_tokens == prompt_bound(oai) and f.max_output_tokens == 50
    ant = {"system": "be nice", "messages": [{"role": "user", "content": "hello there"}],
           "tools": [{"name": "t"}]}  # fmt: skip
    f = request_features(ant, {})
    assert (f.vision, f.code, f.tools) == (False, False, True)


def _msg(role: str, text: str, **kw: Any) -> dict[str, Any]:
    return {"role": role, "content": text, **kw}


def test_trim_keeps_tool_pairs() -> None:
    msgs = [
        _msg("system", "sys"),
        _msg("user", "a" * 100),
        _msg("assistant", "", tool_calls=[{"id": "1"}]),
        _msg("tool", "r" * 100, tool_call_id="1"),
        _msg("assistant", "done"),
        _msg("user", "last"),
    ]
    kept, dropped = trim_to_fit(msgs, prompt_bound({"messages": [msgs[0], msgs[5]]}))
    assert kept == [msgs[0], msgs[5]] and dropped == 4
    assert trim_to_fit(msgs, 10_000) == (msgs, 0)


_roles = st.sampled_from(["system", "user", "assistant", "tool"])
_messages = st.lists(
    st.builds(lambda r, t: {"role": r, "content": t}, _roles, st.text(max_size=40)), max_size=12
)


@given(_messages, st.integers(0, 400))
def test_trim_properties(msgs: list[dict[str, Any]], budget: int) -> None:
    kept, dropped = trim_to_fit(msgs, budget)
    assert len(kept) + dropped == len(msgs)
    it = iter(msgs)
    assert all(any(k is m for m in it) for k in kept)  # order kept (a subsequence)
    assert [m for m in msgs if m["role"] == "system"] == [m for m in kept if m["role"] == "system"]
    if prompt_bound({"messages": kept}) > budget:  # only system + the last turn are left
        starts = [i for i, m in enumerate(msgs) if m["role"] == "user"]
        last = starts[-1] if starts else 0
        ids = {id(k) for k in kept}
        assert all(m["role"] == "system" or i >= last for i, m in enumerate(msgs) if id(m) in ids)
    for i, m in enumerate(kept):  # a tool result never loses the message before it
        if m["role"] == "tool" and i > 0:
            j = next(n for n, x in enumerate(msgs) if x is m)
            prev = [x for x in msgs[:j] if x["role"] != "system"]
            if prev:
                assert any(prev[-1] is k for k in kept)


def test_load_routes(tmp_path: Path) -> None:
    db = open_store(tmp_path / "aigw.db")
    now = utcnow()
    db.execute("INSERT INTO providers(name, kind, base_url, created_at) VALUES (?, ?, ?, ?)",
               ["p", "openai", "http://x", now])  # fmt: skip
    db.execute(
        "INSERT INTO routes(alias, strategy, fallback_alias, tiers, max_attempts, max_seconds,"
        " created_at, updated_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
        ["chat", "cheapest", "small",
         '[{"name": "s", "when": {"max_prompt_tokens": 10}, "use": [1]}]', 2, 12.5, now, now],
    )  # fmt: skip
    for i, model in enumerate(["big", "small"]):
        db.execute(
            "INSERT INTO deployments(id, route, provider, upstream_model, position, params,"
            " context_window, vision, confidential, created_at) VALUES (?,?,?,?,?,?,?,?,?,?)",
            [f"d{i}", "chat", "p", model, i, '{"temperature": 0}', 8000, i, 1 - i, now],
        )
    routes = load_routes(db)
    r = routes["chat"]
    assert (r.strategy, r.fallback_alias, r.max_attempts, r.max_seconds) == (
        "cheapest",
        "small",
        2,
        12.5,
    )
    assert [d.id for d in r.deployments] == ["d0", "d1"]
    assert r.deployments[0].params == {"temperature": 0} and r.deployments[0].confidential
    assert r.deployments[1].vision and r.tiers[0].use == ("d1",)
    merged = with_models(routes, {"chat": ModelDef("chat", "p", "x"), "m": ModelDef("m", "p", "y")})
    assert merged["chat"] is r and merged["m"].deployments[0].upstream_model == "y"
    db.conn.close()
