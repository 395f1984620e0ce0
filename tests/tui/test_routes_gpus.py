"""Routes and their deployments edited at the console, and the Dashboard's GPU gauges over a fake
NVML behind a real gateway."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from textual.pilot import Pilot
from textual.widgets import DataTable, Static

from gateway.api.common import GATEWAY
from inference.gpus import GpuMonitor
from tests.fakes.nvml import UNSUPPORTED, FakeGpu, FakeNvml
from tests.tui.conftest import Box, SealedBox
from tests.tui.test_screens import app_for, cells, settle, text
from tui import ConsoleApp, connect
from tui.screens.routes import RouteScreen


def notes(app: ConsoleApp) -> str:
    """Every note the console showed, one per line."""
    return "\n".join(str(n.message) for n in app._notifications)


async def fill_in(pilot: Pilot[Any], *values: str | None) -> None:
    """Replace each field's text in order (None keeps it), pressing Enter after each."""
    for value in values:
        if value is not None:
            await pilot.press("end", "ctrl+u", *value)
        await pilot.press("enter")


async def add_deployment(pilot: Pilot[Any], *values: str | None) -> None:
    """a in the route editor, then the deployment's five fields."""
    await pilot.press("a")
    await pilot.pause()
    await fill_in(pilot, *values)
    await pilot.pause()


def deployments(app: ConsoleApp) -> list[list[str]]:
    """The route editor's deployments table."""
    table = app.screen.query_one("#deployments", DataTable)
    return [[str(c) for c in table.get_row_at(i)] for i in range(table.row_count)]


def route_error(app: ConsoleApp) -> str:
    return str(app.screen.query_one("#route-error", Static).render())


async def open_route(pilot: Pilot[Any], app: ConsoleApp, alias: str) -> None:
    """Enter on the route's row of the Providers & models screen."""
    await pilot.press("4")
    await settle(pilot)
    app.query_one("#routes", DataTable).focus()
    row = [r[0] for r in cells(app, "#routes")].index(alias)
    await pilot.press(*["down"] * row, "enter")
    await settle(pilot)
    assert isinstance(app.screen, RouteScreen)


def two_deployments(box: Box) -> dict[str, Any]:
    return box.call(
        "PUT",
        "/routes/mix",
        {
            "strategy": "weighted",
            "deployments": [
                {"provider": "fake-openai", "upstream_model": "gpt-4o-mini", "weight": 3},
                {"provider": "fake-anthropic", "upstream_model": "claude-sonnet-4-5"},
            ],
        },
    )


async def test_create_a_route_with_two_deployments(box: Box) -> None:
    app = app_for(box)
    async with app.run_test(size=(80, 25)) as pilot:
        await pilot.press("4")
        await settle(pilot)
        await pilot.press("r")
        await settle(pilot)
        assert isinstance(app.screen, RouteScreen)
        await fill_in(pilot, "mix", "weighted", "oa", None)  # alias, strategy, fallback, 3
        assert app.focused is app.screen.query_one("#deployments")
        await add_deployment(pilot, "fake-openai", "gpt-4o-mini", "3", "128000", "tools,vision")
        await add_deployment(pilot, "fake-anthropic", "claude-sonnet-4-5", None, None, None)
        assert deployments(app) == [
            ["1", "fake-openai", "gpt-4o-mini", "3", "128000", "tools,vision"],
            ["2", "fake-anthropic", "claude-sonnet-4-5", "1", "-", "tools,json"],
        ]
        assert box.call("GET", "/routes")["data"] == []  # nothing written before ctrl+s
        await pilot.press("ctrl+s")
        await settle(pilot)
        assert not isinstance(app.screen, RouteScreen)
        assert "route mix saved" in notes(app)
        route = box.call("GET", "/routes/mix")
        assert (route["strategy"], route["fallback_alias"], route["max_attempts"]) == (
            "weighted",
            "oa",
            3,
        )
        got = [
            (d["provider"], d["upstream_model"], d["weight"], d["context_window"])
            for d in route["deployments"]
        ]
        assert got == [
            ("fake-openai", "gpt-4o-mini", 3, 128000),
            ("fake-anthropic", "claude-sonnet-4-5", 1, None),
        ]
        first, second = route["deployments"]
        assert (first["tools"], first["vision"], first["json_mode"]) == (True, True, False)
        assert (second["tools"], second["vision"], second["json_mode"]) == (True, False, True)
        assert cells(app, "#routes") == [
            [
                "mix",
                "weighted",
                "oa",
                "fake-openai/gpt-4o-mini*3, fake-anthropic/claude-sonnet-4-5*1",
            ]
        ]


async def test_edit_weights_reorder_and_remove_a_deployment(box: Box) -> None:
    before = two_deployments(box)
    ids = [d["id"] for d in before["deployments"]]
    app = app_for(box)
    async with app.run_test(size=(80, 25)) as pilot:
        await open_route(pilot, app, "mix")
        assert app.screen.query_one("#r-alias").disabled  # the alias is the route's name
        assert [r[3] for r in deployments(app)] == ["3", "1"]
        await pilot.press("down", "enter")  # the second deployment's form
        await fill_in(pilot, None, None, "5", None, None)
        await pilot.press("u")  # and first in priority
        assert [r[1] for r in deployments(app)] == ["fake-anthropic", "fake-openai"]
        await pilot.press("ctrl+s")
        await settle(pilot)
        route = box.call("GET", "/routes/mix")
        assert [(d["id"], d["weight"]) for d in route["deployments"]] == [
            (ids[1], 5),
            (ids[0], 3),
        ]
        assert route["created_at"] == before["created_at"]

        await open_route(pilot, app, "mix")
        await pilot.press("x", "ctrl+s")
        await settle(pilot)
        route = box.call("GET", "/routes/mix")
        assert [d["provider"] for d in route["deployments"]] == ["fake-openai"]


