"""The console's table: Textual's DataTable, with its rows never painted at stale widths."""

from __future__ import annotations

from collections.abc import Iterable

from textual.widgets import DataTable
from textual.widgets.data_table import RowKey


class Table(DataTable[str]):
    """A DataTable that repaints once its new rows are measured.

    DataTable measures added rows on an Idle event, and keys its line caches on a counter that
    measuring does not advance (Textual 8.2). A frame painted between `add_row` and that Idle,
    which a busy box makes likely, has the columns at their headers' widths ("loca" for
    "local"), and the cache kept serving it after the columns widened.
    """

    def _update_dimensions(self, new_rows: Iterable[RowKey]) -> None:
        super()._update_dimensions(new_rows)
        self._update_count += 1
        self.refresh()
