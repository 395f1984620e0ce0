"""The reserve-then-settle guarantee under concurrency: settled spend never passes a hard
limit, and a limit with room for exactly N worst cases admits exactly N of 64."""

from __future__ import annotations

import asyncio
import random
import threading

import pytest
import sqlite_utils

from gateway.governance import store
from gateway.governance.budgets import BudgetBook, Reservation
from gateway.governance.errors import BudgetExceeded
from tests.gateway.governance.conftest import ACTOR, BERLIN, Clock, Recorder, key_entry

WORST = 1_000


def _book(db: sqlite_utils.Database, clock: Clock, limit: int) -> BudgetBook:
    store.create_budget(
        db, ACTOR, level="project", target="web", period="daily", limit_micros=limit
    )
    store.create_budget(
        db, ACTOR, level="department", target="eng", period="monthly", limit_micros=limit * 2
    )
    return BudgetBook.load(db, tz=BERLIN, clock=clock, sink=Recorder())


def _spent(book: BudgetBook) -> dict[str, tuple[int, int]]:
    return {s["level"]: (s["spent_micros"], s["reserved_micros"]) for s in book.status()}


@pytest.mark.parametrize("n", [0, 1, 17, 63, 64])
async def test_a_limit_for_n_worst_cases_admits_exactly_n_of_64(
    db: sqlite_utils.Database, clock: Clock, n: int
) -> None:
    book = _book(db, clock, n * WORST)
    gate = asyncio.Event()

    async def one() -> Reservation | None:
        await gate.wait()
        try:
            res = book.reserve(key_entry(), WORST)
        except BudgetExceeded:
            return None
        await asyncio.sleep(0)  # still in flight while the others try
        return res

    tasks = [asyncio.create_task(one()) for _ in range(64)]
    gate.set()
    admitted = [r for r in await asyncio.gather(*tasks) if r is not None]
    assert len(admitted) == n
    assert _spent(book)["project"] == (0, n * WORST)
    for res in admitted:
        book.settle(res, WORST)
    assert _spent(book)["project"] == (n * WORST, 0)


@pytest.mark.parametrize("seed", range(5))
async def test_interleaved_tasks_never_settle_past_the_limit(
    db: sqlite_utils.Database, clock: Clock, seed: int
) -> None:
    rng = random.Random(seed)
    limit = 20 * WORST + rng.randrange(WORST)
    book = _book(db, clock, limit)
    admitted = refused = 0

    async def client() -> None:
        nonlocal admitted, refused
        for _ in range(30):
            worst = rng.randrange(1, WORST)
            try:
                res = book.reserve(key_entry(), worst)
            except BudgetExceeded:
                refused += 1
                await asyncio.sleep(0)
                continue
            admitted += 1
            for _ in range(rng.randrange(3)):
                await asyncio.sleep(0)
            if rng.random() < 0.2:
                book.release(res)
            else:
                book.settle(res, rng.randrange(worst + 1))
            spent, reserved = _spent(book)["project"]
            assert spent <= limit and spent + reserved <= limit

    await asyncio.gather(*(client() for _ in range(64)))
    spent, reserved = _spent(book)["project"]
    assert reserved == 0 and spent <= limit
    assert admitted and refused  # the limit was reached and held


def test_threads_never_settle_past_the_limit(db: sqlite_utils.Database, clock: Clock) -> None:
    limit = 50 * WORST
    book = _book(db, clock, limit)
    barrier = threading.Barrier(16)
    errors: list[str] = []

    def worker(seed: int) -> None:
        rng = random.Random(seed)
        barrier.wait()
        for _ in range(500):
            worst = rng.randrange(1, WORST)
            try:
                res = book.reserve(key_entry(), worst)
            except BudgetExceeded:
                continue
            book.settle(res, rng.randrange(worst + 1))
            spent, reserved = _spent(book)["project"]
            if spent > limit or spent + reserved > limit:
                errors.append(f"{spent} + {reserved} > {limit}")

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(16)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    spent, reserved = _spent(book)["project"]
    assert reserved == 0 and limit - WORST < spent <= limit
