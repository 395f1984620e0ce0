"""Removable media: what a stick holds, and what the box does with it.

A medium is mounted read-only (`nosuid,nodev,noexec`, any filesystem type the kernel knows)
under `[provisioning] media_mount_dir/<kernel name>` while it is read, and always unmounted
after. It is one of:

- a seed: labelled `AIGW-SEED` and holding `aigw-seed.toml` (see `provisioning.seed`); it is
  checked whole, applied, and the result written back to it as `aigw-seed.result.txt` (the
  only time the medium is remounted read-write);
- model bundles (`*.aigwmodel`): imported when a trusted key signed them, refused otherwise;
- backup archives (`*.aigw-backup`): listed with the command that restores them;
- nothing of these: ignored.

The result is printed, and kept as `<state>/media/last-result.json` for the console.

On the box a udev rule starts `aigw-media@<kernel name>.service` (`aigw media handle DEV`);
`aigw up` watches with `MediaWatcher` (a pyudev monitor) instead.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import queue
import subprocess
import threading
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from appliance.config import Config
from appliance.errors import ApplianceError
from provisioning import seed as seeds

log = logging.getLogger(__name__)

SEED_LABEL = "AIGW-SEED"
BACKUP_SUFFIX = ".aigw-backup"
MOUNT_OPTIONS = "ro,nosuid,nodev,noexec"
MOUNT_TIMEOUT_S = 60.0
LAST_RESULT = Path("media") / "last-result.json"
_SCAN_DEPTH = 2  # bundles and backups in the top folder or one below it

Call = Callable[..., Any]


# --- the device -----------------------------------------------------------------------------


@dataclass(frozen=True)
class DeviceInfo:
    """A block device as udev (or blkid, where no udev database is kept) describes it."""

    devnode: str
    kernel_name: str
    fs_type: str
    label: str
    uuid: str


def device_info(devnode: str) -> DeviceInfo:
    """What is on `devnode`: its filesystem type, label and UUID (empty when none)."""
    path = os.path.realpath(devnode)
    if not Path(path).is_block_device():
        raise ApplianceError(f"{devnode} is not a block device")
    props = _udev_properties(path)
    if not props.get("ID_FS_TYPE"):
        props = _blkid(path)
    return DeviceInfo(
        path,
        os.path.basename(path),
        props.get("ID_FS_TYPE", props.get("TYPE", "")),
        props.get("ID_FS_LABEL", props.get("LABEL", "")),
        props.get("ID_FS_UUID", props.get("UUID", "")),
    )


def _udev_properties(path: str) -> dict[str, str]:
    import pyudev

    try:
        device = pyudev.Devices.from_device_file(pyudev.Context(), path)
    except (pyudev.DeviceNotFoundError, OSError, ValueError):
        return {}
    return {k: str(device.properties[k]) for k in device.properties}


def _blkid(path: str) -> dict[str, str]:
    """The filesystem's TYPE, LABEL and UUID probed directly (no udev database here)."""
    try:
        done = subprocess.run(
            ["blkid", "-p", "-o", "export", path],
            capture_output=True,
            text=True,
            timeout=MOUNT_TIMEOUT_S,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired):
        return {}
    pairs = (line.split("=", 1) for line in done.stdout.splitlines() if "=" in line)
    return {k: v for k, v in pairs}


def _run(argv: list[str]) -> str | None:
    """Run mount or umount; None when it worked, else its complaint."""
    try:
        done = subprocess.run(
            argv, capture_output=True, text=True, timeout=MOUNT_TIMEOUT_S, check=False
        )
    except FileNotFoundError:
        return f"{argv[0]} is not installed"
    except subprocess.TimeoutExpired:
        return f"{argv[0]} did not finish within {MOUNT_TIMEOUT_S:g} s"
    if done.returncode != 0:
        return (done.stderr.strip() or f"exit status {done.returncode}").splitlines()[-1]
    return None


def _mounted_at(devnode: str) -> str | None:
    """Where the device is mounted already, if anywhere."""
    with contextlib.suppress(OSError), open("/proc/self/mounts") as fh:
        for line in fh:
            source, target = line.split()[:2]
            if source.startswith("/dev/") and os.path.realpath(source) == devnode:
                return target.replace("\\040", " ")
    return None


