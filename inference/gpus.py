"""The box's NVIDIA GPUs through NVML: discovery, telemetry, and the series they make.

A box with one or more GPUs is an S-series box, one without is a G-series box. No NVML
(neither the `nvidia-ml-py` package nor the driver's `libnvidia-ml.so`), a driver that is not
loaded, or no GPU all mean G, with the reason in words; nothing here raises. A reading that a
GPU does not support (power on some boards, ECC on consumer cards) is None, not a failure.

pynvml is imported on first use only, so importing this module needs only the standard
library (the hardware tests run it on a bare machine). `probe` reads once; `GpuMonitor` keeps
NVML open for the gateway's life and caches its readings briefly, so scrapes stay cheap.
"""

from __future__ import annotations

import importlib
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from types import ModuleType
from typing import Any, TypeVar

log = logging.getLogger(__name__)

T = TypeVar("T")
SERIES = ("G", "S")
GIB = 1024**3

# Clock event ("throttle") reasons: our name, the suffix of pynvml's constant
# (nvmlClocksEventReason*, formerly nvmlClocksThrottleReason*) and its bit in nvml.h.
THROTTLE_REASONS: tuple[tuple[str, str, int], ...] = (
    ("idle", "GpuIdle", 0x1),
    ("applications_clocks", "ApplicationsClocksSetting", 0x2),
    ("sw_power_cap", "SwPowerCap", 0x4),
    ("hw_slowdown", "HwSlowdown", 0x8),
    ("sync_boost", "SyncBoost", 0x10),
    ("sw_thermal", "SwThermalSlowdown", 0x20),
    ("hw_thermal", "HwThermalSlowdown", 0x40),
    ("hw_power_brake", "HwPowerBrakeSlowdown", 0x80),
    ("display_clocks", "DisplayClockSetting", 0x100),
    ("board_limit", "BoardLimit", 0x200),
    ("reliability", "Reliability", 0x400),
)
# "other": a bit this table does not know yet (a newer driver's reason).
THROTTLE_NAMES = frozenset({*(name for name, _, _ in THROTTLE_REASONS), "other"})

NO_PACKAGE = "the nvidia-ml-py package (pynvml) is not installed"
# Why NVML did not start, by pynvml's exception class; anything else names the error.
_INIT_ERRORS = (
    ("NVMLError_LibraryNotFound", "NVML library not found (no NVIDIA driver)"),
    ("NVMLError_DriverNotLoaded", "the NVIDIA driver is not loaded"),
    (
        "NVMLError_LibRmVersionMismatch",
        "the NVML library and the loaded NVIDIA driver differ in version (reload it or reboot)",
    ),
    ("NVMLError_NoPermission", "no permission to use NVML (the /dev/nvidia* device files)"),
)


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


@dataclass(frozen=True, slots=True)
class Gpu:
    """One GPU's identity and readings; None where the GPU does not report one."""

    index: int
    name: str
    uuid: str
    memory_total_bytes: int
    memory_used_bytes: int
    utilization_pct: int | None = None
    temperature_c: int | None = None
    power_w: float | None = None
    power_limit_w: float | None = None  # the enforced limit
    ecc_uncorrected: int | None = None  # volatile: since the driver loaded
    ecc_corrected: int | None = None
    throttle_reasons: tuple[str, ...] = ()  # names from THROTTLE_NAMES
    compute_capability: tuple[int, int] | None = None

    def to_dict(self) -> dict[str, Any]:
        """The JSON shape (the admin API's `Gpu`)."""
        cc = self.compute_capability
        return {
            "index": self.index,
            "name": self.name,
            "uuid": self.uuid,
            "memory_total_bytes": self.memory_total_bytes,
            "memory_used_bytes": self.memory_used_bytes,
            "utilization_pct": self.utilization_pct,
            "temperature_c": self.temperature_c,
            "power_w": self.power_w,
            "power_limit_w": self.power_limit_w,
            "ecc_uncorrected": self.ecc_uncorrected,
            "ecc_corrected": self.ecc_corrected,
            "throttle_reasons": list(self.throttle_reasons),
            "compute_capability": f"{cc[0]}.{cc[1]}" if cc else None,
        }


@dataclass(frozen=True, slots=True)
class GpuReport:
    """What NVML found: the series it makes, the GPUs, and why (above all, why G)."""

    series: str
    gpus: tuple[Gpu, ...]
    reason: str
    driver_version: str | None = None
    nvml_version: str | None = None
    read_at: str = field(default_factory=_now)  # UTC, ISO 8601

    def to_dict(self) -> dict[str, Any]:
        """The JSON shape."""
        return {
            "series": self.series,
            "reason": self.reason,
            "driver_version": self.driver_version,
            "nvml_version": self.nvml_version,
            "read_at": self.read_at,
            "gpus": [g.to_dict() for g in self.gpus],
        }


