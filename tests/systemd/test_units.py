"""The files in systemd/ as the box installs them: every unit passes `systemd-analyze verify`,
the gateway unit rates 2.5 or lower in `systemd-analyze security`, sysusers.d and tmpfiles.d
build the user and the directories in a scratch root, the box configuration loads, and the
gateway runs (ready, watchdog pings, HTTP and HTTPS answer, mDNS on loopback) under the
system-call sandbox its unit declares (SystemCallFilter=, MemoryDenyWriteExecute=,
RestrictAddressFamilies=), applied with libseccomp the way systemd applies it.

There is no systemd as PID 1 here; the real boot of these units is the image's test.
"""

from __future__ import annotations

import asyncio
import ctypes.util
import os
import re
import shutil
import signal
import socket
import ssl
import stat
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import orjson
import pytest

from appliance.config import load_config
from appliance.discovery import discover
from tests.harness import free_port

ROOT = Path(__file__).resolve().parents[2]
UNITS = ROOT / "systemd"
AIGW = str(Path(sys.executable).with_name("aigw"))
INSTALLED_AIGW = "/opt/aigw/venv/bin/aigw"
# Instances for the template units (aigw-engine@NAME, aigw-media@DEVICE).
INSTANCES = {"aigw-engine@.service": "tiny", "aigw-media@.service": "sdb1"}

needs_analyze = pytest.mark.skipif(
    shutil.which("systemd-analyze") is None, reason="no systemd-analyze"
)


def unit_files() -> list[Path]:
    """Every unit shipped in systemd/ (the media helper's too, when present)."""
    return sorted(UNITS.glob("*.service"))


def directives(path: Path, key: str) -> list[str]:
    """The values of `key=` in a unit file, in order."""
    pattern = re.compile(rf"^{re.escape(key)}=(.*)$")
    return [
        m.group(1).strip() for line in path.read_text().splitlines() if (m := pattern.match(line))
    ]


def _install(tmp: Path) -> list[Path]:
    """The units as installed, ExecStart pointed at this environment's aigw."""
    out = []
    for unit in unit_files():
        name = unit.name
        if name.endswith("@.service"):
            name = name.replace("@.service", f"@{INSTANCES.get(unit.name, 'x')}.service")
        target = tmp / name
        target.write_text(unit.read_text().replace(INSTALLED_AIGW, AIGW))
        out.append(target)
    return out


def test_the_expected_units_are_shipped() -> None:
    names = {u.name for u in unit_files()}
    assert {
        "aigw-firstboot.service",
        "aigw-gateway.service",
        "aigw-console.service",
        "aigw-engine@.service",
    } <= names
    for unit in unit_files():
        for exec_start in directives(unit, "ExecStart"):
            assert exec_start.startswith(("/", "-/", "+/")), (unit.name, exec_start)


