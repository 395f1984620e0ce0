"""The System screen's backups, restore and factory reset, through the admin API.

A restore takes a backup listed on the box or a file on this machine (the console runs as root
on the box, so a stick mounted there can be read and uploaded). Both a restore and a reset are
typed out before anything is sent; the gateway then restarts, and the console shows it down
until it answers again.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from rich.markup import escape
from textual.widgets import DataTable, Static

from tui.client import AdminAPIError, ConsoleClient
from tui.dialogs import ConfirmScreen, Field, FormScreen
from tui.pane import Pane, fill, selected

SLOW_S = 600.0  # scrypt, the database's snapshot and checks: seconds, minutes for large ones
NOTE_S = 30.0  # how long "restarting" stays on screen once the gateway answers again
BACKUP_COLUMNS = ["name", "size", "created_at"]
MIN_PASSPHRASE = 12  # provisioning.backup_archive.MIN_PASSPHRASE_CHARS (the API checks it)


def human_size(size: int) -> str:
    """Bytes as KiB, MiB or GiB."""
    value, unit = float(size), "B"
    for unit in ("B", "KiB", "MiB", "GiB"):
        if value < 1024 or unit == "GiB":
            break
        value /= 1024
    return f"{size} B" if unit == "B" else f"{value:.1f} {unit}"


class BackupActions(Pane):
    """b back up · r restore · f factory reset; the backups on the box in `#backups`."""

    def show_backups(self, rows: list[dict[str, Any]] | None) -> None:
        """The backups table (None: this gateway has no backup routes)."""
        table: DataTable[str] = self.query_one("#backups", DataTable)
        shown = [{**r, "size": human_size(int(r["size"]))} for r in rows or []]
        fill(table, shown, BACKUP_COLUMNS, "name")
        if time.monotonic() - self.restarted_at > NOTE_S:
            self.query_one("#ops-note", Static).update("")
        caption = self.query_one("#backups-caption", Static)
        caption.update(
            "[b]Backups[/b] on the box: none yet (b to make one)"
            if not shown
            else f"[b]Backups[/b] on the box ({len(shown)}), newest first"
        )

    restarted_at = -1e9  # when a restore or reset was accepted (monotonic)

    def restarting(self, what: str, answer: dict[str, Any]) -> None:
        """The gateway stops to finish `what`; the console waits for it to answer again."""
        self.restarted_at = time.monotonic()
        if answer.get("restart"):
            note = (
                f"[b]The gateway is restarting[/b] to finish the {what}; the console "
                "reconnects by itself."
            )
        else:  # served by a gateway that cannot restart itself (the CLI's in-process API)
            note = f"[b]{what.capitalize()} pending:[/b] {escape(str(answer.get('message')))}"
        self.query_one("#ops-note", Static).update(note)
        self.console.say(
            f"{what} accepted: "
            + ("the gateway is restarting" if answer.get("restart") else "pending")
        )

    def action_backup(self) -> None:
        """b: write an encrypted backup on the box (the passphrase typed twice)."""
        fields = [
            Field("passphrase", f"Passphrase ({MIN_PASSPHRASE} characters or more)", password=True),
            Field("again", "Again", password=True),
        ]

        def submit(values: dict[str, str] | None) -> None:
            if not values:
                return
            if values["passphrase"] != values["again"]:
                self.console.say("the two entries differ; nothing was done", error=True)
                return
            body = {"passphrase": values["passphrase"]}
            self.act(
                lambda api: api.slow("POST", "/system/backups", body, SLOW_S),
                lambda made: self.console.say(f"backup {made['name']} written on the box"),
            )

        note = "Keep the passphrase apart from the archive: without it nothing can be restored."
        self.app.push_screen(FormScreen("Back up this box", fields, note), submit)

    def action_restore(self) -> None:
        """r: restore a listed backup or a file on this machine, after typing 'restore'."""
        table: DataTable[str] = self.query_one("#backups", DataTable)
        fields = [
            Field(
                "source",
                "Backup: a name from the list, or a file path on this machine",
                selected(table) or "",
                placeholder="/media/usb/aigw-....aigw-backup",
            ),
            Field("passphrase", "Backup passphrase", password=True),
        ]

        def submit(values: dict[str, str] | None) -> None:
            if not values or not values["source"].strip() or not values["passphrase"]:
                return
            source, passphrase = values["source"].strip(), values["passphrase"]

            def confirmed(ok: bool | None) -> None:
                if ok:
                    self.act(
                        lambda api: restore_call(api, source, passphrase),
                        lambda answer: self.restarting("restore", answer),
                    )

            self.app.push_screen(
                ConfirmScreen(
                    f"Restore {source}? This box's data, keys and vault are replaced by the "
                    "backup's, and the gateway restarts.",
                    "restore",
                ),
                confirmed,
            )

        self.app.push_screen(FormScreen("Restore a backup", fields), submit)

    def action_factory_reset(self) -> None:
        """f: wipe the box back to first boot, after typing its appliance id."""
        system = self.console.system or {}
        appliance_id = system.get("appliance_id")
        if not appliance_id:
            self.console.say("the appliance id is not known yet; try again", error=True)
            return

        def confirmed(ok: bool | None) -> None:
            if ok:
                self.act(
                    lambda api: api.post("/system/factory-reset", {"confirm": appliance_id}),
                    lambda answer: self.restarting("factory reset", answer),
                )

        self.app.push_screen(
            ConfirmScreen(
                "Factory reset: erase the database, the vault and its key, the identity, TLS, "
                "models and backups; the box provisions itself anew. There is no undo. "
                f"Appliance id {appliance_id}.",
                appliance_id,
            ),
            confirmed,
        )


def restore_call(api: ConsoleClient, source: str, passphrase: str) -> Any:
    """A name restores a backup on the box; a path uploads a file from this machine."""
    if "/" not in source:
        body = {"name": source, "passphrase": passphrase}
        return api.slow("POST", "/system/restore", body, SLOW_S)
    headers = {"X-Aigw-Backup-Passphrase": passphrase}
    return api.upload("/system/restore", Path(source), headers, SLOW_S)


def backups(api: ConsoleClient) -> list[dict[str, Any]] | None:
    """The backups on the box; None from a gateway without the route."""
    try:
        return list(api.get("/system/backups")["data"])
    except AdminAPIError as exc:
        if exc.status in (403, 404):
            return None
        raise
