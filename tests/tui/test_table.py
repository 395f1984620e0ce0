"""The console's table: rows painted before they are measured still show whole once measured."""

from __future__ import annotations

import pytest
from textual.app import App, ComposeResult
from textual.geometry import Region
from textual.widgets import DataTable

from tui.table import Table


class OneTable(App[None]):
    CSS = "DataTable { width: 40; height: 4; }"

    def __init__(self, table: DataTable[str]) -> None:
        super().__init__()
        self.table = table

    def compose(self) -> ComposeResult:
        yield self.table


def painted(table: DataTable[str]) -> list[str]:
    """The table's lines as the screen would paint them now."""
    width, height = table.size
    return [strip.text for strip in table.render_lines(Region(0, 0, width, height))]


@pytest.mark.parametrize(("cls", "whole"), [(DataTable, False), (Table, True)])
async def test_a_frame_painted_before_the_rows_are_measured_is_not_kept(
    cls: type[DataTable[str]], whole: bool
) -> None:
    # On a busy box a frame can be painted between add_row and the Idle event on which the
    # table measures its new rows: that frame has the columns at their headers' widths.
    table = cls()
    async with OneTable(table).run_test(size=(60, 8)) as pilot:
        table.add_column("name", key="name")
        table.add_column("kind", key="kind")
        await pilot.pause()
        table.add_row("local", "openai", key="r")
        early = painted(table)
        assert "loca " in early[1] and "local" not in early[1]  # the race, made to happen
        await pilot.pause()
        assert [c.content_width for c in table.columns.values()] == [5, 6]  # measured
        later = painted(table)
        # Textual's own DataTable serves the early frame again from its line cache.
        assert later[1].startswith(" local  openai ") is whole, later[1]
