"""``python -m bench``: the same closed-loop load against direct / minimal proxy / aigw.

All three targets end at the same fake OpenAI upstream (``python -m tests.fakes openai``).
Prints a Markdown table and writes ``bench/results/latest.{md,json}``. See bench/README.md.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import http.client
import os
import platform
import random
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson
import uvloop

from appliance.store import open_store
from bench.loadgen import PhaseResult, make_body, run_phase
from gateway.governance import store as budgets
from gateway.pricing import store as pricing
from gateway.routing import store as routes
from gateway.tenancy import keys
from gateway.tenancy import store as tenancy

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "results"
PY = sys.executable
AIGW = str(Path(PY).parent / "aigw")
FAKE_KEY = "sk-fake-openai"
UPSTREAM_MODEL = "gpt-4o-mini"
TARGETS = ("direct", "proxy", "aigw", "aigw-gov", "aigw-route")
MODES = ("nonstream", "stream")
CPU_TARGET = 1.3
GOV_TARGET = 1.1  # budgets and rate limits on cost at most 10% more CPU than off
ROUTE_TARGET = 1.05  # a three-deployment route within 5% of a single-deployment alias
TICK = os.sysconf("SC_CLK_TCK")


def log(msg: str) -> None:
    print(f"[bench] {msg}", file=sys.stderr, flush=True)


def free_port() -> int:
    """A free port below the ephemeral range, so client sockets and port-0 servers can't take it."""
    for _ in range(200):
        port = random.randrange(20000, 32000)
        with socket.socket() as s, contextlib.suppress(OSError):
            s.bind(("127.0.0.1", port))
            return port
    raise RuntimeError("no free port")


@dataclass
class Proc:
    name: str
    popen: subprocess.Popen[bytes]
    out: Path
    err: Path
    stopped: bool = False

    def tails(self, n: int = 25) -> str:
        parts = []
        for p in (self.out, self.err):
            lines = p.read_text(errors="replace").splitlines()[-n:] if p.exists() else []
            parts.append(f"--- {self.name} {p.name} (last {n} lines) ---\n" + "\n".join(lines))
        return "\n".join(parts)

    def check_alive(self) -> None:
        if (rc := self.popen.poll()) is not None:
            raise RuntimeError(f"{self.name} exited with code {rc}")

    def stop(self) -> None:
        """SIGTERM the whole process group, SIGKILL after 5 s (once; pgids get reused)."""
        if self.stopped:
            return
        self.stopped = True
        for sig, wait in ((signal.SIGTERM, 5.0), (signal.SIGKILL, 5.0)):
            if self.popen.poll() is not None:
                break
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.popen.pid, sig)
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.popen.wait(wait)
        with contextlib.suppress(ProcessLookupError):  # stragglers left in the group
            os.killpg(self.popen.pid, signal.SIGKILL)


PROCS: list[Proc] = []  # every process we started; all stopped in main()'s finally
STOPPING = False  # set by SIGTERM


def on_sigterm(*_: object) -> None:
    """SIGTERM: kill the children now, then unwind through main()'s finally.

    The SystemExit can be swallowed: aiohttp turns any exception raised while it parses a
    response into a failed request. So the children are killed here (a running phase then fails
    fast instead of waiting for graceful shutdowns), and check_stop() raises again after the
    phase and before anything new is started.
    """
    global STOPPING
    STOPPING = True
    for pr in PROCS:
        if not pr.stopped and pr.popen.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(pr.popen.pid, signal.SIGKILL)
    raise SystemExit(143)


def check_stop() -> None:
    if STOPPING:
        raise SystemExit(143)


def spawn(name: str, argv: list[str], tmp: Path, env: dict[str, str] | None = None) -> Proc:
    check_stop()
    out, err = tmp / f"{name}.out", tmp / f"{name}.err"
    with out.open("wb") as fo, err.open("wb") as fe:
        popen = subprocess.Popen(
            argv, stdin=subprocess.DEVNULL, stdout=fo, stderr=fe, cwd=ROOT, env=env,
            start_new_session=True,
        )  # fmt: skip
    log(f"started {name} pid {popen.pid}: {' '.join(argv)}")
    PROCS.append(proc := Proc(name, popen, out, err))
    return proc


