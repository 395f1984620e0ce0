"""The boot test's fixtures: a rootfs built from the cached layers, booted under nspawn."""

from __future__ import annotations

import os
import shutil
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from image.boot import Container
from image.rootfs import mount_overlay, unmount_overlay

_TOOLS = ("debootstrap", "systemd-nspawn", "nsenter", "systemctl")


def _why_not() -> str | None:
    """Why this machine cannot run the boot test, or None when it can."""
    if os.geteuid() != 0:
        return "the boot test needs root (debootstrap, systemd-nspawn, nsenter)"
    missing = [t for t in _TOOLS if shutil.which(t) is None]
    if missing:
        return f"missing {', '.join(missing)}: run scripts/host-packages.sh as root"
    return None


@pytest.fixture(scope="module")
def rootfs(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """A fresh rootfs with this checkout installed (the base and the venv from the cache)."""
    reason = _why_not()
    if reason:
        pytest.skip(reason)
    work = tmp_path_factory.mktemp("boot")
    started = time.monotonic()
    # An overlay on the cached base and venv: the box's writes land in work/upper.
    root = mount_overlay(work)
    print(f"\nrootfs assembled in {time.monotonic() - started:.1f} s")
    try:
        yield root
    finally:
        unmount_overlay(root)
        shutil.rmtree(work, ignore_errors=True)


@pytest.fixture(scope="module")
def box(rootfs: Path) -> Iterator[Container]:
    """The rootfs booted for the first time (stopped at the end of the module, whatever happens)."""
    container = Container(rootfs, "aigw-boot-test", rootfs.parent / "console-1.log")
    try:
        took = container.start()
        state = container.wait_running()
        print(f"\nfirst boot: systemd up in {took:.2f} s, system {state}")
        yield container
    finally:
        container.stop()
