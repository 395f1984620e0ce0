"""Audit: search requests by trace id, key or user; one request's timeline; verify the chain."""

from __future__ import annotations

import re
from typing import Any

from rich.markup import escape
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical, VerticalScroll
from textual.screen import ModalScreen
from textual.widgets import DataTable, Input, Label, Static

from tui.client import ConsoleClient, segment
from tui.format import money
from tui.pane import Pane, fill, selected
from tui.table import Table

COLUMNS = ["ts", "trace_id", "model", "status", "tokens", "cost", "user"]
_TRACE = re.compile(r"^[0-9a-f]{16,64}$")


def search_query(text: str) -> dict[str, str]:
    """What the admin typed, as a search: a trace id, a key id (key_...) or a user name."""
    text = text.strip()
    if not text:
        return {}
    if text.startswith("key_"):
        return {"key": text}
    if _TRACE.match(text):
        return {"trace_id": text}
    return {"user": text}


class TimelineScreen(ModalScreen[None]):
    """One request: its ledger record(s) and the admin events on its key around that time."""

    BINDINGS = [("escape,enter", "close", "Close")]

    def __init__(self, trace_id: str, timeline: dict[str, Any]) -> None:
        super().__init__()
        self.trace_id, self.timeline = trace_id, timeline

    def compose(self) -> ComposeResult:
        lines = []
        for r in self.timeline.get("requests", []):
            lines.append(
                f"{r['ts']}  request {r['model']} → {r.get('deployment') or r.get('provider')} "
                f"status {r['status']} in {r.get('latency_ms')} ms, "
                f"{r.get('input_tokens')}+{r.get('output_tokens')} tokens, "
                f"{money(r.get('cost_micros'))}"
                + (f", error {r['error']}" if r.get("error") else "")
            )
        for e in self.timeline.get("events", []):
            lines.append(
                f"{e.get('ts')}  admin {e.get('action')} {e.get('object_type')} by {e.get('actor')}"
            )
        with Vertical(classes="dialog"):
            yield Label(f"Request {self.trace_id}", classes="dialog-title")
            with VerticalScroll():
                yield Static(escape("\n".join(lines) or "no record"))

    def action_close(self) -> None:
        """Back to the list."""
        self.dismiss(None)


class AuditPane(Pane):
    """What happened, provably."""

    title = "Audit"
    BINDINGS = [
        Binding("slash", "search", "Search"),
        Binding("enter", "timeline", "Timeline", show=False),
        Binding("v", "verify", "Verify chain"),
    ]

    def compose(self) -> ComposeResult:
        yield Input(
            placeholder="trace id, key id (key_…) or user; Enter searches", id="audit-search"
        )
        yield Label("Requests, newest first (last 24 hours); Enter: timeline", classes="caption")
        yield Table(id="audit", cursor_type="row")

    def fetch(self, api: ConsoleClient) -> list[dict[str, Any]]:
        """The matching ledger records."""
        query = search_query(self.query_one("#audit-search", Input).value)
        rows: list[dict[str, Any]] = api.get("/audit/requests", limit=200, **query)["data"]
        return rows

    def show(self, data: list[dict[str, Any]]) -> None:
        """The records, one per line."""
        rows = [
            {
                **r,
                "ts": str(r["ts"])[:19].replace("T", " "),
                "tokens": (r.get("input_tokens") or 0) + (r.get("output_tokens") or 0),
                "cost": money(r.get("cost_micros")),
            }
            for r in data
        ]
        fill(self.query_one("#audit", DataTable), rows, COLUMNS, "trace_id")

    def on_input_submitted(self, event: Input.Submitted) -> None:
        self.reload()
        self.query_one("#audit", DataTable).focus()

    def on_data_table_row_selected(self, event: DataTable.RowSelected) -> None:
        self.action_timeline()

    def action_search(self) -> None:
        """/: type a search."""
        self.query_one("#audit-search", Input).focus()

    def action_timeline(self) -> None:
        """Enter: the selected request's timeline."""
        trace_id = selected(self.query_one("#audit", DataTable))
        if trace_id is not None:
            self.act(
                lambda api: api.get(f"/audit/requests/{segment(trace_id)}"),
                lambda t: self.app.push_screen(TimelineScreen(trace_id, t)),
            )

    def action_verify(self) -> None:
        """v: walk the audit trail's and the ledger's hash chains."""

        def done(report: dict[str, Any]) -> None:
            if report.get("ok"):
                self.console.say("audit chain verified: intact")
            else:
                self.console.say(f"audit chain BROKEN: {report}", error=True)

        self.act(lambda api: api.post("/audit/verify", {}), done)
