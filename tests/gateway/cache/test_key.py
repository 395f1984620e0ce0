"""The cache key: canonical, scoped, and changed by exactly what changes the answer."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st
from multidict import CIMultiDict

from gateway.cache import cache_key, eligibility, project_scope
from gateway.cache.key import IGNORED

BASE: dict[str, Any] = {
    "model": "demo",
    "messages": [{"role": "user", "content": "Hi"}],
    "temperature": 0,
}
SCOPE = project_scope("eng", "demo")

json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-1000, 1000) | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner),
    max_leaves=8,
)


def key(body: dict[str, Any], scope: str = SCOPE, api: str = "openai", alias: str = "demo") -> Any:
    return cache_key(scope, api, alias, body)


@given(st.permutations([*BASE.items(), ("max_tokens", 5), ("stop", ["x"])]))
def test_dict_key_order_does_not_matter(items: list[tuple[str, Any]]) -> None:
    reordered = dict(items)
    reordered["messages"] = [dict(reversed(list(m.items()))) for m in reordered["messages"]]
    assert key(reordered) == key({**BASE, "max_tokens": 5, "stop": ["x"]})


@given(st.sampled_from(sorted(IGNORED - {"model"})), json_values)
def test_irrelevant_params_do_not_change_the_key(name: str, value: Any) -> None:
    assert key({**BASE, name: value}) == key(BASE)


def test_stream_and_whole_share_a_key() -> None:
    streamed = {**BASE, "stream": True, "stream_options": {"include_usage": True}}
    assert key(streamed) == key(BASE)


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("temperature", 0.5),
        ("top_p", 0.9),
        ("max_tokens", 10),
        ("max_completion_tokens", 10),
        ("stop", ["END"]),
        ("tools", [{"type": "function", "function": {"name": "f"}}]),
        ("tool_choice", "required"),
        ("response_format", {"type": "json_object"}),
        ("seed", 7),
        ("n", 2),
        ("logprobs", True),
        ("top_logprobs", 3),
        ("presence_penalty", 0.5),
        ("frequency_penalty", 0.5),
        ("logit_bias", {"50256": -100}),
        ("stop_sequences", ["END"]),
        ("top_k", 5),
        ("thinking", {"type": "enabled", "budget_tokens": 1024}),
        ("system", "Be brief."),
        ("reasoning_effort", "low"),  # unknown to the key's lists: assumed relevant
    ],
)
def test_each_relevant_param_changes_the_key(name: str, value: Any) -> None:
    assert key({**BASE, name: value}) != key(BASE)


@given(st.text(min_size=1, max_size=20))
def test_the_prompt_changes_the_key(text: str) -> None:
    other = {**BASE, "messages": [{"role": "user", "content": "Hi" + text}]}
    assert key(other) != key(BASE)


def test_scope_api_alias_and_endpoint_isolate() -> None:
    assert key(BASE, scope=project_scope("eng", "other")) != key(BASE)
    assert key(BASE, scope=project_scope("sales", "demo")) != key(BASE)
    assert key(BASE, api="anthropic") != key(BASE)
    assert key(BASE, alias="other") != key(BASE)
    assert cache_key(SCOPE, "openai", "demo", BASE, endpoint="completions") != key(BASE)


def test_integral_floats_equal_ints() -> None:
    assert key({**BASE, "temperature": 0.0}) == key(BASE)
    assert key({**BASE, "max_tokens": 10.0}) == key({**BASE, "max_tokens": 10})


def test_unkeyable_bodies() -> None:
    assert key({"model": "demo", "temperature": 0}) is None  # no prompt at all
    assert key({**BASE, "seed": 2**70}) is None  # beyond what JSON round-trips exactly
    assert len(key(BASE)) == 32


def headers(**kv: str) -> CIMultiDict[str]:
    return CIMultiDict({k.replace("_", "-"): v for k, v in kv.items()})


def test_eligibility_deterministic_only_by_default() -> None:
    assert eligibility(BASE, headers()).lookup
    assert eligibility({**BASE, "temperature": 0.0}, headers()).store
    no_temp = {k: v for k, v in BASE.items() if k != "temperature"}
    assert not eligibility(no_temp, headers()).lookup  # both APIs default to 1.0
    assert not eligibility({**BASE, "temperature": 0.7}, headers()).lookup
    assert not eligibility({**BASE, "temperature": False}, headers()).lookup
    assert eligibility({**BASE, "n": 3}, headers()).lookup


def test_eligibility_headers() -> None:
    sampled = {**BASE, "temperature": 1}
    on = eligibility(sampled, headers(X_AIGW_Cache="on"))
    assert on.lookup and on.store
    off = eligibility(BASE, headers(x_aigw_cache="off"))
    assert not off.lookup and not off.store
    for h in (headers(cache_control="no-store"), headers(x_aigw_cache="no-store")):
        d = eligibility(BASE, h)
        assert not d.lookup and not d.store
    both = eligibility(BASE, headers(x_aigw_cache="on", Cache_Control="private, no-store"))
    assert not both.store  # no-store wins over on
    fresh = eligibility(BASE, headers(cache_control="no-cache"))
    assert not fresh.lookup and fresh.store


def test_embeddings_always_eligible() -> None:
    body = {"model": "emb", "input": "text"}
    assert eligibility(body, headers(), endpoint="embeddings").lookup
    assert not eligibility(body, headers(cache_control="no-store"), endpoint="embeddings").store
