"""GPU discovery and telemetry: the real no-NVML path of this machine, readings through a fake
pynvml, the series, the long-lived monitor and the Prometheus families."""

from __future__ import annotations

import logging
import sys

import pytest
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from inference import gpus as gpus_mod
from inference.gpu_metrics import register_gpu_metrics
from inference.gpus import (
    NO_PACKAGE,
    THROTTLE_NAMES,
    GpuMonitor,
    GpuReport,
    decode_throttle,
    no_gpu,
    probe,
    resolve_series,
)
from tests.fakes.nvml import (
    UNSUPPORTED,
    FakeGpu,
    FakeNvml,
    NVMLError_DriverNotLoaded,
    NVMLError_LibraryNotFound,
    NVMLError_Uninitialized,
    two_gpus,
)


def _has_nvidia_driver() -> bool:
    try:
        import pynvml

        pynvml.nvmlInit()
    except Exception:
        return False
    pynvml.nvmlShutdown()
    return True


needs_no_gpu = pytest.mark.skipif(_has_nvidia_driver(), reason="this machine has an NVIDIA driver")


# --- this machine: no NVML library ----------------------------------------------------------


@needs_no_gpu
def test_no_library_on_this_machine_is_g_with_the_reason() -> None:
    pynvml = pytest.importorskip("pynvml")  # a dependency: installed with the project
    report = probe()
    assert report.series == "G" and report.gpus == ()
    assert report.reason == "NVML library not found (no NVIDIA driver)"
    assert report.driver_version is None
    with pytest.raises(pynvml.NVMLError_LibraryNotFound):  # what probe() turned into words
        pynvml.nvmlInit()
    assert resolve_series("auto", report) == "G"


def test_without_the_package_probe_and_monitor_say_so(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "pynvml", None)  # import pynvml raises ImportError
    report = probe()
    assert (report.series, report.reason) == ("G", NO_PACKAGE)
    assert GpuMonitor().read().reason == NO_PACKAGE


def test_importing_the_module_does_not_import_pynvml() -> None:
    import subprocess

    code = "import sys, inference.gpus, inference.gpu_metrics; print('pynvml' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


# --- readings through the fake --------------------------------------------------------------


def test_two_gpus_are_read_and_converted() -> None:
    nvml = two_gpus()
    report = probe(nvml)
    assert report.series == "S"
    assert report.reason == "NVML found 2 GPUs"
    assert report.driver_version == "550.54.15"
    assert report.nvml_version == "12.550.54.15"  # bytes from older pynvml, decoded
    h100, a10 = report.gpus
    assert (h100.index, h100.name, h100.uuid) == (0, "NVIDIA H100 80GB HBM3", nvml.gpus[0].uuid)
    assert h100.memory_total_bytes == 80 * 1024**3 and h100.memory_used_bytes == 1024**3
    assert h100.utilization_pct == 37 and h100.temperature_c == 45
    assert h100.power_w == pytest.approx(123.456)  # milliwatts to watts
    assert h100.power_limit_w == 700.0
    assert (h100.ecc_uncorrected, h100.ecc_corrected) == (0, 2)
    assert h100.throttle_reasons == ("idle", "sw_power_cap")
    assert h100.compute_capability == (9, 0)
    # The A10 has no power sensor and no ECC: None, and the rest is still read.
    assert a10.power_w is None and a10.power_limit_w is None
    assert a10.ecc_uncorrected is None and a10.ecc_corrected is None
    assert (a10.utilization_pct, a10.temperature_c) == (100, 83)
    assert a10.throttle_reasons == ("hw_slowdown", "sw_thermal", "other")
    assert nvml.calls.init == nvml.calls.shutdown == 1 and nvml.open == 0


def test_to_dict_is_plain_json() -> None:
    d = probe(two_gpus()).to_dict()
    assert set(d) == {"series", "reason", "driver_version", "nvml_version", "read_at", "gpus"}
    assert d["read_at"].endswith("Z")
    assert d["gpus"][0]["throttle_reasons"] == ["idle", "sw_power_cap"]
    assert d["gpus"][0]["compute_capability"] == "9.0"
    assert d["gpus"][1]["power_w"] is None


def test_every_optional_reading_may_be_unsupported() -> None:
    bare = FakeGpu(
        util=UNSUPPORTED,
        temp=UNSUPPORTED,
        power_mw=UNSUPPORTED,
        limit_mw=UNSUPPORTED,
        ecc=UNSUPPORTED,
        clocks_mask=UNSUPPORTED,
        capability=UNSUPPORTED,
    )
    (gpu,) = probe(FakeNvml([bare])).gpus
    assert gpu.memory_total_bytes == bare.total
    assert gpu.utilization_pct is None and gpu.temperature_c is None
    assert gpu.throttle_reasons == () and gpu.compute_capability is None


