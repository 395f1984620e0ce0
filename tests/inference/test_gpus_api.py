"""The GPUs through the running gateway: `GET /admin/v1/gpus`, `/metrics` and `aigw gpus`, on
this machine (no NVML: series G) and with a fake pynvml of two GPUs behind the gateway."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from appliance.cli.gpus import COLUMNS
from gateway.admin.gpus import SCHEMAS
from gateway.tenancy import store as tenancy
from inference.gpu_metrics import register_gpu_metrics
from inference.gpus import GpuMonitor, probe
from tests.appliance.conftest import Cli
from tests.fakes.nvml import two_gpus
from tests.harness import Stack, request

G_REASON = "NVML library not found (no NVIDIA driver)"


@pytest.fixture(autouse=True)
def _no_admin_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("AIGW_URL", "AIGW_ADMIN_TOKEN", "AIGW_CONFIG"):
        monkeypatch.delenv(name, raising=False)


@pytest.fixture(scope="module")
def tokens(stack: Stack) -> dict[str, str]:
    """An admin token per role on the shared stack."""
    return {
        role: tenancy.create_admin_token(stack.db, "test", f"gpus-{role}", role)[1]
        for role in ("admin", "auditor", "finance")
    }


@pytest.fixture
def fake_gpus(stack: Stack) -> Iterator[None]:
    """The stack's gateway reads two fake GPUs for the test."""
    assert stack.gateway is not None
    real = stack.gateway.gpus
    stack.gateway.gpus = GpuMonitor(two_gpus())
    yield
    stack.gateway.gpus.close()
    stack.gateway.gpus = real


@pytest.fixture
def cli(tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> Cli:
    """`aigw` with a box of its own (no gateway running: the in-process admin API)."""
    return Cli(tmp_path / "box", capsys, monkeypatch)


def _gpus(stack: Stack, token: str) -> tuple[int, dict]:
    reply = request(stack, "GET", "/admin/v1/gpus", headers={"Authorization": f"Bearer {token}"})
    return reply.status_code, reply.json()


def _no_nvidia_driver() -> bool:
    return probe().reason == G_REASON


no_driver = pytest.mark.skipif(not _no_nvidia_driver(), reason="this machine has NVML")


# --- the admin API --------------------------------------------------------------------------


@no_driver
def test_admin_api_on_this_machine_is_g(stack: Stack, tokens: dict[str, str]) -> None:
    status, body = _gpus(stack, tokens["auditor"])
    assert status == 200, body
    assert body["series"] == body["detected_series"] == "G"
    assert body["configured_series"] == "auto"
    assert body["reason"] == G_REASON
    assert body["gpus"] == [] and body["driver_version"] is None


def test_admin_api_with_two_gpus(stack: Stack, tokens: dict[str, str], fake_gpus: None) -> None:
    status, body = _gpus(stack, tokens["admin"])
    assert status == 200, body
    assert (body["series"], body["reason"], body["driver_version"]) == (
        "S",
        "NVML found 2 GPUs",
        "550.54.15",
    )
    h100, a10 = body["gpus"]
    assert h100["power_w"] == pytest.approx(123.456) and h100["power_limit_w"] == 700.0
    assert h100["throttle_reasons"] == ["idle", "sw_power_cap"]
    assert a10["power_w"] is None and a10["ecc_corrected"] is None
    assert set(h100) == set(SCHEMAS["Gpu"]["properties"])
    assert set(body) == set(SCHEMAS["GpuReport"]["properties"])


def test_finance_may_not_read_gpus(stack: Stack, tokens: dict[str, str]) -> None:
    status, body = _gpus(stack, tokens["finance"])
    assert status == 403, body


def test_metrics_carry_the_gpus_once_registered(stack: Stack, fake_gpus: None) -> None:
    """What `aigw up` wires: the gateway's registry with the GPU collector of its monitor."""
    assert stack.gateway is not None
    registry = stack.gateway.metrics.registry
    collector = register_gpu_metrics(registry, stack.gateway.gpus)
    try:
        text = request(stack, "GET", "/metrics").content.decode()
    finally:
        registry.unregister(collector)  # type: ignore[arg-type]
    assert "aigw_gpu_count 2.0" in text
    assert 'aigw_box_series_info{series="S"} 1.0' in text
    assert 'aigw_gpu_power_watts{gpu="0"' in text and 'aigw_gpu_power_watts{gpu="1"' not in text


# --- aigw gpus ------------------------------------------------------------------------------


@no_driver
def test_cli_on_this_machine_prints_g_and_why(cli: Cli) -> None:
    r = cli.ok("gpus")
    assert r.out == f"series G: {G_REASON}\n"
    assert "Traceback" not in r.err
    data = cli.ok("gpus", "--json").json
    assert (data["series"], data["reason"], data["gpus"]) == ("G", G_REASON, [])


@no_driver
def test_cli_names_a_configured_series_against_the_hardware(cli: Cli) -> None:
    cli.config.write_text(cli.config.read_text() + '[box]\nseries = "S"\n')
    r = cli.ok("gpus")
    assert r.out == f"series S (set by [box] series; the hardware makes it G): {G_REASON}\n"


def test_cli_against_a_running_gateway_with_two_gpus(
    cli: Cli, stack: Stack, tokens: dict[str, str], fake_gpus: None
) -> None:
    remote = ("--url", stack.url, "--token", tokens["auditor"])
    lines = cli.ok(*remote, "gpus").out.splitlines()
    assert lines[0] == "series S: NVML found 2 GPUs; driver 550.54.15"
    assert lines[1].split() == [c.upper() for c in " ".join(COLUMNS).split()]
    h100, a10 = (line.split() for line in lines[2:])
    assert h100 == [
        "0", "NVIDIA", "H100", "80GB", "HBM3", "1.0/80.0", "GiB", "37%", "45°C",
        "123/700", "W", "0/2", "idle,sw_power_cap",
    ]  # fmt: skip
    assert a10 == [
        "1", "NVIDIA", "A10", "20.0/24.0", "GiB", "100%", "83°C", "-", "-",
        "hw_slowdown,sw_thermal,other",
    ]  # fmt: skip
    data = cli.ok(*remote, "gpus", "--json").json
    assert data["series"] == "S" and [g["name"] for g in data["gpus"]] == [
        "NVIDIA H100 80GB HBM3",
        "NVIDIA A10",
    ]
