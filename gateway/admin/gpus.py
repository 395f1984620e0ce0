"""The box's GPUs through the admin API: the series, why, and each GPU's readings.

Read from the gateway's `GpuMonitor` (NVML kept open, readings cached for a second) in a worker
thread, so a slow driver never holds up the event loop.
"""

from __future__ import annotations

import asyncio
from typing import Any

from aiohttp import web

from gateway.admin.common import ADMIN_GATEWAY, ok
from inference.gpus import THROTTLE_NAMES, resolve_series

# OpenAPI components of this route (merged into the document by gateway.admin.openapi).
_NINT: dict[str, Any] = {"type": "integer", "nullable": True, "minimum": 0}
_NNUM: dict[str, Any] = {"type": "number", "nullable": True, "minimum": 0}
_NSTR: dict[str, Any] = {"type": "string", "nullable": True}
_SERIES: dict[str, Any] = {"type": "string", "enum": ["G", "S"]}
# inference.gpus.Gpu.to_dict field for field (tests/inference/test_gpus_api.py checks it).
_GPU: dict[str, dict[str, Any]] = {
    "index": {"type": "integer", "minimum": 0, "description": "NVML's index"},
    "name": {"type": "string"},
    "uuid": {"type": "string"},
    "memory_total_bytes": {"type": "integer", "minimum": 0},
    "memory_used_bytes": {"type": "integer", "minimum": 0},
    "utilization_pct": {**_NINT, "maximum": 100, "description": "share of time a kernel ran"},
    "temperature_c": {"type": "integer", "nullable": True},
    "power_w": {**_NNUM, "description": "power draw; null where the board has no sensor"},
    "power_limit_w": {**_NNUM, "description": "the enforced power limit"},
    "ecc_uncorrected": {**_NINT, "description": "since the driver loaded; null without ECC"},
    "ecc_corrected": _NINT,
    "throttle_reasons": {
        "type": "array",
        "items": {"type": "string", "enum": sorted(THROTTLE_NAMES)},
        "description": "why the clocks are held back now (idle: nothing to do)",
    },
    "compute_capability": {**_NSTR, "description": "CUDA compute capability, e.g. 9.0"},
}
_REPORT: dict[str, dict[str, Any]] = {
    "series": {**_SERIES, "description": "the box's series: [box] series, or the hardware's"},
    "configured_series": {"type": "string", "enum": ["auto", "G", "S"]},
    "detected_series": {**_SERIES, "description": "S when NVML finds a GPU, else G"},
    "reason": {"type": "string", "description": "what NVML found, or why it found nothing"},
    "driver_version": _NSTR,
    "nvml_version": _NSTR,
    "read_at": {"type": "string", "description": "UTC time of the reading"},
    "gpus": {"type": "array", "items": {"$ref": "#/components/schemas/Gpu"}},
    "engines": {
        "type": "array",
        "items": {"$ref": "#/components/schemas/Engine"},
        "description": "the engines, local and remote, with their load: capacity in one place",
    },
}
SCHEMAS: dict[str, dict[str, Any]] = {
    "Gpu": {"type": "object", "required": list(_GPU), "properties": _GPU},
    "GpuReport": {"type": "object", "required": list(_REPORT), "properties": _REPORT},
}
LISTS: dict[str, str] = {}
QUERY: dict[str, dict[str, Any]] = {}


async def get_gpus(request: web.Request) -> web.Response:
    """GET /gpus: the series and each GPU's readings."""
    gw = request.app[ADMIN_GATEWAY]
    report = await asyncio.to_thread(gw.gpus.read)
    configured = gw.cfg.box.series
    return ok(
        {
            **report.to_dict(),
            "series": resolve_series(configured, report),
            "configured_series": configured,
            "detected_series": report.series,
            "engines": gw.engine_report(),
        }
    )
