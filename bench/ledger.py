"""``python -m bench.ledger``: the ledger's write rate with rollups, and report time at scale.

1. **Writes**: closed-loop "requests" (coroutines) queue ledger rows through the real
   `GroupCommitWriter` with the hash chain and the rollup hook, as `Gateway.finish` does, for
   `--write-seconds`; records/s sustained, and what the two hooks cost per row. A shorter run
   without them is the baseline.
2. **Reports**: `--records` synthetic records (default 10,000,000) spread over `--days` (90) are
   written with executemany in transactions of 100,000, and each transaction also adds them to
   the rollups through the hook's own code path (`rollups.apply_rows`), so the rollups are what
   the gateway would have built. Then the spend report is timed (department x model, 30 days,
   daily buckets in a non-UTC zone; tag x department; key x model by month over 90 days) and a
   month's budget rebuild (`spent_by`). Each on a fresh connection, first (cold) and best of 3.

Prints a Markdown table with the targets and writes `bench/results/ledger.{md,json}`.
See bench/README.md.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import os
import platform
import random
import shutil
import sqlite3
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import orjson
import uvloop

from appliance.store import connect, open_store
from appliance.writer import GroupCommitWriter
from gateway.ledger import reports
from gateway.ledger.chain import LedgerChain
from gateway.ledger.queries import spent_by
from gateway.ledger.rollups import apply_rows, ledger_columns, rollup_hook
from gateway.state import _USAGE_SQL

RESULTS = Path(__file__).resolve().parent / "results"
WRITE_TARGET = 20_000  # records/s
REPORT_TARGET = 1.0  # seconds
TZ = "Europe/Berlin"
COLUMNS = ledger_columns(_USAGE_SQL)
MODELS = [
    ("gpt-4o", "openai"),
    ("gpt-4o-mini", "openai"),
    ("o3-mini", "openai"),
    ("claude-sonnet", "anthropic"),
    ("claude-haiku", "anthropic"),
    ("gemini-flash", "gemini"),
    ("gemini-pro", "gemini"),
    ("deepseek-chat", "deepseek"),
    ("qwen-max", "qwen"),
    ("llama-local", "local"),
]
TAGS = [None, None, "support", "summarize", "support,summarize", "search", "codegen", "ops"]


def log(msg: str) -> None:
    print(f"[bench.ledger] {msg}", file=sys.stderr, flush=True)


class Population:
    """50 keys in 20 projects of 6 departments, 30 users, 10 models, a few tags."""

    def __init__(self, seed: int = 1) -> None:
        rng = random.Random(seed)
        projects = [(f"proj-{i:02d}", f"dept-{i % 6}") for i in range(20)]
        self.keys = []
        for i in range(50):
            project, department = projects[i % 20]
            user = f"user-{rng.randrange(30):02d}" if rng.random() < 0.7 else None
            self.keys.append((f"key-{i:02d}", project, department, user))
        self.rng = rng

    def templates(self, n: int) -> list[dict[str, Any]]:
        """`n` varied request shapes (everything but the time and the trace id)."""
        rng = self.rng
        out = []
        for _ in range(n):
            key_id, project, department, user = rng.choice(self.keys)
            model, provider = rng.choice(MODELS)
            tin, tout = rng.randrange(20, 4000), rng.randrange(1, 1000)
            status = 200 if rng.random() < 0.97 else rng.choice([400, 429, 499, 500, 503])
            out.append(
                {
                    "api": "openai",
                    "endpoint": "/v1/chat/completions",
                    "model": model,
                    "provider": provider,
                    "upstream_model": model,
                    "stream": rng.randrange(2),
                    "status": status,
                    "error": None if status == 200 else "upstream_error",
                    "input_tokens": tin,
                    "output_tokens": tout,
                    "cached_tokens": tin // 4 if rng.random() < 0.3 else 0,
                    "estimated": 0,
                    "latency_ms": round(rng.uniform(200, 4000), 3),
                    "ttft_ms": round(rng.uniform(50, 500), 3),
                    "key_id": key_id,
                    "project": project,
                    "department": department,
                    "user": user,
                    "tags": rng.choice(TAGS),
                    "cost_micros": tin * 3 + tout * 12,
                    "priced": 1,
                    "cache_hit": 0,
                    "deployment": provider,
                    "route_reason": None,
                    "attempts": 1,
                    "saved_micros": 0,
                    "detectors": None,
                }
            )
        return out


def _row_maker(templates: list[dict[str, Any]]) -> Callable[[int, float], tuple[Any, ...]]:
    """A function (i, ts) → the parameters of one ledger row, in the gateway's column order."""
    ti, tsi = COLUMNS.index("trace_id"), COLUMNS.index("ts")
    base = [[t.get(c) for c in COLUMNS] for t in templates]
    n = len(base)

    def make(i: int, ts: float) -> tuple[Any, ...]:
        row = base[i % n].copy()
        row[ti] = f"{i:032x}"
        row[tsi] = ts
        return tuple(row)

    return make


