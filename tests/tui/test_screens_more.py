"""The console's remaining paths against real gateways: provider keys into the vault, local
models (import, enable, disable, engine log, delete), the last medium, editing and deleting in
the organization and the catalog, acknowledging alerts, pairing and the dashboard on a box with
TLS, and the console over TCP with an admin token (also as `aigw console` under tmux)."""

from __future__ import annotations

import shutil
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from aiohttp import web
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from textual.widgets import DataTable, Static

from appliance.config import Config, parse_config
from appliance.identity import load_identity
from appliance.store import open_store
from appliance.vault import open_vault
from gateway.admin import start_admin_socket
from gateway.app import create_app
from gateway.catalog import provider_secret_id
from gateway.state import Gateway
from inference.bundle import pack, public_key_b64
from inference.store import describe_folder
from provisioning.firstboot import provision
from provisioning.media import MediaResult, save_result
from tests.harness import LoopThread, free_port
from tests.inference.fake_models import make_model_folder
from tests.provisioning.backup_box import sys_paths
from tests.tui.conftest import Box
from tests.tui.test_screens import app_for, cells, settle, text, type_in
from tests.tui.test_tmux import AIGW, Tmux
from tui import ConsoleApp, connect
from tui.dialogs import ConfirmScreen
from tui.qr import qr_text
from tui.screens.dashboard import AlertsScreen
from tui.screens.providers import EngineScreen

VENDOR = Ed25519PrivateKey.generate()


def notes(app: ConsoleApp) -> str:
    """Every note the console showed, one per line."""
    return "\n".join(str(n.message) for n in app._notifications)


def screen_text(app: ConsoleApp) -> str:
    """What the admin can read on the screen on top: every Static and table cell."""
    parts = [str(s.render()) for s in app.screen.query(Static)]
    for table in app.screen.query(DataTable):
        parts += [str(c) for i in range(table.row_count) for c in table.get_row_at(i)]
    return "\n".join(parts)


def modal_cells(app: ConsoleApp, selector: str) -> list[list[str]]:
    """A table's rows on the screen on top (a dialog)."""
    table = app.screen.query_one(selector, DataTable)
    return [[str(c) for c in table.get_row_at(i)] for i in range(table.row_count)]


def bundle(tmp: Path, name: str) -> Path:
    """A model bundle signed by VENDOR."""
    src = make_model_folder(tmp / f"src-{name}")
    return pack(src, tmp / f"{name}.aigwmodel", VENDOR, describe_folder(src, name=name))


# --- providers and local models -------------------------------------------------------------


async def test_set_key_goes_into_the_vault_and_is_never_shown(box: Box) -> None:
    app = app_for(box)
    secret = "sk-new-openai-key-0123456789"
    vault = box.stack.vault
    before = vault.get(provider_secret_id("fake-openai"))
    async with app.run_test(size=(120, 40)) as pilot:
        await pilot.press("4")
        await settle(pilot)
        names = [r[0] for r in cells(app, "#providers")]
        assert names[:4] == ["fake-anthropic", "fake-azure", "fake-gemini", "fake-openai"]
        await pilot.press("down", "down", "down", "k")
        assert "API key of fake-openai" in screen_text(app)
        assert app.screen.query_one("#f-api_key").password  # type: ignore[attr-defined]
        await pilot.press(*secret)
        assert secret not in screen_text(app)  # masked while typed
        await pilot.press("enter")
        await settle(pilot)
        assert vault.get(provider_secret_id("fake-openai")) == secret != before
        assert "fake-openai: key stored in the vault" in notes(app)
        assert secret not in screen_text(app) and secret not in notes(app)
    for path in ("/providers", "/providers/fake-openai", "/vault", "/audit"):
        assert secret not in str(box.call("GET", path))
    assert box.chat() != 200  # the fake provider refuses the new (wrong) key: it is in use