@contextlib.contextmanager
def mounted(cfg: Config, info: DeviceInfo) -> Iterator[Path]:
    """The medium mounted read-only for the block; unmounted whatever happens."""
    elsewhere = _mounted_at(info.devnode)
    if elsewhere is not None:
        raise ApplianceError(f"{info.devnode} is already mounted at {elsewhere}; unmount it first")
    base = Path(cfg.provisioning.media_mount_dir)
    base.mkdir(parents=True, exist_ok=True, mode=0o700)
    target = base / info.kernel_name
    target.mkdir(exist_ok=True, mode=0o700)
    why = _run(["mount", "-t", "auto", "-o", MOUNT_OPTIONS, info.devnode, str(target)])
    if why is not None:
        target.rmdir()
        raise ApplianceError(f"cannot mount {info.devnode}: {why}")
    try:
        yield target
    finally:
        if _run(["umount", str(target)]) is not None:
            _run(["umount", "--lazy", str(target)])  # busy: detach now, free when closed
        with contextlib.suppress(OSError):
            target.rmdir()


def write_back(root: Path, name: str, text: str) -> str:
    """Write `name` on the mounted medium, remounted read-write only for it; what happened."""
    why = _run(["mount", "-o", f"remount,rw,{MOUNT_OPTIONS.split(',', 1)[1]}", str(root)])
    if why is not None:
        return f"the medium is read-only ({why}): the result was not written to it"
    try:
        path = root / name
        # It may hold the secrets of keys the seed issued: owner-only where the filesystem
        # keeps modes (FAT does not; its mount options decide).
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            os.fchmod(fh.fileno(), 0o600)
            fh.write(text)
            fh.flush()
            os.fsync(fh.fileno())
        return f"result written to the medium as {name}"
    except OSError as exc:
        return f"the result could not be written to the medium: {exc.strerror or exc}"
    finally:
        _run(["mount", "-o", f"remount,{MOUNT_OPTIONS}", str(root)])


# --- what is on it --------------------------------------------------------------------------


@dataclass
class Medium:
    """What a mounted medium holds, as far as the box cares."""

    kind: str  # "seed", "bundles", "backups" or "ignored"
    seed: Path | None = None
    bundles: list[Path] = field(default_factory=list)
    backups: list[Path] = field(default_factory=list)


def _files(root: Path, suffix: str) -> list[Path]:
    found: list[Path] = []
    for depth in range(_SCAN_DEPTH):
        pattern = "/".join(["*"] * depth + [f"*{suffix}"])
        found += [p for p in root.glob(pattern) if p.is_file() and not p.name.startswith(".")]
    return sorted(found)


def classify(root: Path, label: str) -> Medium:
    """A seed, bundles, backups, or nothing the box uses."""
    from inference.bundle import SUFFIX

    seed = root / seeds.SEED_FILE
    if label == SEED_LABEL and seed.is_file():
        return Medium("seed", seed=seed)
    bundles, backups = _files(root, SUFFIX), _files(root, BACKUP_SUFFIX)
    if bundles:
        return Medium("bundles", bundles=bundles, backups=backups)
    if backups:
        return Medium("backups", backups=backups)
    return Medium("ignored")


# --- the result -----------------------------------------------------------------------------


@dataclass
class MediaResult:
    """What handling one medium (or applying one seed file) did."""

    device: str
    kind: str
    label: str = ""
    source: str = ""
    at: str = field(default_factory=lambda: datetime.now(UTC).isoformat(timespec="seconds"))
    lines: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    error: str | None = None
    uuid: str = ""
    seed_sha256: str = ""
    issued: list[seeds.IssuedKey] = field(default_factory=list, repr=False)  # the medium only

    @property
    def ok(self) -> bool:
        """Whether everything went through."""
        return self.error is None

    def text(self) -> str:
        """The report for people: the console, the journal, the result file."""
        what = {
            "seed": "seed",
            "bundles": "model bundles",
            "backups": "backup archives",
            "ignored": "nothing for the box",
        }.get(self.kind, self.kind)
        head = f"aigw media {self.device}"
        head += f" ({self.label})" if self.label else ""
        out = [f"{head} at {self.at}: {what}" + (f", {self.source}" if self.source else "")]
        out += self.lines
        out += [f"! {w}" for w in self.warnings]
        out.append(f"FAILED: {self.error}" if self.error else "done")
        return "\n".join(out) + "\n"

    def medium_text(self, earlier: str = "") -> str:
        """The report written back to the medium: `text()` and the secrets of issued keys (and
        of those the `earlier` result file held)."""
        return self.text() + seeds.secrets_text(self.issued, earlier)

    def as_json(self) -> dict[str, Any]:
        """The result as kept in last-result.json (without the issued keys' secrets)."""
        return {**{k: v for k, v in asdict(self).items() if k != "issued"}, "ok": self.ok}


