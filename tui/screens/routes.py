"""A route and its deployments, edited at the console: alias, strategy, fallback, attempts, and
the deployments in priority order. The route is written whole (`PUT /routes/{alias}`), so the
admin API checks everything at once and an error changes nothing."""

from __future__ import annotations

from typing import Any

from textual import work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Grid, Vertical
from textual.screen import ModalScreen
from textual.suggester import SuggestFromList
from textual.widgets import DataTable, Footer, Input, Label, Static

from tui.client import AdminAPIError, ConsoleClient, segment
from tui.dialogs import Field, FormScreen
from tui.format import cell
from tui.table import Table

STRATEGIES = ("priority", "weighted", "least_latency", "cheapest")
# A deployment's fields the admin API accepts (what GET adds, id and position, is left out).
DEPLOYMENT_FIELDS = (
    "provider",
    "upstream_model",
    "weight",
    "params",
    "context_window",
    "tools",
    "vision",
    "json_mode",
    "confidential",
)
# Capability words as typed at the console (the CLI's words) and the API's flags.
CAPABILITIES = {
    "tools": "tools",
    "vision": "vision",
    "json": "json_mode",
    "confidential": "confidential",
}
DEFAULT_CAPABILITIES = {"tools": True, "vision": False, "json_mode": True, "confidential": False}
DEFAULT_ATTEMPTS = 3


def capabilities_text(deployment: dict[str, Any]) -> str:
    """The flags that are on, as words: 'tools,json'."""
    on = {**DEFAULT_CAPABILITIES, **deployment}
    return ",".join(word for word, flag in CAPABILITIES.items() if on.get(flag))


def parse_capabilities(text: str) -> dict[str, bool]:
    """'tools,vision' as the API's four flags; ValueError names an unknown word."""
    words = {w.strip().lower() for w in text.replace(" ", ",").split(",") if w.strip()}
    unknown = sorted(words - set(CAPABILITIES))
    if unknown:
        raise ValueError(f"unknown capability {unknown[0]!r}; use {', '.join(CAPABILITIES)}")
    return {flag: word in words for word, flag in CAPABILITIES.items()}


def whole(name: str, text: str, empty: int | None) -> int | None:
    """A whole number typed in a field ('' gives `empty`); ValueError says which field."""
    text = text.strip()
    if not text:
        return empty
    try:
        return int(text)
    except ValueError:
        raise ValueError(f"{name}: {text!r} is not a whole number") from None


def deployment_label(d: dict[str, Any], strategy: str) -> str:
    """'provider/model', with its weight on a weighted route."""
    label = f"{d.get('provider')}/{d.get('upstream_model')}"
    return f"{label}*{d.get('weight', 1)}" if strategy == "weighted" else label