def wait_until(proc: Proc, ready: Callable[[], bool], timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        proc.check_alive()
        with contextlib.suppress(OSError, http.client.HTTPException):
            if ready():
                return
        time.sleep(0.1)
    raise RuntimeError(f"{proc.name} not ready after {timeout:.0f} s")


def http_ok(url: str) -> bool:
    with urllib.request.urlopen(url, timeout=2) as r:
        return bool(r.status == 200)


# --- /proc accounting over the target's process group (normally just the PID we started) ---


def group_pids(pgid: int) -> list[int]:
    pids = []
    for d in os.listdir("/proc"):
        if d.isdigit():
            with contextlib.suppress(OSError, IndexError, ValueError):
                stat = Path(f"/proc/{d}/stat").read_text()
                if int(stat[stat.rfind(")") + 2 :].split()[2]) == pgid:
                    pids.append(int(d))
    return pids


def cpu_ticks(pgid: int) -> int:
    total = 0
    for pid in group_pids(pgid):
        with contextlib.suppress(OSError):
            f = Path(f"/proc/{pid}/stat").read_text()
            f2 = f[f.rfind(")") + 2 :].split()
            total += int(f2[11]) + int(f2[12])  # utime + stime (fields 14, 15)
    return total


def rss_mib(pgid: int) -> float:
    kib = 0
    for pid in group_pids(pgid):
        with contextlib.suppress(OSError):
            for line in Path(f"/proc/{pid}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    kib += int(line.split()[1])
    return kib / 1024


def listens(proc: Proc, port: int) -> bool:
    """True when a process of ``proc``'s group owns the listening socket on ``port``."""
    inodes = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        with contextlib.suppress(OSError):
            for line in Path(table).read_text().splitlines()[1:]:
                f = line.split()
                if f[3] == "0A" and int(f[1].rsplit(":", 1)[1], 16) == port:
                    inodes.add(f"socket:[{f[9]}]")
    for pid in group_pids(proc.popen.pid):
        with contextlib.suppress(OSError):
            for fd in os.listdir(f"/proc/{pid}/fd"):
                with contextlib.suppress(OSError):
                    if os.readlink(f"/proc/{pid}/fd/{fd}") in inodes:
                        return True
    return False


# --- targets ---


@dataclass
class Target:
    name: str
    url: str
    model: str
    key: str
    proc: Proc | None = None


def start_upstream(tmp: Path, module: str) -> tuple[Proc, str]:
    port = free_port()
    proc = spawn(
        "upstream", [PY, "-m", module, "openai", "--port", str(port), "--key", FAKE_KEY], tmp
    )
    url = ""

    def ready() -> bool:
        nonlocal url
        for line in proc.out.read_text(errors="replace").splitlines():
            if line.startswith("READY "):
                url = line.split()[1].rstrip("/")
                return True
        return False

    wait_until(proc, ready, 30)
    return proc, url


def start_proxy(
    tmp: Path, upstream: str, wrap: Sequence[str] = (), ready_s: float = 30.0
) -> Target:
    """Start the minimal proxy; ``wrap`` prefixes its command line (e.g. valgrind)."""
    port = free_port()
    argv = [PY, "-m", "bench.minimal_proxy", "--port", str(port), "--upstream", upstream]
    proc = spawn("proxy", [*wrap, *argv], tmp)
    t = Target("proxy", f"http://127.0.0.1:{port}/v1/chat/completions", UPSTREAM_MODEL, FAKE_KEY)
    t.proc = proc
    wait_until(proc, lambda: listens(proc, port), ready_s)
    return t


def issue_key(database: Path, governed: bool = False) -> str:
    """A gateway key for the load (department, project and key made in the store directly),
    with the model priced as a box prices what it serves (every target pays for the cost
    accounting). `governed`: budgets at every level and rate limits on the key and project,
    all far above what the load spends, so every request goes through the whole admission."""
    db = open_store(database)
    try:
        tenancy.create_department(db, "bench", name="bench")
        tenancy.create_project(db, "bench", name="bench", department="bench")
        pricing.set_price(
            db, "bench", provider="fake", model=UPSTREAM_MODEL, input_micros=150_000,
            output_micros=600_000, currency="USD", box_currency="USD",
        )  # fmt: skip
        if not governed:
            return keys.create_key(db, "bench", name="bench", project="bench")[1]
        tenancy.update_project(db, "bench", "bench", {"rpm": 10**9, "tpm": 10**12})
        row, secret = keys.create_key(
            db, "bench", name="bench", project="bench", rpm=10**9, tpm=10**12,
            budget_micros=10**15,
        )  # fmt: skip
        for level, target, period in (
            ("department", "bench", "monthly"), ("project", "bench", "daily"),
            ("key", row["id"], "weekly"),
        ):  # fmt: skip
            budgets.create_budget(
                db, "bench", level=level, target=target, period=period, limit_micros=10**15
            )
        return secret
    finally:
        db.conn.close()


def add_route(database: Path, alias: str) -> None:
    """A priority route of three deployments (all on the fake upstream; the first answers)."""
    db = open_store(database)
    try:
        deployment = {"provider": "fake", "upstream_model": UPSTREAM_MODEL}
        routes.put_route(
            db, "bench", alias=alias, strategy="priority", deployments=[deployment] * 3
        )
    finally:
        db.conn.close()


def start_aigw(
    tmp: Path,
    upstream: str,
    wrap: Sequence[str] = (),
    ready_s: float = 60.0,
    name: str = "aigw",
) -> Target:
    """Configure aigw in ``tmp/name`` and start ``aigw up``; ``wrap`` prefixes only that
    command; target ``aigw-gov`` adds budgets and rate limits (every target prices the model)."""
    port = free_port()
    tmp = tmp / name
    tmp.mkdir(exist_ok=True)
    cfg = tmp / "aigw.toml"
    (tmp / "state").mkdir(exist_ok=True)
    cfg.write_text(
        f'[server]\nhost = "127.0.0.1"\nport = {port}\n\n[state]\ndir = "{tmp / "state"}"\n'
    )
    env = {**os.environ, "AIGW_CONFIG": str(cfg), "FAKE_OPENAI_KEY": FAKE_KEY}
    setup = [
        ["providers", "add", "fake", "--kind", "openai", "--base-url", f"{upstream}/v1",
         "--api-key-env", "FAKE_OPENAI_KEY"],
        ["models", "add", "bench-model", "--provider", "fake", "--upstream-model", UPSTREAM_MODEL],
    ]  # fmt: skip
    for i, args in enumerate(setup):
        step = f"aigw-setup{i}"
        with (tmp / f"{step}.out").open("wb") as fo, (tmp / f"{step}.err").open("wb") as fe:
            rc = subprocess.run(
                [AIGW, *args], stdin=subprocess.DEVNULL, stdout=fo, stderr=fe, cwd=ROOT,
                env=env, timeout=60, check=False,
            ).returncode  # fmt: skip
        if rc != 0:
            out, err = (tmp / f"{step}.{s}" for s in ("out", "err"))
            tails = "\n".join(p.read_text(errors="replace")[-3000:] for p in (out, err))
            raise RuntimeError(f"`aigw {' '.join(args)}` exited {rc}\n{tails}")
    key = issue_key(tmp / "state" / "aigw.db", governed=name == "aigw-gov")
    model = "bench-model"
    if name == "aigw-route":
        model = "bench-route"
        add_route(tmp / "state" / "aigw.db", model)
    proc = spawn(name, [*wrap, AIGW, "up"], tmp, env)
    t = Target(name, f"http://127.0.0.1:{port}/v1/chat/completions", model, key)
    t.proc = proc
    healthz = f"http://127.0.0.1:{port}/healthz"
    wait_until(proc, lambda: listens(proc, port) and http_ok(healthz), ready_s)
    return t


# --- measurement ---


def load(
    t: Target, stream: bool, a: argparse.Namespace, on_measure_start: Callable[[], None]
) -> PhaseResult:
    """One closed-loop phase against `t` with the load options of `a`."""
    return uvloop.run(
        run_phase(
            t.url, {"Authorization": f"Bearer {t.key}"}, make_body(t.model, stream), stream,
            concurrency=a.concurrency, requests=a.requests, max_seconds=a.max_seconds,
            warmup=a.warmup, on_measure_start=on_measure_start,
        )
    )  # fmt: skip


def measure(t: Target, mode: str, a: argparse.Namespace, up: Proc) -> dict[str, Any]:
    stream = mode == "stream"
    pgid = t.proc.popen.pid if t.proc else None
    before: list[int] = []

    def mark() -> None:
        before.extend((cpu_ticks(up.popen.pid), cpu_ticks(pgid) if pgid is not None else 0))

    res = load(t, stream, a, mark)
    row: dict[str, Any] = {"target": t.name, "mode": mode, **res.summary()}
    row["cpu_ms_per_req"] = row["rss_mib"] = row["procs"] = row["upstream_cpu_ms_per_req"] = None
    if before and res.completed:
        per_req = 1000 / TICK / res.completed
        row["upstream_cpu_ms_per_req"] = (cpu_ticks(up.popen.pid) - before[0]) * per_req
    if pgid is not None and before and res.completed:
        row["cpu_ms_per_req"] = (cpu_ticks(pgid) - before[1]) * per_req
        row["rss_mib"] = rss_mib(pgid)
        row["procs"] = len(group_pids(pgid))
    log(
        f"{t.name}/{mode}: {res.ok} ok, {res.errors} errors in {res.elapsed_s:.1f} s"
        + (f"; first error: {res.error_samples[0]}" if res.error_samples else "")
    )
    return row


def median_row(phase: list[dict[str, Any]]) -> dict[str, Any]:
    """The round with the median CPU ms/request (latencies come from the same round), with
    every round's CPU figure and the errors of all rounds."""
    timed = [r for r in phase if r["cpu_ms_per_req"] is not None]
    pick = (
        sorted(timed, key=lambda r: r["cpu_ms_per_req"])[(len(timed) - 1) // 2]
        if timed
        else (phase[len(phase) // 2])
    )
    row = dict(pick)
    row["errors"] = sum(r["errors"] for r in phase)
    row["cpu_ms_per_req_rounds"] = [r["cpu_ms_per_req"] for r in phase]
    return row


def fmt(v: Any, nd: int = 1) -> str:
    return "-" if v is None else f"{v:.{nd}f}" if isinstance(v, float) else str(v)


def xfmt(r: dict[str, Any]) -> str:
    return f"n/a ({r['note']})" if r["value"] is None else f"{r['value']:.2f}x"


def ratio(rows: list[dict[str, Any]], num: str, den: str, mode: str, key: str) -> dict[str, Any]:
    r = {x["target"]: x for x in rows if x["mode"] == mode and x["target"] in (num, den)}
    if num not in r or den not in r:
        return {"value": None, "note": "not measured"}
    if r[num]["errors"] or r[den]["errors"]:
        return {"value": None, "note": "errors during run"}
    n, d = r[num][key], r[den][key]
    return {"value": n / d, "note": ""} if n is not None and d else {"value": None, "note": "n/a"}


def paired_ratio(rows: list[dict[str, Any]], num: str, den: str, mode: str) -> dict[str, Any]:
    """CPU/request of `num` over `den`: the median of the rounds' own ratios.

    Within a round the two targets are measured one after the other, so a slow spell of the
    machine (this VM's CPU time per request drifts by 20% over minutes) weighs on both sides
    of a round's ratio instead of on one target's median."""
    c = ratio(rows, num, den, mode, "cpu_ms_per_req")
    if c["value"] is None:
        return c
    r = {x["target"]: x for x in rows if x["mode"] == mode and x["target"] in (num, den)}
    per_round = [
        n / d
        for n, d in zip(
            r[num]["cpu_ms_per_req_rounds"], r[den]["cpu_ms_per_req_rounds"], strict=False
        )
        if n is not None and d
    ]
    if not per_round:
        return c
    per_round.sort()
    median = statistics.median(per_round)
    return {"value": median, "note": "", "rounds": per_round, "of_medians": c["value"]}


def target_ratios(
    rows: list[dict[str, Any]], key: str, label: str, prefix: str
) -> tuple[dict[str, Any], list[str]]:
    """aigw / proxy of `key` per mode against the 1.3x target, aigw with governance on / off
    against the 1.1x one and a route against a plain alias against 1.05x: (ratios, report
    lines). CPU ratios are paired by round (paired_ratio)."""
    ratios: dict[str, Any] = {}
    lines = []
    for num, den, target, what in (
        ("aigw", "proxy", CPU_TARGET, "aigw / proxy"),
        ("aigw-gov", "aigw", GOV_TARGET, "with budgets and rate limits on / off"),
        ("aigw-route", "aigw", ROUTE_TARGET, "three-deployment route / single alias"),
    ):
        for mode in MODES:
            c = (
                paired_ratio(rows, num, den, mode)
                if key == "cpu_ms_per_req"
                else ratio(rows, num, den, mode, key)
            )
            c["target"] = target
            c["met"] = None if c["value"] is None else c["value"] <= target
            ratios[f"{prefix}_{num}_over_{den}_{mode}".replace("-", "_")] = c
            verdict = "n/a" if c["met"] is None else "met" if c["met"] else "NOT met"
            spread = ""
            if len(c.get("rounds", ())) > 1:
                lo, hi = c["rounds"][0], c["rounds"][-1]
                spread = f", median of {len(c['rounds'])} rounds' ratios ({lo:.2f}-{hi:.2f})"
            lines.append(
                f"- {label} {what}, {mode}: **{xfmt(c)}**{spread} (target <= {target}x: {verdict})"
            )
    return ratios, lines


def report(
    rows: list[dict[str, Any]], meta: dict[str, Any], failures: dict[str, str]
) -> tuple[str, dict[str, Any]]:
    cols = ["target", "mode", "req/s", "p50 ms", "p99 ms", "TTFB p50 ms", "TTFB p99 ms",
            "errors", "CPU ms/req", "RSS MiB", "fake CPU ms/req"]  # fmt: skip
    lines = [
        "# aigw benchmark",
        "",
        f"{meta['time']} · {meta['host']} · {meta['cpus']} CPUs · Python {meta['python']} · "
        f"concurrency {meta['concurrency']} · {meta['requests']} requests/phase "
        f"(+{meta['warmup']} warm-up, max {meta['max_seconds']:.0f} s) · median of "
        f"{meta['rounds']} round(s)",
        "",
        "| " + " | ".join(cols) + " |",
        "|" + "|".join("---" if i < 2 else "---:" for i in range(len(cols))) + "|",
    ]
    for r in rows:
        vals = [r["target"], r["mode"], fmt(r["rps"], 0), fmt(r["p50_ms"], 2), fmt(r["p99_ms"], 2),
                fmt(r["ttfb_p50_ms"], 2), fmt(r["ttfb_p99_ms"], 2), str(r["errors"]),
                fmt(r["cpu_ms_per_req"], 3), fmt(r["rss_mib"], 1),
                fmt(r["upstream_cpu_ms_per_req"], 3)]  # fmt: skip
        lines.append("| " + " | ".join(vals) + " |")
    ratios, ratio_lines = target_ratios(rows, "cpu_ms_per_req", "CPU/request", "cpu")
    lines += ["", "## Ratios", "", *ratio_lines]

    for mode in MODES:
        for num in ("proxy", "aigw"):
            p = ratio(rows, num, "direct", mode, "p50_ms")
            ratios[f"p50_{num}_over_direct_{mode}"] = p
            lines.append(f"- p50 latency {num} / direct, {mode}: {xfmt(p)}")
    if failures:
        lines += ["", "## Failures", ""] + [
            f"- {k}: {v.splitlines()[0]}" for k, v in failures.items()
        ]
    lines += [
        "",
        "CPU ms/req and RSS are for the target's proxy process (utime+stime over the measured "
        "phase / completed requests; VmRSS after the phase). Latencies are client-side; for "
        "stream rows TTFB is the first body chunk and p50/p99 the full stream. The fake "
        "upstream does the same work in every row: if its CPU ms/req drifts between rows, the "
        "machine was noisy.",
    ]
    return "\n".join(lines).rstrip() + "\n", ratios


def load_arguments(
    p: argparse.ArgumentParser, targets: tuple[str, ...], requests: int, max_seconds: float
) -> None:
    """The load options both bench commands take (they differ in defaults only)."""
    p.add_argument("--concurrency", type=int, default=16)
    p.add_argument("--requests", type=int, default=requests, help="measured requests per phase")
    p.add_argument("--max-seconds", type=float, default=max_seconds, help="time cap per phase")
    p.add_argument("--warmup", type=int, default=200, help="unmeasured requests per phase")
    p.add_argument("--only", default=",".join(targets), help=f"targets: {','.join(targets)}")
    p.add_argument("--modes", default=",".join(MODES), help="modes: nonstream,stream")
    p.add_argument("--fake-module", default="tests.fakes", help="module serving the fake upstream")


def main() -> int:
    p = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    load_arguments(p, TARGETS, requests=3000, max_seconds=60.0)
    p.add_argument(
        "--rounds",
        type=int,
        default=5,
        help="measure every target and mode this many times, in turn; report the median",
    )
    p.add_argument(
        "--instructions",
        action="store_true",
        help="then count instructions/request under callgrind (bench.instructions)",
    )
    p.add_argument(
        "--ledger",
        action="store_true",
        help="then the ledger bench: writes/s and reports over 10M records (bench.ledger, minutes)",
    )
    a = p.parse_args()
    targets = [x for x in a.only.split(",") if x]
    modes = [x for x in a.modes.split(",") if x]
    if bad := (set(targets) - set(TARGETS)) | (set(modes) - set(MODES)):
        p.error(f"unknown target/mode: {', '.join(sorted(bad))}")
    if a.rounds < 1:
        p.error("--rounds must be at least 1")
    targets = [x for x in TARGETS if x in targets]
    modes = [x for x in MODES if x in modes]

    signal.signal(signal.SIGTERM, on_sigterm)  # run the finally on SIGTERM too
    tmp = Path(tempfile.mkdtemp(prefix="aigw-bench-"))
    rows: list[dict[str, Any]] = []
    failures: dict[str, str] = {}
    try:
        up, upstream = start_upstream(tmp, a.fake_module)
        started: list[Target] = []
        for name in targets:
            try:
                if name == "direct":
                    t = Target(name, f"{upstream}/v1/chat/completions", UPSTREAM_MODEL, FAKE_KEY)
                elif name == "proxy":
                    t = start_proxy(tmp, upstream)
                else:
                    t = start_aigw(tmp, upstream, name=name)
            except (RuntimeError, OSError, subprocess.SubprocessError) as e:
                failures[name] = str(e)
                log(f"{name} failed to start: {e}")
                for pr in PROCS:
                    if pr.name == name:
                        log(pr.tails())
                        pr.stop()
                continue
            started.append(t)
        # Rounds take the targets in turn, each mode's targets back to back, so a slow spell
        # of the machine hits one round of each rather than every phase of one target; each
        # row is then a target's median, and each CPU ratio the median of the rounds' ratios.
        by_phase: dict[tuple[str, str], list[dict[str, Any]]] = {
            (t.name, mode): [] for t in started for mode in modes
        }
        for rnd in range(a.rounds):
            if a.rounds > 1:
                log(f"round {rnd + 1}/{a.rounds}")
            for mode in modes:
                for t in started:
                    if t.name in failures:
                        continue
                    by_phase[(t.name, mode)].append(measure(t, mode, a, up))
                    check_stop()
                    if t.proc and t.proc.popen.poll() is not None:
                        failures[t.name] = (
                            f"{t.name} exited with code {t.proc.popen.returncode} during {mode}"
                        )
                        log(f"{failures[t.name]}\n{t.proc.tails()}")
                if up.popen.poll() is not None:
                    failures["upstream"] = f"fake upstream exited with code {up.popen.returncode}"
                    log(f"{failures['upstream']}\n{up.tails()}")
                    raise RuntimeError(failures["upstream"])
        rows = [median_row(phase) for phase in by_phase.values() if phase]
        for t in started:
            if t.proc:
                t.proc.stop()
        check_stop()  # a swallowed SIGTERM ends the loop through failures
    except (RuntimeError, OSError, subprocess.SubprocessError) as e:
        log(f"FAILED: {e}")
        for pr in PROCS:
            log(pr.tails())
        log(f"logs kept in {tmp}")
        return 1
    except KeyboardInterrupt:
        log("interrupted")
        return 130
    finally:
        for pr in PROCS:
            pr.stop()

    meta = {
        "time": dt.datetime.now().isoformat(timespec="seconds"),
        "host": platform.node(),
        "cpus": os.cpu_count(),
        "python": platform.python_version(),
        "concurrency": a.concurrency,
        "requests": a.requests,
        "warmup": a.warmup,
        "max_seconds": a.max_seconds,
        "rounds": a.rounds,
        "clk_tck": TICK,
    }
    md, ratios = report(rows, meta, failures)
    print(md, end="")
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "latest.md").write_text(md)
    doc = {"meta": meta, "results": rows, "ratios": ratios, "failures": failures}
    (RESULTS / "latest.json").write_bytes(orjson.dumps(doc, option=orjson.OPT_INDENT_2))
    rc = 0
    if failures or any(r["errors"] for r in rows):
        log(f"failures or request errors; logs kept in {tmp}")
        rc = 1
    else:
        shutil.rmtree(tmp, ignore_errors=True)
    if a.instructions and (only := [x for x in targets if x in ("proxy", "aigw")]):
        print()
        rc = max(rc, instructions_main(only, modes, a))
    if a.ledger:
        from bench import ledger

        print()
        rc = max(rc, ledger.main([]))
    return rc


def instructions_main(targets: list[str], modes: list[str], a: argparse.Namespace) -> int:
    # bench.instructions imports this module by name; under ``-m bench`` it is ``__main__``.
    sys.modules.setdefault("bench.__main__", sys.modules[__name__])
    from bench import instructions

    argv = ["--only", ",".join(targets), "--modes", ",".join(modes), "--fake-module",
            a.fake_module, "--concurrency", str(a.concurrency)]  # fmt: skip
    return instructions.main(argv)


if __name__ == "__main__":
    sys.exit(main())
