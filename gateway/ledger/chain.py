"""The ledger's hash chain: each ledger row's `hash` covers the previous row's hash and its fields.

`LedgerChain` is the group-commit writer's `before_insert` hook for the ledger statement. In the
batch's transaction, before the INSERT, it works out from each row's parameters the values SQLite
stores (the epoch timestamp as its text, the '' / -1 placeholders of `NULLIF` as NULL, REAL
columns as floats) and appends `hash = SHA-256(prev_hash || canonical(values))`. The rows go in
through `LedgerChain.sql`: the timestamp bound as that text, the `NULLIF` columns still bound as
their placeholders (CPython's sqlite3 binds a None through a failed adapter lookup, two
exceptions made and dropped per value), then `hash`; so what was hashed is exactly what is
stored, in the same INSERT. The head (the last hash) is read once,
from the last row, in the first batch's transaction; it moves only when a batch commits.

The canonical encoding, which `gateway.audit.verify` recomputes from stored rows: the values of
the table's columns but `id` and `hash`, in table order, as compact JSON, with trailing NULLs
and trailing values equal to their column's default left out. Leaving that tail out keeps the
hashes of older rows valid when a later migration adds a column (NULL or defaulted in them).
The whole step costs one list, one `orjson.dumps` and one SHA-256 per row.
"""

from __future__ import annotations

import hashlib
import re
import sqlite3
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import orjson

from gateway.tenancy.audit import GENESIS

Params = tuple[Any, ...]

# The gateway binds the time as epoch seconds and lets SQLite format it.
_EPOCH_TS = "strftime('%Y-%m-%dT%H:%M:%fZ',?,'unixepoch')"
# SQLite's 'unixepoch' arithmetic, in doubles (as gateway.ledger.hours.epoch_hour does it).
_JD_EPOCH_MS = 210866760000000.0
_JD_EPOCH_MS_INT = int(_JD_EPOCH_MS)
_MS_TEXT = tuple(f".{ms:03d}Z" for ms in range(1000))  # cheaper than formatting per row
_NULLIF = re.compile(r"NULLIF\(\?,(.+)\)", re.I)
_STATEMENT = re.compile(r"INSERT\s+INTO\s+usage\s*\(([^)]*)\)\s*VALUES\s*\((.*)\)\s*$", re.S | re.I)


@dataclass(frozen=True, slots=True)
class Layout:
    """The ledger table's columns but `id` and `hash`, in table order, with their defaults and
    whether each is REAL."""

    columns: tuple[str, ...]
    defaults: tuple[Any, ...]
    reals: frozenset[str]


def table_layout(conn: sqlite3.Connection) -> Layout:
    """The `usage` table's layout, from the schema."""
    columns: list[str] = []
    defaults: list[Any] = []
    reals: set[str] = set()
    for _, name, decl, _, default, _ in conn.execute("PRAGMA table_info(usage)"):
        if name in ("id", "hash"):
            continue
        columns.append(name)
        defaults.append(_literal(default) if default is not None else None)
        if decl.upper() == "REAL":
            reals.add(name)
    return Layout(tuple(columns), tuple(defaults), frozenset(reals))


def _literal(sql: str) -> Any:
    """A SQL literal's value: a number, a quoted string, or NULL."""
    text = sql.strip()
    if len(text) >= 2 and text[0] == text[-1] == "'":
        return text[1:-1].replace("''", "'")
    if text.upper() == "NULL":
        return None
    try:
        return int(text)
    except ValueError:
        pass
    try:
        return float(text)
    except ValueError:
        raise ValueError(f"unsupported default or placeholder {sql!r} in the ledger") from None


def canonical(values: Sequence[Any], defaults: Sequence[Any]) -> bytes:
    """The bytes a ledger row's hash covers (values in table order, the default tail dropped)."""
    n = len(values)
    while n and (values[n - 1] is None or values[n - 1] == defaults[n - 1]):
        n -= 1
    return orjson.dumps(values if n == len(values) else values[:n])


def digest(prev_hash: str, values: Sequence[Any], defaults: Sequence[Any]) -> str:
    """A ledger row's hash: SHA-256 over the previous hash and the row's canonical encoding."""
    return hashlib.sha256(prev_hash.encode() + canonical(values, defaults)).hexdigest()


def _split(values: str) -> list[str]:
    """The value expressions of a VALUES list, split at top-level commas, blanks outside
    quotes removed."""
    out: list[str] = []
    depth, quoted, current = 0, False, ""
    for ch in values:
        if ch == "'":
            quoted = not quoted
        elif not quoted:
            if ch.isspace():
                continue
            if ch == "," and depth == 0:
                out.append(current)
                current = ""
                continue
            depth += (ch == "(") - (ch == ")")
        current += ch
    out.append(current)
    return out


