"""A real boot: the Debian rootfs with aigw installed, systemd as PID 1 under systemd-nspawn.

The units, sysusers/tmpfiles snippets and /etc/aigw/aigw.toml are those in systemd/; the only
test-specific change is a drop-in with a short WatchdogSec for the watchdog test.
The tests run in file order on one container; the last one powers it off and boots it again.
"""

from __future__ import annotations

import json
import re
import subprocess
import time
from pathlib import Path

import pytest

from image.boot import Container

pytestmark = pytest.mark.slow

STATE = "/var/lib/aigw"
PY = "/opt/aigw/venv/bin/python"

# Fetches a URL inside the container; for HTTPS it also prints the SHA-256 of the peer's
# certificate so the test can check it is the box certificate. Exit 0 whatever the status.
_FETCH = """
import hashlib, ssl, sys, urllib.error, urllib.request
url = sys.argv[1]
ctx = ssl.create_default_context()
ctx.check_hostname = False
ctx.verify_mode = ssl.CERT_NONE
try:
    with urllib.request.urlopen(url, timeout=5, context=ctx) as r:
        status = r.status
        peer = r.fp.raw._sock.getpeercert(binary_form=True) if url.startswith("https") else b""
except urllib.error.HTTPError as e:
    status, peer = e.code, b""
print(status, hashlib.sha256(peer).hexdigest() if peer else "-")
"""

_CERT_FP = """
import hashlib, ssl, sys
der = ssl.PEM_cert_to_DER_cert(open(sys.argv[1]).read())
print(hashlib.sha256(der).hexdigest())
"""

_WATCHDOG_DROPIN = """[Service]
WatchdogSec=5
TimeoutAbortSec=5
RestartSec=1
"""


def journal(box: Container, *units: str, tail: int = 6000) -> str:
    """The end of the current boot's journal of `units`, for assertion messages."""
    args = [a for u in units for a in ("-u", u)]
    out = box.run("journalctl", "--no-pager", "-b", "-o", "short-monotonic", *args, check=False)
    return out.stdout[-tail:]


def fetch(box: Container, url: str) -> tuple[int, str]:
    """(HTTP status, peer certificate SHA-256 or '-') of a GET inside the container."""
    out = box.run(PY, "-c", _FETCH, url, timeout=20).stdout.split()
    return int(out[0]), out[1]


def wait_for(what: str, check: object, timeout: float, box: Container, *units: str) -> None:
    """Poll `check()` until it is truthy; fail with the units' journal after `timeout`."""
    assert callable(check)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(0.25)
    pytest.fail(f"{what} not within {timeout:.0f} s\n{journal(box, *units)}")


def gateway_up(box: Container) -> bool:
    """The gateway unit is active and its main process runs."""
    props = box.show("aigw-gateway.service", "ActiveState", "SubState")
    return props == {"ActiveState": "active", "SubState": "running"}


def read_state(root: Path, name: str) -> str:
    """A file of the box's state directory, read from the host side of the rootfs."""
    return (root / STATE.lstrip("/") / name).read_text()


def test_first_boot_provisioned_once(box: Container, rootfs: Path) -> None:
    props = box.show("aigw-firstboot.service", "ActiveState", "Result", "ConditionResult")
    assert props == {"ActiveState": "active", "Result": "success", "ConditionResult": "yes"}, (
        journal(box, "aigw-firstboot.service")
    )
    starts = box.run("journalctl", "--no-pager", "-b", "-u", "aigw-firstboot", "-o", "cat")
    assert starts.stdout.count("Starting aigw-firstboot.service") == 1

    ident = json.loads(read_state(rootfs, "identity.json"))
    assert re.fullmatch(r"[0-9a-f]{32}", ident["appliance_id"])
    assert ident["hostname"] == f"aigw-{ident['appliance_id'][:4]}"
    machine_id = (rootfs / "etc/machine-id").read_text().strip()
    assert machine_id and ident["appliance_id"] != machine_id
    marker = json.loads(read_state(rootfs, "provisioned"))
    assert marker["at"] and marker["version"]
    # [provisioning] set_hostname = true in the box config.
    assert box.run("hostname").stdout.strip() == ident["hostname"]
    assert (rootfs / "etc/hostname").read_text().strip() == ident["hostname"]


