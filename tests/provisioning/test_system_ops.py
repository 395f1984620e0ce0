"""Backups, restore and factory reset through the admin API: on a real gateway (the admin
harness), and the whole round trip through restarts of a real `aigw up` process."""

from __future__ import annotations

import hashlib
import http.client
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from appliance.admin_client import AdminClient, _UnixConnection
from appliance.identity import load_identity
from gateway.tenancy.audit import list_audit
from provisioning.firstboot import provision
from provisioning.pending import PENDING_RESET
from tests.gateway.admin.conftest import Admin, Reply
from tests.provisioning.backup_box import free_port

PASSPHRASE = "correct horse battery staple"


def raw_call(
    where: str | tuple[str, int],
    method: str,
    path: str,
    body: bytes | None = None,
    headers: dict[str, str] | None = None,
    timeout: float = 60,
) -> Reply:
    """One request with raw bytes, over the admin socket (a path) or TCP (host, port)."""
    conn: http.client.HTTPConnection = (
        _UnixConnection(where, timeout)
        if isinstance(where, str)
        else http.client.HTTPConnection(*where, timeout=timeout)
    )
    try:
        conn.request(method, "/admin/v1" + path, body=body, headers=headers or {})
        resp = conn.getresponse()
        return Reply(resp.status, {k.lower(): v for k, v in resp.getheaders()}, resp.read())
    finally:
        conn.close()


def upload(sock: str, data: bytes, passphrase: str = PASSPHRASE) -> Reply:
    """POST /system/restore with the archive as the body."""
    headers = {"Content-Type": "application/octet-stream", "X-Aigw-Backup-Passphrase": passphrase}
    return raw_call(sock, "POST", "/system/restore", data, headers)


@pytest.fixture
def box(tmp_path: Path) -> Iterator[Admin]:
    """A provisioned box's gateway (no restart hook: work is left for the next start)."""
    from appliance.config import parse_config

    provision(parse_config({"state": {"dir": str(tmp_path)}}))
    admin = Admin(tmp_path)
    yield admin
    admin.stop()


def staged(state: Path) -> list[str]:
    return sorted(p.name for p in state.iterdir() if p.name.startswith((".restore-", ".upload-")))


def test_backups_create_list_download_delete(box: Admin) -> None:
    short = box.call("POST", "/system/backups", {"passphrase": "short"})
    assert short.status == 400 and "at least 12" in short.body["error"]["message"]
    denied = box.call("POST", "/system/backups", {"passphrase": PASSPHRASE}, role="auditor")
    assert denied.status == 403
    assert box.call("GET", "/system/backups", role="auditor").status == 403
    made = [box.call("POST", "/system/backups", {"passphrase": PASSPHRASE}) for _ in range(2)]
    assert [m.status for m in made] == [201, 201]
    first, second = made[0].body, made[1].body
    assert first["name"] != second["name"]  # two within one second get distinct names
    assert first["name"].startswith("aigw-") and first["name"].endswith(".aigw-backup")
    assert PASSPHRASE not in made[0].raw.decode()
    folder = box.state_dir / "backups"
    assert (folder.stat().st_mode & 0o777) == 0o700
    assert (folder / first["name"]).stat().st_mode & 0o777 == 0o600
    listed = box.call("GET", "/system/backups").body["data"]
    assert {r["name"] for r in listed} == {first["name"], second["name"]}
    assert all(r["created_at"].endswith("Z") for r in listed)
    got = box.call("GET", f"/system/backups/{first['name']}")
    assert got.status == 200 and got.headers["content-type"] == "application/octet-stream"
    assert got.raw == (folder / first["name"]).read_bytes() and len(got.raw) == first["size"]
    assert hashlib.sha256(got.raw).hexdigest() == first["sha256"]
    # Names are file names in the folder, never paths.
    for bad in ("..%2Faigw.db", "aigw.db", "x/..%2F..%2Fetc.aigw-backup", ".hidden.aigw-backup"):
        reply = box.call("GET", f"/system/backups/{bad}")
        assert reply.status in (400, 404), bad
        assert reply.headers["content-type"].startswith("application/json")
    assert box.call("GET", "/system/backups/none.aigw-backup").status == 404
    assert box.call("DELETE", f"/system/backups/{second['name']}").status == 204
    assert [r["name"] for r in box.call("GET", "/system/backups").body["data"]] == [first["name"]]
    # Audited, without the passphrase.
    actions = [r["action"] for r in list_audit(box.db, object_type="backup", limit=10)]
    assert sorted(actions) == ["create", "create", "delete", "download"]
    assert PASSPHRASE not in repr(box.db.execute("SELECT * FROM audit").fetchall())


