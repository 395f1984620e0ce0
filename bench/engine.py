"""``python -m bench.engine``: generated tokens per second through the gateway against calling
the vLLM engine directly, same load, one run.

`aigw up` serves the tiny test model with a real vLLM (the CPU build here; the GPU build on an
S-series box); the same closed-loop streaming load (``--concurrency`` clients, each chat asking
for ``--max-tokens`` tokens with ``ignore_eos``, so every answer is equally long) runs against
the engine's own URL and against the gateway, in alternating rounds so drift in the machine's
speed falls on both alike. Tokens are the ones each stream's usage reports. The target: the
gateway keeps at least 0.97 of direct. Writes ``bench/results/engine.{md,json}``.

On a machine without a GPU the engine and the gateway share the CPU cores, so the gateway's
own CPU use costs the engine throughput here that it would not cost on a GPU box.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import os
import platform
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import aiohttp
import orjson
import uvloop

from inference.engine_env import build, default_cache_path
from tests.inference.tiny import TINY_MODEL_NAME, write_tiny_model

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "results"
AIGW = str(Path(sys.executable).parent / "aigw")
TARGET = 0.97
TARGETS = ("direct", "proxy", "gateway")


def log(msg: str) -> None:
    print(f"[bench.engine] {msg}", file=sys.stderr, flush=True)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def aigw(env: dict[str, str], *argv: str) -> str:
    done = subprocess.run(
        [AIGW, *argv], env=env, capture_output=True, text=True, timeout=120, check=False
    )
    if done.returncode != 0:
        raise SystemExit(f"aigw {' '.join(argv)} failed: {done.stderr}")
    return done.stdout


async def _stream(
    session: aiohttp.ClientSession, url: str, headers: dict[str, str], body: bytes
) -> int:
    """One streamed chat; the completion tokens its usage chunk reports."""
    tokens = 0
    async with session.post(url, data=body, headers=headers) as resp:
        resp.raise_for_status()
        async for line in resp.content:
            if line.startswith(b"data: {") and b'"usage"' in line:
                usage = orjson.loads(line[6:]).get("usage")
                if usage:
                    tokens = int(usage["completion_tokens"])
    return tokens


async def round_(
    url: str, key: str, model: str, concurrency: int, seconds: float, max_tokens: int
) -> dict[str, float]:
    """Closed-loop load for `seconds`; tokens per second and requests done."""
    body = orjson.dumps(
        {
            "model": model,
            "messages": [{"role": "user", "content": "Write a story about a lighthouse."}],
            "max_tokens": max_tokens,
            "ignore_eos": True,
            "stream": True,
            "stream_options": {"include_usage": True},
        }
    )
    headers = {"Authorization": f"Bearer {key}", "Content-Type": "application/json"}
    total = {"tokens": 0, "requests": 0, "errors": 0}
    timeout = aiohttp.ClientTimeout(total=120)
    connector = aiohttp.TCPConnector(limit=concurrency)
    async with aiohttp.ClientSession(timeout=timeout, connector=connector) as session:
        deadline = time.monotonic() + seconds

        async def worker() -> None:
            while time.monotonic() < deadline:
                try:
                    # Not `total[...] += await ...`: that reads the total before the await and
                    # loses what other workers add meanwhile.
                    tokens = await _stream(session, url, headers, body)
                    total["tokens"] += tokens
                    total["requests"] += 1
                except aiohttp.ClientError:
                    total["errors"] += 1

        start = time.monotonic()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        elapsed = time.monotonic() - start
    return {
        "tokens_per_s": total["tokens"] / elapsed,
        "requests": total["requests"],
        "errors": total["errors"],
        "elapsed_s": elapsed,
    }


def start_proxy(direct: str) -> tuple[subprocess.Popen[bytes], str]:
    """bench/minimal_proxy.py in front of the engine: what any Python relay costs."""
    port = free_port()
    root = direct.removesuffix("/v1/chat/completions")
    proc = subprocess.Popen(
        [sys.executable, "-m", "bench.minimal_proxy", "--port", str(port), "--upstream", root],
        cwd=ROOT,
    )
    url = f"http://127.0.0.1:{port}/v1/chat/completions"
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1):
                return proc, url
        except OSError:
            time.sleep(0.2)
    proc.kill()
    raise SystemExit("the minimal proxy did not start")


def cpu_seconds(pid: int) -> float:
    """User and system CPU time of a process (the gateway), in seconds."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def start_box(tmp: Path, python: Path, model: Path) -> tuple[subprocess.Popen[str], dict[str, Any]]:
    state, port, engine_port = tmp / "state", free_port(), free_port()
    config = tmp / "aigw.toml"
    config.write_text(
        f'[server]\nport = {port}\n[state]\ndir = "{state}"\n[log]\nlevel = "warning"\n'
        f'[inference]\nengine_python = "{python}"\ndevice = "cpu"\n'
        f"cpu_kv_cache_bytes = {256 * 1024 * 1024}\nport_base = {engine_port}\nport_count = 1\n"
        "start_timeout_s = 300.0\n"
    )
    env = {**os.environ, "AIGW_CONFIG": str(config)}
    aigw(env, "models", "import", str(model), "--license", "apache-2.0")
    aigw(env, "models", "enable", TINY_MODEL_NAME)
    aigw(env, "departments", "add", "bench")
    aigw(env, "projects", "add", "bench", "--department", "bench")
    key = orjson.loads(aigw(env, "keys", "create", "--project", "bench", "--name", "b", "--json"))
    proc = subprocess.Popen(
        [AIGW, "up"],
        env=env,
        stdout=subprocess.PIPE,
        stderr=(tmp / "up.log").open("a"),
        text=True,
        start_new_session=True,
    )
    try:
        return proc, _wait_ready(proc, env, tmp, port, key["secret"])
    except BaseException:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(90)
        raise


