"""The GPUs on the gateway's `/metrics`: a Prometheus collector over a `GpuMonitor`.

Read on scrape, from the monitor's short cache, so a scrape costs at most one NVML reading a
second. A reading a GPU does not report is left out rather than shown as zero.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

from prometheus_client import CollectorRegistry
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric

from inference.gpus import Gpu, GpuMonitor, GpuReport

_GPU = ["gpu", "name", "uuid"]
# Per-GPU gauges: name, help, and the reading (None: not reported).
_GAUGES: tuple[tuple[str, str, Callable[[Gpu], float | None]], ...] = (
    ("aigw_gpu_memory_used_bytes", "GPU memory in use.", lambda g: g.memory_used_bytes),
    ("aigw_gpu_memory_total_bytes", "GPU memory in all.", lambda g: g.memory_total_bytes),
    (
        "aigw_gpu_utilization_ratio",
        "Share of the last sample period in which a kernel ran (0-1).",
        lambda g: None if g.utilization_pct is None else g.utilization_pct / 100,
    ),
    ("aigw_gpu_temperature_celsius", "GPU die temperature.", lambda g: g.temperature_c),
    ("aigw_gpu_power_watts", "Power draw.", lambda g: g.power_w),
    ("aigw_gpu_power_limit_watts", "Enforced power limit.", lambda g: g.power_limit_w),
)


class GpuCollector:
    """The GPU metric families, read from the monitor when scraped."""

    def __init__(self, monitor: GpuMonitor, configured_series: str = "auto") -> None:
        self.monitor = monitor
        self.configured_series = configured_series

    def describe(self) -> Iterator[Metric]:
        """The families without samples: registration checks names without touching NVML."""
        return gpu_families(None)

    def collect(self) -> Iterator[Metric]:
        """The families with the current readings."""
        report = self.monitor.read()
        configured = self.configured_series
        return gpu_families(report, report.series if configured == "auto" else configured)


def register_gpu_metrics(
    registry: CollectorRegistry, monitor: GpuMonitor, configured_series: str = "auto"
) -> GpuCollector:
    """Add the GPU families to a registry (the gateway's: `gw.metrics.registry`).

    `configured_series` is `[box] series`; "auto" shows the hardware's.
    """
    collector = GpuCollector(monitor, configured_series)
    registry.register(collector)  # type: ignore[arg-type]
    return collector


def gpu_families(report: GpuReport | None, series: str | None = None) -> Iterator[Metric]:
    """The metric families of a report (None: the families only, for `describe`)."""
    gpus = report.gpus if report is not None else ()
    count = GaugeMetricFamily("aigw_gpu_count", "GPUs NVML finds on this box.")
    info = GaugeMetricFamily(
        "aigw_box_series_info", "The box's series: S with GPUs, G without.", labels=["series"]
    )
    if report is not None:
        count.add_metric([], len(gpus))
        info.add_metric([series or report.series], 1)
    yield count
    yield info
    for name, doc, reading in _GAUGES:
        family = GaugeMetricFamily(name, doc, labels=_GPU)
        for g in gpus:
            value = reading(g)
            if value is not None:
                family.add_metric([str(g.index), g.name, g.uuid], value)
        yield family
    ecc = CounterMetricFamily(
        "aigw_gpu_ecc_errors",
        "ECC errors since the driver loaded, by type (corrected, uncorrected).",
        labels=[*_GPU, "type"],
    )
    throttled = GaugeMetricFamily(
        "aigw_gpu_throttled",
        "1 for each reason the GPU's clocks are held back now.",
        labels=[*_GPU, "reason"],
    )
    for g in gpus:
        labels = [str(g.index), g.name, g.uuid]
        for kind, n in (("corrected", g.ecc_corrected), ("uncorrected", g.ecc_uncorrected)):
            if n is not None:
                ecc.add_metric([*labels, kind], n)
        for reason in g.throttle_reasons:
            throttled.add_metric([*labels, reason], 1)
    yield ecc
    yield throttled
