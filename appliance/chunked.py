"""A periodic job that deletes in chunks between the group-commit writer's batches.

The ledger's retention and the purge of retained content both run so: now and then on the
event loop, each chunk a short transaction of its own between two of the writer's batches, a
pause after each, so requests never wait long behind them.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import sqlite3
import time
from collections.abc import Callable
from datetime import datetime

from appliance.writer import GroupCommitWriter

log = logging.getLogger(__name__)


class ChunkedJob:
    """The schedule and the chunk loop; a subclass says what one pass deletes (`run_once`)."""

    name = "chunked job"  # for the task's name and the log
    # A subclass's schedule: seconds between passes and before the first, rows per chunk and
    # the pause after each; the constructor can change any of them (tests do).
    interval = 3600.0
    first_delay = 60.0
    chunk = 2000
    pause = 0.05

    def __init__(
        self,
        writer: GroupCommitWriter,
        *,
        interval: float | None = None,
        first_delay: float | None = None,
        chunk: int | None = None,
        pause: float | None = None,
    ) -> None:
        self.writer = writer
        if interval is not None:
            self.interval = interval
        if first_delay is not None:
            self.first_delay = first_delay
        if chunk is not None:
            self.chunk = chunk
        if pause is not None:
            self.pause = pause
        self.deleted = 0  # since start
        self.max_chunk_seconds = 0.0
        self.pass_deleted = 0  # in the pass under way (also when it stops part way)
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        """Start the background task (call after the writer has started)."""
        self._task = asyncio.get_running_loop().create_task(
            self._run(), name=f"aigw-{self.name.replace(' ', '-')}"
        )

    async def stop(self) -> None:
        """Stop between two chunks (call before the writer closes)."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    async def run_once(self, now: datetime | None = None) -> int:
        """One pass; what it deleted."""
        raise NotImplementedError

    async def delete_chunks(self, step: Callable[[sqlite3.Connection], int]) -> int:
        """Run `step` (one chunk's delete; rows deleted) between batches until it deletes
        nothing, pausing after each chunk; counts into `pass_deleted` as it goes."""
        while True:
            started = time.perf_counter()
            n = self.writer.run_between_batches(step)
            self.max_chunk_seconds = max(self.max_chunk_seconds, time.perf_counter() - started)
            if n == 0:
                return self.pass_deleted
            self.pass_deleted += n
            await asyncio.sleep(self.pause)

    async def _run(self) -> None:
        await asyncio.sleep(self.first_delay)
        while True:
            try:
                await self.run_once()
            except sqlite3.Error as exc:
                log.warning("%s failed, retrying in %.0f s: %s", self.name, self.interval, exc)
            await asyncio.sleep(self.interval)
