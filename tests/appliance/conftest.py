"""Running the `aigw` CLI in-process against a box of its own (a temporary state directory)."""

from __future__ import annotations

import io
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from appliance.cli import main
from tests.harness import free_port


@dataclass
class Result:
    """What one CLI run printed and returned."""

    rc: int
    out: str
    err: str

    @property
    def json(self) -> Any:
        return json.loads(self.out)


class Cli:
    """`aigw --config <this box's file> ...`, in this process, output captured."""

    def __init__(self, tmp: Path, capsys: pytest.CaptureFixture[str], mp: pytest.MonkeyPatch):
        self.state = tmp / "state"
        tmp.mkdir(parents=True, exist_ok=True)
        self.config = tmp / "aigw.toml"
        self.config.write_text(f'[server]\nport = {free_port()}\n[state]\ndir = "{self.state}"\n')
        self._capsys, self._mp = capsys, mp

    def __call__(self, *argv: str, stdin: str | None = None) -> Result:
        self._capsys.readouterr()
        if stdin is not None:
            self._mp.setattr("sys.stdin", io.StringIO(stdin))
        rc = main(["--config", str(self.config), *argv])
        out, err = self._capsys.readouterr()
        return Result(rc, out, err)

    def ok(self, *argv: str, stdin: str | None = None) -> Result:
        """Run and insist on success."""
        r = self(*argv, stdin=stdin)
        assert r.rc == 0, r.err
        return r

    def fails(self, *argv: str, stdin: str | None = None) -> str:
        """Run, insist on a one-line error with exit status 1; the message."""
        r = self(*argv, stdin=stdin)
        assert r.rc == 1, r.out
        assert r.err.startswith("aigw: error: ") and r.err.count("\n") == 1, r.err
        assert "Traceback" not in r.err
        return r.err


@pytest.fixture(autouse=True)
def _no_admin_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("AIGW_URL", "AIGW_ADMIN_TOKEN", "AIGW_CONFIG"):
        monkeypatch.delenv(name, raising=False)


@pytest.fixture
def cli(tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> Cli:
    """A fresh box, driven by the CLI (no gateway running: the in-process admin API)."""
    return Cli(tmp_path / "box", capsys, monkeypatch)


@pytest.fixture
def other_cli(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> Cli:
    """A second, separate box."""
    return Cli(tmp_path / "other", capsys, monkeypatch)