def _wait_ready(
    proc: subprocess.Popen[str], env: dict[str, str], tmp: Path, port: int, key: str
) -> dict[str, Any]:
    """The gateway's and the engine's URLs, once the engine is ready."""
    assert proc.stdout is not None
    for line in proc.stdout:  # the banner ends once the gateway listens
        if "Press Ctrl-C" in line:
            break
    deadline = time.monotonic() + 360
    engine: dict[str, Any] = {}
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit("aigw up stopped: " + (tmp / "up.log").read_text()[-2000:])
        rows = orjson.loads(aigw(env, "engines", "list", "--json"))
        engine = next((r for r in rows if r["state"] == "ready"), {})
        if engine:
            break
        time.sleep(1)
    if not engine:
        raise SystemExit("the engine did not become ready in 360 s")
    return {
        "gateway": f"http://127.0.0.1:{port}/v1/chat/completions",
        "direct": engine["url"] + "/chat/completions",
        "key": key,
    }


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--concurrency", type=int, default=8)
    p.add_argument("--max-tokens", type=int, default=64)
    p.add_argument("--seconds", type=float, default=15.0, help="per round")
    p.add_argument("--rounds", type=int, default=3, help="rounds per target, alternating")
    p.add_argument("--hidden", type=int, default=512, help="the random model's hidden size")
    p.add_argument("--layers", type=int, default=8, help="the random model's layers")
    a = p.parse_args()
    python = Path(os.environ.get("AIGW_ENGINE_PYTHON") or build(default_cache_path()))
    with tempfile.TemporaryDirectory(prefix="aigw-bench-engine-") as raw:
        tmp = Path(raw)
        size = (a.hidden, a.layers)
        model = write_tiny_model(python, tmp / "models-src" / TINY_MODEL_NAME, size)
        log("starting aigw up with the tiny model's vLLM engine (25-70 s on CPU)")
        proc, urls = start_box(tmp, python, model)
        proxy: subprocess.Popen[bytes] | None = None
        try:  # start_box stops its own `aigw up` when it fails
            proxy, urls["proxy"] = start_proxy(urls["direct"])
            log("warming up for 20 s")
            asyncio.run(round_(urls["direct"], "none", TINY_MODEL_NAME, a.concurrency, 20, 16))
            results: dict[str, list[dict[str, float]]] = {t: [] for t in TARGETS}
            for i in range(a.rounds):
                # Each round in another order, so drift in the machine falls on all alike.
                for target in TARGETS[i % 3 :] + TARGETS[: i % 3]:
                    before = cpu_seconds(proc.pid)
                    r = uvloop.run(
                        round_(
                            urls[target],
                            urls["key"],
                            TINY_MODEL_NAME,
                            a.concurrency,
                            a.seconds,
                            a.max_tokens,
                        )
                    )
                    tokens = r["tokens_per_s"] * r["elapsed_s"]
                    r["gateway_cpu_ms_per_1k_tokens"] = (
                        (cpu_seconds(proc.pid) - before) * 1e6 / tokens if tokens else 0.0
                    )
                    log(f"round {i + 1} {target}: {r['tokens_per_s']:.1f} tokens/s")
                    results[target].append(r)
        finally:
            if proxy is not None:
                proxy.terminate()
                proxy.wait(30)
            os.killpg(proc.pid, signal.SIGTERM)
            proc.wait(90)
    report(results, a)
    return 0


