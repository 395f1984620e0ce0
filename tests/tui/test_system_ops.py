"""The System screen's backup, restore and factory reset, driven by keys against a real gateway
(no restart hook here: the work is staged for the next start, which the console says)."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from textual.pilot import Pilot
from textual.widgets import DataTable, Static

from appliance.identity import Identity, save_identity
from provisioning.pending import PENDING_RESET
from tests.tui.conftest import Box
from tests.tui.test_screens import cells, settle, text, type_in
from tui import ConsoleApp, connect
from tui.dialogs import ConfirmScreen, FormScreen

PASSPHRASE = "correct horse battery staple"
APPLIANCE_ID = "0123456789abcdef0123456789abcdef"


@pytest.fixture
def idbox(tmp_path: Path) -> Iterator[Box]:
    """A running box with an identity (the factory reset is confirmed by its id)."""
    state = tmp_path / "state"
    save_identity(state, Identity(APPLIANCE_ID, "aigw-0123", "2025-01-01T00:00:00+00:00"))
    b = Box(state)
    yield b
    b.stop()


def mismatch(app: ConsoleApp) -> str:
    """What the confirmation dialog says under its field."""
    return str(app.screen.query_one("#mismatch", Static).render())


def staged(state: Path) -> list[Path]:
    return [p for p in state.iterdir() if p.name.startswith((".restore-", ".upload-"))]


async def open_system(pilot: Pilot[Any]) -> None:
    await settle(pilot)
    await pilot.press("7")
    await settle(pilot)


async def back_up(pilot: Pilot[Any]) -> None:
    await pilot.press("b")
    await type_in(pilot, PASSPHRASE, PASSPHRASE)
    await settle(pilot)


@pytest.mark.slow  # scrypt's 128 MiB per archive, on each try
async def test_backup_is_typed_twice_and_listed(idbox: Box) -> None:
    app = ConsoleApp(connect(idbox.state), refresh_seconds=3600)
    async with app.run_test(size=(100, 30)) as pilot:
        await open_system(pilot)
        assert "none yet" in text(app, "#backups-caption")
        await pilot.press("b")
        assert isinstance(app.screen, FormScreen)
        await type_in(pilot, PASSPHRASE, PASSPHRASE + "x")
        await settle(pilot)
        assert not (idbox.state / "backups").exists() or not any(
            (idbox.state / "backups").iterdir()
        )
        await back_up(pilot)
        [made] = list((idbox.state / "backups").iterdir())
        rows = cells(app, "#backups")
        assert [r[0] for r in rows] == [made.name] and rows[0][1].endswith("KiB")
        assert "Backups" in text(app, "#backups-caption")


@pytest.mark.slow
async def test_restore_needs_the_typed_word_then_stages(idbox: Box, tmp_path: Path) -> None:
    app = ConsoleApp(connect(idbox.state), refresh_seconds=3600)
    async with app.run_test(size=(100, 30)) as pilot:
        await open_system(pilot)
        await back_up(pilot)
        app.query_one("#backups", DataTable).focus()
        # A wrong passphrase: the API says why, nothing is staged.
        await pilot.press("r")
        await type_in(pilot, "", "not the passphrase")
        assert isinstance(app.screen, ConfirmScreen)
        await type_in(pilot, "restore")
        await settle(pilot)
        assert staged(idbox.state) == []
        # The typed confirmation must be exact.
        await pilot.press("r")
        await type_in(pilot, "", PASSPHRASE, "restor")
        await settle(pilot)
        assert isinstance(app.screen, ConfirmScreen)
        assert "nothing was done" in mismatch(app)
        await pilot.press("escape")
        await settle(pilot)
        assert staged(idbox.state) == []
        # Right: staged (this test gateway cannot restart itself: the console says when).
        await pilot.press("r")
        await type_in(pilot, "", PASSPHRASE, "restore")
        await settle(pilot)
        [stage] = staged(idbox.state)
        assert (stage / "plan.json").is_file()
        assert "Restore pending" in text(app, "#ops-note")
        # A file on this machine (a stick): uploaded, and it supersedes the first.
        stick = tmp_path / "stick"
        stick.mkdir()
        [archive] = list((idbox.state / "backups").iterdir())
        shutil.copy(archive, stick / "copy.aigw-backup")
        await pilot.press("r")
        await pilot.press("ctrl+u")
        await type_in(pilot, str(stick / "copy.aigw-backup"), PASSPHRASE, "restore")
        await settle(pilot)
        [again] = staged(idbox.state)
        assert again != stage and (again / "plan.json").is_file()


async def test_factory_reset_needs_the_appliance_id(idbox: Box) -> None:
    app = ConsoleApp(connect(idbox.state), refresh_seconds=3600)
    async with app.run_test(size=(100, 30)) as pilot:
        await open_system(pilot)
        await pilot.press("f")
        await settle(pilot)
        assert isinstance(app.screen, ConfirmScreen)
        assert APPLIANCE_ID in app.screen.what
        await type_in(pilot, "0" * 32)
        await settle(pilot)
        assert "nothing was done" in mismatch(app)
        await pilot.press("escape")
        await settle(pilot)
        assert not (idbox.state / PENDING_RESET).exists()
        await pilot.press("R")
        await type_in(pilot, APPLIANCE_ID)
        await settle(pilot)
        assert (idbox.state / PENDING_RESET).is_file()
        assert "Factory reset pending" in text(app, "#ops-note")