def test_decode_throttle_uses_the_library_constants_or_the_header_bits() -> None:
    assert decode_throttle(0) == ()
    assert decode_throttle(0x4 | 0x40 | 0x80) == ("sw_power_cap", "hw_thermal", "hw_power_brake")
    assert set(decode_throttle(0xFFFF)) == THROTTLE_NAMES
    pynvml = pytest.importorskip("pynvml")
    assert decode_throttle(pynvml.nvmlClocksEventReasonSwThermalSlowdown, pynvml) == ("sw_thermal",)


# --- no GPU, no driver, a driver error ------------------------------------------------------


@pytest.mark.parametrize(
    ("error", "reason"),
    [
        (NVMLError_LibraryNotFound("NVML Shared Library Not Found"), "NVML library not found"),
        (NVMLError_DriverNotLoaded("Driver Not Loaded"), "the NVIDIA driver is not loaded"),
        (NVMLError_Uninitialized("Unknown Error"), "NVML did not start: Unknown Error"),
        (OSError("libnvidia-ml.so.1: cannot open"), "NVML did not start: libnvidia-ml.so.1"),
    ],
)
def test_nvml_that_does_not_start_is_g(error: Exception, reason: str) -> None:
    nvml = FakeNvml([FakeGpu()], init_error=error)
    report = probe(nvml)
    assert report.series == "G" and report.gpus == ()
    assert report.reason.startswith(reason)
    assert nvml.calls.shutdown == 0


def test_no_gpu_is_g() -> None:
    report = probe(FakeNvml([]))
    assert (report.series, report.reason) == ("G", "NVML found no GPU")
    assert report.driver_version == "550.54.15"


def test_a_lost_gpu_is_left_out_and_named() -> None:
    nvml = two_gpus()
    nvml.gpus[1].lost = True
    report = probe(nvml)
    assert [g.index for g in report.gpus] == [0]
    assert report.reason == "NVML found 2 GPUs; GPU 1 cannot be read (GPU is lost)"
    nvml.gpus[0].lost = True
    assert probe(nvml).series == "G"


def test_a_driver_failure_while_reading_is_g_and_nvml_is_shut_down() -> None:
    nvml = two_gpus()
    nvml.count_error = NVMLError_DriverNotLoaded("Driver Not Loaded")
    report = probe(nvml)
    assert (report.series, report.reason) == ("G", "NVML failed: Driver Not Loaded")
    assert nvml.open == 0


# --- the series -----------------------------------------------------------------------------


def test_resolve_series(caplog: pytest.LogCaptureFixture) -> None:
    s, g = probe(two_gpus()), no_gpu("NVML library not found (no NVIDIA driver)")
    gpus_mod._warned.clear()
    with caplog.at_level(logging.WARNING, logger="inference.gpus"):
        assert resolve_series("auto", s) == "S" and resolve_series("auto", g) == "G"
        assert resolve_series("S", s) == "S" and resolve_series("G", g) == "G"
        assert not caplog.records
        assert resolve_series("S", g) == "S"
        assert resolve_series("S", g) == "S"  # warned once
        assert resolve_series("G", s) == "G"
    messages = [r.getMessage() for r in caplog.records]
    assert len(messages) == 2
    assert "series is S, but NVML library not found" in messages[0]
    assert "series is G, but NVML found 2 GPUs" in messages[1]
    with pytest.raises(ValueError, match="auto, G or S"):
        resolve_series("X", s)


# --- the monitor ----------------------------------------------------------------------------


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_monitor_keeps_nvml_open_and_caches_readings() -> None:
    nvml, clock = two_gpus(), Clock()
    monitor = GpuMonitor(nvml, cache_s=1.0, clock=clock)
    first = monitor.read()
    assert first.series == "S" and monitor.read() is first
    assert (nvml.calls.init, nvml.calls.reads, nvml.open) == (1, 1, 1)
    clock.now += 1.0
    nvml.gpus[0].temp = 70
    assert monitor.read().gpus[0].temperature_c == 70
    assert (nvml.calls.init, nvml.calls.reads) == (1, 2)  # NVML stayed open
    monitor.close()
    assert nvml.open == 0 and nvml.calls.shutdown == 1


