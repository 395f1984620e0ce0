"""A fake of pynvml (nvidia-ml-py): the functions, constants and errors `inference.gpus` uses,
over GPUs described in plain Python, in pynvml's units (milliwatts, bytes) and shapes.

A reading set to `UNSUPPORTED` raises `NVMLError_NotSupported` as a board without the sensor
does; `init_error` makes `nvmlInit` raise, as a missing library or driver does.
"""

from __future__ import annotations

from dataclasses import dataclass
from types import ModuleType, SimpleNamespace
from typing import Any

UNSUPPORTED: Any = object()


class NVMLError(Exception):
    """pynvml's base error."""


class NVMLError_LibraryNotFound(NVMLError):  # pynvml's names
    """No libnvidia-ml.so."""


class NVMLError_DriverNotLoaded(NVMLError):
    """The kernel module is not loaded."""


class NVMLError_NotSupported(NVMLError):
    """The GPU does not have this reading."""


class NVMLError_GpuIsLost(NVMLError):
    """The GPU fell off the bus."""


class NVMLError_Uninitialized(NVMLError):
    """A call before nvmlInit (or after the driver went away)."""


@dataclass
class FakeGpu:
    """One GPU as NVML reports it."""

    name: str = "NVIDIA H100 80GB HBM3"
    uuid: str = "GPU-00000000-0000-0000-0000-000000000000"
    total: int = 80 * 1024**3
    used: int = 1024**3
    util: Any = 37
    temp: Any = 45
    power_mw: Any = 123_456
    limit_mw: Any = 700_000
    ecc: Any = (0, 2)  # (uncorrected, corrected)
    clocks_mask: Any = 0x1
    capability: Any = (9, 0)
    lost: bool = False


@dataclass
class _Calls:
    init: int = 0
    shutdown: int = 0
    reads: int = 0


class FakeNvml(ModuleType):
    """A module object standing in for pynvml."""

    NVMLError = NVMLError
    NVMLError_LibraryNotFound = NVMLError_LibraryNotFound
    NVMLError_DriverNotLoaded = NVMLError_DriverNotLoaded
    NVMLError_NotSupported = NVMLError_NotSupported
    NVMLError_GpuIsLost = NVMLError_GpuIsLost
    NVMLError_Uninitialized = NVMLError_Uninitialized
    NVML_TEMPERATURE_GPU = 0
    NVML_MEMORY_ERROR_TYPE_CORRECTED = 0
    NVML_MEMORY_ERROR_TYPE_UNCORRECTED = 1
    NVML_VOLATILE_ECC = 0
    nvmlClocksEventReasonGpuIdle = 0x1
    nvmlClocksEventReasonSwPowerCap = 0x4
    nvmlClocksEventReasonHwSlowdown = 0x8
    nvmlClocksEventReasonSwThermalSlowdown = 0x20

    def __init__(self, gpus: list[FakeGpu], init_error: Exception | None = None) -> None:
        super().__init__("pynvml")
        self.gpus = gpus
        self.init_error = init_error
        self.count_error: Exception | None = None  # nvmlDeviceGetCount raises it (driver gone)
        self.open = 0
        self.calls = _Calls()
        self.driver = "550.54.15"

    # --- the library ---------------------------------------------------------------------
    def nvmlInit(self) -> None:
        self.calls.init += 1
        if self.init_error is not None:
            raise self.init_error
        self.open += 1

    def nvmlShutdown(self) -> None:
        self.calls.shutdown += 1
        if self.open == 0:
            raise NVMLError_Uninitialized("Uninitialized")
        self.open -= 1

    def _check(self) -> None:
        if self.open == 0:
            raise NVMLError_Uninitialized("Uninitialized")

    def nvmlSystemGetDriverVersion(self) -> str:
        self._check()
        return self.driver

    def nvmlSystemGetNVMLVersion(self) -> bytes:
        self._check()
        return b"12.550.54.15"  # older pynvml releases answer bytes

    def nvmlDeviceGetCount(self) -> int:
        self._check()
        self.calls.reads += 1
        if self.count_error is not None:
            raise self.count_error
        return len(self.gpus)

    def nvmlDeviceGetHandleByIndex(self, index: int) -> FakeGpu:
        self._check()
        gpu = self.gpus[index]
        if gpu.lost:
            raise NVMLError_GpuIsLost("GPU is lost")
        return gpu

    # --- one GPU -------------------------------------------------------------------------
    def nvmlDeviceGetName(self, h: FakeGpu) -> str:
        return h.name

    def nvmlDeviceGetUUID(self, h: FakeGpu) -> str:
        return h.uuid

    def nvmlDeviceGetMemoryInfo(self, h: FakeGpu) -> SimpleNamespace:
        return SimpleNamespace(total=h.total, used=h.used, free=h.total - h.used)

    def nvmlDeviceGetUtilizationRates(self, h: FakeGpu) -> SimpleNamespace:
        return SimpleNamespace(gpu=_value(h.util), memory=0)

    def nvmlDeviceGetTemperature(self, h: FakeGpu, sensor: int) -> int:
        assert sensor == self.NVML_TEMPERATURE_GPU
        return int(_value(h.temp))

    def nvmlDeviceGetPowerUsage(self, h: FakeGpu) -> int:
        return int(_value(h.power_mw))

    def nvmlDeviceGetEnforcedPowerLimit(self, h: FakeGpu) -> int:
        return int(_value(h.limit_mw))

    def nvmlDeviceGetTotalEccErrors(self, h: FakeGpu, kind: int, counter: int) -> int:
        assert counter == self.NVML_VOLATILE_ECC
        uncorrected, corrected = _value(h.ecc)
        return int(uncorrected if kind == self.NVML_MEMORY_ERROR_TYPE_UNCORRECTED else corrected)

    def nvmlDeviceGetCurrentClocksEventReasons(self, h: FakeGpu) -> int:
        return int(_value(h.clocks_mask))

    def nvmlDeviceGetCudaComputeCapability(self, h: FakeGpu) -> tuple[int, int]:
        return tuple(_value(h.capability))  # type: ignore[return-value]


def _value(v: Any) -> Any:
    if v is UNSUPPORTED:
        raise NVMLError_NotSupported("Not Supported")
    return v


def two_gpus() -> FakeNvml:
    """An H100 that reports everything and an older board without power or ECC readings."""
    return FakeNvml(
        [
            FakeGpu(clocks_mask=0x1 | 0x4),
            FakeGpu(
                name="NVIDIA A10",
                uuid="GPU-11111111-1111-1111-1111-111111111111",
                total=24 * 1024**3,
                used=20 * 1024**3,
                util=100,
                temp=83,
                power_mw=UNSUPPORTED,
                limit_mw=UNSUPPORTED,
                ecc=UNSUPPORTED,
                clocks_mask=0x20 | 0x8 | 0x1000,
                capability=(8, 6),
            ),
        ]
    )


__all__ = ["UNSUPPORTED", "FakeGpu", "FakeNvml", "two_gpus"]