def _median(values: list[float]) -> float:
    v = sorted(values)
    return v[len(v) // 2] if len(v) % 2 else (v[len(v) // 2 - 1] + v[len(v) // 2]) / 2


def report(results: dict[str, list[dict[str, float]]], a: argparse.Namespace) -> None:
    rate = {t: sum(r["tokens_per_s"] for r in rs) / len(rs) for t, rs in results.items()}
    errors = {t: sum(int(r["errors"]) for r in rs) for t, rs in results.items()}

    def paired(num: str, den: str) -> float:
        return _median(
            [
                n["tokens_per_s"] / d["tokens_per_s"]
                for n, d in zip(results[num], results[den], strict=True)
            ]
        )

    ratio = rate["gateway"] / rate["direct"]
    relayed = results["gateway"]
    cpu = sum(r["gateway_cpu_ms_per_1k_tokens"] for r in relayed) / len(relayed)
    verdict = "met" if ratio >= TARGET else "NOT met"
    per_round = {t: ", ".join(f"{r['tokens_per_s']:.1f}" for r in rs) for t, rs in results.items()}
    md = "\n".join(
        [
            f"# Engine throughput — {dt.datetime.now(dt.UTC).strftime('%Y-%m-%d %H:%M UTC')}",
            "",
            f"{platform.machine()}, {os.cpu_count()} cores, vLLM CPU build, a random Llama of "
            f"hidden size {a.hidden} and {a.layers} layers; "
            f"{a.concurrency} streams x {a.max_tokens} tokens, {a.rounds} rounds of "
            f"{a.seconds:g} s per target, the order rotating",
            "",
            "| target | tokens/s (mean of rounds) | rounds | errors |",
            "| --- | --- | --- | --- |",
            *(f"| {t} | {rate[t]:.1f} | {per_round[t]} | {errors[t]} |" for t in TARGETS),
            "",
            f"gateway / direct = **{ratio:.3f}** (target ≥ {TARGET}: {verdict}); median of the "
            f"rounds' ratios {paired('gateway', 'direct'):.3f}",
            f"minimal proxy / direct = {rate['proxy'] / rate['direct']:.3f} (median "
            f"{paired('proxy', 'direct'):.3f}); gateway / minimal proxy = "
            f"{rate['gateway'] / rate['proxy']:.3f} (median {paired('gateway', 'proxy'):.3f})",
            "",
            f"the gateway's own CPU while it relays: {cpu:.0f} ms per 1,000 tokens",
        ]
    )
    print(md)
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "engine.md").write_text(md + "\n")
    (RESULTS / "engine.json").write_bytes(
        orjson.dumps({"rate": rate, "ratio": ratio, "rounds": results}, option=orjson.OPT_INDENT_2)
    )


if __name__ == "__main__":
    sys.exit(main())