def test_monitor_retries_a_failed_start_at_most_every_retry_s() -> None:
    nvml, clock = two_gpus(), Clock()
    nvml.init_error = NVMLError_DriverNotLoaded("Driver Not Loaded")
    monitor = GpuMonitor(nvml, retry_s=60.0, clock=clock)
    assert monitor.read().reason == "the NVIDIA driver is not loaded"
    clock.now += 59
    monitor.read()
    assert nvml.calls.init == 1
    nvml.init_error = None  # the driver was loaded
    clock.now += 1
    assert monitor.read().series == "S" and nvml.calls.init == 2


def test_monitor_starts_again_after_the_driver_goes_away() -> None:
    nvml, clock = two_gpus(), Clock()
    monitor = GpuMonitor(nvml, cache_s=1.0, retry_s=60.0, clock=clock)
    assert monitor.read().series == "S"
    nvml.count_error = NVMLError_Uninitialized("Uninitialized")
    clock.now += 1
    report = monitor.read()
    assert (report.series, report.reason) == ("G", "NVML stopped answering: Uninitialized")
    assert nvml.open == 0  # shut down, to start afresh
    nvml.count_error = None
    clock.now += 30
    assert monitor.read() is report  # not before retry_s
    clock.now += 30
    assert monitor.read().series == "S" and nvml.calls.init == 2


# --- Prometheus -----------------------------------------------------------------------------


def _scrape(monitor: GpuMonitor, configured: str = "auto") -> dict[str, list[tuple[dict, float]]]:
    registry = CollectorRegistry()
    register_gpu_metrics(registry, monitor, configured)
    text = generate_latest(registry).decode()
    return {
        f.name: [(s.labels, s.value) for s in f.samples]
        for f in text_string_to_metric_families(text)
    }


def test_prometheus_families_of_two_gpus() -> None:
    nvml = two_gpus()
    m = _scrape(GpuMonitor(nvml))
    assert m["aigw_gpu_count"] == [({}, 2.0)]
    assert m["aigw_box_series_info"] == [({"series": "S"}, 1.0)]
    h100 = {"gpu": "0", "name": "NVIDIA H100 80GB HBM3", "uuid": nvml.gpus[0].uuid}
    a10 = {"gpu": "1", "name": "NVIDIA A10", "uuid": nvml.gpus[1].uuid}
    assert m["aigw_gpu_memory_total_bytes"] == [(h100, 80 * 1024**3), (a10, 24 * 1024**3)]
    assert m["aigw_gpu_memory_used_bytes"] == [(h100, 1024**3), (a10, 20 * 1024**3)]
    assert m["aigw_gpu_utilization_ratio"] == [(h100, 0.37), (a10, 1.0)]
    assert m["aigw_gpu_temperature_celsius"] == [(h100, 45), (a10, 83)]
    # The A10 reports no power and no ECC: no sample rather than a zero.
    assert m["aigw_gpu_power_watts"] == [(h100, pytest.approx(123.456))]
    assert m["aigw_gpu_power_limit_watts"] == [(h100, 700.0)]
    assert m["aigw_gpu_ecc_errors"] == [
        ({**h100, "type": "corrected"}, 2.0),
        ({**h100, "type": "uncorrected"}, 0.0),
    ]
    assert sorted((s["gpu"], s["reason"]) for s, _ in m["aigw_gpu_throttled"]) == [
        ("0", "idle"),
        ("0", "sw_power_cap"),
        ("1", "hw_slowdown"),
        ("1", "other"),
        ("1", "sw_thermal"),
    ]


def test_prometheus_without_gpus_and_with_a_configured_series() -> None:
    m = _scrape(GpuMonitor(FakeNvml([], init_error=NVMLError_LibraryNotFound("x"))))
    assert m["aigw_gpu_count"] == [({}, 0.0)]
    assert m["aigw_box_series_info"] == [({"series": "G"}, 1.0)]
    assert m["aigw_gpu_memory_used_bytes"] == []
    forced = _scrape(GpuMonitor(FakeNvml([])), configured="S")
    assert forced["aigw_box_series_info"] == [({"series": "S"}, 1.0)]


def test_registration_does_not_read_nvml() -> None:
    nvml = two_gpus()
    register_gpu_metrics(CollectorRegistry(auto_describe=True), GpuMonitor(nvml))
    assert nvml.calls.init == 0


def test_report_is_frozen() -> None:
    report = probe(two_gpus())
    assert isinstance(report, GpuReport)
    with pytest.raises(AttributeError):
        report.series = "G"  # type: ignore[misc]