@needs_analyze
def test_every_unit_verifies(tmp_path: Path) -> None:
    installed = _install(tmp_path)
    assert len(installed) >= 4
    done = subprocess.run(
        ["systemd-analyze", "verify", *map(str, installed)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    assert done.stderr == "", done.stderr  # unknown keys are only warnings: none allowed


@needs_analyze
def test_verify_catches_a_broken_unit(tmp_path: Path) -> None:
    # The check above can fail: a misspelt key and a missing dependency are both reported.
    installed = _install(tmp_path)
    gateway = next(p for p in installed if p.name == "aigw-gateway.service")
    gateway.write_text(
        gateway.read_text()
        .replace("Restart=on-failure", "Restrt=on-failure")
        .replace("Requires=aigw-firstboot.service", "Requires=aigw-nothere.service")
    )
    done = subprocess.run(
        ["systemd-analyze", "verify", str(gateway)], capture_output=True, text=True, timeout=60
    )
    assert done.returncode != 0
    assert "Restrt" in done.stderr and "aigw-nothere.service" in done.stderr


def exposure(unit: Path) -> float:
    """`systemd-analyze security`'s overall exposure of a unit file (0 best, 10 worst)."""
    done = subprocess.run(
        ["systemd-analyze", "security", "--offline=true", "--no-pager", str(unit)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    match = re.search(r"Overall exposure level for \S+: (\d+\.\d+)", done.stdout)
    assert match, done.stdout + done.stderr
    return float(match.group(1))


@needs_analyze
def test_the_gateway_unit_rates_2_5_or_lower() -> None:
    assert exposure(UNITS / "aigw-gateway.service") <= 2.5
    assert exposure(UNITS / "aigw-console.service") <= 2.5
    # First boot runs as root (hostname, TPM, drop-in), still hardened as far as that allows.
    assert exposure(UNITS / "aigw-firstboot.service") <= 3.5


def test_units_agree_on_user_paths_and_config() -> None:
    gateway, firstboot = UNITS / "aigw-gateway.service", UNITS / "aigw-firstboot.service"
    engine, console = UNITS / "aigw-engine@.service", UNITS / "aigw-console.service"
    cfg = load_config(str(UNITS / "aigw.toml"))
    state = str(cfg.state_dir)
    assert state == "/var/lib/aigw"
    for unit in (gateway, engine):
        assert directives(unit, "User") == ["aigw"] and directives(unit, "Group") == ["aigw"]
        assert directives(unit, "ReadWritePaths") == [state]
        assert directives(unit, "ProtectSystem") == ["strict"]
    assert directives(gateway, "StateDirectory") == ["aigw"]
    assert directives(gateway, "StateDirectoryMode") == ["0750"]
    assert directives(gateway, "CapabilityBoundingSet") == [""]
    assert cfg.tls.port >= 1024  # hence no CAP_NET_BIND_SERVICE
    assert directives(gateway, "Type") == ["notify"]
    assert directives(gateway, "NotifyAccess") == ["main"]
    assert directives(gateway, "WatchdogSec") == ["30"]
    assert directives(gateway, "Restart") == ["on-failure"]
    # A reset or restore asked for through the admin API is done as root after the gateway
    # stops, before systemd starts it again; first boot hands the state to aigw itself.
    assert directives(gateway, "ExecStopPost") == [f"+{INSTALLED_AIGW} firstboot"]
    assert directives(firstboot, "ExecStart") == [f"{INSTALLED_AIGW} firstboot"]
    assert directives(firstboot, "ExecStartPost") == []
    assert directives(firstboot, "ConditionPathExists") == [f"!{state}/provisioned"]
    assert directives(firstboot, "Type") == ["oneshot"]
    assert "aigw-gateway.service" in " ".join(directives(firstboot, "Before"))
    assert directives(console, "TTYPath") == ["/dev/tty1"]
    assert directives(console, "Conflicts") == ["getty@tty1.service"]
    # Skipped, not failed, where there is no tty1 (a container, a kernel without VTs).
    assert directives(console, "ConditionPathExists") == ["/dev/tty1"]
    for unit in unit_files():
        if INSTALLED_AIGW in unit.read_text():
            assert "AIGW_CONFIG=/etc/aigw/aigw.toml" in " ".join(directives(unit, "Environment")), (
                unit.name
            )
    # What the gateway starts through systemctl is what the polkit rule lets aigw manage.
    rule = (UNITS / "polkit" / "50-aigw.rules").read_text()
    assert "aigw-engine@" in rule and 'subject.user !== "aigw"' in rule
    assert "org.freedesktop.systemd1.manage-units" in rule


def _firstboot(config: Path, **env: str) -> subprocess.CompletedProcess[str]:
    """`aigw firstboot` as the gateway's ExecStopPost runs it (root, AIGW_CONFIG)."""
    return subprocess.run(
        [AIGW, "firstboot"],
        env={**os.environ, "AIGW_CONFIG": str(config), **env},
        capture_output=True,
        text=True,
        timeout=120,
    )


def _owners(state: Path) -> set[tuple[int, int]]:
    return {(p.lstat().st_uid, p.lstat().st_gid) for p in state.rglob("*")}


@pytest.mark.skipif(os.geteuid() != 0, reason="handing the state over needs root")
def test_firstboot_finishes_a_pending_reset_and_hands_the_state_over(tmp_path: Path) -> None:
    from appliance.identity import load_identity, read_marker
    from provisioning.pending import PENDING_RESET, request_reset

    tpm = subprocess.run(["systemd-creds", "has-tpm2"], capture_output=True, check=False)
    if shutil.which("systemd-creds") and tpm.returncode == 0:
        pytest.skip("this host has a TPM: first boot would seal to it")
    owner = (65534, 65534)  # the box's aigw; nobody here
    state = tmp_path / "state"
    state.mkdir(mode=0o750)
    os.chown(state, *owner)
    outside = tmp_path / "outside"
    outside.write_text("root's")
    config = tmp_path / "aigw.toml"
    config.write_text(f'[state]\ndir = "{state}"\n[vault]\nkek = "auto"\n')
    cfg = load_config(str(config))

    first = _firstboot(config)
    assert first.returncode == 0, first.stderr
    ident = load_identity(state)
    assert ident is not None and f"provisioned {ident.hostname}" in first.stdout
    assert _owners(state) == {owner}
    # A link in the state is handed over itself; what it points to is not touched.
    (state / "link").symlink_to(outside)
    os.lchown(state / "link", 0, 0)

    # What the gateway's ExecStopPost sees after a reset asked through the admin API: the
    # pending marker, and the old box's credentials still loaded in CREDENTIALS_DIRECTORY.
    creds = tmp_path / "creds"
    creds.mkdir()
    (creds / cfg.vault.credential).write_bytes(os.urandom(32))
    request_reset(cfg, ident.appliance_id, "test")
    reset = _firstboot(config, CREDENTIALS_DIRECTORY=str(creds))
    assert reset.returncode == 0, reset.stderr
    assert f"factory reset of {ident.appliance_id} done" in reset.stdout
    new = load_identity(state)
    assert new is not None and new.appliance_id != ident.appliance_id
    assert f"provisioned {new.hostname}" in reset.stdout
    assert not (state / PENDING_RESET).exists()
    marker = read_marker(state)
    assert marker is not None and marker["appliance_id"] == new.appliance_id
    # The new vault has its own key, not the wiped box's credential.
    assert marker["kek"] != "credential" and (state / "vault.key").is_file()
    assert _owners(state) == {owner}
    assert outside.stat().st_uid == 0

    # Nothing pending, provisioned: a quick no-op that changes nothing (every stop runs it).
    before = {p: p.lstat().st_mtime_ns for p in state.rglob("*")}
    started = time.monotonic()
    again = _firstboot(config)
    took = time.monotonic() - started
    assert again.returncode == 0, again.stderr
    assert "was provisioned at" in again.stdout and took < 10, (took, again.stdout)
    assert {p: p.lstat().st_mtime_ns for p in state.rglob("*")} == before


def test_the_box_config_loads() -> None:
    cfg = load_config(str(UNITS / "aigw.toml"))
    assert cfg.tls.enabled and cfg.tls.host == "0.0.0.0"
    assert cfg.server.host == "127.0.0.1"  # plain HTTP on loopback only
    assert cfg.discovery.enabled and cfg.discovery_interfaces == []
    assert cfg.provisioning.set_hostname and not cfg.provisioning.watch_media
    assert cfg.provisioning.media_mount_dir == "/run/aigw/media"
    assert cfg.inference.supervisor == "systemd"
    assert cfg.engine_python == Path("/opt/aigw/engine/bin/python")
    assert cfg.vault.kek == "auto" and cfg.log.format == "json"


def test_the_media_rule_starts_a_shipped_unit() -> None:
    rules = sorted(UNITS.glob("*.rules"))
    if not rules:
        pytest.skip("no udev rule shipped yet")
    wanted = set(re.findall(r"(aigw-[\w-]+@)", " ".join(r.read_text() for r in rules)))
    assert wanted, "the udev rule starts no aigw unit"
    shipped = {u.name.removesuffix(".service") for u in unit_files()}
    assert wanted <= shipped


@pytest.mark.skipif(shutil.which("systemd-sysusers") is None, reason="no systemd-sysusers")
def test_sysusers_and_tmpfiles_build_the_user_and_directories(tmp_path: Path) -> None:
    root = tmp_path / "root"
    (root / "etc").mkdir(parents=True)
    conf = (UNITS / "sysusers.d" / "aigw.conf").read_text()
    done = subprocess.run(
        ["systemd-sysusers", f"--root={root}", "-"], input=conf, capture_output=True, text=True
    )
    assert done.returncode == 0, done.stderr
    users = {
        line.split(":")[0]: line.split(":")
        for line in (root / "etc/passwd").read_text().splitlines()
    }
    aigw = users["aigw"]
    uid, gid, home, shell = int(aigw[2]), int(aigw[3]), aigw[5], aigw[6]
    assert uid < 1000 and home == "/var/lib/aigw" and shell.endswith("nologin")
    assert any(line.startswith("aigw:") for line in (root / "etc/group").read_text().splitlines())
    tmpfiles = (UNITS / "tmpfiles.d" / "aigw.conf").read_text()
    done = subprocess.run(
        ["systemd-tmpfiles", f"--root={root}", "--create", "-"],
        input=tmpfiles,
        capture_output=True,
        text=True,
    )
    assert done.returncode == 0, done.stderr
    expect = {
        "var/lib/aigw": (0o750, uid, gid),
        "run/aigw": (0o755, 0, 0),
        "run/aigw/media": (0o750, 0, gid),
        "etc/aigw": (0o755, 0, 0),
    }
    for rel, (mode, owner, group) in expect.items():
        st = (root / rel).stat()
        assert stat.S_ISDIR(st.st_mode), rel
        assert (stat.S_IMODE(st.st_mode), st.st_uid, st.st_gid) == (mode, owner, group), rel


# --- the gateway under its unit's system-call sandbox ------------------------------------------

LIBSECCOMP = ctypes.util.find_library("seccomp")

# Loads systemd-like seccomp filters with libseccomp, then execs the command: an allow-list
# (default EPERM, as SystemCallErrorNumber=EPERM), and a second filter for
# MemoryDenyWriteExecute= and RestrictAddressFamilies= (the kernel applies the strictest).
SANDBOX = r"""
import ctypes, errno, json, os, sys
spec = json.loads(sys.argv[1])
lib = ctypes.CDLL("{lib}", use_errno=True)
class Arg(ctypes.Structure):
    _fields_ = [("arg", ctypes.c_uint), ("op", ctypes.c_int),
                ("a", ctypes.c_uint64), ("b", ctypes.c_uint64)]
lib.seccomp_init.restype = ctypes.c_void_p
lib.seccomp_init.argtypes = [ctypes.c_uint32]
lib.seccomp_rule_add_array.argtypes = [ctypes.c_void_p, ctypes.c_uint32, ctypes.c_int,
                                       ctypes.c_uint, ctypes.POINTER(Arg)]
lib.seccomp_syscall_resolve_name.argtypes = [ctypes.c_char_p]
lib.seccomp_load.argtypes = [ctypes.c_void_p]
ALLOW, EQ, GT, MASKED_EQ = 0x7FFF0000, 4, 6, 7
def err(n):
    return 0x00050000 | n
def rule(ctx, action, name, *args):
    nr = lib.seccomp_syscall_resolve_name(name.encode())
    if nr == -1:
        return  # not a system call of this architecture
    arr = (Arg * len(args))(*[Arg(*a) for a in args]) if args else None
    lib.seccomp_rule_add_array(ctx, action, nr, len(args), arr)
allow = lib.seccomp_init(err(errno.EPERM))
for name in spec["allow"]:
    rule(allow, ALLOW, name)
extra = lib.seccomp_init(ALLOW)
if spec["mdwe"]:
    wx, x = 0x2 | 0x4, 0x4
    rule(extra, err(errno.EPERM), "mmap", (2, MASKED_EQ, wx, wx))
    rule(extra, err(errno.EPERM), "mprotect", (2, MASKED_EQ, x, x))
    rule(extra, err(errno.EPERM), "pkey_mprotect", (2, MASKED_EQ, x, x))
    rule(extra, err(errno.EPERM), "shmat", (2, MASKED_EQ, 0o100000, 0o100000))
for family in range(46):
    if family not in spec["families"]:
        rule(extra, err(errno.EAFNOSUPPORT), "socket", (0, EQ, family, 0))
rule(extra, err(errno.EAFNOSUPPORT), "socket", (0, GT, 45, 0))
for ctx in (extra, allow):  # the allow-list last: it may not permit seccomp() itself
    rc = lib.seccomp_load(ctx)
    if rc != 0:
        sys.exit(f"seccomp_load failed: {{os.strerror(-rc)}}")
if spec["selftest"]:
    import mmap, socket
    libc = ctypes.CDLL(None, use_errno=True)
    libc.mmap.restype = ctypes.c_void_p
    libc.mmap.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int, ctypes.c_int,
                          ctypes.c_int, ctypes.c_long]
    p = libc.mmap(None, 4096, 7, mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS, -1, 0)
    out = {{"wx_mmap": errno.errorcode.get(ctypes.get_errno(), "ok")
            if p in (None, ctypes.c_void_p(-1).value) else "ok"}}
    try:
        socket.socket(socket.AF_PACKET, socket.SOCK_RAW)
        out["packet"] = "ok"
    except OSError as exc:
        out["packet"] = errno.errorcode[exc.errno]
    try:
        os.sched_setaffinity(0, os.sched_getaffinity(0))
        out["affinity"] = "ok"
    except OSError as exc:
        out["affinity"] = errno.errorcode[exc.errno]
    socket.socket(socket.AF_INET, socket.SOCK_STREAM).close()
    out["inet"] = "ok"
    print(json.dumps(out))
    sys.exit(0)
os.execv(spec["argv"][0], spec["argv"])
"""

FAMILIES = {"AF_UNIX": 1, "AF_INET": 2, "AF_INET6": 10, "AF_NETLINK": 16}


def _expand(group: str, seen: set[str] | None = None) -> set[str]:
    """The system calls of a systemd group (@name), nested groups included."""
    seen = set() if seen is None else seen
    if not group.startswith("@"):
        return {group}
    if group in seen:
        return set()
    seen.add(group)
    out = subprocess.run(
        ["systemd-analyze", "syscall-filter", group], capture_output=True, text=True, timeout=30
    ).stdout
    names: set[str] = set()
    for line in out.splitlines()[1:]:
        item = line.strip()
        if item and not item.startswith("#"):
            names |= _expand(item, seen)
    return names


def sandbox_spec(unit: Path, argv: list[str], selftest: bool = False) -> dict[str, object]:
    """The unit's SystemCallFilter= (allow-list then ~removals), MDWE and address families."""
    allow: set[str] = set()
    for value in directives(unit, "SystemCallFilter"):
        if value.startswith("~"):
            for item in value[1:].split():
                allow -= _expand(item)
        else:
            for item in value.split():
                allow |= _expand(item)
    assert "execve" in allow and "sethostname" not in allow
    families = [FAMILIES[f] for v in directives(unit, "RestrictAddressFamilies") for f in v.split()]
    mdwe = directives(unit, "MemoryDenyWriteExecute") == ["yes"]
    return {
        "allow": sorted(allow),
        "mdwe": mdwe,
        "families": families,
        "argv": argv,
        "selftest": selftest,
    }


def _sandboxed(tmp: Path, spec: dict[str, object]) -> list[str]:
    script = tmp / "sandbox.py"
    script.write_text(SANDBOX.format(lib=LIBSECCOMP))
    return [sys.executable, str(script), orjson.dumps(spec).decode()]


needs_seccomp = pytest.mark.skipif(
    LIBSECCOMP is None or shutil.which("systemd-analyze") is None,
    reason="no libseccomp or systemd-analyze",
)


@needs_seccomp
def test_the_sandbox_enforces_what_the_unit_says(tmp_path: Path) -> None:
    spec = sandbox_spec(UNITS / "aigw-gateway.service", [], selftest=True)
    done = subprocess.run(
        _sandboxed(tmp_path, spec), capture_output=True, text=True, timeout=60, check=False
    )
    assert done.returncode == 0, done.stderr
    assert orjson.loads(done.stdout) == {
        "wx_mmap": "EPERM",  # MemoryDenyWriteExecute=yes
        "packet": "EAFNOSUPPORT",  # RestrictAddressFamilies= has no AF_PACKET
        "affinity": "EPERM",  # SystemCallFilter=~@resources
        "inet": "ok",
    }


class NotifySocket:
    """systemd's end of $NOTIFY_SOCKET."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(str(path))
        self.got: list[str] = []

    def collect(self, seconds: float) -> None:
        """Read whatever arrives for `seconds`."""
        deadline = time.monotonic() + seconds
        while (left := deadline - time.monotonic()) > 0:
            self.sock.settimeout(left)
            try:
                self.got.append(self.sock.recv(4096).decode())
            except TimeoutError:
                break

    def wait_for(self, line: str, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while not any(line in m.splitlines() for m in self.got):
            left = deadline - time.monotonic()
            if left <= 0:
                raise AssertionError(f"no {line!r} from the gateway; got {self.got}")
            self.sock.settimeout(left)
            try:
                self.got.append(self.sock.recv(4096).decode())
            except TimeoutError:
                continue


def _get(url: str) -> int:
    ctx = ssl.create_default_context()
    ctx.check_hostname, ctx.verify_mode = False, ssl.CERT_NONE  # the box's own certificate
    with urllib.request.urlopen(url, timeout=5, context=ctx) as resp:
        return int(resp.status)


@needs_seccomp
@pytest.mark.slow
def test_the_gateway_runs_under_its_units_sandbox(tmp_path: Path) -> None:
    port, tls_port = free_port(), free_port()
    config = tmp_path / "aigw.toml"
    config.write_text(
        f'[state]\ndir = "{tmp_path / "state"}"\n'
        f"[server]\nport = {port}\n"
        f'[tls]\nenabled = true\nhost = "127.0.0.1"\nport = {tls_port}\n'
        '[discovery]\nenabled = true\ninterfaces = "127.0.0.1"\n'
        '[log]\nformat = "text"\n'
    )
    notify = NotifySocket(tmp_path / "notify")
    env = {
        **os.environ,
        "AIGW_CONFIG": str(config),
        "NOTIFY_SOCKET": str(notify.path),
        "WATCHDOG_USEC": "1000000",  # a ping every 0.5 s
        "PYTHONFAULTHANDLER": "1",
    }
    env.pop("WATCHDOG_PID", None)
    spec = sandbox_spec(UNITS / "aigw-gateway.service", [AIGW, "up"])
    log = (tmp_path / "gateway.log").open("w+")
    proc = subprocess.Popen(_sandboxed(tmp_path, spec), env=env, stdout=log, stderr=log)
    try:
        notify.wait_for("READY=1", timeout=90)
        notify.wait_for("WATCHDOG=1", timeout=5)
        assert _get(f"http://127.0.0.1:{port}/healthz") == 200
        assert _get(f"https://127.0.0.1:{tls_port}/healthz") == 200
        # Advertised by mDNS from inside the sandbox (loopback only). Asked from another loopback
        # address, so unicast answers reach the asker (see tests/appliance/test_discovery.py).
        boxes = asyncio.run(discover(timeout=3.0, interfaces=["127.0.0.2"]))
        assert any(b.port == tls_port for b in boxes), boxes
        count = notify.got.count("WATCHDOG=1")
        notify.collect(1.6)  # the watchdog keeps pinging, about every 0.5 s
        assert notify.got.count("WATCHDOG=1") >= count + 2
        assert any(m.startswith("STATUS=") for m in notify.got)
    finally:
        proc.send_signal(signal.SIGTERM)
        code = proc.wait(30)
        log.seek(0)
        output = log.read()
    assert code == 0, output
    notify.wait_for("STOPPING=1", timeout=5)
    assert "Traceback" not in output and "Operation not permitted" not in output, output


# The rule run by a JavaScript engine with polkit's rule API (addRule, Result, action.lookup).
POLKIT_HARNESS = """
const fs = require("fs"), vm = require("vm");
const rules = [];
const polkit = {Result: {YES: "yes", NO: "no", NOT_HANDLED: null}, addRule: (f) => rules.push(f)};
vm.runInNewContext(fs.readFileSync(process.argv[2], "utf8"), {polkit});
const out = JSON.parse(process.argv[3]).map(([id, user, unit, verb]) => {
  const action = {id, lookup: (k) => ({unit, verb})[k]};
  for (const rule of rules) {
    const r = rule(action, {user});
    if (r !== null && r !== undefined) return r;
  }
  return "not handled";
});
console.log(JSON.stringify(out));
"""


@pytest.mark.skipif(shutil.which("node") is None, reason="no node to run the polkit rule")
def test_polkit_lets_aigw_manage_engine_units_only(tmp_path: Path) -> None:
    manage = "org.freedesktop.systemd1.manage-units"
    cases = [
        (manage, "aigw", "aigw-engine@tiny.service", "start"),
        (manage, "aigw", "aigw-engine@llama-3.1-8b.service", "restart"),
        (manage, "aigw", "aigw-engine@tiny.service", "stop"),
        (manage, "aigw", "aigw-gateway.service", "restart"),
        (manage, "aigw", "ssh.service", "start"),
        (manage, "aigw", "aigw-engine@tiny.service.d/x", "start"),
        (manage, "aigw", "aigw-engine@tiny.service", "kill"),
        (manage, "nobody", "aigw-engine@tiny.service", "start"),
        ("org.freedesktop.systemd1.manage-unit-files", "aigw", "aigw-engine@tiny.service", ""),
        ("org.freedesktop.systemd1.reload-daemon", "aigw", "", ""),
    ]
    script = tmp_path / "harness.js"
    script.write_text(POLKIT_HARNESS)
    done = subprocess.run(
        ["node", str(script), str(UNITS / "polkit" / "50-aigw.rules"), orjson.dumps(cases)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    assert orjson.loads(done.stdout) == ["yes"] * 3 + ["not handled"] * 7
