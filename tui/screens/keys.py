"""Keys: list and filter; create (the secret once, with a QR code), rotate, disable, enable,
revoke (typed confirmation), allow-lists and limits."""

from __future__ import annotations

from typing import Any

from textual.app import ComposeResult
from textual.binding import Binding
from textual.widgets import DataTable, Input

from tui.client import ConsoleClient, segment
from tui.dialogs import ConfirmScreen, Field, FormScreen, SecretScreen
from tui.pane import Pane, fill, selected
from tui.table import Table

COLUMNS = ["name", "project", "user", "status", "prefix", "models", "rpm", "expires_at"]
_ADVICE = (
    "This is the only time the secret is shown: give it to the application now (scan the code "
    "or copy it). Enter when done."
)


def _csv(raw: str) -> list[str]:
    return [p.strip() for p in raw.split(",") if p.strip()]


def _limit(raw: str) -> int | None:
    return int(raw) if raw.strip() else None


class KeysPane(Pane):
    """Gateway keys."""

    title = "Keys"
    BINDINGS = [
        Binding("n", "create", "New"),
        Binding("r", "rotate", "Rotate"),
        Binding("d", "disable", "Disable"),
        Binding("e", "enable", "Enable"),
        Binding("x", "revoke", "Revoke"),
        Binding("l", "limits", "Limits"),
        Binding("slash", "filter", "Filter"),
    ]

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.rows: list[dict[str, Any]] = []

    def compose(self) -> ComposeResult:
        yield Input(placeholder="filter: name, project, user or status (/)", id="key-filter")
        yield Table(id="keys", cursor_type="row", zebra_stripes=True)

    def fetch(self, api: ConsoleClient) -> list[dict[str, Any]]:
        """Every key (the filter applies on screen)."""
        rows: list[dict[str, Any]] = api.get("/keys")["data"]
        return rows

    def show(self, data: list[dict[str, Any]]) -> None:
        """The keys matching the filter."""
        self.rows = data
        needle = self.query_one("#key-filter", Input).value.strip().lower()
        shown = [
            r
            for r in data
            if not needle
            or any(
                needle in str(r.get(c) or "").lower() for c in ("name", "project", "user", "status")
            )
        ]
        fill(self.query_one("#keys", DataTable), shown, COLUMNS, "id")

    def on_input_changed(self, event: Input.Changed) -> None:
        if event.input.id == "key-filter":
            self.show(self.rows)

    def on_input_submitted(self, event: Input.Submitted) -> None:
        if event.input.id == "key-filter":
            self.query_one("#keys", DataTable).focus()

    def action_filter(self) -> None:
        """Type to filter."""
        self.query_one("#key-filter", Input).focus()

    def _current(self) -> dict[str, Any] | None:
        key_id = selected(self.query_one("#keys", DataTable))
        row = next((r for r in self.rows if r["id"] == key_id), None)
        if row is None:
            self.console.say("no key selected", error=True)
        return row

    def _secret(self, title: str) -> Any:
        def done(result: dict[str, Any]) -> None:
            self.app.push_screen(SecretScreen(title, result["secret"], _ADVICE))

        return done

    def action_create(self) -> None:
        """n: a new key."""
        fields = [
            Field("name", "Name"),
            Field("project", "Project"),
            Field("user", "User (optional)"),
            Field("models", "Allowed models, comma-separated (empty: all)"),
        ]

        def submit(values: dict[str, str] | None) -> None:
            if not values:
                return
            body: dict[str, Any] = {"name": values["name"], "project": values["project"]}
            if values["user"].strip():
                body["user"] = values["user"].strip()
            if _csv(values["models"]):
                body["models"] = _csv(values["models"])
            self.act(
                lambda api: api.post("/keys", body),
                self._secret(f"New key {values['name']}: its secret"),
                f"key {values['name']} created",
            )

        self.app.push_screen(FormScreen("New key", fields), submit)

    def action_rotate(self) -> None:
        """r: a new secret; the old one works for the grace period."""
        row = self._current()
        if row is None:
            return

        def submit(values: dict[str, str] | None) -> None:
            if not values:
                return
            grace = int(values["grace"] or 0)
            self.act(
                lambda api: api.post(
                    f"/keys/{segment(row['id'])}/rotate", {"grace_seconds": grace}
                ),
                self._secret(f"Key {row['name']} rotated: its new secret"),
                f"key {row['name']} rotated; the old secret works {grace} s more",
            )

        form = FormScreen(
            f"Rotate key {row['name']}", [Field("grace", "Grace period (seconds)", "86400")]
        )
        self.app.push_screen(form, submit)

    def _simple(self, verb: str) -> None:
        row = self._current()
        if row is not None:
            self.act(
                lambda api: api.post(f"/keys/{segment(row['id'])}/{verb}"),
                message=f"key {row['name']}: {verb}d",
            )

    def action_disable(self) -> None:
        """d: stop a key (reversible)."""
        self._simple("disable")

    def action_enable(self) -> None:
        """e: let a disabled key work again."""
        self._simple("enable")

    def action_revoke(self) -> None:
        """x: revoke for good, after typing the key's name."""
        row = self._current()
        if row is None:
            return

        def confirmed(ok: bool | None) -> None:
            if ok:
                self._simple("revoke")

        self.app.push_screen(
            ConfirmScreen(f"Revoke key {row['name']} for good?", row["name"]), confirmed
        )

    def action_limits(self) -> None:
        """l: allow-lists (models, networks) and rate limits."""
        row = self._current()
        if row is None:
            return
        fields = [
            Field(
                "models", "Allowed models (comma-separated; empty: all)", ",".join(row["models"])
            ),
            Field("cidrs", "Allowed networks (CIDR, comma-separated)", ",".join(row["cidrs"])),
            Field("rpm", "Requests per minute (empty: none)", str(row["rpm"] or "")),
            Field("tpm", "Tokens per minute (empty: none)", str(row["tpm"] or "")),
        ]

        def submit(values: dict[str, str] | None) -> None:
            if not values:
                return
            try:
                body = {
                    "models": _csv(values["models"]),
                    "cidrs": _csv(values["cidrs"]),
                    "rpm": _limit(values["rpm"]),
                    "tpm": _limit(values["tpm"]),
                }
            except ValueError:
                self.console.say("limits must be whole numbers", error=True)
                return
            self.act(
                lambda api: api.patch(f"/keys/{segment(row['id'])}", body),
                message=f"key {row['name']} changed",
            )

        self.app.push_screen(FormScreen(f"Limits of key {row['name']}", fields), submit)
