"""Price arithmetic: integers only, rounded up once, monotone, never negative."""

from __future__ import annotations

from fractions import Fraction

from hypothesis import given
from hypothesis import strategies as st

from gateway.pricing import Price, worst_case

TOKENS = st.integers(min_value=0, max_value=10**9)
RATE = st.integers(min_value=0, max_value=10**9)


def _price(inp: int, out: int, cached: int | None = None, fee: int = 0) -> Price:
    return Price(inp, out, cached, fee, "USD", "2025-01-01T00:00:00Z")


def test_a_typical_request() -> None:
    # gpt-4o-mini: 0.15 / 0.60 / cached 0.075 USD per million tokens.
    price = _price(150_000, 600_000, 75_000)
    # 800 uncached + 200 cached prompt tokens (input_tokens counts both), 500 generated.
    assert price.cost(1000, 500, 200) == (800 * 150_000 + 200 * 75_000 + 500 * 600_000) // 10**6
    assert price.cost(1, 0) == 1  # 0.15 micro-units round up to one
    assert price.cost(0, 0) == 0
    assert _price(150_000, 600_000, fee=1000).cost(0, 0) == 1000


def test_cached_tokens_default_to_the_input_price_and_are_capped_by_the_prompt() -> None:
    price = _price(2_000_000, 8_000_000)
    assert price.cost(1000, 0, 400) == price.cost(1000, 0, 0) == 2000
    discounted = _price(2_000_000, 8_000_000, 500_000)
    # More cached tokens than prompt tokens (a provider's oddity) bill as all cached.
    assert discounted.cost(1000, 0, 5000) == discounted.cost(1000, 0, 1000) == 500
    assert discounted.cost(-5, -1, -3) == 0


@given(TOKENS, TOKENS, TOKENS, RATE, RATE, RATE, st.integers(0, 10**6))
def test_cost_is_the_exact_cost_rounded_up(
    inp: int, out: int, cached: int, ri: int, ro: int, rc: int, fee: int
) -> None:
    cached = min(cached, inp)
    cost = _price(ri, ro, rc, fee).cost(inp, out, cached)
    exact = Fraction((inp - cached) * ri + cached * rc + out * ro, 10**6) + fee
    assert isinstance(cost, int)
    assert exact <= cost < exact + 1
    assert cost >= fee >= 0


@given(TOKENS, TOKENS, TOKENS, st.integers(1, 10**6), RATE, RATE, RATE)
def test_cost_is_monotone(
    inp: int, out: int, cached: int, more: int, ri: int, ro: int, rc: int
) -> None:
    cached = min(cached, inp)
    price = _price(ri, ro, min(rc, ri))
    base = price.cost(inp, out, cached)
    assert price.cost(inp + more, out, cached) >= base
    assert price.cost(inp, out + more, cached) >= base
    # A cached token never costs more than an uncached one (when its price is lower).
    assert price.cost(inp, out, min(cached + more, inp)) <= base


@given(TOKENS, TOKENS, TOKENS, RATE, RATE, RATE)
def test_the_worst_case_covers_every_outcome(
    prompt: int, max_out: int, cached: int, ri: int, ro: int, rc: int
) -> None:
    price = _price(ri, ro, rc)
    reserve = worst_case(price, prompt, max_out)
    for out in (0, max_out // 2, max_out):
        assert price.cost(prompt, out, min(cached, prompt)) <= reserve