def test_a_bad_restore_changes_nothing(box: Admin) -> None:
    name = box.call("POST", "/system/backups", {"passphrase": PASSPHRASE}).body["name"]
    box.call("POST", "/departments", {"name": "later"})
    before = (box.state_dir / "aigw.db").stat().st_size
    wrong = box.call("POST", "/system/restore", {"name": name, "passphrase": "not the one at all"})
    assert wrong.status == 400 and wrong.body["error"]["code"] == "wrong_passphrase"
    data = (box.state_dir / "backups" / name).read_bytes()
    damaged = bytearray(data)
    damaged[len(data) // 2] ^= 0x01
    reply = upload(box.socket_path, bytes(damaged))
    assert reply.status == 400 and reply.body["error"]["code"] == "backup_invalid"
    assert "damaged" in reply.body["error"]["message"]
    reply = upload(box.socket_path, data[: len(data) - 100])
    assert reply.status == 400
    octets = {"Content-Type": "application/octet-stream"}
    no_pass = raw_call(box.socket_path, "POST", "/system/restore", data, octets)
    assert no_pass.status == 400 and "X-Aigw-Backup-Passphrase" in no_pass.body["error"]["message"]
    # Nothing staged, no upload left behind, the data as it was, the gateway still serving.
    assert staged(box.state_dir) == []
    names = [d["name"] for d in box.call("GET", "/departments").body["data"]]
    assert "later" in names and (box.state_dir / "aigw.db").stat().st_size >= before
    assert PASSPHRASE not in json.dumps([wrong.body, reply.body])


def test_restore_without_a_running_gateway_is_left_for_the_next_start(box: Admin) -> None:
    name = box.call("POST", "/system/backups", {"passphrase": PASSPHRASE}).body["name"]
    reply = box.call("POST", "/system/restore", {"name": name, "passphrase": PASSPHRASE})
    assert reply.status == 200, reply.body
    body = reply.body
    assert body["restart"] is False and "next starts" in body["message"]
    assert body["identity"] == "restored"  # the same box made it
    [stage] = staged(box.state_dir)
    assert (box.state_dir / stage / "plan.json").is_file()
    # A second one supersedes the first (never two plans to run at the next start).
    data = (box.state_dir / "backups" / name).read_bytes()
    assert upload(box.socket_path, data).status == 200
    [again] = staged(box.state_dir)
    assert again != stage
    rows = list_audit(box.db, object_type="backup", limit=10)
    assert sorted(r["object_id"] for r in rows if r["action"] == "restore") == [name, "upload"]


def test_factory_reset_confirmation_and_local_only(box: Admin) -> None:
    ident = load_identity(box.state_dir)
    assert ident is not None
    body = {"confirm": ident.appliance_id}
    over_tcp = box.call("POST", "/system/factory-reset", body)
    assert over_tcp.status == 403 and "only at the box" in over_tcp.body["error"]["message"]
    wrong = box.call("POST", "/system/factory-reset", {"confirm": "0" * 32}, role=None, unix=True)
    assert wrong.status == 400 and wrong.body["error"]["code"] == "confirmation_mismatch"
    assert not (box.state_dir / PENDING_RESET).exists()
    right = box.call("POST", "/system/factory-reset", body, role=None, unix=True)
    assert right.status == 200 and right.body["appliance_id"] == ident.appliance_id
    assert right.body["restart"] is False
    assert (box.state_dir / PENDING_RESET).is_file()
    # Pending: backups and restores wait for it.
    busy = box.call("POST", "/system/backups", {"passphrase": PASSPHRASE})
    assert busy.status == 409 and busy.body["error"]["code"] == "reset_pending"


def test_openapi_documents_the_routes(box: Admin) -> None:
    doc = box.call("GET", "/openapi.json").body
    paths = doc["paths"]
    assert set(paths["/admin/v1/system/backups"]) == {"get", "post"}
    assert set(paths["/admin/v1/system/backups/{name}"]) == {"get", "delete"}
    assert "X-Aigw-Backup-Passphrase" in paths["/admin/v1/system/restore"]["post"]["summary"]
    assert "confirm" in doc["components"]["schemas"]["FactoryReset"]["required"]


# --- the round trip through restarts of a real `aigw up` ----------------------------------------


class Up:
    """`aigw up` as a process on a temporary state directory."""

    def __init__(self, root: Path) -> None:
        self.state = root / "state"
        self.config = root / "aigw.toml"
        self.config.write_text(f'[server]\nport = {free_port()}\n[state]\ndir = "{self.state}"\n')
        self.sock = str(self.state / "admin.sock")
        self.proc: subprocess.Popen[str] | None = None
        self.banner = ""

    def start(self) -> str:
        """Start it and wait for its banner; returns the banner."""
        env = {**os.environ, "AIGW_CONFIG": str(self.config)}
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "appliance.cli", "up"],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        assert self.proc.stdout is not None
        lines: list[str] = []
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and "Press Ctrl-C" not in "".join(lines):
            line = self.proc.stdout.readline()
            if not line:
                break
            lines.append(line)
        self.banner = "".join(lines)
        assert "Press Ctrl-C" in self.banner, self.proc.stderr.read() if self.proc.stderr else ""
        return self.banner

    def call(self, method: str, path: str, body: Any = None) -> Any:
        with AdminClient("test", socket_path=self.sock, timeout=60) as client:
            return client.call(method, path, body)[1]

    def exited(self, timeout: float = 20) -> tuple[int, str]:
        """Wait for the process to stop by itself; its status and stderr."""
        assert self.proc is not None
        _, err = self.proc.communicate(timeout=timeout)
        return self.proc.returncode, err

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
            self.proc.communicate(timeout=20)


