"""SVG snapshots of every screen at 80x25 and 120x40, on a box holding only fixed names."""

from __future__ import annotations

from typing import Any

import pytest
from textual.pilot import Pilot

from tests.tui.conftest import SealedBox
from tests.tui.test_screens import settle
from tui import ConsoleApp, connect
from tui.screens.system import SystemPane

SCREENS = ["1", "2", "3", "4", "5", "6", "7", "8"]


@pytest.mark.parametrize("size", [(80, 25), (120, 40)], ids=["80x25", "120x40"])
@pytest.mark.parametrize("key", SCREENS)
def test_screen(
    key: str,
    size: tuple[int, int],
    quiet_box: SealedBox,
    snap_compare: Any,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(SystemPane, "clock", staticmethod(lambda: "2025-01-01 12:00:00 UTC"))

    async def run_before(pilot: Pilot[Any]) -> None:
        await settle(pilot)
        await pilot.press(key)
        await settle(pilot)
        await pilot.pause(0.3)  # the focus moved after a refresh, and the footer follows it
        await settle(pilot)

    app = ConsoleApp(connect(quiet_box.state), refresh_seconds=3600)
    assert snap_compare(app, terminal_size=size, run_before=run_before)