async def test_local_model_import_enable_log_disable_delete(box: Box, tmp_path: Path) -> None:
    key = {"name": "vendor", "public_key": public_key_b64(VENDOR.public_key())}
    box.call("POST", "/trusted-keys", key)
    path = bundle(tmp_path, "tiny")
    app = app_for(box)
    async with app.run_test(size=(120, 40)) as pilot:
        await pilot.press("4")
        await settle(pilot)
        assert cells(app, "#local") == []
        await pilot.press("i")
        await type_in(pilot, str(path))
        await settle(pilot)
        (model,) = box.call("GET", "/local-models")["data"]
        assert (model["name"], model["enabled"], model["signed_by"]) == ("tiny", False, "vendor")
        assert "model tiny imported, signed by vendor" in notes(app)
        assert cells(app, "#local") == [["tiny", "no", "disabled", "-", "vendor"]]

        app.query_one("#local", DataTable).focus()
        await pilot.press("e")
        await settle(pilot)
        assert box.call("GET", "/local-models/tiny")["enabled"] is True
        # No engine manager runs in this box (no vLLM): the model waits for an engine.
        assert cells(app, "#local") == [["tiny", "yes", "pending", "-", "vendor"]]

        # Enter: the engine's state and its log, read again on each refresh.
        await pilot.press("enter")
        await settle(pilot)
        assert isinstance(app.screen, EngineScreen)
        shown = screen_text(app)
        assert "enabled yes · state pending" in shown and "no log yet" in shown
        logs = box.state / "logs"
        logs.mkdir()
        (logs / "engine-tiny.log").write_text("INFO loading weights\nINFO api server up\n")
        app.screen.reload()
        await settle(pilot)
        shown = screen_text(app)
        assert "INFO loading weights\nINFO api server up" in shown
        assert f"log: {logs / 'engine-tiny.log'}" in shown
        with open(logs / "engine-tiny.log", "a") as fh:
            fh.write("ERROR CUDA out of memory\n")
        app.screen.reload()
        await settle(pilot)
        assert "ERROR CUDA out of memory" in screen_text(app)
        await pilot.press("escape")

        # Deleting an enabled model is refused by the box, and the console says why.
        await pilot.press("x")
        assert isinstance(app.screen, ConfirmScreen)
        await type_in(pilot, "tiny")
        await settle(pilot)
        assert "enabled" in notes(app).split("\n")[-1]
        assert box.call("GET", "/local-models/tiny")["enabled"] is True
        await pilot.press("d")
        await settle(pilot)
        assert box.call("GET", "/local-models/tiny")["enabled"] is False
        await pilot.press("x")
        await type_in(pilot, "tiny")
        await settle(pilot)
        assert box.call("GET", "/local-models")["data"] == []
        assert cells(app, "#local") == []


async def test_an_unsigned_bundle_is_refused_with_the_reason(box: Box, tmp_path: Path) -> None:
    path = bundle(tmp_path, "rogue")  # VENDOR is not trusted on this box
    app = app_for(box)
    async with app.run_test(size=(80, 25)) as pilot:
        await pilot.press("4")
        await settle(pilot)
        await pilot.press("i")
        await type_in(pilot, str(path))
        await settle(pilot)
        assert app.is_running and "no key this box trusts" in notes(app).split("\n")[-1]
    assert box.call("GET", "/local-models")["data"] == []


async def test_the_last_medium_on_models_and_dashboard(box: Box) -> None:
    result = MediaResult("/dev/sdb1", "bundles", "MODELS")
    result.lines.append("+ model tiny imported from tiny.aigwmodel, signed by vendor")
    save_result(box.stack.cfg, result)
    app = app_for(box)
    async with app.run_test(size=(120, 40)) as pilot:
        await settle(pilot)
        when = result.at[:16].replace("T", " ")
        line = f"Media {when} UTC /dev/sdb1 (model bundles): done"
        assert line in text(app, "#dash")
        await pilot.press("4")
        await settle(pilot)
        assert str(app.query_one("#media", Static).render()) == line
        old = MediaResult("/dev/sdc1", "seed", "AIGW-SEED", error="bad seed")
        old.at = (datetime.now(UTC) - timedelta(days=2)).isoformat(timespec="seconds")
        save_result(box.stack.cfg, old)
        app.pane.reload()
        await settle(pilot)
        assert "(seed): FAILED: bad seed" in str(app.query_one("#media", Static).render())
        await pilot.press("1")
        await settle(pilot)
        assert "Media" not in text(app, "#dash")  # two days old: not news any more


async def test_delete_model_alias_and_provider_with_typed_confirmation(box: Box) -> None:
    box.call("POST", "/providers", {"name": "spare", "kind": "openai"})
    box.call("POST", "/models", {"alias": "sp", "provider": "spare", "upstream_model": "x"})
    app = app_for(box)
    async with app.run_test(size=(120, 40)) as pilot:
        await pilot.press("4")
        await settle(pilot)
        await pilot.press("tab")  # providers → models
        assert app.focused is app.query_one("#models")
        row = [r[0] for r in cells(app, "#models")].index("sp")
        await pilot.press(*["down"] * row, "x")
        await type_in(pilot, "oa")  # not its name: nothing happens
        await pilot.press("escape")
        await settle(pilot)
        assert box.call("GET", "/models/sp")["alias"] == "sp"
        await pilot.press("x")
        await type_in(pilot, "sp")
        await settle(pilot)
        assert "sp" not in [m["alias"] for m in box.call("GET", "/models")["data"]]
        assert "model alias sp deleted" in notes(app)
        await pilot.press("shift+tab")
        row = [r[0] for r in cells(app, "#providers")].index("spare")
        await pilot.press(*["down"] * row, "x")
        await type_in(pilot, "spare")
        await settle(pilot)
        assert "spare" not in [p["name"] for p in box.call("GET", "/providers")["data"]]