async def test_a_bad_deployment_shows_the_api_message_and_changes_nothing(box: Box) -> None:
    before = two_deployments(box)
    app = app_for(box)
    async with app.run_test(size=(80, 25)) as pilot:
        await open_route(pilot, app, "mix")
        await add_deployment(pilot, "nope", "some-model", None, None, None)
        await pilot.press("ctrl+s")
        await settle(pilot)
        assert isinstance(app.screen, RouteScreen)  # still open, to fix it
        assert route_error(app) == "deployment #3: no provider named 'nope'"
        assert box.call("GET", "/routes/mix") == before

        await add_deployment(pilot, "fake-openai", "gpt-4o", "many", None, None)
        assert route_error(app) == "weight: 'many' is not a whole number"
        await pilot.press("escape")
        await settle(pilot)
        assert not isinstance(app.screen, RouteScreen)
        assert box.call("GET", "/routes/mix") == before


async def test_an_unknown_strategy_is_the_apis_message(box: Box) -> None:
    app = app_for(box)
    async with app.run_test(size=(80, 25)) as pilot:
        await pilot.press("4")
        await settle(pilot)
        await pilot.press("r")
        await settle(pilot)
        await fill_in(pilot, "odd", "fastest", None, None)
        await add_deployment(pilot, "fake-openai", "gpt-4o-mini", None, None, None)
        await pilot.press("ctrl+s")
        await settle(pilot)
        assert "fastest" in route_error(app)
        assert box.call("GET", "/routes")["data"] == []


# --- GPU gauges -----------------------------------------------------------------------------


def fake_gpus() -> FakeNvml:
    """An H100 with uncorrected ECC errors, idle; an A10, hot and held back, without ECC."""
    return FakeNvml(
        [
            FakeGpu(ecc=(3, 2), clocks_mask=0x1),
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


@pytest.fixture
def gpu_box(box: Box) -> Iterator[Box]:
    """The box's gateway reads two fake GPUs."""
    gateway = box.stack.gateway
    assert gateway is not None
    real, gateway.gpus = gateway.gpus, GpuMonitor(fake_gpus())
    gateway.series = "S"  # as `aigw up` sets it at start, from NVML
    yield box
    gateway.gpus.close()
    gateway.gpus, gateway.series = real, "G"


async def test_dashboard_gauges_for_two_gpus(gpu_box: Box) -> None:
    app = app_for(gpu_box)
    async with app.run_test(size=(80, 25)) as pilot:
        await settle(pilot)
        dash = text(app, "#dash")
        lines = dash.splitlines()
        assert "Gateway up · series S · vault unsealed" in dash
        assert "series S" in text(app, "#top")
        assert "GPUs 2 · driver 550.54.15" in lines
        h100 = next(line for line in lines if line.startswith("  GPU0 "))
        a10 = next(line for line in lines if line.startswith("  GPU1 "))
        assert "util ████░░░░░░  37%" in h100 and "mem ░░░░░░░░░░ 1/80 GiB" in h100
        assert "45°C" in h100 and "NVIDIA H100 80GB" in h100
        assert "util ██████████ 100%" in a10 and "mem ████████░░ 20/24 GiB" in a10
        assert "83°C" in a10 and "NVIDIA A10" in a10
        assert "    ⚠ GPU0 ECC: 3 uncorrected memory errors" in lines
        assert "    ⚠ GPU1 throttled: hw slowdown, sw thermal, other" in lines
        assert not any("GPU0 throttled" in line for line in lines)  # idle is no trouble
        assert any(line.startswith("Engines ") for line in lines)
        assert all(len(line) <= 78 for line in lines if "GPU" in line)  # 80 columns


async def test_dashboard_without_gpus_says_why(box: Box) -> None:
    app = app_for(box)
    async with app.run_test(size=(80, 25)) as pilot:
        await settle(pilot)
        dash = text(app, "#dash")
        assert "GPUs none (" in dash and "GPU0" not in dash
        assert "Engines " in dash


def test_dashboard_snapshot_with_two_gpus(quiet_box: SealedBox, snap_compare: Any) -> None:
    assert quiet_box.runner is not None
    gateway = quiet_box.runner.app[GATEWAY]
    gateway.gpus, gateway.series = GpuMonitor(fake_gpus()), "S"

    async def run_before(pilot: Pilot[Any]) -> None:
        await settle(pilot)
        await pilot.pause(0.3)
        await settle(pilot)

    app = ConsoleApp(connect(quiet_box.state), refresh_seconds=3600)
    try:
        assert snap_compare(app, terminal_size=(120, 40), run_before=run_before)
    finally:
        gateway.gpus.close()


def test_route_editor_snapshot_at_80x25(quiet_box: SealedBox, snap_compare: Any) -> None:
    quiet_box.call(
        "PUT",
        "/routes/chat",
        {
            "strategy": "priority",
            "deployments": [
                {"provider": "local", "upstream_model": "llama-3.1-8b", "context_window": 8192},
                {"provider": "local", "upstream_model": "qwen2.5-7b", "vision": True},
            ],
        },
    )

    async def run_before(pilot: Pilot[Any]) -> None:
        await settle(pilot)
        await pilot.press("4")
        await settle(pilot)
        pilot.app.query_one("#routes", DataTable).focus()
        await pilot.press("enter")
        await settle(pilot)
        await pilot.pause(0.3)
        await settle(pilot)

    app = ConsoleApp(connect(quiet_box.state), refresh_seconds=3600)
    assert snap_compare(app, terminal_size=(80, 25), run_before=run_before)