def save_result(cfg: Config, result: MediaResult) -> None:
    """Keep the result for the console (no secrets in it: lines name, never show, keys)."""
    from appliance.identity import write_atomic

    data = json.dumps(result.as_json(), indent=2).encode() + b"\n"
    write_atomic(cfg.state_dir / LAST_RESULT, data, 0o644)


def last_result(cfg: Config) -> dict[str, Any] | None:
    """The last kept result, or None."""
    try:
        doc = json.loads((cfg.state_dir / LAST_RESULT).read_bytes())
    except (OSError, ValueError):
        return None
    return doc if isinstance(doc, dict) else None


# --- handling -------------------------------------------------------------------------------


def apply_seed(cfg: Config, path: Path, call: Call, result: MediaResult) -> seeds.Seed | None:
    """Check and apply a seed file into `result`; None when the check refused it."""
    try:
        checked = seeds.check(path, call, cfg)
    except ApplianceError as exc:
        # Named as the person holding the stick sees it, not by the box's temporary mount.
        message = str(exc).replace(str(path.absolute()), path.name)
        result.error = f"{message} (nothing was changed)"
        return None
    result.seed_sha256 = checked.sha256
    outcome = seeds.apply(checked, call, cfg)
    result.lines += outcome.done
    result.warnings += outcome.warnings
    result.error = outcome.error
    result.issued += outcome.issued
    return checked


def import_bundles(paths: list[Path], call: Call, result: MediaResult) -> None:
    """Import each bundle a trusted key signed; refuse the others, saying why."""
    from appliance.admin_client import segment
    from inference.bundle import BundleError, load_public_key, verify

    trusted = {
        r["name"]: load_public_key(r["public_key"]) for r in call("GET", "/trusted-keys")["data"]
    }
    models = {m["name"] for m in call("GET", "/local-models")["data"]}
    refused = 0
    for path in paths:
        try:
            manifest, _ = verify(path, trusted)
        except (BundleError, OSError) as exc:
            result.lines.append(f"! {path.name} refused: {exc}")
            refused += 1
            continue
        if manifest.name in models:
            have = call("GET", f"/local-models/{segment(manifest.name)}")["manifest"]
            same = have == manifest.to_dict()
            result.lines.append(
                f"= model {manifest.name} (already imported)"
                if same
                else f"! {path.name} refused: the box has another model named {manifest.name!r}"
            )
            refused += 0 if same else 1
            continue
        row = call("POST", "/local-models/import", {"path": str(path)})
        result.lines.append(
            f"+ model {row['name']} imported from {path.name}, signed by {row['signed_by']}; "
            f"enable it with: aigw models enable {row['name']}"
        )
    if refused:
        result.error = f"{refused} bundle(s) refused"


def list_backups(paths: list[Path], root: Path, info: DeviceInfo, result: MediaResult) -> None:
    """Backups are never restored by inserting a stick: say how to restore one."""
    for path in paths:
        rel = path.relative_to(root)
        result.lines.append(
            f"backup {rel}: to restore it, mount {info.devnode} (e.g. on /mnt) and run "
            f"`aigw backup restore /mnt/{rel}`"
        )


def _already_applied(cfg: Config, info: DeviceInfo, seed_path: Path) -> bool:
    """The same seed from the same medium went through last time (udev sends `change` events
    when the result is written back: those must not apply it again)."""
    import hashlib

    last = last_result(cfg)
    if not last or not last.get("ok") or not info.uuid or last.get("uuid") != info.uuid:
        return False
    try:
        digest = hashlib.sha256(seed_path.read_bytes()).hexdigest()
    except OSError:
        return False
    return bool(last.get("seed_sha256") == digest)


def _read_text(path: Path) -> str:
    """A text file's content, or "" when there is none to read."""
    try:
        return path.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return ""