# --- organization ---------------------------------------------------------------------------


async def test_budget_edit_and_deletes_refused_while_keys_exist(box: Box) -> None:
    box.call(
        "POST",
        "/budgets",
        {"level": "project", "target": "demo", "period": "monthly", "limit_micros": 5_000_000},
    )
    box.call("POST", "/users", {"name": "bob", "department": "eng"})
    app = app_for(box)
    async with app.run_test(size=(120, 40)) as pilot:
        await pilot.press("3")
        await settle(pilot)
        await pilot.press("e")  # the budgets table's row, wherever the focus is
        await pilot.press(*["backspace"] * 8)
        await type_in(pilot, "12.50")
        await pilot.press(*["backspace"] * 8)
        await type_in(pilot, "soft")
        await pilot.press(*["backspace"] * 12)
        await type_in(pilot, "75,90")
        await settle(pilot)
        (budget,) = box.call("GET", "/budgets")["data"]
        assert (budget["limit_micros"], budget["enforcement"], budget["thresholds"]) == (
            12_500_000,
            "soft",
            [75, 90],
        )
        assert cells(app, "#budgets")[0][3:] == ["12.50", "0.00", "0%", "soft", "75%,90%"]

        # The project holds the harness key: the box refuses, the console shows why.
        await pilot.press("tab")
        assert app.focused is app.query_one("#projects")
        await pilot.press("x")
        await type_in(pilot, "demo")
        await settle(pilot)
        assert "key" in notes(app).split("\n")[-1]
        assert box.call("GET", "/projects/demo")["name"] == "demo"

        await pilot.press("tab")
        assert app.focused is app.query_one("#users")
        await pilot.press("x")
        await type_in(pilot, "bob")
        await settle(pilot)
        assert box.call("GET", "/users")["data"] == []
        assert "user bob deleted" in notes(app)

        await pilot.press("tab")
        await pilot.press("x")
        assert "Delete the monthly budget of demo?" in screen_text(app)
        await type_in(pilot, "demo")
        await settle(pilot)
        assert box.call("GET", "/budgets")["data"] == []


# --- dashboard ------------------------------------------------------------------------------


async def test_acknowledge_an_alert_from_the_dashboard(box: Box) -> None:
    assert box.chat() == 200 and box.chat("an") == 200  # unpriced models: two alerts
    app = app_for(box)
    async with app.run_test(size=(80, 25)) as pilot:
        await settle(pilot)
        assert "Open alerts 2 · a: acknowledge" in text(app, "#dash")
        await pilot.press("a")
        await settle(pilot)
        assert isinstance(app.screen, AlertsScreen)
        rows = modal_cells(app, "#open-alerts")
        assert len(rows) == 2 and all(r[3] == "unpriced_model" for r in rows)
        await pilot.press("enter")
        await settle(pilot)
        (left,) = box.call("GET", "/alerts", acknowledged="false")["data"]
        assert str(left["id"]) == modal_cells(app, "#open-alerts")[0][0]
        acked = box.call("GET", f"/alerts/{rows[0][0]}")
        assert acked["acknowledged_at"] is not None
        await pilot.press("escape")
        await settle(pilot)
        assert "Open alerts 1" in text(app, "#dash")


# --- a box with TLS: pairing, dashboard, the console over TCP -------------------------------


