"""Pairing: the box URL, its TLS fingerprint and a QR code for a LAN admin's phone or laptop."""

from __future__ import annotations

from typing import Any

from textual.app import ComposeResult
from textual.containers import VerticalScroll
from textual.widgets import Static

from tui.client import AdminAPIError, ConsoleClient
from tui.pane import Pane
from tui.qr import qr_text


def pairing_text(system: dict[str, Any]) -> str:
    """What the QR code carries: the URL, with the fingerprint to pin."""
    urls = system.get("urls") or {}
    url = urls.get("https") or urls.get("http") or ""
    fp = (system.get("tls") or {}).get("fingerprint")
    return f"{url}#sha256={fp}" if fp and url.startswith("https") else url


class PairingPane(Pane):
    """Carry the box's address to another device."""

    title = "Pairing"
    can_focus = True

    def compose(self) -> ComposeResult:
        with VerticalScroll():
            yield Static("reading…", id="pair-info", markup=False)
            yield Static("", id="pair-qr", markup=False)

    def fetch(self, api: ConsoleClient) -> dict[str, Any] | None:
        """The box's URLs and certificate."""
        try:
            system: dict[str, Any] = api.get("/system")
        except AdminAPIError as exc:
            if exc.status == 404:
                return None
            raise
        return system

    def show(self, data: dict[str, Any] | None) -> None:
        """The address in text, then as a QR code."""
        info = self.query_one("#pair-info", Static)
        qr = self.query_one("#pair-qr", Static)
        if data is None:
            info.update("Pairing: not available (this gateway has no /system endpoint).")
            qr.update("")
            return
        text = pairing_text(data)
        tls = data.get("tls") or {}
        info.update(
            f"Box URL      {text.split('#')[0] or '-'}\n"
            f"Fingerprint  {tls.get('fingerprint') or '(no TLS)'}\n"
            f"mDNS         {(data.get('mdns') or {}).get('instance') or 'off'}\n"
            "Scan to open the box; check the fingerprint your browser shows against this one."
        )
        qr.update(qr_text(text) if text else "")
