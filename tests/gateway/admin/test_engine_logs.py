"""An engine's recent log lines through the admin API: read from the end of its file (aigw up)
or from the journal of its unit (the box), redacted, bounded, and refused for unknown names."""

from __future__ import annotations

import dataclasses
import os
import stat
from collections.abc import Iterator
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from gateway.admin.engines import tail_lines
from inference.bundle import pack, public_key_b64
from inference.store import describe_folder
from tests.gateway.admin.conftest import Admin
from tests.inference.fake_models import make_model_folder

VENDOR = Ed25519PrivateKey.generate()
SECRET = "sk-proj-" + "q" * 40


def _import(admin: Admin, tmp: Path, name: str) -> None:
    src = make_model_folder(tmp / f"src-{name}")
    bundle = pack(src, tmp / f"{name}.bundle", VENDOR, describe_folder(src, name=name))
    reply = admin.call("POST", "/local-models/import", {"path": str(bundle)})
    assert reply.status == 201, reply.raw


@pytest.fixture(scope="module")
def admin(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Admin]:
    a = Admin(tmp_path_factory.mktemp("aigw-engine-logs"))
    key = public_key_b64(VENDOR.public_key())
    assert a.call("POST", "/trusted-keys", {"name": "vendor", "public_key": key}).status == 201
    _import(a, tmp_path_factory.mktemp("bundles"), "tiny")
    yield a
    a.stop()


def test_tail_lines_reads_only_the_end(tmp_path: Path) -> None:
    log = tmp_path / "engine.log"
    log.write_bytes(b"".join(b"line %d %s\n" % (i, b"x" * (i % 300)) for i in range(20_000)))
    assert [ln.split()[1] for ln in tail_lines(log, 3)] == ["19997", "19998", "19999"]
    long = "y" * 50_000  # one line longer than any block
    log.write_text(f"first\n{long}\nlast without newline")
    assert tail_lines(log, 2) == [long, "last without newline"]
    assert tail_lines(log, 10) == ["first", long, "last without newline"]
    log.write_bytes(b"")
    assert tail_lines(log, 5) == []


def test_the_file_of_a_process_engine(admin: Admin) -> None:
    reply = admin.call("GET", "/engines/tiny/log")
    assert reply.status == 200, reply.raw
    body = reply.body
    assert (body["source"], body["lines"]) == ("file", [])
    assert "no log yet" in body["note"]
    logs = admin.cfg.state_dir / "logs"
    logs.mkdir(exist_ok=True)
    with open(logs / "engine-tiny.log", "w") as fh:
        for i in range(120):
            fh.write(f"INFO 0{i:03d} loading weights\n")
        fh.write(f"ERROR upstream said: Authorization: Bearer {SECRET}\n")
        fh.write(f"key={SECRET} rejected\n")
    body = admin.call("GET", "/engines/tiny/log").body
    assert body["where"] == str(logs / "engine-tiny.log") and body["note"] is None
    assert len(body["lines"]) == 50 and body["lines"][0] == "INFO 0072 loading weights"
    assert SECRET not in str(body) and "REDACTED" in body["lines"][-2]
    assert body["lines"][-1].startswith("key=") and "q" * 40 not in body["lines"][-1]
    three = admin.call("GET", "/engines/tiny/log?lines=3", role="auditor").body["lines"]
    assert three[0] == "INFO 0119 loading weights"
    big = admin.call("GET", "/engines/tiny/log?lines=500").body["lines"]
    assert len(big) == 122


def test_refusals(admin: Admin) -> None:
    assert admin.call("GET", "/engines/tiny/log?lines=501").status == 400
    assert admin.call("GET", "/engines/tiny/log?lines=0").status == 400
    missing = admin.call("GET", "/engines/nope/log")
    assert missing.status == 404 and "nope" in missing.body["error"]["message"]
    assert admin.call("GET", "/engines/Bad%20Name/log").status == 400
    assert admin.call("GET", "/engines/tiny/log", role="finance").status == 403
    assert admin.call("GET", "/engines/tiny/log", role=None).status == 401


def test_a_remote_engine_has_no_log_here(admin: Admin) -> None:
    body = {"name": "far", "url": "http://127.0.0.1:9/v1", "model": "far"}
    assert admin.call("POST", "/engines/remote", body).status == 201
    reply = admin.call("GET", "/engines/far/log")
    assert reply.status == 200 and reply.body["source"] == "none"
    assert "server that runs it" in reply.body["note"]


def _fake_journalctl(folder: Path, script: str) -> None:
    path = folder / "journalctl"
    path.write_text("#!/bin/sh\n" + script)
    path.chmod(path.stat().st_mode | stat.S_IXUSR)


def test_the_journal_of_a_systemd_engine(
    admin: Admin, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    gw = admin.gateway
    cfg = gw.cfg
    monkeypatch.setattr(
        gw,
        "cfg",
        dataclasses.replace(
            cfg, inference=dataclasses.replace(cfg.inference, supervisor="systemd")
        ),
    )
    monkeypatch.setenv("PATH", f"{tmp_path}{os.pathsep}{os.environ['PATH']}")
    # journalctl as systemd's: its arguments kept, a few lines printed.
    _fake_journalctl(
        tmp_path,
        f'echo "$@" > "{tmp_path}/args"\n'
        f"printf 'Started engine\\nAuthorization: Bearer {SECRET}\\nready\\n'\n",
    )
    body = admin.call("GET", "/engines/tiny/log?lines=7").body
    args = (tmp_path / "args").read_text().split()
    assert args == ["--no-pager", "-u", "aigw-engine@tiny.service", "-n", "7", "-o", "cat"]
    assert body["source"] == "journal" and body["where"] == "journalctl -u aigw-engine@tiny.service"
    assert body["lines"][0] == "Started engine" and body["lines"][2] == "ready"
    assert SECRET not in str(body)
    _fake_journalctl(tmp_path, "echo 'No journal files were opened' >&2\nexit 1\n")
    body = admin.call("GET", "/engines/tiny/log").body
    assert body["lines"] == [] and "journalctl failed: No journal files" in body["note"]
    _fake_journalctl(tmp_path, "exit 0\n")
    assert "holds no line" in admin.call("GET", "/engines/tiny/log").body["note"]