def no_gpu(reason: str) -> GpuReport:
    """A G-series report."""
    return GpuReport("G", (), reason)


def load_nvml() -> ModuleType | None:
    """pynvml, or None when the package is not installed."""
    try:
        return importlib.import_module("pynvml")
    except ImportError:
        return None


def probe(nvml: ModuleType | None = None) -> GpuReport:
    """One reading: NVML started, the GPUs read, NVML shut down. Never raises."""
    if nvml is None:
        nvml = load_nvml()
        if nvml is None:
            return no_gpu(NO_PACKAGE)
    failed = _start(nvml)
    if failed is not None:
        return failed
    try:
        return read_report(nvml)
    except Exception as exc:
        return no_gpu(f"NVML failed: {_describe(exc)}")
    finally:
        _stop(nvml)


def read_report(nvml: ModuleType) -> GpuReport:
    """The GPUs of a started NVML. Raises when NVML itself fails (the driver went away);
    a GPU that cannot be read is left out, and the reason says so."""
    count = int(nvml.nvmlDeviceGetCount())
    gpus: list[Gpu] = []
    lost: list[str] = []
    for index in range(count):
        try:
            gpus.append(read_gpu(nvml, index))
        except nvml.NVMLError as exc:
            log.warning("GPU %d cannot be read: %s", index, _describe(exc))
            lost.append(f"GPU {index} cannot be read ({_describe(exc)})")
    found = f"NVML found {count} GPU{'s' * (count != 1)}"
    reason = "; ".join([found, *lost]) if count else "NVML found no GPU"
    return GpuReport(
        "S" if gpus else "G",
        tuple(gpus),
        reason,
        _optional(nvml, lambda: _text(nvml.nvmlSystemGetDriverVersion())),
        _optional(nvml, lambda: _text(nvml.nvmlSystemGetNVMLVersion())),
    )


def read_gpu(nvml: ModuleType, index: int) -> Gpu:
    """One GPU's readings; its handle, name, UUID and memory are required, the rest optional."""
    h = nvml.nvmlDeviceGetHandleByIndex(index)
    mem = nvml.nvmlDeviceGetMemoryInfo(h)
    uncorrected = getattr(nvml, "NVML_MEMORY_ERROR_TYPE_UNCORRECTED", 1)
    corrected = getattr(nvml, "NVML_MEMORY_ERROR_TYPE_CORRECTED", 0)
    volatile = getattr(nvml, "NVML_VOLATILE_ECC", 0)
    sensor = getattr(nvml, "NVML_TEMPERATURE_GPU", 0)
    reasons = _optional(nvml, lambda: _clock_event_mask(nvml, h))
    capability = _optional(nvml, lambda: _pair(nvml.nvmlDeviceGetCudaComputeCapability(h)))

    def ecc(kind: int) -> int | None:
        return _optional(nvml, lambda: int(nvml.nvmlDeviceGetTotalEccErrors(h, kind, volatile)))

    return Gpu(
        index=index,
        name=_text(nvml.nvmlDeviceGetName(h)),
        uuid=_text(nvml.nvmlDeviceGetUUID(h)),
        memory_total_bytes=int(mem.total),
        memory_used_bytes=int(mem.used),
        utilization_pct=_optional(nvml, lambda: int(nvml.nvmlDeviceGetUtilizationRates(h).gpu)),
        temperature_c=_optional(nvml, lambda: int(nvml.nvmlDeviceGetTemperature(h, sensor))),
        power_w=_optional(nvml, lambda: nvml.nvmlDeviceGetPowerUsage(h) / 1000),  # mW
        power_limit_w=_optional(nvml, lambda: nvml.nvmlDeviceGetEnforcedPowerLimit(h) / 1000),
        ecc_uncorrected=ecc(uncorrected),
        ecc_corrected=ecc(corrected),
        throttle_reasons=decode_throttle(reasons, nvml) if reasons is not None else (),
        compute_capability=capability,
    )


def decode_throttle(mask: int, nvml: ModuleType | None = None) -> tuple[str, ...]:
    """The names of the reasons set in a clock event bitmask (pynvml's constants when given,
    else nvml.h's bits)."""
    names: list[str] = []
    known = 0
    for name, suffix, default in THROTTLE_REASONS:
        bit = _reason_bit(nvml, suffix, default)
        known |= bit
        if mask & bit:
            names.append(name)
    if mask & ~known:
        names.append("other")
    return tuple(names)


