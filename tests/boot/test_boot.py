"""A real boot: the Debian rootfs with aigw installed, systemd as PID 1 under systemd-nspawn.

The units, sysusers/tmpfiles snippets and /etc/aigw/aigw.toml are those in systemd/; the only
test-specific change is a drop-in with a short WatchdogSec for the watchdog test. A factory
reset and a restore are asked for over the admin socket and finished by the gateway's
ExecStopPost (root) before systemd starts it again.
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
AIGW = "/opt/aigw/venv/bin/aigw"

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


# An admin API call over the admin socket, as root (the socket's peer uid makes it an admin):
# prints the status, then the body.
_ADMIN = """
import http.client, socket, sys

class Conn(http.client.HTTPConnection):
    def connect(self):
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.settimeout(60)
        self.sock.connect("/var/lib/aigw/admin.sock")

conn = Conn("localhost", timeout=60)
body = sys.argv[3] if len(sys.argv) > 3 else None
headers = {"Content-Type": "application/json"} if body else {}
conn.request(sys.argv[1], "/admin/v1" + sys.argv[2], body=body, headers=headers)
resp = conn.getresponse()
print(resp.status)
print(resp.read().decode())
"""
BACKUP_PASSPHRASE = "boot test backup passphrase"


def admin(box: Container, method: str, path: str, body: object = None) -> tuple[int, object]:
    """(status, JSON body) of an admin API call over the admin socket inside the box."""
    argv = [PY, "-c", _ADMIN, method, path]
    if body is not None:
        argv.append(json.dumps(body))
    out = box.run(*argv, timeout=90).stdout
    status, _, text = out.partition("\n")
    return int(status), json.loads(text) if text.strip() else None


def restarted_after(box: Container, before: dict[str, str], timeout: float = 90) -> None:
    """Wait until the gateway exited, was started again by systemd and is up."""

    def again() -> bool:
        now = box.show("aigw-gateway.service", "MainPID", "NRestarts")
        return (
            int(now["NRestarts"]) > int(before["NRestarts"])
            and now["MainPID"] not in ("0", before["MainPID"])
            and gateway_up(box)
        )

    wait_for("the gateway back after its exit", again, timeout, box, "aigw-gateway.service")
    wait_for(
        "HTTP again",
        lambda: fetch(box, "http://127.0.0.1:8080/healthz")[0] == 200,
        30,
        box,
        "aigw-gateway.service",
    )


def assert_state_owned_by_aigw(box: Container) -> None:
    """What root did after the gateway stopped was handed to the gateway's user."""
    foreign = box.run("find", STATE, "(", "!", "-user", "aigw", "-o", "!", "-group", "aigw", ")")
    assert foreign.stdout.strip() == "", foreign.stdout


def assert_stop_post_succeeded(box: Container) -> None:
    """The gateway's ExecStopPost (`aigw firstboot` as root) ran and exited 0, and nothing
    failed."""
    stop_post = box.show("aigw-gateway.service", "ExecStopPost")["ExecStopPost"]
    assert "firstboot" in stop_post and "status=0" in stop_post, stop_post
    assert box.run("systemctl", "--failed", "--plain", "--no-legend").stdout.strip() == ""