@pytest.fixture
def up(tmp_path: Path) -> Iterator[Up]:
    u = Up(tmp_path)
    yield u
    u.stop()


@pytest.mark.slow
def test_round_trip_backup_restore_and_reset_through_restarts(up: Up) -> None:
    up.start()
    first_id = up.call("GET", "/system")["appliance_id"]
    up.call("POST", "/departments", {"name": "kept"})
    made = up.call("POST", "/system/backups", {"passphrase": PASSPHRASE})
    archive = raw_call(up.sock, "GET", f"/system/backups/{made['name']}").raw
    up.call("POST", "/departments", {"name": "after-backup"})
    # A wrong passphrase: refused, and the gateway serves on.
    wrong = upload(up.sock, archive, "a wrong passphrase!")
    assert wrong.status == 400
    assert up.proc is not None and up.proc.poll() is None
    assert {d["name"] for d in up.call("GET", "/departments")["data"]} == {"kept", "after-backup"}
    # The archive uploaded: checked, staged, and the gateway restarts to install it.
    reply = upload(up.sock, archive)
    assert reply.status == 200 and reply.body["restart"] is True, reply.body
    status, err = up.exited()
    assert status == 75 and "run `aigw up` again" in err
    up.start()
    assert [d["name"] for d in up.call("GET", "/departments")["data"]] == ["kept"]
    assert up.call("GET", "/system")["appliance_id"] == first_id
    assert not [p for p in up.state.iterdir() if p.name.startswith(".restore-")]
    # Factory reset: a wrong id changes nothing; the right one wipes the box at the restart.
    with pytest.raises(Exception, match="does not match"):
        up.call("POST", "/system/factory-reset", {"confirm": "f" * 32})
    assert up.proc is not None and up.proc.poll() is None
    assert up.call("POST", "/system/factory-reset", {"confirm": first_id})["restart"] is True
    status, _ = up.exited()
    assert status == 75
    banner = up.start()
    assert "First start: an admin token was created" in banner
    new_id = up.call("GET", "/system")["appliance_id"]
    assert new_id and new_id != first_id
    assert up.call("GET", "/departments")["data"] == []
    assert up.call("GET", "/system/backups")["data"] == []
    assert not (up.state / PENDING_RESET).exists()
