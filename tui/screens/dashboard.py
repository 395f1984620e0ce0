"""Dashboard: health, live traffic, spend against budgets, alerts (acknowledged from here), GPUs,
engines, the last removable medium, identity."""

from __future__ import annotations

import re
import time
from datetime import UTC, datetime
from typing import Any

from rich.markup import escape
from textual import work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical, VerticalScroll
from textual.screen import ModalScreen
from textual.widgets import DataTable, Label, Static

from tui.client import AdminAPIError, ConsoleClient, segment
from tui.format import bar, money
from tui.pane import Pane, fill, selected
from tui.screens.providers import last_media, media_is_recent, media_line
from tui.table import Table

_SAMPLE = re.compile(r"^aigw_requests_total\{(?P<labels>[^}]*)\}\s+(?P<value>[0-9.eE+-]+)$")


def request_counts(metrics: str) -> tuple[float, float]:
    """(all requests, failed requests) counted so far, from the Prometheus text."""
    total = failed = 0.0
    for line in metrics.splitlines():
        match = _SAMPLE.match(line)
        if match is None:
            continue
        value = float(match.group("value"))
        total += value
        status = re.search(r'status="(\d+)"', match.group("labels"))
        if status is not None and not status.group(1).startswith("2"):
            failed += value
    return total, failed


# Clock reasons that are not trouble: nothing to do, or clocks an admin set on purpose.
QUIET_THROTTLE = frozenset({"idle", "applications_clocks", "sync_boost", "display_clocks"})
GIB = 1024**3


def gpu_lines(g: dict[str, Any]) -> list[str]:
    """One GPU: gauges of utilization and memory, the temperature, and a warning line when its
    clocks are held back (heat, power) or its memory has uncorrected ECC errors."""
    util = g.get("utilization_pct")
    total = int(g.get("memory_total_bytes") or 0)
    used = int(g.get("memory_used_bytes") or 0)
    temp = g.get("temperature_c")
    name = str(g.get("name") or "")
    line = (
        f"  GPU{g.get('index', '?')} util {bar(float(util or 0) / 100, 10)} "
        + (f"{util:>3}%" if util is not None else "  ?%")
        + f"  mem {bar(used / total if total else 0.0, 10)} "
        + f"{used / GIB:.0f}/{total / GIB:.0f} GiB  "
        + (f"{temp}°C" if temp is not None else "?°C")
        + f"  {escape(name[:16])}"
    )
    warnings = []
    held = [r for r in g.get("throttle_reasons") or [] if r not in QUIET_THROTTLE]
    if held:
        warnings.append("throttled: " + ", ".join(r.replace("_", " ") for r in held))
    if g.get("ecc_uncorrected"):
        warnings.append(f"ECC: {g['ecc_uncorrected']} uncorrected memory errors")
    if not warnings:
        return [line]
    return [line, f"    [b yellow]⚠ GPU{g.get('index', '?')} {' · '.join(warnings)}[/]"]


class AlertsScreen(ModalScreen[None]):
    """The open alerts; Enter (or a) acknowledges the one under the cursor."""

    DEFAULT_CSS = """
    AlertsScreen { align: center middle; }
    #alerts-box { width: 100%; height: 100%; border: thick $primary; background: $surface;
                  padding: 0 1; }
    """
    BINDINGS = [Binding("escape", "close", "Close"), Binding("a", "acknowledge", "Acknowledge")]

    def __init__(self, api: ConsoleClient) -> None:
        super().__init__()
        self.api = api

    def compose(self) -> ComposeResult:
        with Vertical(id="alerts-box"):
            yield Label(
                "Open alerts, newest first: Enter or a acknowledges", classes="dialog-title"
            )
            yield Table(id="open-alerts", cursor_type="row")

    def on_mount(self) -> None:
        self._run(None)

    def on_data_table_row_selected(self, event: DataTable.RowSelected) -> None:
        self.action_acknowledge()

    def action_acknowledge(self) -> None:
        """Mark the selected alert as seen (audited, by this console's admin)."""
        alert_id = selected(self.query_one("#open-alerts", DataTable))
        if alert_id is not None:
            self._run(alert_id)

    @work(thread=True, exclusive=True, group="alerts")
    def _run(self, acknowledge: str | None) -> None:
        try:
            if acknowledge is not None:
                self.api.post(f"/alerts/{segment(acknowledge)}/acknowledge")
            rows = self.api.get("/alerts", acknowledged="false", limit=200)["data"]
        except AdminAPIError as exc:
            self.app.call_from_thread(self.notify, exc.message, severity="error", timeout=6)
            return
        self.app.call_from_thread(self._show, rows, acknowledge)

    def _show(self, rows: list[dict[str, Any]], acknowledged: str | None) -> None:
        if not self.is_attached:
            return
        shown = [{**r, "ts": str(r.get("ts"))[:16].replace("T", " ")} for r in rows]
        table = self.query_one("#open-alerts", DataTable)
        fill(table, shown, ["id", "ts", "severity", "kind", "message"], "id")
        table.focus()
        if acknowledged is not None:
            self.notify(f"alert {acknowledged} acknowledged", timeout=6)

    def action_close(self) -> None:
        """Back to the dashboard."""
        self.dismiss(None)


