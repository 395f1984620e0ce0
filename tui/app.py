"""The console application: a header, the problem panel, eight screens, a status line."""

from __future__ import annotations

from typing import Any

from rich.text import Text
from textual import work
from textual.app import App, ComposeResult
from textual.binding import Binding
from textual.widgets import ContentSwitcher, Footer, Static

from tui.client import AdminAPIError, ConsoleClient, Problem, problem_of
from tui.dialogs import SecretScreen
from tui.pane import Pane
from tui.screens.audit import AuditPane
from tui.screens.dashboard import DashboardPane
from tui.screens.keys import KeysPane
from tui.screens.org import OrgPane
from tui.screens.pairing import PairingPane
from tui.screens.providers import ProvidersPane
from tui.screens.system import SystemPane
from tui.screens.usage import UsagePane

PANES: list[tuple[str, str, type[Pane]]] = [
    ("dashboard", "Dash", DashboardPane),
    ("keys", "Keys", KeysPane),
    ("org", "Org", OrgPane),
    ("providers", "Models", ProvidersPane),
    ("usage", "Usage", UsagePane),
    ("audit", "Audit", AuditPane),
    ("system", "System", SystemPane),
    ("pairing", "Pair", PairingPane),
]

CSS = """
#top { height: 1; background: $primary; color: $text; padding: 0 1; }
#nav { height: 1; background: $panel; padding: 0 1; }
#status { height: 1; background: $panel; padding: 0 1; }
#problem { display: none; border: heavy $error; padding: 0 1; height: auto; }
#problem.sealed { border: heavy $warning; }
#problem.shown { display: block; }
ContentSwitcher { height: 1fr; }
Pane { height: 1fr; }
DataTable { height: 1fr; min-height: 3; }
.caption { height: 1; color: $text-muted; }
.row { height: auto; }
.dialog { width: 74; height: auto; max-height: 100%; border: thick $primary; padding: 0 1;
          background: $surface; }
.dialog.danger { border: thick $error; }
.dialog-title { text-style: bold; }
.note { color: $warning; }
FormScreen, ConfirmScreen, SecretScreen { align: center middle; }
#qr { width: auto; }
"""


