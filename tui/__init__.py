"""The console: a Textual TUI over the admin API (UNIX socket or URL), never the store."""

from tui.app import ConsoleApp
from tui.client import ConsoleClient, connect

__all__ = ["ConsoleApp", "ConsoleClient", "connect"]
