"""The console: a Textual TUI over the admin API (UNIX socket or URL), never the store.

`from tui import ConsoleApp, connect` loads Textual; `tui.format` alone does not (the CLI
uses it for its tables), hence the lazy attributes.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from tui.app import ConsoleApp
    from tui.client import ConsoleClient, connect

__all__ = ["ConsoleApp", "ConsoleClient", "connect"]


def __getattr__(name: str) -> Any:
    if name == "ConsoleApp":
        from tui.app import ConsoleApp

        return ConsoleApp
    if name in ("ConsoleClient", "connect"):
        from tui import client

        return getattr(client, name)
    raise AttributeError(f"module 'tui' has no attribute {name!r}")
