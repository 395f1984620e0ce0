"""Boot a rootfs under systemd-nspawn with systemd as PID 1, and run commands inside it.

The host has no systemd of its own: nspawn runs with --keep-unit and no machine registration,
so `machinectl` cannot reach the container; commands enter it with `nsenter -t PID1 -a`.
"""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from types import TracebackType

BOOT_TIMEOUT = 60.0
STOP_TIMEOUT = 20.0


class BootError(Exception):
    """The container did not boot, did not answer, or did not stop in time."""


def _children(pid: int) -> list[int]:
    """The direct children of `pid` (from /proc, which needs no extra tools)."""
    try:
        raw = Path(f"/proc/{pid}/task/{pid}/children").read_text()
    except OSError:
        return []
    return [int(p) for p in raw.split()]


class Container:
    """One booted rootfs; use as a context manager so it is always stopped."""

    def __init__(self, root: Path, name: str, log_file: Path, extra_args: Sequence[str] = ()):
        self.root = root
        self.name = name
        self.log_file = log_file
        self.extra_args = list(extra_args)
        self.proc: subprocess.Popen[bytes] | None = None
        self.pid1 = 0

    def start(self, timeout: float = BOOT_TIMEOUT) -> float:
        """Boot and wait until systemd is PID 1 inside; returns the seconds it took."""
        cmd = [
            "systemd-nspawn",
            "--boot",
            "--private-network",
            "--keep-unit",
            "--register=no",
            "--console=passive",
            "-D",
            str(self.root),
            "-M",
            self.name,
            *self.extra_args,
            # The rootfs has no fstab device for / to remount.
            "systemd.mask=systemd-remount-fs.service",
        ]
        started = time.monotonic()
        with self.log_file.open("ab") as log:
            self.proc = subprocess.Popen(
                cmd, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL
            )
        deadline = started + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise BootError(f"systemd-nspawn exited with {self.proc.returncode}: {self.tail()}")
            kids = _children(self.proc.pid)
            if kids and _comm(kids[0]) == "systemd":
                self.pid1 = kids[0]
                return time.monotonic() - started
            time.sleep(0.05)
        raise BootError(f"no systemd inside after {timeout:.0f} s: {self.tail()}")

    def run(
        self, *argv: str, timeout: float = 30.0, check: bool = True
    ) -> subprocess.CompletedProcess[str]:
        """Run a command inside every namespace of the container."""
        if not self.pid1:
            raise BootError("the container is not running")
        cmd = ["nsenter", "-t", str(self.pid1), "-a", "--", *argv]
        try:
            proc = subprocess.run(
                cmd, capture_output=True, text=True, timeout=timeout, check=False, env=_clean_env()
            )
        except subprocess.TimeoutExpired as exc:
            raise BootError(f"{' '.join(argv)} timed out after {timeout:.0f} s") from exc
        if check and proc.returncode != 0:
            raise BootError(
                f"{' '.join(argv)} failed ({proc.returncode}): {proc.stderr.strip()[-2000:]}"
            )
        return proc

    def wait_running(self, timeout: float = BOOT_TIMEOUT) -> str:
        """Wait until `systemctl is-system-running` settles (running or degraded)."""
        deadline = time.monotonic() + timeout
        state = ""
        while time.monotonic() < deadline:
            state = self.run("systemctl", "is-system-running", check=False).stdout.strip()
            if state in ("running", "degraded"):
                return state
            time.sleep(0.2)
        raise BootError(f"system still {state or 'unknown'} after {timeout:.0f} s")

    def show(self, unit: str, *props: str) -> dict[str, str]:
        """`systemctl show UNIT -p ...` as a dict."""
        out = self.run("systemctl", "show", unit, "-p", ",".join(props)).stdout
        return dict(line.split("=", 1) for line in out.splitlines() if "=" in line)

    def stop(self, timeout: float = STOP_TIMEOUT) -> None:
        """SIGTERM to nspawn (a clean poweroff inside), SIGKILL to our nspawn only if it hangs."""
        proc, self.proc, self.pid1 = self.proc, None, 0
        if proc is None or proc.poll() is not None:
            return
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=10)

    def tail(self, lines: int = 30) -> str:
        """The end of the console log, for error messages."""
        try:
            text = self.log_file.read_text(errors="replace")
        except OSError:
            return ""
        return "\n".join(text.splitlines()[-lines:])

    def __enter__(self) -> Container:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()


def _comm(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/comm").read_text().strip()
    except OSError:
        return ""


def _clean_env() -> dict[str, str]:
    """A plain environment for commands inside: the host's proxies and CA paths mean nothing."""
    path = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
    return {"PATH": path, "LANG": "C.UTF-8"}


def main(argv: Sequence[str] | None = None) -> int:
    """`python image/boot.py ROOT`: boot it, print the system state, power off."""
    args = list(sys.argv[1:] if argv is None else argv)
    if len(args) != 1:
        print("usage: boot.py ROOT", file=sys.stderr)
        return 2
    root = Path(args[0]).resolve()
    box = Container(root, "aigw-try", root.with_name(root.name + ".console.log"))
    try:
        with box:
            print(f"state: {box.wait_running()}")
            print(box.run("systemctl", "--no-pager", "list-units", "aigw-*").stdout)
    except BootError as exc:
        print(f"boot: error: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