def handle(cfg: Config, devnode: str, call: Call) -> MediaResult:
    """Mount, classify and act on one medium; the result (also kept for the console)."""
    info = device_info(devnode)
    result = MediaResult(info.devnode, "ignored", info.label, uuid=info.uuid)
    if not info.fs_type:
        result.lines.append("no filesystem on it")
        return result
    with mounted(cfg, info) as root:
        medium = classify(root, info.label)
        result.kind = medium.kind
        if medium.kind == "seed" and medium.seed is not None:
            if _already_applied(cfg, info, medium.seed):
                result.lines.append(
                    "this seed was applied from this medium already; nothing was done "
                    "(to apply it again: aigw seed apply FILE)"
                )
                return result
            result.source = seeds.SEED_FILE
            apply_seed(cfg, medium.seed, call, result)
            earlier = _read_text(root / seeds.RESULT_FILE)
            text = result.medium_text(earlier)
            result.lines.append(write_back(root, seeds.RESULT_FILE, text))
        elif medium.kind == "bundles":
            import_bundles(medium.bundles, call, result)
        if medium.backups:
            list_backups(medium.backups, root, info, result)
    if medium.kind != "ignored":
        save_result(cfg, result)
    return result


# --- watching -------------------------------------------------------------------------------


def wanted(props: dict[str, str], removable: bool) -> bool:
    """A device worth handling: a filesystem on a removable or USB drive, or labelled as a
    seed (the udev rule's test, so `aigw up` and the box agree)."""
    if props.get("ID_FS_USAGE") != "filesystem" or not props.get("ID_FS_TYPE"):
        return False
    return props.get("ID_FS_LABEL") == SEED_LABEL or props.get("ID_BUS") == "usb" or removable


class MediaWatcher:
    """Calls `handle(devnode)` for each medium that appears (or changes to another filesystem),
    one at a time, from a worker thread; a pyudev monitor on the `block` subsystem."""

    def __init__(self, cfg: Config, handle: Callable[[str], None]) -> None:
        self.cfg = cfg
        self.handle = handle
        self._observer: Any = None
        self._queue: queue.Queue[str | None] = queue.Queue()
        self._worker: threading.Thread | None = None
        self._seen: dict[str, str] = {}  # devnode → filesystem UUID handled

    def start(self) -> None:
        """Start watching (udev events from now on; media already present are left alone)."""
        import pyudev

        monitor = pyudev.Monitor.from_netlink(pyudev.Context())
        monitor.filter_by("block")
        self._worker = threading.Thread(target=self._work, name="aigw-media", daemon=True)
        self._worker.start()
        self._observer = pyudev.MonitorObserver(
            monitor, callback=self._event, name="aigw-media-monitor", daemon=True
        )
        self._observer.start()

    def stop(self) -> None:
        """Stop watching; a medium being handled is finished first (up to a timeout)."""
        if self._observer is not None:
            self._observer.send_stop()
            self._observer.join(5)
            self._observer = None
        if self._worker is not None:
            self._queue.put(None)
            self._worker.join(30)
            self._worker = None

    def _event(self, device: Any) -> None:
        node = device.device_node
        if node is None:
            return
        if device.action == "remove":
            self._seen.pop(node, None)
            return
        if device.action not in ("add", "change"):
            return
        props = {k: str(device.properties[k]) for k in device.properties}
        if not wanted(props, _removable(device)):
            return
        uuid = props.get("ID_FS_UUID", "")
        if self._seen.get(node) == uuid:
            return  # the same filesystem again (e.g. after the result was written back)
        self._seen[node] = uuid
        self._queue.put(node)

    def _work(self) -> None:
        while (node := self._queue.get()) is not None:
            try:
                self.handle(node)
            except Exception:
                log.exception("handling medium %s failed", node)


def cli_handler(cfg: Config, timeout_s: float = 6 * 3600.0) -> Callable[[str], None]:
    """A `MediaWatcher` handler for `aigw up`: `aigw media handle DEV` in a child process (it
    reaches this box through its admin socket), its report logged."""
    import sys

    config = [] if cfg.source.startswith("<") else ["--config", cfg.source]

    def run(devnode: str) -> None:
        argv = [sys.executable, "-m", "appliance.cli", *config, "media", "handle", devnode]
        try:
            done = subprocess.run(argv, capture_output=True, text=True, timeout=timeout_s)
        except subprocess.TimeoutExpired:
            log.error("medium %s: aigw media handle ran past %g s", devnode, timeout_s)
            return
        for line in done.stdout.splitlines():
            log.info("medium %s: %s", devnode, line)
        if done.returncode != 0:
            log.error("medium %s: %s", devnode, done.stderr.strip())

    return run


def _removable(device: Any) -> bool:
    """Whether the device or a parent says it is removable (a USB stick, an SD card)."""
    while device is not None:
        if device.attributes.get("removable") == b"1":
            return True
        device = device.parent
    return False