# --- 1. writes ------------------------------------------------------------------------------


async def _write_phase(path: Path, seconds: float, hook: bool, concurrency: int) -> dict[str, Any]:
    make = _row_maker(Population(2).templates(5000))
    hook_time = [0.0]
    on_batch = before_insert = None
    if hook:  # wired as the gateway wires them: the hash chain, then the rollups
        chain = LedgerChain(_USAGE_SQL)
        inner = rollup_hook(chain.sql)

        def timed(conn: sqlite3.Connection, by_sql: dict[str, list[tuple[Any, ...]]]) -> None:
            t = time.perf_counter()
            inner(conn, by_sql)
            hook_time[0] += time.perf_counter() - t

        def chained(conn: sqlite3.Connection, by_sql: dict[str, list[tuple[Any, ...]]]) -> Any:
            t = time.perf_counter()
            done = chain.before_insert(conn, by_sql)
            hook_time[0] += time.perf_counter() - t
            return done

        on_batch, before_insert = timed, chained
    writer = GroupCommitWriter(
        path, 512, 0.002, lambda: concurrency, on_batch, before_insert=before_insert
    )
    writer.start(asyncio.get_running_loop())
    counter = [0]
    stop = time.monotonic() + seconds

    async def request() -> None:
        while time.monotonic() < stop:
            i = counter[0] = counter[0] + 1
            if not await writer.insert(_USAGE_SQL, make(i, time.time())):
                raise RuntimeError("a group commit failed")

    cpu0, t0, batches0 = time.process_time(), time.perf_counter(), writer.batches
    await asyncio.gather(*(request() for _ in range(concurrency)))
    wall, cpu = time.perf_counter() - t0, time.process_time() - cpu0
    committed, batches = writer.committed, writer.batches - batches0
    writer.close()
    return {
        "hook": hook,
        "records": committed,
        "seconds": round(wall, 2),
        "records_per_s": round(committed / wall),
        "cpu_us_per_record": round(cpu / committed * 1e6, 2),
        "hook_us_per_record": round(hook_time[0] / committed * 1e6, 2) if hook else None,
        "records_per_batch": round(committed / max(batches, 1), 1),
    }


def write_bench(tmp: Path, seconds: float, concurrency: int) -> list[dict[str, Any]]:
    out = []
    for hook, secs in ((True, seconds), (False, max(seconds / 2, 1.0))):
        path = tmp / f"writes-{int(hook)}.db"
        open_store(path).conn.close()
        log(f"writes for {secs:g} s, rollup hook {'on' if hook else 'off'}")
        out.append(uvloop.run(_write_phase(path, secs, hook, concurrency)))
        log(f"  {out[-1]}")
    return out


# --- 2. reports -----------------------------------------------------------------------------


