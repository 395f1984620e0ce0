"""Finding a test's processes by a marker in their environment: what is left after a stop."""

from __future__ import annotations

import os


def processes_with_marker(name: str, value: str) -> list[int]:
    """The pids of running processes whose environment holds NAME=VALUE (zombies have none)."""
    needle = f"{name}={value}".encode()
    found = []
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            with open(f"/proc/{entry.name}/environ", "rb") as fh:
                environ = fh.read().split(b"\0")
        except OSError:
            continue
        if needle in environ:
            found.append(int(entry.name))
    return sorted(found)