class RouteScreen(ModalScreen[str | None]):
    """Create a route (alias None) or edit one; dismissed with the alias once saved."""

    DEFAULT_CSS = """
    RouteScreen { align: center middle; }
    #route-box { width: 78; height: auto; max-height: 100%; border: thick $primary;
                 background: $surface; padding: 0 1; }
    #route-form { grid-size: 2; grid-columns: 14 1fr; grid-rows: 1; height: auto; }
    #route-form Input { width: 1fr; }
    #route-error { color: $error; height: auto; }
    """
    BINDINGS = [
        Binding("ctrl+s", "save", "Save"),
        Binding("a", "add", "Add deployment"),
        Binding("x,delete", "remove", "Remove"),
        Binding("u", "up", "Up"),
        Binding("escape", "cancel", "Cancel"),
    ]

    def __init__(self, api: ConsoleClient, alias: str | None = None) -> None:
        super().__init__()
        self.api, self.alias = api, alias
        self.route: dict[str, Any] = {}  # as read: tiers and max_seconds are kept as they are
        self.deployments: list[dict[str, Any]] = []

    def compose(self) -> ComposeResult:
        title = f"Route {self.alias}" if self.alias else "New route"
        with Vertical(id="route-box"):
            yield Label(title, classes="dialog-title", markup=False)
            with Grid(id="route-form"):
                yield Label("Alias")
                yield Input(self.alias or "", id="r-alias", compact=True, disabled=bool(self.alias))
                yield Label("Strategy")
                yield Input(
                    "priority",
                    id="r-strategy",
                    compact=True,
                    placeholder=", ".join(STRATEGIES),
                    suggester=SuggestFromList(STRATEGIES),
                )
                yield Label("Fallback")
                yield Input(id="r-fallback", compact=True, placeholder="a route or model (none)")
                yield Label("Max attempts")
                yield Input(str(DEFAULT_ATTEMPTS), id="r-attempts", compact=True)
            yield Label("Deployments, in priority order: a add · Enter edit · x remove · u up")
            yield Table(id="deployments", cursor_type="row")
            yield Static("", id="route-error", markup=False)
        yield Footer(show_command_palette=False)

    def on_mount(self) -> None:
        table = self.query_one("#deployments", DataTable)
        # Inline, as the console's `DataTable { height: 1fr }` outranks DEFAULT_CSS.
        table.styles.height, table.styles.max_height = "auto", 12
        for c in ("#", "provider", "upstream model", "weight", "context", "capabilities"):
            table.add_column(c)
        if self.alias:
            self._read(self.alias)
        else:
            self.query_one("#r-alias", Input).focus()

    @work(thread=True, exclusive=True, group="route")
    def _read(self, alias: str) -> None:
        try:
            route = self.api.get(f"/routes/{segment(alias)}")
        except AdminAPIError as exc:
            self.app.call_from_thread(self._error, exc.message)
            return
        self.app.call_from_thread(self._fill, route)

    def _fill(self, route: dict[str, Any]) -> None:
        if not self.is_attached:
            return
        self.route = route
        self.deployments = [
            {k: d[k] for k in DEPLOYMENT_FIELDS if k in d} for d in route.get("deployments") or []
        ]
        self.query_one("#r-strategy", Input).value = str(route.get("strategy") or "priority")
        self.query_one("#r-fallback", Input).value = str(route.get("fallback_alias") or "")
        self.query_one("#r-attempts", Input).value = str(
            route.get("max_attempts") or DEFAULT_ATTEMPTS
        )
        self._show_deployments()
        self.query_one("#deployments", DataTable).focus()

    def _show_deployments(self, row: int | None = None) -> None:
        table = self.query_one("#deployments", DataTable)
        keep = table.cursor_row if row is None else row
        table.clear()
        for i, d in enumerate(self.deployments):
            table.add_row(
                str(i + 1),
                cell(d.get("provider")),
                cell(d.get("upstream_model")),
                cell(d.get("weight", 1)),
                cell(d.get("context_window")),
                capabilities_text(d) or "-",
                key=str(i),
            )
        if self.deployments:
            table.move_cursor(row=max(0, min(keep, len(self.deployments) - 1)))

    def _error(self, message: str) -> None:
        if self.is_attached:
            self.query_one("#route-error", Static).update(message)
        self.notify(message, severity="error", timeout=6)

    def on_input_submitted(self, event: Input.Submitted) -> None:
        """Enter moves down the fields, then to the deployments."""
        inputs = [i for i in self.query(Input) if not i.disabled]
        index = inputs.index(event.input)
        if index + 1 < len(inputs):
            inputs[index + 1].focus()
        else:
            self.query_one("#deployments", DataTable).focus()

    # --- deployments --------------------------------------------------------------------

    def _cursor(self) -> int | None:
        table = self.query_one("#deployments", DataTable)
        return table.cursor_row if self.deployments and table.row_count else None

    def action_add(self) -> None:
        """a: a deployment at the end (the lowest priority)."""
        self._edit(None)

    def on_data_table_row_selected(self, event: DataTable.RowSelected) -> None:
        """Enter on a deployment: edit it."""
        self._edit(event.cursor_row)

    def _edit(self, index: int | None) -> None:
        d = self.deployments[index] if index is not None else {}
        fields = [
            Field("provider", "Provider", str(d.get("provider") or "")),
            Field("upstream_model", "Upstream model", str(d.get("upstream_model") or "")),
            Field("weight", "Weight (for weighted; 0 never picks it)", str(d.get("weight", 1))),
            Field(
                "context",
                "Context window in tokens (empty: unknown)",
                str(d.get("context_window") or ""),
            ),
            Field(
                "capabilities",
                f"Capabilities ({', '.join(CAPABILITIES)})",
                capabilities_text(d) if d else "tools,json",
            ),
        ]
        title = f"Deployment #{index + 1}" if index is not None else "Add a deployment"

        def done(values: dict[str, str] | None) -> None:
            if values is not None:
                self._put_deployment(index, values)

        self.app.push_screen(FormScreen(title, fields), done)

    def _put_deployment(self, index: int | None, values: dict[str, str]) -> None:
        try:
            new = {
                "provider": values["provider"].strip(),
                "upstream_model": values["upstream_model"].strip(),
                "weight": whole("weight", values["weight"], 1),
                "context_window": whole("context window", values["context"], None),
                **parse_capabilities(values["capabilities"]),
            }
        except ValueError as exc:
            self._error(str(exc))
            return
        if index is None:
            self.deployments.append(new)
            index = len(self.deployments) - 1
        else:
            self.deployments[index] = {**self.deployments[index], **new}  # params are kept
        self.query_one("#route-error", Static).update("")
        self._show_deployments(index)

    def action_remove(self) -> None:
        """x: take the deployment under the cursor out (saved with ctrl+s)."""
        index = self._cursor()
        if index is not None:
            del self.deployments[index]
            self._show_deployments()

    def action_up(self) -> None:
        """u: the deployment under the cursor one place up in priority."""
        index = self._cursor()
        if index:
            d = self.deployments
            d[index - 1], d[index] = d[index], d[index - 1]
            self._show_deployments(index - 1)

    # --- save ---------------------------------------------------------------------------

    def body(self) -> dict[str, Any]:
        """The PUT body from the form; ValueError for what the console can tell at once."""
        strategy = self.query_one("#r-strategy", Input).value.strip()
        body: dict[str, Any] = {"strategy": strategy, "deployments": self.deployments}
        body["fallback_alias"] = self.query_one("#r-fallback", Input).value.strip() or None
        attempts = whole("max attempts", self.query_one("#r-attempts", Input).value, None)
        body["max_attempts"] = DEFAULT_ATTEMPTS if attempts is None else attempts
        for kept in ("tiers", "max_seconds"):
            if self.route.get(kept) is not None:
                body[kept] = self.route[kept]
        return body

    def action_save(self) -> None:
        """ctrl+s: write the route whole; the API's message when it refuses."""
        alias = self.query_one("#r-alias", Input).value.strip()
        if not alias:
            self._error("give the route an alias (what applications send as the model)")
            return
        try:
            body = self.body()
        except ValueError as exc:
            self._error(str(exc))
            return
        self._save(alias, body)

    @work(thread=True, exclusive=True, group="route")
    def _save(self, alias: str, body: dict[str, Any]) -> None:
        try:
            self.api.put(f"/routes/{segment(alias)}", body)
        except AdminAPIError as exc:
            self.app.call_from_thread(self._error, exc.message)
            return
        self.app.call_from_thread(self.dismiss, alias)

    def action_cancel(self) -> None:
        """Escape: nothing is written."""
        self.dismiss(None)
