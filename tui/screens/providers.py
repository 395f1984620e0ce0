"""Providers and models: providers with their keys (into the vault), model aliases, routes and
their deployments, local models (import from media, enable, disable, delete) and their engines'
state and recent log lines."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from textual import work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical, VerticalScroll
from textual.screen import ModalScreen
from textual.widgets import DataTable, Label, Static

from tui.client import AdminAPIError, ConsoleClient, segment
from tui.dialogs import ConfirmScreen, Field, FormScreen
from tui.pane import Pane, fill, selected
from tui.screens.routes import RouteScreen, deployment_label
from tui.table import Table

# What `x` deletes, by the table that has the focus: (what, the admin API's collection).
_DELETABLE = {
    "providers": ("provider", "/providers"),
    "models": ("model alias", "/models"),
    "routes": ("route", "/routes"),
    "local": ("local model (and its files)", "/local-models"),
}
MEDIA_RECENT = timedelta(days=1)
IMPORT_TIMEOUT_S = 6 * 3600.0  # a bundle of tens of gigabytes, every byte hashed


def media_line(result: dict[str, Any] | None) -> str:
    """The last medium in one line: when, what, and how it went."""
    if not result:
        return "Media: none inserted yet (a stick with model bundles imports them by itself)"
    what = {"seed": "seed", "bundles": "model bundles", "backups": "backups"}.get(
        str(result.get("kind")), str(result.get("kind"))
    )
    outcome = "done" if result.get("ok") else f"FAILED: {result.get('error')}"
    when = str(result.get("at") or "?")[:16].replace("T", " ")
    return f"Media {when} UTC {result.get('device')} ({what}): {outcome}"


def media_is_recent(result: dict[str, Any] | None, now: datetime | None = None) -> bool:
    """Handled within the last day (the Dashboard mentions it then)."""
    try:
        at = datetime.fromisoformat(str((result or {}).get("at")))
    except ValueError:
        return False
    at = at if at.tzinfo else at.replace(tzinfo=UTC)
    return (now or datetime.now(UTC)) - at < MEDIA_RECENT


def last_media(api: ConsoleClient) -> dict[str, Any] | None:
    """The last medium's result; None when there is none (or the gateway predates it)."""
    try:
        result: dict[str, Any] | None = api.get("/media/last")["result"]
    except AdminAPIError as exc:
        if exc.status == 404:
            return None
        raise
    return result


class EngineScreen(ModalScreen[None]):
    """One local model's engine: its state and its recent log lines, read again and again."""

    DEFAULT_CSS = """
    EngineScreen { align: center middle; }
    #engine-box { width: 100%; height: 100%; border: thick $primary; background: $surface;
                  padding: 0 1; }
    #engine-state { height: auto; color: $text-muted; }
    #engine-scroll { height: 1fr; }
    """
    BINDINGS = [Binding("escape,enter", "close", "Close")]

    def __init__(self, name: str, api: ConsoleClient, refresh_seconds: float) -> None:
        super().__init__()
        self.model, self.api, self.refresh_seconds = name, api, refresh_seconds

    def compose(self) -> ComposeResult:
        with Vertical(id="engine-box"):
            yield Label(f"Engine of {self.model}", classes="dialog-title")
            yield Static("reading…", id="engine-state", markup=False)
            with VerticalScroll(id="engine-scroll"):
                yield Static("", id="engine-log", markup=False)

    def on_mount(self) -> None:
        self.reload()
        self.set_interval(self.refresh_seconds, self.reload)

    def reload(self) -> None:
        """Read the state and the log again (in a thread)."""
        self._read(max(5, min(200, self.app.size.height - 9)))

    @work(thread=True, exclusive=True, group="engine")
    def _read(self, lines: int) -> None:
        try:
            model = self.api.get(f"/local-models/{segment(self.model)}")
            engines = self.api.get("/engines")["data"]
            log = self.api.get(f"/engines/{segment(self.model)}/log", lines=lines)
        except AdminAPIError as exc:
            self.app.call_from_thread(self._show, f"cannot read it: {exc.message}", "")
            return
        engine = next((e for e in engines if e.get("name") == self.model), None)
        state = f"enabled {'yes' if model.get('enabled') else 'no'} · state {model.get('state')}"
        if engine is not None:
            state += f" · engine {engine.get('state')}"
            if engine.get("error"):
                state += f" ({engine['error']})"
        source = f"log: {log.get('where') or log.get('source')}"
        text = "\n".join(log.get("lines") or []) or f"({log.get('note') or 'empty'})"
        self.app.call_from_thread(self._show, f"{state}\n{source}", text)

    def _show(self, state: str, text: str) -> None:
        if not self.is_attached:
            return
        self.query_one("#engine-state", Static).update(state)
        self.query_one("#engine-log", Static).update(text)
        self.query_one("#engine-scroll", VerticalScroll).scroll_end(animate=False)

    def action_close(self) -> None:
        """Back to the models."""
        self.dismiss(None)