class DashboardPane(Pane):
    """The box at a glance; refreshed on the app's timer while it is on show."""

    title = "Dashboard"
    can_focus = True
    BINDINGS = [Binding("a", "alerts", "Alerts")]

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._last: tuple[float, float, float] | None = None  # (monotonic, total, failed)

    def compose(self) -> ComposeResult:
        with VerticalScroll():
            yield Static("reading…", id="dash")

    def on_mount(self) -> None:
        self.set_interval(self.console.refresh_seconds, self._tick)

    def _tick(self) -> None:
        if self.display and self.parent is not None and self.console.pane is self:
            self.reload()

    def fetch(self, api: ConsoleClient) -> dict[str, Any]:
        """Everything on the dashboard, in one go."""
        today = datetime.now(UTC).strftime("%Y-%m-%dT00:00:00Z")
        out: dict[str, Any] = {
            "budgets": api.get("/budgets/status")["data"],
            "alerts": api.get("/alerts", acknowledged="false", limit=5)["data"],
            "gpus": api.get("/gpus"),
            "engines": api.get("/engines")["data"],
            "spend": api.get("/reports/spend", since=today)["data"],
            "metrics": api.metrics(),
            "at": time.monotonic(),
        }
        try:
            out["system"] = api.get("/system")
        except AdminAPIError:
            out["system"] = None
        out["media"] = last_media(api)
        return out

    def action_alerts(self) -> None:
        """a: the open alerts, to acknowledge."""
        self.app.push_screen(AlertsScreen(self.api), lambda _: self.reload())

    def _traffic(self, metrics: str, at: float) -> str:
        total, failed = request_counts(metrics)
        last, self._last = self._last, (at, total, failed)
        if last is None or at <= last[0]:
            return "requests/s  -   error rate  -   (measuring)"
        rate = (total - last[1]) / (at - last[0])
        done = total - last[1]
        errors = (failed - last[2]) / done if done > 0 else 0.0
        return f"requests/s  {rate:.1f}   error rate  {errors:.1%}"

    def show(self, data: dict[str, Any]) -> None:
        """Lines of text, the most important first (80x25 shows the top)."""
        system = data["system"] or {}
        vault = self.console.vault or {}
        gpus = data["gpus"]
        lines = [
            f"[b]Gateway[/b] up · series {gpus.get('series', '?')} · vault "
            + ("[b red]SEALED[/b red]" if vault.get("sealed") else "unsealed"),
            "[b]Traffic[/b] " + self._traffic(data["metrics"], data["at"]),
        ]
        spent = sum(int(r.get("cost_micros") or 0) for r in data["spend"])
        lines.append(f"[b]Spend today[/b] {money(spent)}")
        budgets = sorted(
            (b for b in data["budgets"] if b.get("limit_micros")),
            key=lambda b: (b.get("enforcement") != "hard", -float(b.get("percent") or 0)),
        )
        for b in budgets[:3]:
            frac = float(b.get("percent") or 0) / 100
            lines.append(
                f"  {b['level']} {escape(str(b['target']))} {b['period']} {bar(frac, 12)} "
                f"{money(b['spent_micros'])}/{money(b['limit_micros'])} ({b['enforcement']})"
            )
        alerts = data["alerts"]
        lines.append(
            f"[b]Open alerts[/b] {len(alerts)}"
            + (" (newest 5)" if len(alerts) == 5 else "")
            + (" · a: acknowledge" if alerts else "")
        )
        for a in alerts[:3]:
            lines.append(f"  {a['severity']} {a['kind']}: {escape(str(a['message']))[:60]}")
        lines.extend(self._gpu_lines(gpus, data["engines"]))
        if media_is_recent(data["media"]):
            lines.append(escape(media_line(data["media"])) + " · more on 4 Models")
        lines.extend(self._identity_lines(system))
        self.query_one("#dash", Static).update("\n".join(lines))

    def _gpu_lines(self, gpus: dict[str, Any], engines: list[dict[str, Any]]) -> list[str]:
        lines = []
        if not gpus.get("gpus"):
            lines.append(f"[b]GPUs[/b] none ({escape(str(gpus.get('reason') or 'G series'))})")
        else:
            driver = f" · driver {gpus['driver_version']}" if gpus.get("driver_version") else ""
            lines.append(f"[b]GPUs[/b] {len(gpus['gpus'])}{escape(driver)}")
        for g in gpus.get("gpus", []):
            lines.extend(gpu_lines(g))
        states = ", ".join(f"{e.get('name')}: {e.get('state')}" for e in engines) or "none"
        lines.append(f"[b]Engines[/b] {escape(states)}")
        return lines

    def _identity_lines(self, system: dict[str, Any]) -> list[str]:
        if not system:
            return ["[b]LAN[/b] not available (this gateway has no /system endpoint)"]
        urls = system.get("urls") or {}
        tls = system.get("tls") or {}
        mdns = system.get("mdns") or {}
        first = system.get("first_boot") or {}
        lines = [
            f"[b]LAN[/b] {escape(str(urls.get('https') or urls.get('http') or '-'))}",
            f"[b]mDNS[/b] {escape(str(mdns.get('instance') or 'off'))}",
            f"[b]TLS[/b] {escape(str(tls.get('fingerprint') or 'off'))}",
        ]
        if first:
            steps = ", ".join(f"{k} {v}" for k, v in first.items())
            lines.append(f"[b]First boot[/b] {escape(steps)}")
        return lines
