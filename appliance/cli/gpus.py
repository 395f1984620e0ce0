"""`aigw gpus`: the box's series, why, and each GPU's readings (from NVML, via the admin API).

With no box running, the in-process admin API reads this machine's GPUs itself: the answer is
the same, since NVML reads the hardware rather than the gateway's memory.
"""

from __future__ import annotations

import argparse
from typing import Any

from appliance.cli._common import Ctx, SubParsers, add_json, print_json, table

COLUMNS = ["gpu", "name", "memory", "util", "temp", "power", "ecc unc/corr", "throttle"]
ENGINE_COLUMNS = ["engine", "model", "kind", "state", "kv cache", "running", "waiting", "url"]
_GIB = 1024**3


def register_gpus(sub: SubParsers, common: argparse.ArgumentParser) -> None:
    """Add `aigw gpus`."""
    parser = sub.add_parser(
        "gpus", parents=[common], help="the box's series (S with GPUs, G without) and its GPUs"
    )
    add_json(parser)
    parser.set_defaults(func=show_gpus)


def show_gpus(ctx: Ctx) -> None:
    """The series and why, then one row per GPU (or the report as JSON)."""
    report = ctx.call("GET", "/gpus")
    if ctx.json:
        print_json(report)
        return
    print(headline(report))
    if report["gpus"]:
        print(table([row(g) for g in report["gpus"]], COLUMNS))
    if report.get("engines"):
        print("\nengines (this box's and remote ones):")
        print(table([engine_row(e) for e in report["engines"]], ENGINE_COLUMNS))


def headline(report: dict[str, Any]) -> str:
    """`series S: NVML found 2 GPUs; driver 550.54.15`, and what the configuration overrides."""
    head = f"series {report['series']}"
    if report["configured_series"] != "auto":
        head += f" (set by [box] series; the hardware makes it {report['detected_series']})"
    driver = report.get("driver_version")
    return f"{head}: {report['reason']}" + (f"; driver {driver}" if driver else "")


def row(gpu: dict[str, Any]) -> dict[str, Any]:
    """One GPU's table row, in GiB, percent, degrees and watts."""
    used, total = gpu["memory_used_bytes"] / _GIB, gpu["memory_total_bytes"] / _GIB
    return {
        "gpu": gpu["index"],
        "name": gpu["name"],
        "memory": f"{used:.1f}/{total:.1f} GiB",
        "util": _unit(gpu["utilization_pct"], "%"),
        "temp": _unit(gpu["temperature_c"], "°C"),
        "power": _power(gpu["power_w"], gpu["power_limit_w"]),
        "ecc unc/corr": _pair(gpu["ecc_uncorrected"], gpu["ecc_corrected"]),
        "throttle": gpu["throttle_reasons"],
    }


def _unit(value: float | None, unit: str) -> str | None:
    return None if value is None else f"{value}{unit}"


def _power(draw: float | None, limit: float | None) -> str | None:
    if draw is None:
        return None
    return f"{draw:.0f}/{limit:.0f} W" if limit is not None else f"{draw:.0f} W"


def _pair(uncorrected: int | None, corrected: int | None) -> str | None:
    if uncorrected is None and corrected is None:
        return None
    return "/".join("-" if n is None else str(n) for n in (uncorrected, corrected))


def engine_row(e: dict[str, Any]) -> dict[str, Any]:
    """One engine's row: where it runs, its state and its load."""
    kv = e.get("kv_cache_usage")
    return {
        "engine": e["name"],
        "model": e["model"],
        "kind": e["kind"],
        "state": e["state"],
        "kv cache": None if kv is None else f"{kv * 100:.0f}%",
        "running": e.get("running"),
        "waiting": e.get("waiting"),
        "url": e.get("url"),
    }
