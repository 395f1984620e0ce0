"""A gateway that is down and a vault that is sealed are shown with what to do, never a crash."""

from __future__ import annotations

from pathlib import Path

from textual.widgets import Static

from tests.tui.conftest import PASSPHRASE, Box, SealedBox
from tests.tui.test_screens import settle, text, type_in
from tui import ConsoleApp, connect
from tui.dialogs import SecretScreen


async def test_gateway_down_is_a_panel_and_recovers(tmp_path: Path) -> None:
    app = ConsoleApp(connect(tmp_path / "nobox"), refresh_seconds=3600)
    async with app.run_test(size=(80, 25)) as pilot:
        await settle(pilot)
        panel = text(app, "#problem")
        assert "The gateway is not answering" in panel
        assert "systemctl start aigw-gateway" in panel
        assert not app.query_one("#screens").display
        assert "gateway DOWN" in text(app, "#status")
        for key in ("2", "3", "4", "5", "6", "7", "8", "1"):
            await pilot.press(key)
            await settle(pilot)
        assert app.is_running and "not answering" in text(app, "#problem")


async def test_box_going_down_then_up_again(box: Box) -> None:
    app = ConsoleApp(connect(box.state), refresh_seconds=3600)
    async with app.run_test(size=(80, 25)) as pilot:
        await settle(pilot)
        assert "connected" in text(app, "#status")
        box.stack.lt.run(box.stack.runner.cleanup())  # type: ignore[union-attr]
        box.stack.runner = None
        app._beat()
        await settle(pilot)
        assert "not answering" in text(app, "#problem")


async def test_sealed_vault_panel_then_unseal_from_system(sealed_box: SealedBox) -> None:
    app = ConsoleApp(connect(sealed_box.state), refresh_seconds=3600)
    async with app.run_test(size=(80, 25)) as pilot:
        await settle(pilot)
        assert "The vault is sealed" in text(app, "#problem")
        assert "vault SEALED (passphrase)" in text(app, "#status")
        assert app.query_one("#screens").display  # the rest of the console still works
        await pilot.press("7")
        await settle(pilot)
        assert "SEALED" in text(app, "#system-info")
        await pilot.press("u")
        await type_in(pilot, "wrong passphrase")
        await settle(pilot)
        assert sealed_box.vault()["sealed"] is True
        assert app.is_running
        await pilot.press("u")
        await type_in(pilot, PASSPHRASE)
        await settle(pilot)
        assert sealed_box.vault()["sealed"] is False
        await settle(pilot)
        assert not app.query_one("#problem", Static).has_class("shown")
        assert "vault unsealed" in text(app, "#status")
        await pilot.press("s")
        await type_in(pilot, "seal")
        await settle(pilot)
        assert sealed_box.vault()["sealed"] is True


async def test_first_admin_token_shown_once(box: Box) -> None:
    (box.state / "first-admin-token").write_text("aigw-admin-first-token-for-test\n")
    app = ConsoleApp(connect(box.state), refresh_seconds=3600)
    async with app.run_test(size=(80, 25)) as pilot:
        await settle(pilot)
        assert isinstance(app.screen, SecretScreen)
        secret = str(app.screen.query_one("#secret", Static).render())
        assert secret == "aigw-admin-first-token-for-test"
        await pilot.press("enter")
        assert not isinstance(app.screen, SecretScreen)
    assert not (box.state / "first-admin-token").exists()
    again = ConsoleApp(connect(box.state), refresh_seconds=3600)
    async with again.run_test(size=(80, 25)) as pilot:
        await settle(pilot)
        assert not isinstance(again.screen, SecretScreen)
