"""The hot path's lean deadline behaves like asyncio.timeout."""

from __future__ import annotations

import asyncio

import pytest

from gateway.deadline import Deadline


async def test_expires_as_timeout_error() -> None:
    with pytest.raises(TimeoutError), Deadline(0.01):
        await asyncio.sleep(1)
    # The task is not left cancelled: it can still await.
    await asyncio.sleep(0)
    assert asyncio.current_task().cancelling() == 0  # type: ignore[union-attr]


async def test_no_effect_when_in_time() -> None:
    with Deadline(1) as d:
        await asyncio.sleep(0.001)
    assert not d.expired
    await asyncio.sleep(0.02)  # the timer was cancelled: nothing fires later


async def test_outer_cancellation_is_not_a_timeout() -> None:
    async def victim() -> None:
        with Deadline(5):
            await asyncio.sleep(1)

    task = asyncio.create_task(victim())
    await asyncio.sleep(0.01)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
