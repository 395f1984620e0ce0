"""Usage: spend and tokens by department, project, user or model over a range, as a table and
a sparkline of cost per time bucket."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from textual.app import ComposeResult
from textual.binding import Binding
from textual.widgets import DataTable, Label, Sparkline

from tui.client import ConsoleClient
from tui.format import money
from tui.pane import Pane, fill
from tui.table import Table

DIMENSIONS = ["department", "project", "user", "model"]
RANGES = [
    ("24h", timedelta(days=1), "hour"),
    ("7d", timedelta(days=7), "day"),
    ("30d", timedelta(days=30), "day"),
]


class UsagePane(Pane):
    """Who spent what."""

    title = "Usage"
    BINDINGS = [Binding("g", "group", "Group by"), Binding("t", "range", "Range")]

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.dimension, self.range_index = "department", 1

    def compose(self) -> ComposeResult:
        yield Label("", id="usage-caption", classes="caption")
        yield Sparkline([], id="usage-spark")
        yield Table(id="usage", cursor_type="row")

    def fetch(self, api: ConsoleClient) -> dict[str, Any]:
        """The grouped report and the per-bucket totals over the range."""
        name, span, bucket = RANGES[self.range_index]
        since = (datetime.now(UTC) - span).strftime("%Y-%m-%dT%H:00:00Z")
        return {
            "table": api.get("/reports/spend", since=since, group_by=self.dimension)["data"],
            "buckets": api.get("/reports/spend", since=since, bucket=bucket)["data"],
            "range": name,
        }

    def show(self, data: dict[str, Any]) -> None:
        """Caption, sparkline, table."""
        rows = data["table"]
        total = sum(int(r.get("cost_micros") or 0) for r in rows)
        requests = sum(int(r.get("requests") or 0) for r in rows)
        self.query_one("#usage-caption", Label).update(
            f"by {self.dimension} (g) · last {data['range']} (t) · {requests} requests · "
            f"{money(total)} · sparkline: requests per bucket"
        )
        self.query_one("#usage-spark", Sparkline).data = [
            float(b.get("requests") or 0) for b in data["buckets"]
        ]
        shown = [
            {**r, "cost": money(int(r.get("cost_micros") or 0)), "key": str(r.get(self.dimension))}
            for r in rows
        ]
        table = self.query_one("#usage", DataTable)
        table.clear(columns=True)
        fill(
            table,
            shown,
            [self.dimension, "requests", "errors", "input_tokens", "output_tokens", "cost"],
            "key",
        )

    def action_group(self) -> None:
        """g: the next dimension."""
        self.dimension = DIMENSIONS[(DIMENSIONS.index(self.dimension) + 1) % len(DIMENSIONS)]
        self.reload()

    def action_range(self) -> None:
        """t: the next time range."""
        self.range_index = (self.range_index + 1) % len(RANGES)
        self.reload()