class ProvidersPane(Pane):
    """Where requests go."""

    title = "Providers and models"
    # 80 columns hold these; enable and disable are named in the local models' caption.
    BINDINGS = [
        Binding("a", "add_provider", "Provider"),
        Binding("k", "set_key", "Key"),
        Binding("m", "add_model", "Model"),
        Binding("r", "new_route", "Route"),
        Binding("i", "import", "Import"),
        Binding("e", "enable", "Enable local", show=False),
        Binding("d", "disable", "Disable local", show=False),
        Binding("l", "engine", "Log"),
        Binding("x", "delete", "Delete"),
    ]

    def compose(self) -> ComposeResult:
        yield Label("Providers (a add, k key, x delete)", classes="caption")
        yield Table(id="providers", cursor_type="row")
        yield Label("Models (m add) · routes (r new, Enter edit, x delete)", classes="caption")
        yield Table(id="models", cursor_type="row")
        yield Table(id="routes", cursor_type="row")
        yield Label(
            "Local models (i import, e/d enable/disable, Enter or l: engine log)",
            classes="caption",
        )
        yield Table(id="local", cursor_type="row")
        yield Label("", id="media", classes="caption", markup=False)

    def fetch(self, api: ConsoleClient) -> dict[str, Any]:
        """Providers, models, routes, local models with their engines, the last medium."""
        return {
            "providers": api.get("/providers")["data"],
            "models": api.get("/models")["data"],
            "routes": api.get("/routes")["data"],
            "local": api.get("/local-models")["data"],
            "engines": api.get("/engines")["data"],
            "media": last_media(api),
        }

    def show(self, data: dict[str, Any]) -> None:
        """Four tables (base URLs left out: they are long and say little at the box)."""
        fill(
            self.query_one("#providers", DataTable),
            data["providers"],
            ["name", "kind", "key_source"],
            "name",
        )
        fill(
            self.query_one("#models", DataTable),
            data["models"],
            ["alias", "provider", "upstream_model"],
            "alias",
        )
        routes = [
            {
                **r,
                "deployments": ", ".join(
                    deployment_label(d, str(r.get("strategy"))) for d in r.get("deployments") or []
                ),
                "fallback": r.get("fallback_alias"),
            }
            for r in data["routes"]
        ]
        fill(
            self.query_one("#routes", DataTable),
            routes,
            ["alias", "strategy", "fallback", "deployments"],
            "alias",
        )
        engines = {e.get("name"): e for e in data["engines"]}
        local = [
            {
                **m,
                "engine": (engines.get(m.get("name")) or {}).get("state") or m.get("engine_state"),
            }
            for m in data["local"]
        ]
        fill(
            self.query_one("#local", DataTable),
            local,
            ["name", "enabled", "state", "engine", "signed_by"],
            "name",
        )
        self.query_one("#media", Label).update(media_line(data["media"]))

    def action_add_provider(self) -> None:
        """a: a provider and its API key, typed masked, stored straight into the vault."""
        fields = [
            Field("name", "Name"),
            Field("kind", "Kind (openai, anthropic, gemini, azure-openai, ...)", "openai"),
            Field("base_url", "Base URL (empty: the kind's default)"),
            Field("api_key", "API key (stored in the vault, never shown again)", password=True),
        ]

        def submit(values: dict[str, str] | None) -> None:
            if not values:
                return
            body = {"name": values["name"], "kind": values["kind"]}
            if values["base_url"].strip():
                body["base_url"] = values["base_url"].strip()
            key = values["api_key"]

            def call(api: ConsoleClient) -> None:
                api.post("/providers", body)
                if key:
                    api.put(f"/providers/{segment(body['name'])}/key", {"api_key": key})

            self.act(call, message=f"provider {values['name']} added")

        self.app.push_screen(FormScreen("Add a provider", fields), submit)

    def action_set_key(self) -> None:
        """k: a new API key for the selected provider."""
        name = selected(self.query_one("#providers", DataTable))
        if name is None:
            return

        def submit(values: dict[str, str] | None) -> None:
            if values and values["api_key"]:
                self.act(
                    lambda api: api.put(
                        f"/providers/{segment(name)}/key", {"api_key": values["api_key"]}
                    ),
                    message=f"provider {name}: key stored in the vault",
                )

        form = FormScreen(f"API key of {name}", [Field("api_key", "API key", password=True)])
        self.app.push_screen(form, submit)

    def action_add_model(self) -> None:
        """m: a model alias on a provider."""
        fields = [
            Field("alias", "Alias"),
            Field("provider", "Provider"),
            Field("upstream", "Upstream model"),
        ]

        def submit(values: dict[str, str] | None) -> None:
            if values:
                body = {
                    "alias": values["alias"],
                    "provider": values["provider"],
                    "upstream_model": values["upstream"],
                }
                self.act(
                    lambda api: api.post("/models", body), message=f"model {values['alias']} added"
                )

        self.app.push_screen(FormScreen("Add a model", fields), submit)

    def _local(self, verb: str) -> None:
        name = selected(self.query_one("#local", DataTable))
        if name is None:
            self.console.say("no local model selected", error=True)
            return
        self.act(
            lambda api: api.post(f"/local-models/{segment(name)}/{verb}"),
            message=f"{name}: {verb}d",
        )

    def action_enable(self) -> None:
        """e: start the selected local model's engine."""
        self._local("enable")

    def action_disable(self) -> None:
        """d: stop it."""
        self._local("disable")

    def action_engine(self) -> None:
        """l (or Enter on a local model): its engine's state and recent log lines."""
        name = selected(self.query_one("#local", DataTable))
        if name is None:
            self.console.say("no local model selected", error=True)
            return
        self.app.push_screen(EngineScreen(name, self.api, self.console.refresh_seconds))

    def on_data_table_row_selected(self, event: DataTable.RowSelected) -> None:
        """Enter: a local model's engine log, or the route editor."""
        if event.data_table.id == "local":
            self.action_engine()
        elif event.data_table.id == "routes" and event.row_key.value is not None:
            self._route(str(event.row_key.value))

    def action_new_route(self) -> None:
        """r: a new route (Enter on a route edits it)."""
        self._route(None)

    def _route(self, alias: str | None) -> None:
        def saved(name: str | None) -> None:
            if name:
                self.console.say(f"route {name} saved")
                self.reload()

        self.app.push_screen(RouteScreen(self.api, alias), saved)

    def action_import(self) -> None:
        """i: a model bundle (or folder) on the box, e.g. on a mounted stick."""
        fields = [
            Field(
                "path",
                "Path of the bundle or model folder on the box",
                placeholder="/run/aigw/media/sdb1/model.aigwmodel",
            )
        ]

        def submit(values: dict[str, str] | None) -> None:
            path = (values or {}).get("path", "").strip()
            if not path:
                return
            self.console.say(f"importing {path}: every byte is checked, this can take minutes")
            self.act(
                lambda api: api.slow(
                    "POST", "/local-models/import", {"path": path}, timeout=IMPORT_TIMEOUT_S
                ),
                lambda row: self.console.say(
                    f"model {row['name']} imported"
                    + (f", signed by {row['signed_by']}" if row.get("signed_by") else "")
                    + "; e enables it"
                ),
            )

        note = "A bundle must be signed by a trusted key; the gateway must be able to read it."
        self.app.push_screen(FormScreen("Import a local model", fields, note), submit)

    def action_delete(self) -> None:
        """x: delete the selected provider, model alias, route or local model (typed)."""
        table = self.app.focused
        if not isinstance(table, DataTable) or table.id not in _DELETABLE:
            self.console.say("select a provider, model, route or local model first", error=True)
            return
        what, collection = _DELETABLE[str(table.id)]
        name = selected(table)
        if name is None:
            return

        def confirmed(ok: bool | None) -> None:
            if ok:
                self.act(
                    lambda api: api.delete(f"{collection}/{segment(name)}"),
                    message=f"{what} {name} deleted",
                )

        self.app.push_screen(ConfirmScreen(f"Delete {what} {name}?", name), confirmed)