def test_system_user_and_state_modes(box: Container) -> None:
    passwd = box.run("getent", "passwd", "aigw").stdout.strip().split(":")
    assert passwd[5] == STATE and 0 < int(passwd[2]) < 1000, passwd
    stat = box.run("stat", "-c", "%a %U %G", STATE).stdout.split()
    assert stat == ["750", "aigw", "aigw"]
    for secret in ("device.key", "tls/key.pem", "first-admin-token"):
        mode = box.run("stat", "-c", "%a %U", f"{STATE}/{secret}").stdout.split()
        assert mode[0] == "600", (secret, mode)
    assert box.run("systemctl", "--failed", "--plain", "--no-legend").stdout.strip() == ""


def test_console_is_enabled_and_skipped_without_a_tty1(box: Container) -> None:
    # nspawn gives the box no /dev/tty1: the console's condition skips it, nothing fails.
    assert box.run("test", "-e", "/dev/tty1", check=False).returncode != 0
    props = box.show(
        "aigw-console.service", "UnitFileState", "ActiveState", "Result", "ConditionResult"
    )
    assert props == {
        "UnitFileState": "enabled",
        "ActiveState": "inactive",
        "Result": "success",
        "ConditionResult": "no",
    }, journal(box, "aigw-console.service")
    log = journal(box, "aigw-console.service")
    assert "skipped because of an unmet condition check (ConditionPathExists=/dev/tty1)" in log
    assert box.run("systemctl", "--failed", "--plain", "--no-legend").stdout.strip() == ""


_REFUSED = ("Access denied", "Interactive authentication required")


def as_aigw(box: Container, *argv: str) -> subprocess.CompletedProcess[str]:
    """A command run as the gateway's user (systemctl then asks systemd over D-Bus, and
    systemd asks polkit)."""
    return box.run("runuser", "-u", "aigw", "--", *argv, timeout=60, check=False)


def test_polkit_lets_aigw_start_and_stop_engines_and_nothing_else(box: Container) -> None:
    rule = box.run("cat", "/usr/share/polkit-1/rules.d/50-aigw.rules").stdout
    assert "aigw-engine@" in rule
    engine = "aigw-engine@boottest.service"
    assert box.show(engine, "InvocationID")["InvocationID"] == ""
    try:
        started = as_aigw(box, "systemctl", "start", engine)
        # Allowed: systemd ran the start (the engine itself fails later: no such model).
        assert not any(r in started.stderr for r in _REFUSED), started.stderr
        assert box.show(engine, "InvocationID")["InvocationID"] != "", started.stderr
        # A verb the rule does not name, on an engine (loaded now: else systemd says so first).
        killed = as_aigw(box, "systemctl", "kill", engine)
        assert any(r in killed.stderr for r in _REFUSED), killed.stderr
        stopped = as_aigw(box, "systemctl", "stop", engine)
        assert stopped.returncode == 0, stopped.stderr
    finally:
        box.run("systemctl", "stop", engine, check=False)
        box.run("systemctl", "reset-failed", engine, check=False)
    # Refused: any other unit.
    pid = box.show("aigw-gateway.service", "MainPID")["MainPID"]
    for argv in (
        ("restart", "aigw-gateway.service"),
        ("start", "systemd-hostnamed.service"),
    ):
        refused = as_aigw(box, "systemctl", *argv)
        assert refused.returncode != 0, argv
        assert any(r in refused.stderr for r in _REFUSED), (argv, refused.stderr)
    assert box.show("aigw-gateway.service", "MainPID")["MainPID"] == pid
    assert box.run("systemctl", "--failed", "--plain", "--no-legend").stdout.strip() == ""


