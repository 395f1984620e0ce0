"""The box identity: random id, hostname, atomic files, the provisioning marker."""

from __future__ import annotations

import json
import stat
from pathlib import Path

import pytest

from appliance.identity import (
    APPLIANCE_ID,
    IdentityError,
    is_provisioned,
    load_identity,
    new_identity,
    read_marker,
    save_identity,
    set_hostname,
    write_marker,
)


def test_new_identity_is_random_and_named_after_its_id() -> None:
    a, b = new_identity(), new_identity()
    assert APPLIANCE_ID.fullmatch(a.appliance_id) and a.appliance_id != b.appliance_id
    assert a.hostname == f"aigw-{a.appliance_id[:4]}"
    assert a.created_at.endswith("+00:00")
    machine_id = Path("/etc/machine-id")
    if machine_id.is_file():
        assert a.appliance_id not in machine_id.read_text()


def test_save_and_load(tmp_path: Path) -> None:
    assert load_identity(tmp_path) is None
    ident = new_identity()
    save_identity(tmp_path, ident)
    path = tmp_path / "identity.json"
    assert stat.S_IMODE(path.stat().st_mode) == 0o644
    assert load_identity(tmp_path) == ident
    assert json.loads(path.read_text())["appliance_id"] == ident.appliance_id
    assert not list(tmp_path.glob(".identity.json.*"))  # no temporary file left


def test_damaged_or_invalid_file_is_an_error(tmp_path: Path) -> None:
    (tmp_path / "identity.json").write_text("{not json")
    with pytest.raises(IdentityError, match="damaged"):
        load_identity(tmp_path)
    doc = {"appliance_id": "XYZ", "hostname": "aigw-1", "created_at": "2025-01-01T00:00:00+00:00"}
    (tmp_path / "identity.json").write_text(json.dumps(doc))
    with pytest.raises(IdentityError, match="invalid"):
        load_identity(tmp_path)


def test_set_hostname_validates_rfc1123(tmp_path: Path) -> None:
    with pytest.raises(IdentityError, match="no identity"):
        set_hostname(tmp_path, "box")
    ident = new_identity()
    save_identity(tmp_path, ident)
    assert set_hostname(tmp_path, "Lab-Gateway-2").hostname == "lab-gateway-2"
    assert load_identity(tmp_path).hostname == "lab-gateway-2"  # type: ignore[union-attr]
    for bad in ("-box", "box-", "", "a" * 64, "box.local", "bö", "a_b"):
        with pytest.raises(IdentityError, match="not valid"):
            set_hostname(tmp_path, bad)
    assert load_identity(tmp_path).appliance_id == ident.appliance_id  # type: ignore[union-attr]


def test_marker(tmp_path: Path) -> None:
    assert not is_provisioned(tmp_path) and read_marker(tmp_path) is None
    write_marker(tmp_path, {"at": "2025-01-01T00:00:00+00:00", "version": "1"})
    assert is_provisioned(tmp_path)
    assert read_marker(tmp_path) == {"at": "2025-01-01T00:00:00+00:00", "version": "1"}
