"""Providers and models: providers with their keys (into the vault), model aliases, routes and
their deployments, local models (enable, disable) and engines."""

from __future__ import annotations

from typing import Any

from textual.app import ComposeResult
from textual.binding import Binding
from textual.widgets import DataTable, Label

from tui.client import ConsoleClient, segment
from tui.dialogs import Field, FormScreen
from tui.pane import Pane, fill, selected


class ProvidersPane(Pane):
    """Where requests go."""

    title = "Providers and models"
    BINDINGS = [
        Binding("a", "add_provider", "Add provider"),
        Binding("k", "set_key", "Set key"),
        Binding("m", "add_model", "Add model"),
        Binding("e", "enable", "Enable local"),
        Binding("d", "disable", "Disable local"),
    ]

    def compose(self) -> ComposeResult:
        yield Label("Providers (a add, k key)", classes="caption")
        yield DataTable(id="providers", cursor_type="row")
        yield Label("Models (m) and routes", classes="caption")
        yield DataTable(id="models", cursor_type="row")
        yield DataTable(id="routes", cursor_type="row")
        yield Label("Local models (e enable, d disable) and engines", classes="caption")
        yield DataTable(id="local", cursor_type="row")

    def fetch(self, api: ConsoleClient) -> dict[str, list[dict[str, Any]]]:
        """Providers, models, routes, local models with their engines."""
        return {
            "providers": api.get("/providers")["data"],
            "models": api.get("/models")["data"],
            "routes": api.get("/routes")["data"],
            "local": api.get("/local-models")["data"],
            "engines": api.get("/engines")["data"],
        }

    def show(self, data: dict[str, list[dict[str, Any]]]) -> None:
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
                "deployments": ",".join(
                    str(d.get("model") or d) for d in r.get("deployments") or []
                ),
            }
            for r in data["routes"]
        ]
        fill(
            self.query_one("#routes", DataTable),
            routes,
            ["alias", "strategy", "deployments"],
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
        fill(self.query_one("#local", DataTable), local, ["name", "enabled", "engine"], "name")

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
