"""System: the vault (seal, unseal, rotate the key-encryption key), identity, time, network;
backups, restore and factory reset (`tui.screens.system_ops`)."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from rich.markup import escape
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import VerticalScroll
from textual.widgets import Static

from tui.client import AdminAPIError, ConsoleClient
from tui.dialogs import ConfirmScreen, Field, FormScreen
from tui.screens.system_ops import BackupActions, backups
from tui.table import Table


def utc_now() -> str:
    """The box's time as shown (UTC)."""
    return datetime.now(UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


class SystemPane(BackupActions):
    """The box itself."""

    title = "System"
    can_focus = True
    BINDINGS = [
        Binding("u", "unseal", "Unseal"),
        Binding("s", "seal", "Seal"),
        Binding("k", "rotate", "Rotate KEK"),
        Binding("b", "backup", "Backup"),
        Binding("r", "restore", "Restore"),
        Binding("f,R", "factory_reset", "Reset"),
    ]
    DEFAULT_CSS = """
    SystemPane #system-top { height: auto; max-height: 70%; }
    SystemPane #backups { height: 1fr; min-height: 3; }
    """
    clock: Callable[[], str] = staticmethod(utc_now)

    def compose(self) -> ComposeResult:
        with VerticalScroll(id="system-top"):
            yield Static("", id="clock", markup=False)
            yield Static("reading…", id="system-info")
            yield Static("", id="ops-note")
        yield Static("", id="backups-caption", classes="caption")
        yield Table(id="backups", cursor_type="row", zebra_stripes=True)

    def on_mount(self) -> None:
        self.set_interval(1.0, self._tick)

    def _tick(self) -> None:
        self.query_one("#clock", Static).update(f"Time   {self.clock()}")

    def fetch(self, api: ConsoleClient) -> dict[str, Any]:
        """The vault's state, the box's identity and its backups."""
        try:
            system = api.get("/system")
        except AdminAPIError as exc:
            if exc.status != 404:
                raise
            system = None
        return {"vault": api.get("/vault"), "system": system, "backups": backups(api)}

    def show(self, data: dict[str, Any]) -> None:
        """Vault, identity, network, backups."""
        self._tick()
        vault, system = data["vault"], data["system"]
        sealed = "[b red]SEALED[/b red]" if vault["sealed"] else "unsealed"
        lines = [
            f"[b]Vault[/b]  {sealed} · key-encryption key: {vault['kek']} · "
            f"{vault['secrets']} secrets",
            "       u unseal (passphrase) · s seal · k rotate the key-encryption key",
        ]
        if system is None:
            lines.append("[b]Box[/b]    identity: not available (this gateway has no /system)")
        else:
            tls = system.get("tls") or {}
            urls = system.get("urls") or {}
            lines += [
                f"[b]Box[/b]    {escape(str(system.get('hostname')))} · "
                f"id {system.get('appliance_id')}",
                f"       series {system.get('series')} · version {system.get('version')} · "
                f"provisioned {system.get('provisioned_at') or 'no'}",
                f"[b]Network[/b] {escape(str(urls.get('https') or '-'))}  "
                f"{escape(str(urls.get('http') or ''))}",
                f"[b]TLS[/b]    {tls.get('fingerprint') or 'off'}"
                + (
                    f" · expires in {tls.get('days_left')} days"
                    if tls.get("days_left") is not None
                    else ""
                ),
            ]
        lines += [
            "[b]Backup[/b] b back up · r restore · f factory reset (typing the appliance id)",
            "       restore: a backup listed below, or an archive's path on the box (a stick)",
        ]
        self.query_one("#system-info", Static).update("\n".join(lines))
        self.show_backups(data.get("backups"))

    def action_unseal(self) -> None:
        """u: open a passphrase vault."""

        def submit(values: dict[str, str] | None) -> None:
            if values and values["passphrase"]:
                self.act(
                    lambda api: api.post("/vault/unseal", {"passphrase": values["passphrase"]}),
                    lambda _: self.console._beat(),
                    "vault unsealed",
                )

        form = FormScreen("Unseal the vault", [Field("passphrase", "Passphrase", password=True)])
        self.app.push_screen(form, submit)

    def action_seal(self) -> None:
        """s: seal the vault (provider keys unusable until unsealed), after typing 'seal'."""

        def confirmed(ok: bool | None) -> None:
            if ok:
                self.act(
                    lambda api: api.post("/vault/seal"),
                    lambda _: self.console._beat(),
                    "vault sealed",
                )

        self.app.push_screen(
            ConfirmScreen("Seal the vault? Provider keys stop working until unsealed.", "seal"),
            confirmed,
        )

    def action_rotate(self) -> None:
        """k: re-wrap the vault under a new passphrase (a key-file vault needs none)."""
        fields = [
            Field("new", "New passphrase (empty for a key-file vault)", password=True),
            Field("again", "Again", password=True),
        ]

        def submit(values: dict[str, str] | None) -> None:
            if not values:
                return
            if values["new"] != values["again"]:
                self.console.say("the two entries differ; nothing was changed", error=True)
                return
            body = {"passphrase": values["new"]} if values["new"] else {}
            self.act(
                lambda api: api.post("/vault/rotate-kek", body),
                message="vault key-encryption key rotated",
            )

        self.app.push_screen(FormScreen("Rotate the key-encryption key", fields), submit)