class TlsBox:
    """A provisioned box ([tls] enabled: first boot made its certificate) with its gateway
    on loopback TCP and its admin socket; the mDNS name set as the runner sets it."""

    def __init__(self, root: Path) -> None:
        self.port = free_port()
        self.config = root / "aigw.toml"
        state = root / "state"
        self.config.write_text(
            f'[server]\nport = {self.port}\n[state]\ndir = "{state}"\n'
            "[tls]\nenabled = true\n[provisioning]\nset_hostname = false\n"
        )
        self.cfg: Config = parse_config(
            {
                "server": {"port": self.port},
                "state": {"dir": str(state)},
                "tls": {"enabled": True},
                "provisioning": {"set_hostname": False},
            }
        )
        first = provision(self.cfg, sys_paths(root))
        assert first.admin_token is not None
        self.token, self.fingerprint = first.admin_token, first.fingerprint
        (state / "first-admin-token").unlink()  # shown elsewhere; these tests hold it
        ident = load_identity(state)
        assert ident is not None
        self.hostname = ident.hostname
        self.state = state
        self.lt = LoopThread()
        self.runner: web.AppRunner | None = None
        self.lt.run(self._start())

    async def _start(self) -> None:
        gw = Gateway(self.cfg, open_store(self.cfg.database_path), open_vault(self.cfg))
        gw.mdns_instance = self.hostname  # appliance.runner, once the advertisement is up
        self.runner = web.AppRunner(create_app(gw), access_log=None)
        await self.runner.setup()
        await web.TCPSite(self.runner, "127.0.0.1", self.port).start()
        await start_admin_socket(self.runner, self.state)

    def stop(self) -> None:
        if self.runner is not None:
            self.lt.run(self.runner.cleanup())
        self.lt.stop()


@pytest.fixture
def tls_box(tmp_path: Path) -> Iterator[TlsBox]:
    b = TlsBox(tmp_path)
    yield b
    b.stop()


async def test_pairing_and_dashboard_on_a_box_with_tls(tls_box: TlsBox) -> None:
    url = f"https://{tls_box.hostname}.local:8443"
    app = ConsoleApp(connect(tls_box.state), refresh_seconds=3600)
    async with app.run_test(size=(120, 40)) as pilot:
        await settle(pilot)
        dash = text(app, "#dash")
        assert f"LAN {url}" in dash
        assert f"mDNS {tls_box.hostname}" in dash
        assert f"TLS {tls_box.fingerprint}" in dash
        assert "First boot" in dash and "tls created" in dash
        await pilot.press("8")
        await settle(pilot)
        info = text(app, "#pair-info")
        assert f"Box URL      {url}" in info
        assert f"Fingerprint  {tls_box.fingerprint}" in info
        # The QR code carries the URL with the fingerprint to pin, and nothing else.
        qr = text(app, "#pair-qr")
        assert qr == qr_text(f"{url}#sha256={tls_box.fingerprint}") and "▀" in qr


async def test_console_over_tcp_with_an_admin_token(tls_box: TlsBox, tmp_path: Path) -> None:
    where = f"http://127.0.0.1:{tls_box.port}"
    app = ConsoleApp(connect(tmp_path / "nobox", where, tls_box.token), refresh_seconds=3600)
    async with app.run_test(size=(80, 25)) as pilot:
        await settle(pilot)
        assert "● connected · vault unsealed" in text(app, "#status")
        assert f"TLS {tls_box.fingerprint}" in text(app, "#dash")
        await pilot.press("3")
        await settle(pilot)
        await pilot.press("a")
        await type_in(pilot, "ops", "operations")
        await settle(pilot)
    made = open_store(tls_box.cfg.database_path).execute(
        "SELECT actor FROM audit WHERE object_type = 'department' AND object_id = 'ops'"
    )
    (actor,) = made.fetchone()
    assert "bootstrap" in actor or "token" in actor  # the token's name, not the socket's uid
    wrong = ConsoleApp(connect(tmp_path / "nobox", where, "aigw-admin-wrong"), refresh_seconds=3600)
    async with wrong.run_test(size=(80, 25)) as pilot:
        await settle(pilot)
        assert "The admin API refused the console" in text(wrong, "#problem")


@pytest.mark.slow
@pytest.mark.skipif(shutil.which("tmux") is None, reason="tmux is not installed")
def test_aigw_console_url_token_under_tmux(tls_box: TlsBox, tmp_path: Path) -> None:
    elsewhere = tmp_path / "elsewhere.toml"  # a config whose socket is not the box's
    elsewhere.write_text(f'[state]\ndir = "{tmp_path / "other"}"\n')
    where = f"http://127.0.0.1:{tls_box.port}"
    t = Tmux(
        [AIGW, "--config", str(elsewhere), "console", "--url", where, "--token", tls_box.token]
    )
    try:
        screen = t.wait_for("● connected")
        assert "Traceback" not in screen
        t.wait_for(f"TLS {tls_box.fingerprint[:20]}")
        t.keys("8")
        screen = t.wait_for("Fingerprint")
        assert f"https://{tls_box.hostname}.local:8443" in screen
        t.keys("q")
        deadline = time.monotonic() + 10
        while t.alive() and time.monotonic() < deadline:
            time.sleep(0.2)
        assert not t.alive()
    finally:
        t.close()
