"""Real media: ext4 images (`mkfs.ext4 -L LABEL -d FOLDER`) on loop devices, mounted by
`aigw media handle`, seen by udev (`udevadm test` with the rule, a real `systemd-udevd` for
the pyudev monitor). Root and the tools are needed; each test says so when it skips."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from appliance.config import load_config
from inference.bundle import public_key_b64
from provisioning.media import DeviceInfo, MediaWatcher, cli_handler, device_info
from tests.appliance.conftest import Cli
from tests.provisioning.test_seed import (
    SECRET,
    VENDOR,
    _tamper,
    cli,  # noqa: F401  (the fixture: a box with an identity)
    make_bundle,
    make_seed,
    snapshot,
)

ROOT = Path(__file__).resolve().parents[2]
UDEVD = "/lib/systemd/systemd-udevd"
TOOLS = ("losetup", "mkfs.ext4", "debugfs", "udevadm", "mount", "umount", "blkid")

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(os.geteuid() != 0, reason="loop devices and mounts need root"),
    pytest.mark.skipif(
        any(shutil.which(t) is None for t in TOOLS),
        reason=f"needs {', '.join(TOOLS)} (apt packages udev e2fsprogs mount)",
    ),
]


def image(path: Path, folder: Path, label: str) -> Path:
    """An ext4 filesystem image holding `folder`'s files (the kernel here has no vfat)."""
    subprocess.run(["truncate", "-s", "32M", str(path)], check=True, timeout=30)
    subprocess.run(
        ["mkfs.ext4", "-q", "-F", "-L", label, "-d", str(folder), str(path)],
        check=True,
        timeout=60,
    )
    return path


@contextmanager
def loop(img: Path, *, read_only: bool = False) -> Iterator[str]:
    """The image on a loop device, detached afterwards whatever happens."""
    argv = ["losetup", "-f", "--show", *(["-r"] if read_only else []), str(img)]
    done = subprocess.run(argv, capture_output=True, text=True, timeout=30)
    if done.returncode != 0:
        pytest.skip(f"no loop device: {done.stderr.strip()}")
    dev = done.stdout.strip()
    try:
        yield dev
    finally:
        subprocess.run(["losetup", "-d", dev], timeout=30, check=False)


def read_file(img: Path, name: str) -> str | None:
    """A file on an unmounted ext4 image (debugfs reads it without mounting)."""
    done = subprocess.run(
        ["debugfs", "-R", f"cat /{name}", str(img)], capture_output=True, text=True, timeout=30
    )
    return done.stdout if done.returncode == 0 and done.stdout else None


def mode_of(img: Path, name: str) -> int | None:
    """A file's permission bits on an unmounted ext4 image (debugfs `stat`)."""
    done = subprocess.run(
        ["debugfs", "-R", f"stat /{name}", str(img)], capture_output=True, text=True, timeout=30
    )
    found = re.search(r"Mode:\s+0?(\d+)", done.stdout)
    return int(found.group(1), 8) & 0o777 if found else None


def mounted_anywhere(dev: str) -> bool:
    return any(
        line.split()[0] == dev for line in Path("/proc/self/mounts").read_text().splitlines()
    )


# --- aigw media handle ----------------------------------------------------------------------


def test_a_seed_stick_is_applied_and_answered(cli: Cli, tmp_path: Path) -> None:  # noqa: F811
    img = image(tmp_path / "seed.img", make_seed(tmp_path / "stick").parent, "AIGW-SEED")
    with loop(img) as dev:
        out = cli.ok("media", "handle", dev).out
        assert f"aigw media {dev} (AIGW-SEED)" in out and ": seed, aigw-seed.toml" in out
        assert "+ model tiny imported from tiny.aigwmodel, signed by acme" in out
        assert "result written to the medium as aigw-seed.result.txt" in out
        assert SECRET not in out
        assert not mounted_anywhere(dev) and list((tmp_path / "mnt").iterdir()) == []
        assert cli.ok("models", "status", "tiny", "--json").json["signed_by"] == "acme"
        # udev sends `change` when the result is written back: the same seed is not applied again.
        again = cli.ok("media", "handle", dev).out
        assert "applied from this medium already; nothing was done" in again
    result = read_file(img, "aigw-seed.result.txt")
    assert result is not None and "+ department eng" in result and result.endswith("done\n")
    assert mode_of(img, "aigw-seed.result.txt") == 0o600  # it may hold issued keys' secrets
    assert "still holds 1 provider API key(s)" in result and SECRET not in result
    assert '"ok": true' in (cli.state / "media" / "last-result.json").read_text()


def test_a_read_only_seed_stick_is_applied_and_says_so(cli: Cli, tmp_path: Path) -> None:  # noqa: F811
    img = image(tmp_path / "seed.img", make_seed(tmp_path / "stick").parent, "AIGW-SEED")
    with loop(img, read_only=True) as dev:
        out = cli.ok("media", "handle", dev).out
        assert "+ provider openai" in out
        assert "the medium is read-only" in out and "the result was not written to it" in out
    assert read_file(img, "aigw-seed.result.txt") is None


def test_a_stick_with_a_tampered_bundle_changes_nothing(cli: Cli, tmp_path: Path) -> None:  # noqa: F811
    stick = make_seed(tmp_path / "stick").parent
    _tamper(stick / "tiny.aigwmodel")
    img = image(tmp_path / "seed.img", stick, "AIGW-SEED")
    before = snapshot(cli)
    with loop(img) as dev:
        error = cli.fails("media", "handle", dev)
        assert "bundle tiny.aigwmodel" in error and "(nothing was changed)" in error
        assert not mounted_anywhere(dev)
    assert snapshot(cli) == before
    result = read_file(img, "aigw-seed.result.txt")
    assert result is not None and "FAILED: " in result and "SHA-256 does not match" in result