class LedgerChain:
    """The writer's `before_insert` hook that hash-chains the rows of one ledger statement.

    Wire it where the writer is built::

        chain = LedgerChain(_USAGE_SQL)
        GroupCommitWriter(..., before_insert=chain.before_insert,
                          on_batch=rollup_hook(chain.sql))

    Rows queued with `usage_sql` are inserted with `chain.sql` instead (so later hooks find
    them under it); other statements pass through untouched.
    """

    def __init__(self, usage_sql: str) -> None:
        match = _STATEMENT.search(usage_sql)
        if match is None:
            raise ValueError("the ledger statement must be INSERT INTO usage (...) VALUES (...)")
        columns = [c.strip() for c in match.group(1).split(",")]
        exprs = _split(match.group(2))
        if len(exprs) != len(columns) or "hash" in columns:
            raise ValueError("the ledger statement must take one value per column, without hash")
        self._source = usage_sql
        self._columns = tuple(columns)
        self._epoch = -1  # the column bound as epoch seconds, if any
        self._nullif: list[tuple[int, Any]] = []
        for i, expr in enumerate(exprs):
            nullif = _NULLIF.fullmatch(expr)
            if expr == _EPOCH_TS and self._epoch == -1:
                self._epoch = i
            elif nullif is not None:
                self._nullif.append((i, _literal(nullif.group(1))))
            elif expr != "?":
                raise ValueError(f"the ledger chain cannot predict what {expr!r} stores")
        stored = ["?" if i == self._epoch else e for i, e in enumerate(exprs)]
        self.sql = (
            f"INSERT INTO usage ({', '.join((*columns, 'hash'))}) "
            f"VALUES ({', '.join((*stored, '?'))})"
        )
        self._head: str | None = None  # read in the first batch
        self._reals: list[int] = []
        self._defaults: tuple[Any, ...] = ()
        self._order: Callable[[list[Any]], list[Any]] | None = None
        self._second, self._prefix = -1, ""

    @property
    def head(self) -> str | None:
        """The hash of the last committed row (None until the first batch read it)."""
        return self._head

    def _load(self, conn: sqlite3.Connection) -> None:
        """Read the layout and the head; in the first batch's transaction, so nothing races."""
        layout = table_layout(conn)
        unknown = set(self._columns) - set(layout.columns)
        if unknown:
            raise ValueError(f"the ledger statement names unknown column(s) {sorted(unknown)}")
        positions = [self._columns.index(c) if c in self._columns else -1 for c in layout.columns]
        while positions and positions[-1] == -1:
            positions.pop()  # unwritten trailing columns hold their default: dropped by canonical()
        if -1 in positions:
            missing = layout.columns[positions.index(-1)]
            raise ValueError(
                f"the ledger statement must write column {missing!r}: columns after it do"
            )
        if positions != list(range(len(self._columns))):
            self._order = lambda vals: [vals[i] for i in positions]
        self._defaults = layout.defaults
        self._reals = [i for i, c in enumerate(self._columns) if c in layout.reals]
        last = conn.execute("SELECT hash FROM usage ORDER BY id DESC LIMIT 1").fetchone()
        # No row, or only rows from before the chain (no hash): the chain starts at GENESIS.
        self._head = last[0] if last and last[0] else GENESIS

    def link(self, rows: list[Params], head: str) -> tuple[list[Params], str]:
        """The rows as bound to `sql`, each with its hash appended, and the new head."""
        out = []
        epoch, nullif, reals, order = self._epoch, self._nullif, self._reals, self._order
        defaults, sha256 = self._defaults, hashlib.sha256
        second, prefix = self._second, self._prefix
        for row in rows:
            vals = list(row)
            if epoch >= 0:
                # The text strftime(..., 'unixepoch') makes of epoch seconds, to the ms.
                ms = int(vals[epoch] * 1000.0 + _JD_EPOCH_MS + 0.5) - _JD_EPOCH_MS_INT
                if ms // 1000 != second:  # under load, many rows share a second
                    second = ms // 1000
                    prefix = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(second))
                vals[epoch] = prefix + _MS_TEXT[ms - second * 1000]
            bound = vals.copy()  # the placeholders stay: the statement's NULLIF stores NULL
            for i, placeholder in nullif:
                if vals[i] == placeholder:
                    vals[i] = None
            for i in reals:
                if vals[i] is not None:
                    vals[i] = float(vals[i])
            data = canonical(vals if order is None else order(vals), defaults)
            head = sha256(head.encode() + data).hexdigest()
            bound.append(head)
            out.append(tuple(bound))
        self._second, self._prefix = second, prefix
        return out, head

    def before_insert(
        self, conn: sqlite3.Connection, by_sql: dict[str, list[Params]]
    ) -> Callable[[], None] | None:
        """Hash the batch's ledger rows; the head moves once the batch commits."""
        rows = by_sql.pop(self._source, None)
        if not rows:
            return None
        if self._head is None:
            self._load(conn)
        assert self._head is not None
        linked, head = self.link(rows, self._head)
        by_sql.setdefault(self.sql, []).extend(linked)

        def commit() -> None:
            self._head = head

        return commit