class ConsoleApp(App[None]):
    """The aigw console over one admin API connection."""

    CSS = CSS
    TITLE = "aigw console"
    BINDINGS = [
        *(
            Binding(f"{i + 1},f{i + 1}", f"goto('{pid}')", label, show=False)
            for i, (pid, label, _) in enumerate(PANES)
        ),
        Binding("ctrl+r", "reload", "Refresh", show=False),
        # The screen switcher row names q; the footer keeps its width for the screen's keys.
        Binding("q", "quit", "Quit", show=False),
    ]

    def __init__(self, api: ConsoleClient, refresh_seconds: float = 2.0) -> None:
        super().__init__()
        self.api = api
        self.refresh_seconds = refresh_seconds
        self.problem: Problem | None = None
        self.system: dict[str, Any] | None = None
        self.vault: dict[str, Any] | None = None
        self._token_asked = False

    def compose(self) -> ComposeResult:
        yield Static("aigw console", id="top", markup=False)
        yield Static(
            "  ".join(f"{i + 1} {label}" for i, (_, label, _) in enumerate(PANES)) + "  q Quit",
            id="nav",
        )
        yield Static("", id="problem")
        with ContentSwitcher(initial="p-dashboard", id="screens"):
            for pid, _, cls in PANES:
                yield cls(id=f"p-{pid}")
        yield Static("connecting…", id="status", markup=False)
        # ctrl+p still opens the palette; at 80 columns the footer is for the screen's keys.
        yield Footer(show_command_palette=False)

    def on_mount(self) -> None:
        self._beat()
        self.set_interval(self.refresh_seconds, self._beat)
        self.pane.reload()
        self.call_after_refresh(self._focus_pane)

    # --- navigation ---------------------------------------------------------------------

    @property
    def pane(self) -> Pane:
        """The screen on show."""
        switcher = self.query_one("#screens", ContentSwitcher)
        return self.query_one(f"#{switcher.current}", Pane)

    def action_goto(self, pane_id: str) -> None:
        """Show one screen and read its data afresh."""
        self.query_one("#screens", ContentSwitcher).current = f"p-{pane_id}"
        self.pane.reload()
        self.call_after_refresh(self._focus_pane)

    def _focus_pane(self) -> None:
        pane = self.pane
        for widget in [*pane.query("DataTable"), *pane.query("Input"), pane]:
            if widget.focusable and widget.display:
                widget.focus()
                return

    def action_reload(self) -> None:
        """Read the screen's data again."""
        self.pane.reload()

    # --- connection ---------------------------------------------------------------------

    @work(thread=True, exclusive=True, group="beat")
    def _beat(self) -> None:
        """The vault and the box's identity: are we connected, is the vault sealed."""
        try:
            vault = self.api.get("/vault")
        except AdminAPIError as exc:
            if exc.status != 0 and exc.code != "vault_unavailable":
                vault = None
            elif exc.code == "vault_unavailable":
                vault = {"sealed": False, "kek": "none"}
            else:
                self.call_from_thread(self.failed, exc)
                return
        try:
            system = self.api.get("/system")
        except AdminAPIError:
            system = None  # an older box, or not there yet: the header says less
        token = None
        if not self._token_asked:
            self._token_asked = True
            try:
                token = (self.api.post("/system/first-token") or {}).get("token")
            except AdminAPIError:
                token = None  # already shown once, or not this box's API
        self.call_from_thread(self._beaten, vault, system, token)

    def _beaten(
        self, vault: dict[str, Any] | None, system: dict[str, Any] | None, token: str | None
    ) -> None:
        was_down = self.problem is not None and self.problem.kind == "down"
        self.vault, self.system = vault, system
        self.reached()
        if vault is not None and vault.get("sealed"):
            self._show_problem(
                Problem(
                    "sealed",
                    "The vault is sealed: provider keys cannot be used or stored.",
                    "Press 7 (System), then u, and type the vault passphrase.",
                )
            )
        elif self.problem is not None and self.problem.kind == "sealed":
            self._show_problem(None)
        self.query_one("#top", Static).update(self._header())
        self.query_one("#status", Static).update(self._status())
        if was_down:
            self.pane.reload()
        if token:
            self.push_screen(
                SecretScreen(
                    "First boot: the first admin token (shown once, never again)",
                    token,
                    "Store it in your password manager now: it is the admin credential for "
                    "`aigw --url ... --token` and the API. Enter when stored.",
                )
            )

    def _header(self) -> str:
        s = self.system or {}
        parts = [
            "aigw",
            s.get("hostname") or "",
            f"series {s['series']}" if s.get("series") else "",
        ]
        if s.get("version"):
            parts.append(f"v{s['version']}")
        return " · ".join(p for p in parts if p)

    def _status(self) -> str:
        if self.problem is not None and self.problem.kind == "down":
            return "● gateway DOWN · retrying"
        vault = self.vault or {}
        seal = "SEALED" if vault.get("sealed") else "unsealed"
        return f"● connected · vault {seal} ({vault.get('kek', '?')})"

    def failed(self, exc: AdminAPIError) -> None:
        """A read failed: a panel for the states an admin must act on, a note otherwise."""
        problem = problem_of(exc, self.api.where)
        if problem.kind in ("down", "denied"):
            self._show_problem(problem)
            self.query_one("#status", Static).update(self._status())
        else:
            self.say(problem.title, error=True)

    def refused(self, exc: AdminAPIError) -> None:
        """An action failed: one line saying why (and the panel when the box is gone)."""
        if exc.status == 0:
            self.failed(exc)
        else:
            self.say(exc.message, error=True)

    def reached(self) -> None:
        """A call went through: a 'down' panel goes away."""
        if self.problem is not None and self.problem.kind in ("down", "denied"):
            self._show_problem(None)

    def _show_problem(self, problem: Problem | None) -> None:
        self.problem = problem
        panel = self.query_one("#problem", Static)
        panel.set_classes("shown " + problem.kind if problem else "")
        if problem is not None:
            panel.update(Text.assemble((problem.title, "bold"), "\n", problem.todo))
        self.query_one("#screens").display = problem is None or problem.kind == "sealed"

    def say(self, message: str, error: bool = False) -> None:
        """A one-line note to the admin."""
        self.notify(message, severity="error" if error else "information", timeout=6)