def test_gateway_active_and_answers(box: Container) -> None:
    wait_for("gateway active", lambda: gateway_up(box), 60, box, "aigw-gateway.service")
    props = box.show("aigw-gateway.service", "Type", "User", "NRestarts")
    assert props == {"Type": "notify", "User": "aigw", "NRestarts": "0"}

    assert fetch(box, "http://127.0.0.1:8080/healthz") == (200, "-")
    status, peer_fp = fetch(box, "https://127.0.0.1:8443/healthz")
    assert status == 200
    cert_fp = box.run(PY, "-c", _CERT_FP, f"{STATE}/tls/cert.pem").stdout.strip()
    assert peer_fp == cert_fp
    # The API needs a key: no key, no models.
    assert fetch(box, "http://127.0.0.1:8080/v1/models")[0] == 401


def test_gateway_reports_status(box: Container) -> None:
    def has_status() -> bool:
        return bool(box.show("aigw-gateway.service", "StatusText")["StatusText"])

    wait_for("a STATUS= line", has_status, 30, box, "aigw-gateway.service")


def test_watchdog_restarts_hung_gateway(box: Container, rootfs: Path) -> None:
    dropin = rootfs / "etc/systemd/system/aigw-gateway.service.d"
    dropin.mkdir(parents=True, exist_ok=True)
    (dropin / "50-boot-test.conf").write_text(_WATCHDOG_DROPIN)
    box.run("systemctl", "daemon-reload")
    box.run("systemctl", "restart", "aigw-gateway.service", timeout=60)
    wait_for("gateway active", lambda: gateway_up(box), 60, box, "aigw-gateway.service")
    before = box.show("aigw-gateway.service", "MainPID", "NRestarts", "WatchdogUSec")
    assert before["WatchdogUSec"] == "5s"
    # Alive for longer than the watchdog period: the event loop's pings keep it up.
    time.sleep(7)
    assert box.show("aigw-gateway.service", "MainPID")["MainPID"] == before["MainPID"]

    box.run("kill", "-STOP", before["MainPID"])

    def restarted() -> bool:
        now = box.show("aigw-gateway.service", "MainPID", "NRestarts", "ActiveState", "SubState")
        return (
            int(now["NRestarts"]) > int(before["NRestarts"])
            and now["MainPID"] not in ("0", before["MainPID"])
            and gateway_up(box)
        )

    wait_for("restart after the watchdog fired", restarted, 60, box, "aigw-gateway.service")
    # systemd's own verdict (the gateway's fault handler dumps its stacks after it).
    log = journal(box, "aigw-gateway.service", tail=10**7)
    assert "aigw-gateway.service: Watchdog timeout" in log, log[-6000:]
    wait_for("HTTP again", lambda: fetch(box, "http://127.0.0.1:8080/healthz")[0] == 200, 30, box)


def test_second_boot_does_not_provision_again(box: Container, rootfs: Path) -> None:
    box.stop()
    ident = read_state(rootfs, "identity.json")
    marker = read_state(rootfs, "provisioned")
    cert = read_state(rootfs, "tls/cert.pem")

    again = Container(rootfs, "aigw-boot-test", rootfs.parent / "console-2.log")
    with again:
        again.wait_running()
        props = again.show("aigw-firstboot.service", "ActiveState", "ConditionResult")
        assert props == {"ActiveState": "inactive", "ConditionResult": "no"}
        wait_for("gateway active", lambda: gateway_up(again), 60, again, "aigw-gateway.service")
        assert fetch(again, "http://127.0.0.1:8080/healthz") == (200, "-")
        assert read_state(rootfs, "identity.json") == ident
        assert read_state(rootfs, "provisioned") == marker
        assert read_state(rootfs, "tls/cert.pem") == cert