def test_other_media(cli: Cli, tmp_path: Path) -> None:  # noqa: F811
    # Nothing for the box: ignored, and no result kept.
    plain = tmp_path / "plain"
    plain.mkdir()
    (plain / "holiday.jpg").write_bytes(b"\xff\xd8" + os.urandom(100))
    # A seed file without the label is not a seed either.
    (plain / "aigw-seed.toml").write_text("version = 1\n[departments.x]\n")
    with loop(image(tmp_path / "plain.img", plain, "PHOTOS")) as dev:
        out = cli.ok("media", "handle", dev).out
        assert "(PHOTOS)" in out and "nothing for the box" in out
    assert not (cli.state / "media" / "last-result.json").exists()
    assert "x" not in {d["name"] for d in cli.ok("departments", "list", "--json").json}

    # Bundles: imported when trusted; backups: listed with the command that restores them.
    usb = tmp_path / "usb"
    (usb / "models").mkdir(parents=True)
    make_bundle(usb / "models")
    (usb / "box-2030.aigw-backup").write_bytes(os.urandom(64))
    with loop(image(tmp_path / "usb.img", usb, "VENDOR")) as dev:
        refused = cli.fails("media", "handle", dev)
        assert "1 bundle(s) refused" in refused
        cli.ok("trust", "add", "acme", public_key_b64(VENDOR.public_key()))
        out = cli.ok("media", "handle", dev).out
        assert "+ model tiny imported from tiny.aigwmodel, signed by acme" in out
        assert "aigw backup restore /mnt/box-2030.aigw-backup" in out
    assert read_file(tmp_path / "usb.img", "aigw-seed.result.txt") is None  # left untouched


# --- udev -----------------------------------------------------------------------------------


def test_the_udev_rule_wants_the_media_unit(tmp_path: Path) -> None:
    rules = Path("/run/udev/rules.d")
    made_dir = not rules.exists()
    rules.mkdir(parents=True, exist_ok=True)
    rule = rules / "99-aigw-media.rules"
    shutil.copy(ROOT / "systemd" / "99-aigw-media.rules", rule)
    folder = tmp_path / "files"
    folder.mkdir()
    try:
        for label, wanted in (("AIGW-SEED", True), ("PHOTOS", False)):
            img = image(tmp_path / f"{label}.img", folder, label)
            with loop(img) as dev:
                sys_path = f"/sys/class/block/{Path(dev).name}"
                try:
                    done = subprocess.run(
                        ["udevadm", "test", "--action=add", sys_path],
                        capture_output=True,
                        text=True,
                        timeout=60,
                    )
                finally:  # udevadm test makes the links and database entry: take them away
                    subprocess.run(
                        ["udevadm", "test", "--action=remove", sys_path],
                        capture_output=True,
                        timeout=60,
                        check=False,
                    )
                assert f"ID_FS_LABEL={label}" in done.stdout, done.stdout + done.stderr
                want = f"SYSTEMD_WANTS=aigw-media@{Path(dev).name}.service"
                assert (want in done.stdout) is wanted, done.stdout
    finally:
        rule.unlink()
        if made_dir:
            rules.rmdir()


def _udevd_running() -> bool:
    done = subprocess.run(
        ["udevadm", "control", "--ping", "--timeout=2"], capture_output=True, timeout=10
    )
    return done.returncode == 0


@contextmanager
def udevd() -> Iterator[None]:
    """A udev daemon for the test, unless one runs; only the one started here is stopped."""
    if _udevd_running():
        yield
        return
    if not os.access(UDEVD, os.X_OK):
        pytest.skip(f"no udev daemon runs and {UDEVD} is missing")
    control = Path("/run/udev/control")
    stale = control.exists()
    proc = subprocess.Popen([UDEVD], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 15
        while not _udevd_running():
            if proc.poll() is not None or time.monotonic() > deadline:
                pytest.skip("systemd-udevd did not start here")
            time.sleep(0.2)
        yield
    finally:
        proc.terminate()
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)
        if not stale:  # it leaves its socket behind: the host is left as it was found
            control.unlink(missing_ok=True)


def test_the_watcher_sees_a_seed_stick_and_handles_it_once(cli: Cli, tmp_path: Path) -> None:  # noqa: F811
    img = image(tmp_path / "seed.img", make_seed(tmp_path / "stick").parent, "AIGW-SEED")
    cfg = load_config(str(cli.config))
    seen: list[DeviceInfo] = []
    handled = threading.Event()
    run = cli_handler(cfg)  # as `aigw up` wires it: `aigw media handle DEV` in a child process

    def handle(dev: str) -> None:
        seen.append(device_info(dev))
        run(dev)
        handled.set()

    with udevd():
        watcher = MediaWatcher(cfg, handle)
        watcher.start()
        try:
            with loop(img) as dev:
                assert handled.wait(60), "the watcher saw no seed stick"
                time.sleep(3)  # the `change` that writing the result back causes comes and goes
                assert [s.devnode for s in seen] == [dev]
        finally:
            watcher.stop()
    assert seen[0].label == "AIGW-SEED" and seen[0].fs_type == "ext4"
    assert cli.ok("models", "status", "tiny", "--json").json["signed_by"] == "acme"
    result = read_file(img, "aigw-seed.result.txt")
    assert result is not None and result.endswith("done\n")
