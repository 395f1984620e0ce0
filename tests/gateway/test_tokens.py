"""The prompt's byte bound: its fast path for plain chat messages sums exactly what the
general walk over every string sums."""

from __future__ import annotations

from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from gateway.tokens import _prompt, estimate_prompt, prompt_bound


def _walked(body: dict[str, Any]) -> int:
    texts, overhead = _prompt(body)
    return overhead + sum(len(t.encode()) for t in texts) + len(texts)


_message = st.one_of(
    st.fixed_dictionaries({"role": st.sampled_from(["user", "assistant"]), "content": st.text()}),
    st.fixed_dictionaries(
        {
            "role": st.just("user"),
            "content": st.lists(
                st.fixed_dictionaries({"type": st.just("text"), "text": st.text()})
            ),
        }
    ),
    st.fixed_dictionaries(
        {"role": st.just("tool"), "content": st.text(), "tool_call_id": st.text()}
    ),
    st.text(),
    st.integers(),
)


@settings(max_examples=500)
@given(st.lists(_message), st.none() | st.text())
def test_the_fast_path_bounds_exactly_like_the_walk(messages: list[Any], system: Any) -> None:
    body: dict[str, Any] = {"model": "m", "messages": messages}
    if system is not None:
        body["system"] = system
    assert prompt_bound(body) == _walked(body)


def test_the_bound_is_never_below_the_count() -> None:
    body = {"messages": [{"role": "user", "content": "héllo wörld, 你好 " * 20}]}
    assert prompt_bound(body) >= estimate_prompt(body)