_warned: set[tuple[str, str]] = set()  # (configured, detected) pairs already logged


def resolve_series(configured: str, report: GpuReport) -> str:
    """The box's series: the hardware's for "auto", else the configured one (with a warning,
    once per process, when it contradicts the hardware)."""
    if configured == "auto":
        return report.series
    if configured not in SERIES:
        raise ValueError(f"series must be auto, G or S, not {configured!r}")
    if configured != report.series and (configured, report.series) not in _warned:
        _warned.add((configured, report.series))
        if configured == "S":
            log.warning("[box] series is S, but %s: local engines have no GPU", report.reason)
        else:
            log.warning("[box] series is G, but %s: they stay unused", report.reason)
    return configured


class GpuMonitor:
    """NVML kept open for the gateway's life: readings on demand, cached for `cache_s`; when
    NVML cannot start, it is tried again at most every `retry_s`. Thread-safe; never raises."""

    def __init__(
        self,
        nvml: ModuleType | None = None,
        *,
        cache_s: float = 1.0,
        retry_s: float = 60.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.cache_s, self.retry_s = cache_s, retry_s
        self._nvml, self._clock = nvml, clock
        self._lock = threading.Lock()
        self._open = False
        self._report: GpuReport | None = None
        self._read_at = 0.0

    def read(self) -> GpuReport:
        """The current report (at most `cache_s` old while NVML is open)."""
        with self._lock:
            now = self._clock()
            ttl = self.cache_s if self._open else self.retry_s
            if self._report is None or now - self._read_at >= ttl:
                self._report, self._read_at = self._fresh(), now
            return self._report

    def close(self) -> None:
        """Shut NVML down (a later read starts it again)."""
        with self._lock:
            self._close()

    def _fresh(self) -> GpuReport:
        if self._nvml is None:
            self._nvml = load_nvml()
            if self._nvml is None:
                return no_gpu(NO_PACKAGE)
        nvml = self._nvml
        if not self._open:
            failed = _start(nvml)
            if failed is not None:
                return failed
            self._open = True
        try:
            return read_report(nvml)
        except Exception as exc:  # the driver went away: start afresh after retry_s
            log.warning("NVML stopped answering: %s", _describe(exc))
            self._close()
            return no_gpu(f"NVML stopped answering: {_describe(exc)}")

    def _close(self) -> None:
        if self._open and self._nvml is not None:
            _stop(self._nvml)
        self._open = False


def _start(nvml: ModuleType) -> GpuReport | None:
    """nvmlInit; None when it worked, else the G report that says why."""
    try:
        nvml.nvmlInit()
    except Exception as exc:
        for name, reason in _INIT_ERRORS:
            cls = getattr(nvml, name, None)
            if isinstance(cls, type) and isinstance(exc, cls):
                return no_gpu(reason)
        return no_gpu(f"NVML did not start: {_describe(exc)}")
    return None


def _stop(nvml: ModuleType) -> None:
    try:
        nvml.nvmlShutdown()
    except Exception as exc:
        log.debug("nvmlShutdown failed: %s", exc)


def _optional(nvml: ModuleType, read: Callable[[], T]) -> T | None:
    """A reading, or None when NVML refuses it (not supported, no permission, an older
    driver without the function)."""
    try:
        return read()
    except nvml.NVMLError:
        return None


def _clock_event_mask(nvml: ModuleType, handle: Any) -> int:
    """The clock event reasons bitmask, by its current name or (older pynvml) its former."""
    old: Any = getattr(nvml, "nvmlDeviceGetCurrentClocksThrottleReasons", None)
    fn: Any = getattr(nvml, "nvmlDeviceGetCurrentClocksEventReasons", None) or old
    try:
        return int(fn(handle))
    except nvml.NVMLError:
        if old is None or fn is old:
            raise
        return int(old(handle))  # an older driver without the new entry point


def _reason_bit(nvml: ModuleType | None, suffix: str, default: int) -> int:
    for prefix in ("nvmlClocksEventReason", "nvmlClocksThrottleReason"):
        value = getattr(nvml, prefix + suffix, None) if nvml is not None else None
        if isinstance(value, int):
            return value
    return default


def _pair(value: Any) -> tuple[int, int]:
    major, minor = value
    return int(major), int(minor)


def _text(value: Any) -> str:
    """pynvml answers str (older releases: bytes)."""
    return value.decode(errors="replace") if isinstance(value, bytes) else str(value)


def _describe(exc: BaseException) -> str:
    return str(exc) or type(exc).__name__
