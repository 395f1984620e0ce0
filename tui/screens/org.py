"""Organization: departments, projects, users, and budgets with their thresholds; editing a
budget, and deleting any of them after typing its name."""

from __future__ import annotations

from typing import Any

from textual.app import ComposeResult
from textual.binding import Binding
from textual.widgets import DataTable, Label

from tui.client import ConsoleClient, segment
from tui.dialogs import ConfirmScreen, Field, FormScreen
from tui.format import money
from tui.pane import Pane, fill, selected
from tui.table import Table

BUDGET_COLUMNS = [
    "level",
    "target",
    "period",
    "limit",
    "spent",
    "percent",
    "enforcement",
    "thresholds",
]


class OrgPane(Pane):
    """Who spends: the tenancy tree and its budgets."""

    title = "Organization"
    BINDINGS = [
        Binding("a", "add_department", "Dept"),
        Binding("p", "add_project", "Project"),
        Binding("u", "add_user", "User"),
        Binding("b", "add_budget", "Budget"),
        Binding("e", "edit_budget", "Edit budget"),
        Binding("x", "delete", "Delete"),
    ]

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.budgets: list[dict[str, Any]] = []

    def compose(self) -> ComposeResult:
        yield Label("Departments (a)", classes="caption")
        yield Table(id="departments", cursor_type="row")
        yield Label("Projects (p)", classes="caption")
        yield Table(id="projects", cursor_type="row")
        yield Label("Users (u)", classes="caption")
        yield Table(id="users", cursor_type="row")
        yield Label(
            "Budgets (b new, e edit) — spent this period against the limit; x deletes",
            classes="caption",
        )
        yield Table(id="budgets", cursor_type="row")

    def fetch(self, api: ConsoleClient) -> dict[str, list[dict[str, Any]]]:
        """The four lists."""
        return {
            "departments": api.get("/departments")["data"],
            "projects": api.get("/projects")["data"],
            "users": api.get("/users")["data"],
            "budgets": api.get("/budgets/status")["data"],
        }

    def show(self, data: dict[str, list[dict[str, Any]]]) -> None:
        """Four tables."""
        fill(
            self.query_one("#departments", DataTable),
            data["departments"],
            ["name", "description", "rpm", "tpm"],
            "name",
        )
        fill(
            self.query_one("#projects", DataTable),
            data["projects"],
            ["name", "department", "description", "retention"],
            "name",
        )
        fill(
            self.query_one("#users", DataTable),
            data["users"],
            ["name", "email", "department"],
            "name",
        )
        self.budgets = data["budgets"]
        budgets = [
            {
                **b,
                "limit": money(b["limit_micros"]),
                "spent": money(b["spent_micros"]),
                "percent": f"{float(b.get('percent') or 0):.0f}%",
                "thresholds": ",".join(f"{t}%" for t in b.get("thresholds") or []),
            }
            for b in data["budgets"]
        ]
        fill(self.query_one("#budgets", DataTable), budgets, BUDGET_COLUMNS, "id")

    def _form(self, title: str, fields: list[Field], path: str, body: Any) -> None:
        def submit(values: dict[str, str] | None) -> None:
            if not values:
                return
            try:
                payload = body(values)
            except ValueError as exc:
                self.console.say(str(exc), error=True)
                return
            self.act(lambda api: api.post(path, payload), message=f"{title.lower()}: done")

        self.app.push_screen(FormScreen(title, fields), submit)

    def action_add_department(self) -> None:
        """a: a new department."""
        self._form(
            "New department",
            [Field("name", "Name"), Field("description", "Description")],
            "/departments",
            lambda v: {"name": v["name"], "description": v["description"]},
        )

    def action_add_project(self) -> None:
        """p: a new project in a department."""
        self._form(
            "New project",
            [Field("name", "Name"), Field("department", "Department")],
            "/projects",
            lambda v: {"name": v["name"], "department": v["department"]},
        )

    def action_add_user(self) -> None:
        """u: a new user."""
        self._form(
            "New user",
            [Field("name", "Name"), Field("email", "E-mail"), Field("department", "Department")],
            "/users",
            lambda v: {k: x for k, x in v.items() if x.strip()},
        )

    def action_add_budget(self) -> None:
        """b: a budget with its alert thresholds."""
        self._form(
            "New budget",
            [
                Field("level", "Level (department, project, user, key)", "project"),
                Field("target", "Its name (or key id)"),
                Field("period", "Period (daily, weekly, monthly, total)", "monthly"),
                Field("limit", "Limit, in currency units (e.g. 500 or 12.50)"),
                Field("enforcement", "Enforcement (hard or soft)", "hard"),
                Field("thresholds", "Alert thresholds in % (comma-separated)", "50,80,100"),
            ],
            "/budgets",
            _budget_body,
        )

    def action_edit_budget(self) -> None:
        """e: the selected budget's limit, enforcement and thresholds (spent amounts stay)."""
        budget_id = selected(self.query_one("#budgets", DataTable))
        row = next((b for b in self.budgets if str(b["id"]) == budget_id), None)
        if row is None:
            self.console.say("no budget selected", error=True)
            return
        fields = [
            Field("limit", "Limit, in currency units", money(row["limit_micros"])),
            Field("enforcement", "Enforcement (hard or soft)", str(row.get("enforcement") or "")),
            Field(
                "thresholds",
                "Alert thresholds in % (comma-separated)",
                ",".join(str(t) for t in row.get("thresholds") or []),
            ),
        ]
        title = f"Budget of {row['level']} {row['target']} ({row['period']})"

        def submit(values: dict[str, str] | None) -> None:
            if not values:
                return
            try:
                body = {
                    "limit_micros": _micros(values["limit"]),
                    "enforcement": values["enforcement"].strip(),
                    "thresholds": _thresholds(values["thresholds"]),
                }
            except ValueError as exc:
                self.console.say(str(exc), error=True)
                return
            self.act(
                lambda api: api.patch(f"/budgets/{segment(str(row['id']))}", body),
                message=f"budget of {row['level']} {row['target']} changed",
            )

        self.app.push_screen(FormScreen(title, fields), submit)

    def action_delete(self) -> None:
        """x: delete the selected department, project, user or budget, after typing its name.

        The admin API refuses one that still holds keys (or projects and users): its message
        is shown as it is."""
        table = self.app.focused
        kinds = {"departments": "department", "projects": "project", "users": "user"}
        if not isinstance(table, DataTable) or table.id not in (*kinds, "budgets"):
            self.console.say("select a department, project, user or budget first", error=True)
            return
        key = selected(table)
        if key is None:
            return
        if table.id == "budgets":
            row = next((b for b in self.budgets if str(b["id"]) == key), {})
            what, typed = (
                f"the {row.get('period')} budget of {row.get('target')}",
                str(row.get("target")),
            )
            path = f"/budgets/{segment(key)}"
        else:
            kind = kinds[str(table.id)]
            what, typed, path = f"{kind} {key}", key, f"/{table.id}/{segment(key)}"

        def confirmed(ok: bool | None) -> None:
            if ok:
                self.act(lambda api: api.delete(path), message=f"{what} deleted")

        self.app.push_screen(ConfirmScreen(f"Delete {what}?", typed), confirmed)


def _micros(raw: str) -> int:
    """'12.50' → 12_500_000 without floats."""
    whole, _, frac = raw.strip().partition(".")
    if not whole.isdigit() or (frac and not frac.isdigit()) or len(frac) > 6:
        raise ValueError(f"{raw!r} is not an amount such as 500 or 12.50")
    return int(whole) * 1_000_000 + int(frac.ljust(6, "0") or 0)


def _thresholds(raw: str) -> list[int]:
    try:
        return [int(t) for t in raw.split(",") if t.strip()]
    except ValueError:
        raise ValueError("thresholds are whole percentages, e.g. 50,80,100") from None


def _budget_body(v: dict[str, str]) -> dict[str, Any]:
    thresholds = _thresholds(v["thresholds"])
    return {
        "level": v["level"].strip(),
        "target": v["target"].strip(),
        "period": v["period"].strip(),
        "limit_micros": _micros(v["limit"]),
        "enforcement": v["enforcement"].strip(),
        "thresholds": thresholds,
    }
