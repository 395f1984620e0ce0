"""What every screen of the console shares: loading in a worker thread, actions, failures."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from textual import work
from textual.containers import Vertical
from textual.widgets import DataTable

from tui.client import AdminAPIError, ConsoleClient
from tui.format import cell

if TYPE_CHECKING:
    from tui.app import ConsoleApp


class Pane(Vertical):
    """One screen: `fetch` runs in a thread (blocking admin calls), `show` on the UI thread."""

    title = ""

    @property
    def console(self) -> ConsoleApp:
        """The app, typed."""
        return self.app  # type: ignore[return-value]

    @property
    def api(self) -> ConsoleClient:
        """The admin API client."""
        return self.console.api

    def fetch(self, api: ConsoleClient) -> Any:
        """Read what the screen shows (worker thread)."""
        return None

    def show(self, data: Any) -> None:
        """Put it on screen (UI thread)."""

    def reload(self) -> None:
        """Read again and show."""
        self._load()

    @work(thread=True, exclusive=True, group="load")
    def _load(self) -> None:
        try:
            data = self.fetch(self.api)
        except AdminAPIError as exc:
            self.app.call_from_thread(self.console.failed, exc)
            return
        self.app.call_from_thread(self._loaded, data)

    def _loaded(self, data: Any) -> None:
        self.console.reached()
        self.show(data)

    def act(
        self,
        call: Callable[[ConsoleClient], Any],
        done: Callable[[Any], object] | None = None,
        message: str = "",
    ) -> None:
        """Run an admin action in a thread; then `done(result)`, a note, and a reload."""
        self._act(call, done, message)

    @work(thread=True, group="act")
    def _act(
        self,
        call: Callable[[ConsoleClient], Any],
        done: Callable[[Any], object] | None,
        message: str,
    ) -> None:
        try:
            result = call(self.api)
        except AdminAPIError as exc:
            self.app.call_from_thread(self.console.refused, exc)
            return
        self.app.call_from_thread(self._acted, result, done, message)

    def _acted(self, result: Any, done: Callable[[Any], object] | None, message: str) -> None:
        if message:
            self.console.say(message)
        if done is not None:
            done(result)
        self.reload()


def fill(table: DataTable[str], rows: list[dict[str, Any]], columns: list[str], key: str) -> None:
    """Replace a table's rows, keeping the cursor on the same row where it still exists."""
    if not table.columns:
        for c in columns:
            table.add_column(c.replace("_", " "), key=c)
    row = table.cursor_row
    table.clear()
    for r in rows:
        table.add_row(*(cell(r.get(c)) for c in columns), key=str(r[key]))
    if rows:
        table.move_cursor(row=min(row, len(rows) - 1))


def selected(table: DataTable[str]) -> str | None:
    """The key of the row under the cursor."""
    if table.row_count == 0:
        return None
    key = table.coordinate_to_cell_key(table.cursor_coordinate).row_key
    return None if key.value is None else str(key.value)
