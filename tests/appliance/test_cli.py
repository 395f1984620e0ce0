"""The `aigw` command line, and `aigw up` as a real process."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from appliance.cli import main
from tests.harness import free_port


@pytest.fixture
def config(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    path = tmp_path / "aigw.toml"
    path.write_text(f'[server]\nport = {free_port()}\n[state]\ndir = "{tmp_path / "state"}"\n')
    monkeypatch.setenv("AIGW_CONFIG", str(path))
    return path


def test_providers_and_models(config: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["providers", "add", "oai", "--kind", "openai", "--api-key-env", "OAI_KEY"]) == 0
    assert (
        main(
            [
                "providers",
                "add",
                "az",
                "--kind",
                "azure-openai",
                "--base-url",
                "https://x.openai.azure.com",
            ]
        )
        == 0
    )
    assert (
        main(["models", "add", "fast", "--provider", "oai", "--upstream-model", "gpt-4o-mini"]) == 0
    )
    capsys.readouterr()
    assert main(["providers", "list"]) == 0
    table = capsys.readouterr().out
    assert "https://api.openai.com/v1" in table and "2024-10-21" in table
    assert main(["models", "list", "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert [(r["alias"], r["provider"], r["upstream_model"]) for r in rows] == [
        ("fast", "oai", "gpt-4o-mini")
    ]
    # A provider in use cannot go; a model can, then the provider.
    assert main(["providers", "remove", "oai"]) == 2
    assert "used by models fast" in capsys.readouterr().err
    assert main(["models", "remove", "fast"]) == 0
    assert main(["providers", "remove", "oai"]) == 0


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["providers", "add", "x", "--kind", "azure-openai"], "needs --base-url"),
        (
            ["providers", "add", "x", "--kind", "openai", "--base-url", "ftp://h"],
            "http:// or https://",
        ),
        (["providers", "add", "x", "--kind", "openai", "--api-key-env", "BAD-NAME"], "not a valid"),
        (
            ["models", "add", "m", "--provider", "ghost", "--upstream-model", "x"],
            "no provider named",
        ),
        (["models", "remove", "ghost"], "no model named"),
    ],
)
def test_errors_are_one_clear_line(
    config: Path, capsys: pytest.CaptureFixture[str], argv: list[str], message: str
) -> None:
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith("aigw: error: ") and message in err and "Traceback" not in err


def test_bad_config_file_is_named(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text("[server]\nport = 'x'\n")
    assert main(["--config", str(bad), "models", "list"]) == 2
    assert f"{bad}: [server] port must be an integer" in capsys.readouterr().err


def _aigw(*args: str) -> list[str]:
    return [sys.executable, "-m", "appliance.cli", *args]


@pytest.mark.slow
def test_up_serves_and_stops_cleanly_on_ctrl_c(config: Path) -> None:
    port = int(config.read_text().split("port = ")[1].split("\n")[0])
    proc = subprocess.Popen(
        _aigw("up"), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=os.environ
    )
    try:
        deadline = time.monotonic() + 20
        while True:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=1) as r:
                    assert json.load(r) == {"status": "ok"}
                    break
            except OSError:
                assert proc.poll() is None, proc.stderr.read() if proc.stderr else ""
                assert time.monotonic() < deadline
                time.sleep(0.1)
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=15)
    finally:
        proc.kill()
    assert proc.returncode == 0, err
    assert f"listening on http://127.0.0.1:{port}" in out
    assert "aigw providers add" in out  # next steps for an empty box
    assert "Traceback" not in err


@pytest.mark.slow
def test_up_refuses_a_non_loopback_address(tmp_path: Path) -> None:
    cfg = tmp_path / "aigw.toml"
    cfg.write_text(f'[server]\nhost = "0.0.0.0"\n[state]\ndir = "{tmp_path}"\n')
    proc = subprocess.run(
        _aigw("--config", str(cfg), "up"), capture_output=True, text=True, timeout=30
    )
    assert proc.returncode == 2
    assert "listens only on loopback" in proc.stderr and "Traceback" not in proc.stderr
