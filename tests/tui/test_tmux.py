"""The real terminal path: `aigw console` in tmux, keys by send-keys, the screen by capture-pane."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.harness import free_port
from tests.tui.conftest import SealedBox

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(shutil.which("tmux") is None, reason="tmux is not installed"),
]
AIGW = str(Path(sys.executable).with_name("aigw"))


class Tmux:
    """One private tmux server (its own socket name) running one command at 80x25."""

    def __init__(self, command: list[str]) -> None:
        self.name = f"aigw-test-{uuid.uuid4().hex[:8]}"
        env = {k: v for k, v in os.environ.items() if not k.startswith(("AIGW_", "TMUX"))}
        env["TERM"] = "xterm-256color"
        subprocess.run(
            [
                "tmux",
                "-L",
                self.name,
                "new-session",
                "-d",
                "-x",
                "80",
                "-y",
                "25",
                " ".join(command),
            ],
            check=True,
            env=env,
            timeout=10,
        )

    def screen(self) -> str:
        """The pane's text now."""
        out = subprocess.run(
            ["tmux", "-L", self.name, "capture-pane", "-p"],
            capture_output=True,
            text=True,
            timeout=10,
        )
        return out.stdout

    def wait_for(self, text: str, timeout: float = 30) -> str:
        """The screen once it shows `text`."""
        deadline = time.monotonic() + timeout
        while True:
            screen = self.screen()
            if text in screen:
                return screen
            if time.monotonic() > deadline:
                raise AssertionError(f"{text!r} never appeared; the screen:\n{screen}")
            time.sleep(0.3)

    def keys(self, *keys: str) -> None:
        """Type keys (tmux key names)."""
        subprocess.run(["tmux", "-L", self.name, "send-keys", *keys], check=True, timeout=10)

    def alive(self) -> bool:
        """Whether the session still runs (the console has not exited)."""
        return (
            subprocess.run(
                ["tmux", "-L", self.name, "has-session"], capture_output=True, timeout=10
            ).returncode
            == 0
        )

    def close(self) -> None:
        """Stop this private tmux server only."""
        subprocess.run(["tmux", "-L", self.name, "kill-server"], capture_output=True, timeout=10)


@pytest.fixture
def tmux_console() -> Iterator[list[Tmux]]:
    started: list[Tmux] = []
    yield started
    for t in started:
        t.close()


def test_sealed_vault_under_tmux(sealed_box: SealedBox, tmux_console: list[Tmux]) -> None:
    t = Tmux([AIGW, "--config", str(sealed_box.config), "console"])
    tmux_console.append(t)
    screen = t.wait_for("The vault is sealed")
    assert "Press 7 (System), then u" in screen and "Traceback" not in screen
    t.keys("7")
    t.wait_for("SEALED ·")
    t.keys("u")
    t.wait_for("Unseal the vault")
    t.keys("correct horse battery", "Enter")
    t.wait_for("vault unsealed")
    assert sealed_box.vault()["sealed"] is False
    t.keys("q")
    deadline = time.monotonic() + 10
    while t.alive() and time.monotonic() < deadline:
        time.sleep(0.2)
    assert not t.alive()


def test_gateway_stopped_under_tmux(tmp_path: Path, tmux_console: list[Tmux]) -> None:
    config = tmp_path / "aigw.toml"
    config.write_text(f'[server]\nport = {free_port()}\n[state]\ndir = "{tmp_path / "state"}"\n')
    t = Tmux([AIGW, "--config", str(config), "console"])
    tmux_console.append(t)
    screen = t.wait_for("The gateway is not answering")
    assert "systemctl start aigw-gateway" in screen and "Traceback" not in screen
    t.keys("2")
    time.sleep(1)
    assert "not answering" in t.screen() and t.alive()
    assert not (tmp_path / "state" / "aigw.db").exists()  # the console never opened the store
