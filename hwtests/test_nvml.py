"""NVML on a real NVIDIA GPU: the series is S, the readings are sane, the monitor and the
Prometheus collector report every GPU. Prints a short summary of what it read (run with -s)."""

from __future__ import annotations

import pytest

from hwtests.hardware import skip_without_gpu, smi_gpu_count
from inference.gpus import GIB, THROTTLE_NAMES, GpuMonitor, GpuReport, resolve_series

skip_without_gpu()


def test_series_is_s(report: GpuReport) -> None:
    assert report.series == "S", report.reason
    assert report.gpus and report.reason.startswith("NVML found")
    assert report.driver_version and report.nvml_version
    assert resolve_series("auto", report) == "S"


def test_gpu_count_matches_nvidia_smi(report: GpuReport) -> None:
    assert len(report.gpus) >= 1
    assert [g.index for g in report.gpus] == list(range(len(report.gpus)))
    listed = smi_gpu_count()
    if listed is not None:
        assert len(report.gpus) == listed


def test_readings_are_sane(report: GpuReport) -> None:
    for g in report.gpus:
        assert g.name.strip() and g.uuid.startswith(("GPU-", "MIG-")), g
        assert g.memory_total_bytes > GIB, g
        assert 0 < g.memory_used_bytes <= g.memory_total_bytes, g
        assert g.utilization_pct is not None and 0 <= g.utilization_pct <= 100, g
        assert g.temperature_c is not None and 10 <= g.temperature_c <= 110, g
        assert g.power_w is not None and g.power_w > 0, g
        if g.power_limit_w is not None:
            assert g.power_w <= g.power_limit_w * 1.2, g
        for count in (g.ecc_uncorrected, g.ecc_corrected):
            assert count is None or count >= 0, g
        assert set(g.throttle_reasons) <= THROTTLE_NAMES, g
        assert "other" not in g.throttle_reasons, f"a clock event reason the table lacks: {g}"


def test_monitor_keeps_nvml_open_and_caches() -> None:
    monitor = GpuMonitor(cache_s=30.0)
    try:
        first = monitor.read()
        assert first.series == "S", first.reason
        assert monitor.read() is first
    finally:
        monitor.close()


def test_prometheus_has_a_line_per_gpu(report: GpuReport) -> None:
    pytest.importorskip("prometheus_client", reason="prometheus-client is not installed")
    from prometheus_client import CollectorRegistry, generate_latest
    from prometheus_client.parser import text_string_to_metric_families

    from inference.gpu_metrics import register_gpu_metrics

    registry = CollectorRegistry()
    monitor = GpuMonitor()
    try:
        register_gpu_metrics(registry, monitor)
        text = generate_latest(registry).decode()
    finally:
        monitor.close()
    families = {f.name: f.samples for f in text_string_to_metric_families(text)}
    assert families["aigw_gpu_count"][0].value == len(report.gpus)
    assert families["aigw_box_series_info"][0].labels == {"series": "S"}
    indexes = [str(g.index) for g in report.gpus]
    for name in (
        "aigw_gpu_memory_used_bytes",
        "aigw_gpu_memory_total_bytes",
        "aigw_gpu_utilization_ratio",
        "aigw_gpu_temperature_celsius",
        "aigw_gpu_power_watts",
    ):
        assert [s.labels["gpu"] for s in families[name]] == indexes, name
    print("\n" + "\n".join(line for line in text.splitlines() if line.startswith("aigw_")))


def test_print_summary(report: GpuReport) -> None:
    print(f"\nNVML: series {report.series}: {report.reason}; driver {report.driver_version}, "
          f"NVML {report.nvml_version}")  # fmt: skip
    for g in report.gpus:
        cc = ".".join(map(str, g.compute_capability)) if g.compute_capability else "?"
        print(
            f"GPU {g.index} {g.name} ({g.uuid}, compute {cc}): "
            f"{g.memory_used_bytes / GIB:.1f}/{g.memory_total_bytes / GIB:.1f} GiB used, "
            f"util {g.utilization_pct}%, {g.temperature_c} °C, "
            f"{g.power_w} W of {g.power_limit_w} W, "
            f"ECC uncorrected {g.ecc_uncorrected} corrected {g.ecc_corrected}, "
            f"throttle {','.join(g.throttle_reasons) or 'none'}"
        )
