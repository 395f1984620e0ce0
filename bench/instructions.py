"""``python -m bench.instructions``: instructions per request, counted by valgrind's callgrind.

The same load as ``python -m bench`` against the minimal proxy and aigw (fake OpenAI upstream),
but each target runs under ``valgrind --tool=callgrind``. After the warm-up the counters are
zeroed; after the measured requests they are dumped, and the user-space instructions the target
executed in between (all threads) are divided by the completed requests. Unlike CPU ms this does
not depend on how busy the machine is. Prints a Markdown table and writes
``bench/results/instructions.{md,json}``. See bench/README.md.
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import platform
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import orjson

from bench.__main__ import (
    MODES,
    PROCS,
    RESULTS,
    Proc,
    Target,
    check_stop,
    fmt,
    load,
    load_arguments,
    log,
    on_sigterm,
    start_aigw,
    start_proxy,
    start_upstream,
    target_ratios,
)

TARGETS = ("proxy", "aigw", "aigw-gov", "aigw-route")
TOOLS = ("valgrind", "callgrind_control")
READY_S = 240.0  # startup under callgrind takes 10-20 s on an idle box; be generous
SETTLE_S = 1.0  # let work queued by the last responses (e.g. the commit of usage rows) run
CONTROL_S = 120.0  # callgrind_control talks to the target via vgdb; slow under load


def callgrind(tmp: Path, name: str) -> list[str]:
    """The valgrind prefix for target ``name``; dumps go to ``tmp/callgrind.NAME.out.N``."""
    return [
        "valgrind", "--tool=callgrind", f"--callgrind-out-file={tmp}/callgrind.{name}.out",
        f"--vgdb-prefix={tmp}/vgdb", "--instr-atstart=no", "--dump-line=no", "--dump-instr=no",
    ]  # fmt: skip


def control(tmp: Path, target: Proc, *args: str) -> None:
    """Run ``callgrind_control ARGS PID``; give up when the target dies (vgdb would wait)."""
    argv = ["callgrind_control", f"--vgdb-prefix={tmp}/vgdb", *args, str(target.popen.pid)]
    with subprocess.Popen(
        argv, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
    ) as cc:
        try:
            deadline = time.monotonic() + CONTROL_S
            while (rc := cc.poll()) is None:
                target.check_alive()
                if time.monotonic() > deadline:
                    raise RuntimeError(f"{' '.join(argv)}: no answer after {CONTROL_S:.0f} s")
                time.sleep(0.1)
        finally:
            if cc.poll() is None:
                cc.kill()
        err = cc.stderr.read().decode(errors="replace").strip() if cc.stderr else ""
    if rc != 0:
        raise RuntimeError(f"{' '.join(argv)} exited {rc}: {err}")


def dump(tmp: Path, name: str, target: Proc, label: str) -> int:
    """Ask for a dump and return its instruction count (the ``summary:`` of the new file)."""
    pattern = f"callgrind.{name}.out.*"
    before = set(tmp.glob(pattern))
    control(tmp, target, f"--dump={label}")
    deadline = time.monotonic() + CONTROL_S
    while time.monotonic() < deadline:
        target.check_alive()
        for f in sorted(set(tmp.glob(pattern)) - before):
            text = f.read_text(errors="replace")
            if total := re.search(r"^totals: (\d+)", text, re.M):  # the file's last line
                summary = re.search(r"^summary: (\d+)", text, re.M)
                return int((summary or total).group(1))
        time.sleep(0.2)
    raise RuntimeError(f"no callgrind dump from {name} after {CONTROL_S:.0f} s")


def measure(t: Target, mode: str, a: argparse.Namespace, tmp: Path) -> dict[str, Any]:
    assert t.proc is not None
    proc, stream = t.proc, mode == "stream"

    def zero() -> None:
        time.sleep(SETTLE_S)
        control(tmp, proc, "--zero")

    res = load(t, stream, a, zero)
    time.sleep(SETTLE_S)
    instructions = dump(tmp, t.name, proc, f"{t.name}-{mode}")
    per_req = instructions / res.completed if res.completed else None
    row: dict[str, Any] = {
        "target": t.name, "mode": mode, "ok": res.ok, "errors": res.errors,
        "elapsed_s": res.elapsed_s, "error_samples": res.error_samples,
        "instructions": instructions, "instr_per_req": per_req,
    }  # fmt: skip
    log(
        f"{t.name}/{mode}: {res.ok} ok, {res.errors} errors in {res.elapsed_s:.1f} s, "
        f"{fmt(per_req and per_req / 1000, 0)} k instructions/request"
        + (f"; first error: {res.error_samples[0]}" if res.error_samples else "")
    )
    return row


def report(
    rows: list[dict[str, Any]], meta: dict[str, Any], failures: dict[str, str]
) -> tuple[str, dict[str, Any]]:
    lines = [
        "# aigw benchmark: instructions per request (callgrind)",
        "",
        f"{meta['time']} · {meta['host']} · {meta['valgrind']} · Python {meta['python']} · "
        f"concurrency {meta['concurrency']} · {meta['requests']} requests/phase "
        f"(+{meta['warmup']} warm-up)",
        "",
        "| target | mode | requests | errors | k instructions/req |",
        "|---|---|---:|---:|---:|",
    ]
    for r in rows:
        per_k = None if r["instr_per_req"] is None else r["instr_per_req"] / 1000
        lines.append(
            f"| {r['target']} | {r['mode']} | {r['ok'] + r['errors']} | {r['errors']} "
            f"| {fmt(per_k, 0)} |"
        )
    ratios, ratio_lines = target_ratios(rows, "instr_per_req", "Instructions/request", "instr")
    lines += ["", "## Ratios", "", *ratio_lines]
    if failures:
        lines += ["", "## Failures", ""]
        lines += [f"- {k}: {v.splitlines()[0]}" for k, v in failures.items()]
    lines += [
        "",
        "User-space instructions executed by the target process (all threads) between zeroing "
        "the counters after the warm-up and dumping them after the measured requests, / "
        "completed requests. Kernel work, cache misses and stalls are not counted; the number "
        "is repeatable where CPU ms is not, so compare it between versions.",
    ]
    return "\n".join(lines).rstrip() + "\n", ratios


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.instructions", description=__doc__)
    load_arguments(p, TARGETS, requests=400, max_seconds=300.0)
    p.add_argument(
        "--keep",
        action="store_true",
        help="keep the callgrind files (callgrind_annotate them) and print where they are",
    )
    a = p.parse_args(argv)
    targets = [x for x in a.only.split(",") if x]
    modes = [x for x in a.modes.split(",") if x]
    if bad := (set(targets) - set(TARGETS)) | (set(modes) - set(MODES)):
        p.error(f"unknown target/mode: {', '.join(sorted(bad))}")
    targets = [x for x in TARGETS if x in targets]
    modes = [x for x in MODES if x in modes]
    if missing := [tool for tool in TOOLS if shutil.which(tool) is None]:
        print(
            f"instruction counts skipped: {' and '.join(missing)} not found on PATH "
            "(install valgrind, e.g. `apt-get install valgrind`)"
        )
        return 0
    version = subprocess.run(
        ["valgrind", "--version"], capture_output=True, text=True, check=False
    ).stdout.strip()

    signal.signal(signal.SIGTERM, on_sigterm)  # run the finally on SIGTERM too
    tmp = Path(tempfile.mkdtemp(prefix="aigw-bench-instr-"))
    rows: list[dict[str, Any]] = []
    failures: dict[str, str] = {}
    started = len(PROCS)
    try:
        up, upstream = start_upstream(tmp, a.fake_module)
        for name in targets:
            try:
                if name == "proxy":
                    t = start_proxy(tmp, upstream, callgrind(tmp, name), READY_S)
                else:
                    t = start_aigw(tmp, upstream, callgrind(tmp, name), READY_S, name=name)
                assert t.proc is not None
                control(tmp, t.proc, "--instr=on")  # imports ran uninstrumented: faster
                for mode in modes:
                    rows.append(measure(t, mode, a, tmp))
                    check_stop()
            except (RuntimeError, OSError, subprocess.SubprocessError) as e:
                failures[name] = str(e)
                log(f"{name} failed: {e}")
                for pr in PROCS[started:]:
                    if pr.name == name:
                        log(pr.tails())
            finally:
                for pr in PROCS[started:]:
                    if pr.name == name:
                        pr.stop()
            if up.popen.poll() is not None:
                failures["upstream"] = f"fake upstream exited with code {up.popen.returncode}"
                log(f"{failures['upstream']}\n{up.tails()}")
                break
        check_stop()  # a swallowed SIGTERM ends the loop through failures
    except (RuntimeError, OSError, subprocess.SubprocessError) as e:
        log(f"FAILED: {e}; logs kept in {tmp}")
        return 1
    except KeyboardInterrupt:
        log("interrupted")
        return 130
    finally:
        for pr in PROCS[started:]:
            pr.stop()

    meta = {
        "time": dt.datetime.now().isoformat(timespec="seconds"),
        "host": platform.node(),
        "cpus": os.cpu_count(),
        "python": platform.python_version(),
        "valgrind": version,
        "concurrency": a.concurrency,
        "requests": a.requests,
        "warmup": a.warmup,
        "max_seconds": a.max_seconds,
    }
    md, ratios = report(rows, meta, failures)
    print(md, end="")
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "instructions.md").write_text(md)
    doc = {"meta": meta, "results": rows, "ratios": ratios, "failures": failures}
    (RESULTS / "instructions.json").write_bytes(orjson.dumps(doc, option=orjson.OPT_INDENT_2))
    if failures or any(r["errors"] for r in rows):
        log(f"failures or request errors; logs kept in {tmp}")
        return 1
    if a.keep:
        log(f"callgrind files kept in {tmp}")
    else:
        shutil.rmtree(tmp, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