def generate(path: Path, records: int, days: int, end: dt.datetime) -> float:
    """`records` ledger rows over `days` before `end`, with their rollups; seconds taken."""
    db = open_store(path)
    conn = db.conn
    conn.execute("PRAGMA journal_mode=OFF")  # a one-off bulk load; nothing to recover
    conn.execute("PRAGMA synchronous=OFF")
    conn.execute("PRAGMA cache_size=-262144")
    make = _row_maker(Population(3).templates(20_000))
    start = end.timestamp() - days * 86400
    step = days * 86400 / records
    t0 = time.perf_counter()
    chunk = 100_000
    for first in range(0, records, chunk):
        rows = [make(i, start + i * step) for i in range(first, min(first + chunk, records))]
        conn.execute("BEGIN")
        conn.executemany(_USAGE_SQL, rows)
        apply_rows(conn, rows, COLUMNS)
        conn.execute("COMMIT")
        if (first // chunk) % 10 == 9:
            log(f"  {first + len(rows):,} records, {time.perf_counter() - t0:.0f} s")
    conn.close()
    return time.perf_counter() - t0


def _timed(path: Path, fn: Callable[[sqlite3.Connection], Any]) -> tuple[float, float, Any]:
    """First and best-of-3 seconds of fn on a fresh connection each time, and its result."""
    times, result = [], None
    for _ in range(3):
        conn = connect(path)
        t0 = time.perf_counter()
        result = fn(conn)
        times.append(time.perf_counter() - t0)
        conn.close()
    return times[0], min(times), result


def report_bench(path: Path, end: dt.datetime) -> list[dict[str, Any]]:
    since30, since90 = end - dt.timedelta(days=30), end - dt.timedelta(days=90)
    month = end.replace(day=1, hour=0, minute=0, second=0, microsecond=0)
    # (name, held to the 1 s target, report): the two reports, then two for scale.
    cases: list[tuple[str, bool, Callable[[sqlite3.Connection], Any]]] = [
        (
            f"spend by department x model, 30 days, daily ({TZ})",
            True,
            lambda c: reports.spend_report(
                c, group_by=["department", "model"], since=since30, until=end, bucket="day", tz=TZ
            ),
        ),
        (
            f"spend by tag x department, 30 days, daily ({TZ})",
            True,
            lambda c: reports.spend_report(
                c, group_by=["tag", "department"], since=since30, until=end, bucket="day", tz=TZ
            ),
        ),
        (
            "spend by key x model, 90 days, monthly, top 20",
            False,
            lambda c: reports.spend_report(
                c, group_by=["key", "model"], since=since90, until=end, bucket="month", top=20
            ),
        ),
        (
            "budget rebuild: spent_by project, this month",
            False,
            lambda c: spent_by(c, "project", since_utc=month, until_utc=None),
        ),
    ]
    out = []
    for name, target, fn in cases:
        first, best, result = _timed(path, fn)
        log(f"  {name}: first {first:.3f} s, best {best:.3f} s, {len(result)} rows")
        out.append({"report": name, "target": target, "first_s": round(first, 3),
                    "best_s": round(best, 3), "rows": len(result)})  # fmt: skip
    return out


# --- output ---------------------------------------------------------------------------------


def markdown(meta: dict[str, Any], writes: list[dict[str, Any]], reps: list[dict[str, Any]]) -> str:
    def met(ok: bool) -> str:
        return "met" if ok else "NOT met"

    lines = [
        f"# ledger bench ({meta['time']}, {meta['host']}, {meta['cpus']} CPUs, "
        f"Python {meta['python']}, SQLite {meta['sqlite']})",
        "",
        "| ledger writes | records/s | CPU µs/record | hook µs/record | records/commit | target |",
        "|---|---:|---:|---:|---:|---|",
    ]
    for w in writes:
        target = f">= {WRITE_TARGET:,}/s: {met(w['records_per_s'] >= WRITE_TARGET)}"
        lines.append(
            f"| rollup hook {'on' if w['hook'] else 'off (baseline)'} | {w['records_per_s']:,} | "
            f"{w['cpu_us_per_record']} | {w['hook_us_per_record'] or '-'} | "
            f"{w['records_per_batch']} | {target if w['hook'] else '-'} |"
        )
    if reps:
        lines += [
            "",
            f"{meta['records']:,} records over {meta['days']} days ({meta['rollups']:,} rollup "
            f"rows, {meta['tag_rollups']:,} tag rollup rows, database {meta['db_mib']:,} MiB; "
            + (
                f"generated with their rollups in {meta['generate_s']:.0f} s)"
                if meta["generate_s"]
                else "reused from --db)"
            ),
            "",
            "| report | first (cold) s | best of 3 s | rows | target < 1 s |",
            "|---|---:|---:|---:|---|",
        ]
        for r in reps:
            lines.append(
                f"| {r['report']} | {r['first_s']:.3f} | {r['best_s']:.3f} | {r['rows']} | "
                f"{met(r['best_s'] < REPORT_TARGET) if r['target'] else '-'} |"
            )
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.ledger", description=__doc__.split("\n")[0])
    p.add_argument("--records", type=int, default=10_000_000, help="synthetic records (0: skip)")
    p.add_argument("--days", type=int, default=90, help="spread the records over this many days")
    p.add_argument("--write-seconds", type=float, default=10.0, help="write phase length")
    p.add_argument("--concurrency", type=int, default=256, help="requests in flight (writes)")
    p.add_argument("--db", type=Path, help="keep the generated database here and reuse it")
    a = p.parse_args(argv)
    tmp = Path(tempfile.mkdtemp(prefix="aigw-bench-ledger-"))
    try:
        writes = write_bench(tmp, a.write_seconds, a.concurrency)
        meta: dict[str, Any] = {
            "time": dt.datetime.now().isoformat(timespec="seconds"),
            "host": platform.node(),
            "cpus": os.cpu_count(),
            "python": platform.python_version(),
            "sqlite": sqlite3.sqlite_version,
            "records": a.records,
            "days": a.days,
        }
        reps: list[dict[str, Any]] = []
        if a.records > 0:
            end = dt.datetime.now(dt.UTC).replace(minute=0, second=0, microsecond=0)
            path = a.db or tmp / "report.db"
            meta["generate_s"] = 0.0
            if not path.exists():
                log(f"generating {a.records:,} records over {a.days} days into {path}")
                meta["generate_s"] = generate(path, a.records, a.days, end)
            else:
                log(f"reusing {path}")
                conn = connect(path)
                last = conn.execute("SELECT max(ts) FROM usage").fetchone()[0]
                end = dt.datetime.fromisoformat(last[:13] + ":00:00+00:00") + dt.timedelta(hours=1)
                conn.close()
            conn = connect(path)
            meta["records"] = conn.execute("SELECT max(id) FROM usage").fetchone()[0] or 0
            meta["rollups"] = conn.execute("SELECT count(*) FROM rollups").fetchone()[0]
            meta["tag_rollups"] = conn.execute("SELECT count(*) FROM rollup_tags").fetchone()[0]
            conn.close()
            meta["db_mib"] = round(path.stat().st_size / 2**20)
            reps = report_bench(path, end)
        md = markdown(meta, writes, reps)
        print(md, end="")
        RESULTS.mkdir(parents=True, exist_ok=True)
        (RESULTS / "ledger.md").write_text(md)
        doc = {"meta": meta, "writes": writes, "reports": reps}
        (RESULTS / "ledger.json").write_bytes(orjson.dumps(doc, option=orjson.OPT_INDENT_2))
        ok = writes[0]["records_per_s"] >= WRITE_TARGET and all(
            r["best_s"] < REPORT_TARGET for r in reps if r["target"]
        )
        return 0 if ok else 1
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