def test_factory_reset_through_the_admin_socket(box: Container, rootfs: Path) -> None:
    wait_for("gateway active", lambda: gateway_up(box), 60, box, "aigw-gateway.service")
    old = json.loads(read_state(rootfs, "identity.json"))
    old_marker = read_state(rootfs, "provisioned")
    old_fp = fetch(box, "https://127.0.0.1:8443/healthz")[1]
    # Where first boot puts the TPM credential's drop-in (the container has no TPM: a stand-in
    # with an environment variable). The reset removes it and runs `systemctl daemon-reload`
    # from the ExecStopPost, which must not upset the restart in progress.
    dropin = rootfs / "etc/systemd/system/aigw-gateway.service.d/50-vault-kek.conf"
    dropin.parent.mkdir(parents=True, exist_ok=True)
    dropin.write_text(
        "[Service]\nEnvironment=AIGW_BOOT_TEST_DROPIN=1\n"
        "LoadCredential=aigw-boot-test:/etc/machine-id\n"
    )
    box.run("systemctl", "daemon-reload")
    box.run("systemctl", "restart", "aigw-gateway.service", timeout=60)
    wait_for("gateway active", lambda: gateway_up(box), 60, box, "aigw-gateway.service")
    assert "AIGW_BOOT_TEST_DROPIN" in box.show("aigw-gateway.service", "Environment")["Environment"]
    creds = "/run/credentials/aigw-gateway.service"
    assert box.run("test", "-f", f"{creds}/aigw-boot-test", check=False).returncode == 0
    before = box.show("aigw-gateway.service", "MainPID", "NRestarts")

    status, body = admin(box, "POST", "/system/factory-reset", {"confirm": old["appliance_id"]})
    assert status == 200 and isinstance(body, dict), body
    assert body["restart"] is True and body["appliance_id"] == old["appliance_id"]
    restarted_after(box, before)

    log = journal(box, "aigw-gateway.service", tail=10**7)
    assert "status=75" in log, log[-6000:]
    assert f"factory reset of {old['appliance_id']} done" in log, log[-6000:]
    new = json.loads(read_state(rootfs, "identity.json"))
    assert new["appliance_id"] != old["appliance_id"]
    marker = json.loads(read_state(rootfs, "provisioned"))
    assert read_state(rootfs, "provisioned") != old_marker
    assert marker["appliance_id"] == new["appliance_id"]
    # Set by root in the ExecStopPost, before the gateway (ProtectHostname=) started again.
    assert box.run("hostname").stdout.strip() == new["hostname"] != old["hostname"]
    assert (rootfs / "etc/hostname").read_text().strip() == new["hostname"]
    assert marker["steps"]["hostname"] == "set", marker
    assert_state_owned_by_aigw(box)
    assert_stop_post_succeeded(box)
    # The drop-in is gone, and systemd started the gateway again with the reloaded unit.
    assert not dropin.exists()
    props = box.show("aigw-gateway.service", "Environment", "DropInPaths", "NeedDaemonReload")
    assert "AIGW_BOOT_TEST_DROPIN" not in props["Environment"], props
    assert "50-vault-kek.conf" not in props["DropInPaths"], props
    assert props["NeedDaemonReload"] == "no", props
    # The restarted gateway got the credentials of the reloaded unit, not the old ones.
    assert box.run("test", "-e", f"{creds}/aigw-boot-test", check=False).returncode != 0

    assert box.show("aigw-gateway.service", "User")["User"] == "aigw"
    status, peer_fp = fetch(box, "https://127.0.0.1:8443/healthz")
    cert_fp = box.run(PY, "-c", _CERT_FP, f"{STATE}/tls/cert.pem").stdout.strip()
    assert status == 200 and peer_fp == cert_fp != old_fp
    # The new box's API answers (its first admin token made anew, the old ones gone).
    status, system = admin(box, "GET", "/system")
    assert status == 200 and new["appliance_id"] in json.dumps(system), system


def _token_names(box: Container) -> set[str]:
    status, body = admin(box, "GET", "/admin-tokens")
    assert status == 200 and isinstance(body, dict), body
    return {t["name"] for t in body["data"]}


def test_restore_through_the_admin_socket(box: Container, rootfs: Path) -> None:
    wait_for("gateway active", lambda: gateway_up(box), 60, box, "aigw-gateway.service")
    ident = read_state(rootfs, "identity.json")
    status, _ = admin(box, "POST", "/admin-tokens", {"name": "kept-by-backup", "role": "admin"})
    assert status == 201
    status, made = admin(box, "POST", "/system/backups", {"passphrase": BACKUP_PASSPHRASE})
    assert status == 201 and isinstance(made, dict), made
    status, _ = admin(box, "POST", "/admin-tokens", {"name": "made-after", "role": "auditor"})
    assert status == 201
    assert {"kept-by-backup", "made-after"} <= _token_names(box)
    before = box.show("aigw-gateway.service", "MainPID", "NRestarts")

    status, body = admin(
        box, "POST", "/system/restore", {"name": made["name"], "passphrase": BACKUP_PASSPHRASE}
    )
    assert status == 200 and isinstance(body, dict), body
    assert body["restart"] is True and body["identity"] == "restored", body
    restarted_after(box, before)

    assert "restore: installed" in journal(box, "aigw-gateway.service", tail=10**7)
    names = _token_names(box)
    assert "kept-by-backup" in names and "made-after" not in names, names
    assert read_state(rootfs, "identity.json") == ident
    assert_state_owned_by_aigw(box)
    assert_stop_post_succeeded(box)
    assert fetch(box, "https://127.0.0.1:8443/healthz")[0] == 200


def test_firstboot_after_a_plain_stop_is_a_quick_no_op(box: Container, rootfs: Path) -> None:
    # What ExecStopPost runs after every stop, shutdown and watchdog restart: nothing pending,
    # provisioned, so nothing changes, and in little time.
    marker = read_state(rootfs, "provisioned")
    started = time.monotonic()
    out = box.run("env", "AIGW_CONFIG=/etc/aigw/aigw.toml", AIGW, "firstboot")
    took = time.monotonic() - started
    print(f"\n`aigw firstboot` with nothing to do: {took:.2f} s")
    assert "was provisioned at" in out.stdout and took < 10, (took, out.stdout)
    assert read_state(rootfs, "provisioned") == marker
    before = box.show("aigw-gateway.service", "MainPID", "NRestarts")
    box.run("systemctl", "stop", "aigw-gateway.service", timeout=60)
    assert box.show("aigw-gateway.service", "ActiveState")["ActiveState"] == "inactive"
    assert_stop_post_succeeded(box)
    box.run("systemctl", "start", "aigw-gateway.service", timeout=60)
    wait_for("gateway active", lambda: gateway_up(box), 60, box, "aigw-gateway.service")
    assert box.show("aigw-gateway.service", "MainPID")["MainPID"] != before["MainPID"]
    assert read_state(rootfs, "provisioned") == marker
    assert_state_owned_by_aigw(box)


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
