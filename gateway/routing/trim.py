"""Context trimming: drop the oldest turns of a chat until its prompt fits a budget.

A project may opt in (`projects.context_trim`) to having a conversation that is too long for
every deployment shortened instead of refused. What is dropped is whole turns: a turn begins
at a user message that is not a tool result and runs to the next one, so an assistant's tool
call is never separated from its tool result (OpenAI `tool` messages, Anthropic `tool_result`
blocks) and the conversation still begins with a user message. System messages stay where
they are, and the last turn is never dropped. Sizes come from a measure that is additive per
message (`gateway.tokens.prompt_bound`'s byte bound by default; the gateway trims with the
token estimate, since the byte bound would drop about three times too much), so the whole
trim measures each message once.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from gateway.tokens import prompt_bound

Measure = Callable[[dict[str, Any]], int]
"""The prompt size of a request body (only its `messages` are given)."""


def _is_tool_result(message: Any) -> bool:
    content = message.get("content") if isinstance(message, dict) else None
    return isinstance(content, list) and any(
        isinstance(b, dict) and b.get("type") == "tool_result" for b in content
    )


def _starts_turn(message: Any) -> bool:
    return (
        isinstance(message, dict) and message.get("role") == "user" and not _is_tool_result(message)
    )


def _is_system(message: Any) -> bool:
    return isinstance(message, dict) and message.get("role") in ("system", "developer")


def trim_to_fit(
    messages: list[Any], budget_tokens: int, measure: Measure = prompt_bound
) -> tuple[list[Any], int]:
    """`messages` without their oldest non-system turns, as few dropped as make `measure`
    fit `budget_tokens`, and how many messages were dropped. When even the system messages
    and the last turn do not fit, that is what is returned (the caller refuses it)."""
    empty = measure({"messages": []})
    costs = [measure({"messages": [m]}) - empty for m in messages]
    total = empty + sum(costs)
    if total <= budget_tokens:
        return messages, 0
    turns: list[list[int]] = []  # indices of the non-system messages of each turn
    for i, m in enumerate(messages):
        if _is_system(m):
            continue
        if not turns or _starts_turn(m):
            turns.append([])
        turns[-1].append(i)
    dropped: set[int] = set()
    for turn in turns[:-1]:
        if total <= budget_tokens:
            break
        for i in turn:
            total -= costs[i]
            dropped.add(i)
    kept = [m for i, m in enumerate(messages) if i not in dropped]
    return kept, len(dropped)
