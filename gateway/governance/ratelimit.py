"""Requests and tokens per minute at key, user, project and department level.

Each limit is a GCRA cell (the generic cell rate algorithm, a token bucket kept as one float,
the "theoretical arrival time"): a limit of L per minute refills one unit every 60/L seconds and
holds at most L, so a full minute's allowance may come as a burst and then at the steady rate.
A request is checked against every applicable cell first and charged only if all admit it, so
a refusal leaves no trace. Tokens are charged at the request's estimate (prompt plus
max_tokens) and corrected to the real count once the response is in (`record_tokens`).

Cells exist only for (level, name) pairs that have a limit and are created on first use; a cell
whose bucket is full again carries no information and is dropped (`prune`), so memory stays
bounded by the active callers. When a limit changes, the cell keeps the fraction it had used.

Headers: OpenAI's `x-ratelimit-{limit,remaining,reset}-{requests,tokens}` describe the tightest
applicable limit (the one with the least left after this request). Where no limit of a kind
applies, that kind's headers are left out rather than invented: a client reading them (the
OpenAI SDK does not) sees no number it could mistake for a real limit.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import sqlite_utils
from multidict import istr

from gateway.auth import KeyEntry
from gateway.governance.errors import RateLimited

MINUTE = 60.0
_EPSILON = 1e-9
MAX_IDLE_CELLS = 100_000


@dataclass(frozen=True, slots=True)
class Limits:
    """RPM/TPM of users, projects and departments (the key's own are on its KeyEntry)."""

    users: dict[str, tuple[int | None, int | None]] = field(default_factory=dict)
    projects: dict[str, tuple[int | None, int | None]] = field(default_factory=dict)
    departments: dict[str, tuple[int | None, int | None]] = field(default_factory=dict)

    @classmethod
    def load(cls, db: sqlite_utils.Database) -> Limits:
        """Read the rows that set a limit."""

        def of(table: str) -> dict[str, tuple[int | None, int | None]]:
            sql = f"SELECT name, rpm, tpm FROM {table} WHERE rpm IS NOT NULL OR tpm IS NOT NULL"
            return {r[0]: (r[1], r[2]) for r in db.execute(sql).fetchall()}

        return cls(of("users"), of("projects"), of("departments"))


class _Cell:
    """One limit's GCRA state: `tat` is when the bucket would be full again."""

    __slots__ = ("ident", "interval", "limit", "tat", "tokens")

    def __init__(self, ident: tuple[str, str, str], limit: int, now: float) -> None:
        self.ident = ident  # (level, name, "requests" | "tokens")
        self.tokens = ident[2] == "tokens"
        self.limit = limit
        self.interval = MINUTE / limit if limit > 0 else math.inf
        self.tat = now

    def rescale(self, limit: int, now: float) -> None:
        """A changed limit: keep the used fraction of the bucket."""
        used = max(self.tat - now, 0.0) / MINUTE
        self.limit, self.interval = limit, MINUTE / limit if limit > 0 else math.inf
        self.tat = now + used * MINUTE if limit > 0 else now


_Charge = tuple[_Cell, int]  # a cell and the units charged to it
_View = tuple[int, int, float]  # limit, remaining, seconds until the bucket is full


@dataclass(slots=True)
class RateState:
    """What one admitted request was charged, and the header values at admission."""

    charges: tuple[_Charge, ...] = ()
    tokens: int = 0
    requests_view: _View | None = None
    tokens_view: _View | None = None


NO_LIMITS = RateState()


def reset_text(seconds: float) -> str:
    """A duration as OpenAI writes it (Go's format): `20ms`, `1s`, `1.5s`, `6m0s`, `1h0m0s`."""
    ms = math.ceil(seconds * 1000 - _EPSILON)
    if ms <= 0:
        return "0s"
    if ms < 1000:  # the common cases first: every response carries two of these
        return f"{ms}ms"
    if ms < 60_000:
        return f"{ms // 1000}s" if ms % 1000 == 0 else f"{ms / 1000:.3f}".rstrip("0") + "s"
    hours, rest = divmod(ms, 3_600_000)
    minutes, rest = divmod(rest, 60_000)
    secs = str(rest // 1000) if rest % 1000 == 0 else f"{rest / 1000:.3f}".rstrip("0")
    return (f"{hours}h" if hours else "") + (f"{minutes}m" if hours or minutes else "") + secs + "s"


# What every response of a limited caller repeats, made once: limits (a few per box) and
# durations under a second as `reset_text` writes them.
_LIMIT_TEXT: dict[int, str] = {}
_MS_TEXT = tuple(f"{ms}ms" for ms in range(1000))
# istr: aiohttp's header dict takes them without lower-casing each name per response.
_REQUESTS = tuple(map(istr, ("x-ratelimit-limit-requests", "x-ratelimit-remaining-requests",
                             "x-ratelimit-reset-requests")))  # fmt: skip
_TOKENS = tuple(map(istr, ("x-ratelimit-limit-tokens", "x-ratelimit-remaining-tokens",
                           "x-ratelimit-reset-tokens")))  # fmt: skip


def headers(state: RateState, out: dict[str, str] | None = None) -> dict[str, str]:
    """The x-ratelimit-* headers of a request (none for a kind without a limit), added to
    `out` when given (a response's other headers). Written out per kind, names precomputed:
    it runs for every response of a limited caller."""
    if out is None:
        out = {}
    for names, view in ((_REQUESTS, state.requests_view), (_TOKENS, state.tokens_view)):
        if view is None:
            continue
        limit, remaining, used = view
        text = _LIMIT_TEXT.get(limit)
        if text is None:
            if len(_LIMIT_TEXT) >= 4096:
                _LIMIT_TEXT.clear()
            text = _LIMIT_TEXT[limit] = str(limit)
        ms = math.ceil(used * 1000 - _EPSILON)
        out[names[0]], out[names[1]] = text, str(remaining)
        out[names[2]] = _MS_TEXT[ms] if 0 < ms < 1000 else reset_text(used)
    return out


class RateLimiter:
    """The cells of every limited caller, and the limits of users, projects and departments."""

    def __init__(self, limits: Limits | None = None) -> None:
        self.limits = limits or Limits()
        self._cells: dict[tuple[str, str, str], _Cell] = {}
        # Per key: the cells of its limits, with whether each counts tokens. Built on the
        # key's first request after a reload or a prune (both drop every plan, so a plan
        # never holds a cell that left `_cells`), read on every other one.
        self._plans: dict[str, tuple[KeyEntry, tuple[tuple[_Cell, bool], ...]]] = {}
        self._epoch = 0  # bumped by every prune

    def set_limits(self, limits: Limits, now: float) -> None:
        """Swap in reloaded limits; cells of callers whose limit went away are dropped."""
        self.limits = limits
        self.prune(now)

    def prune(self, now: float) -> None:
        """Drop cells whose bucket is full again (they hold nothing a new cell would not)."""
        self._cells = {k: c for k, c in self._cells.items() if c.tat > now}
        self._plans = {}
        self._epoch += 1

    def _cell(self, ident: tuple[str, str, str], limit: int, now: float) -> _Cell:
        cell = self._cells.get(ident)
        if cell is None:
            if len(self._cells) >= MAX_IDLE_CELLS:
                self.prune(now)
            cell = self._cells[ident] = _Cell(ident, limit, now)
        elif cell.limit != limit:
            cell.rescale(limit, now)
        return cell

    def _plan(self, key: KeyEntry, now: float) -> tuple[tuple[_Cell, bool], ...]:
        """The cells of every limit that applies to the key (cached per key object)."""
        plan = self._plans.get(key.id)
        if plan is not None and plan[0] is key:
            return plan[1]
        while True:
            epoch = self._epoch
            cells = tuple(
                (self._cell((level, name, kind), limit, now), kind == "tokens")
                for level, name, rpm, tpm in self._levels(key)
                for kind, limit in (("requests", rpm), ("tokens", tpm))
                if limit is not None
            )
            if self._epoch == epoch:  # no prune dropped a cell taken above
                break
        self._plans[key.id] = (key, cells)
        return cells

    def _levels(self, key: KeyEntry) -> list[tuple[str, str, int | None, int | None]]:
        levels: list[tuple[str, str, int | None, int | None]] = [("key", key.id, key.rpm, key.tpm)]
        lim = self.limits
        if key.user is not None and key.user in lim.users:
            levels.append(("user", key.user, *lim.users[key.user]))
        if key.project in lim.projects:
            levels.append(("project", key.project, *lim.projects[key.project]))
        if key.department in lim.departments:
            levels.append(("department", key.department, *lim.departments[key.department]))
        return levels

    def limits_tokens(self, key: KeyEntry) -> bool:
        """Whether a tokens-per-minute limit applies to the key at any level."""
        if key.tpm is not None:
            return True
        lim = self.limits
        return (
            (key.user is not None and lim.users.get(key.user, (None, None))[1] is not None)
            or lim.projects.get(key.project, (None, None))[1] is not None
            or lim.departments.get(key.department, (None, None))[1] is not None
        )

    def check(self, key: KeyEntry, tokens_estimate: int, now: float) -> RateState:
        """Charge one request and its estimated tokens to every limit of the key, or raise
        RateLimited (charging nothing) naming the limit that refused and when to retry."""
        plan = self._plan(key, now)
        if not plan:
            return NO_LIMITS
        charges = [(cell, tokens_estimate if counts_tokens else 1) for cell, counts_tokens in plan]
        worst: tuple[float, _Charge] | None = None
        tats: list[float] = []  # each cell's arrival time once charged
        for ch in charges:
            cell, weight = ch
            if cell.limit == 0:
                raise self._refusal(ch, math.inf, charges, now)
            tat = (cell.tat if cell.tat > now else now) + weight * cell.interval
            tats.append(tat)
            wait = tat - MINUTE - now
            if wait > _EPSILON and (worst is None or wait > worst[0]):
                worst = (wait, ch)
        if worst is not None:
            raise self._refusal(worst[1], worst[0], charges, now)
        # Charge each cell and read the header values in the same pass (as `_views` does,
        # with `tat` past `now` after the charge).
        views: list[_View | None] = [None, None]
        for (cell, _), tat in zip(charges, tats, strict=True):
            cell.tat = tat
            used = tat - now
            remaining = int((MINUTE - used) / cell.interval + _EPSILON)
            remaining = remaining if remaining > 0 else 0
            current = views[cell.tokens]
            if (
                current is None
                or remaining < current[1]
                or (remaining == current[1] and cell.limit < current[0])
            ):
                views[cell.tokens] = (cell.limit, remaining, used)
        return RateState(tuple(charges), tokens_estimate, views[0], views[1])

    def _refusal(self, ch: _Charge, wait: float, charges: list[_Charge], now: float) -> RateLimited:
        current = headers(RateState((), 0, *_views(charges, now)))
        cell, weight = ch
        level, name, kind = cell.ident
        what = f"{level} {name!r}"
        if cell.limit == 0:
            return RateLimited(
                f"{what} may make no {kind} (its limit is 0 per minute); ask an "
                "administrator to raise it",
                retry_after=None,
                headers=current,
            )
        if weight > cell.limit:
            return RateLimited(
                f"this request may use up to {weight} tokens, more than the "
                f"{cell.limit} tokens per minute allowed for {what}; lower max_tokens or "
                "the prompt, or ask an administrator for a higher limit",
                retry_after=None,
                headers=current,
            )
        retry = max(1, math.ceil(wait))
        return RateLimited(
            f"rate limit reached for {what}: {cell.limit} {kind} per minute; retry in {retry} s",
            retry_after=retry,
            headers=current,
        )

    def record_tokens(self, state: RateState, actual_tokens: int) -> None:
        """Correct the token charge from the estimate to what the response really used."""
        delta = actual_tokens - state.tokens
        if not delta or not state.charges:  # NO_LIMITS is shared: never written
            return
        state.tokens = actual_tokens
        for cell, _ in state.charges:
            if cell.tokens:
                cell.tat += delta * cell.interval

    def undo(self, state: RateState) -> None:
        """Take back a request's charges (it was refused further on, by a budget)."""
        if not state.charges:
            return
        for cell, weight in state.charges:
            cell.tat -= (state.tokens if cell.tokens else weight) * cell.interval
        state.charges = ()


def _views(charges: list[_Charge], now: float) -> tuple[_View | None, _View | None]:
    """(limit, remaining, seconds until full) of the requests and the tokens limit with the
    least left (the smaller limit on a tie)."""
    best: list[_View | None] = [None, None]
    for cell, _ in charges:
        used = cell.tat - now if cell.tat > now else 0.0
        remaining = int((MINUTE - used) / cell.interval + _EPSILON)
        remaining = remaining if remaining > 0 else 0
        current = best[cell.tokens]
        if current is None or (remaining, cell.limit) < current[1::-1]:
            best[cell.tokens] = (cell.limit, remaining, used)
    return best[0], best[1]
