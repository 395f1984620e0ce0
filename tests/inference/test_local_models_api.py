"""The model store through the live admin API: trusted keys, imports of folders and bundles,
enable and disable with the catalog version bumped, delete, and refusals with their reasons."""

from __future__ import annotations

import base64
from collections.abc import Iterator
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from gateway import local_models
from gateway.catalog import catalog_version
from gateway.tenancy.audit import list_audit
from inference.bundle import pack, public_key_b64
from inference.manifest import MANIFEST_NAME
from inference.store import describe_folder
from tests.gateway.admin.conftest import Admin
from tests.inference.fake_models import (
    leftovers,
    make_model_folder,
    model_members,
    signed_head,
    write_bundle,
)

VENDOR = Ed25519PrivateKey.generate()


@pytest.fixture(scope="module")
def admin(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Admin]:
    a = Admin(tmp_path_factory.mktemp("aigw-local-models"))
    reply = a.call("POST", "/trusted-keys", {"name": "vendor", "public_key": _b64(VENDOR)})
    assert reply.status == 201, reply.raw
    yield a
    a.stop()


def _b64(key: Ed25519PrivateKey) -> str:
    return public_key_b64(key.public_key())


def _models_dir(admin: Admin) -> Path:
    return admin.cfg.models_dir


def _bundle(tmp_path: Path, name: str) -> Path:
    src = make_model_folder(tmp_path / "src")
    return pack(src, tmp_path / f"{name}.bundle", VENDOR, describe_folder(src, name=name))


def test_trusted_keys(admin: Admin) -> None:
    other = Ed25519PrivateKey.generate()
    reply = admin.call("POST", "/trusted-keys", {"name": "other", "public_key": _b64(other)})
    assert reply.status == 201 and reply.body["public_key"] == _b64(other)
    listed = admin.call("GET", "/trusted-keys", role="auditor").body["data"]
    assert [k["name"] for k in listed] == ["other", "vendor"]
    again = admin.call("POST", "/trusted-keys", {"name": "again", "public_key": _b64(other)})
    assert again.status == 409 and "already trusted, as 'other'" in again.body["error"]["message"]
    same = admin.call("POST", "/trusted-keys", {"name": "other", "public_key": _b64(VENDOR)})
    assert same.status == 409
    bad = admin.call("POST", "/trusted-keys", {"name": "bad", "public_key": "AAAA"})
    assert bad.status == 400 and bad.body["error"]["details"]["param"] == "public_key"
    assert admin.call("POST", "/trusted-keys", {"name": "x"}, role="auditor").status == 403
    assert admin.call("DELETE", "/trusted-keys/other").status == 204
    assert admin.call("DELETE", "/trusted-keys/other").status == 404
    actions = [
        (r["action"], r["object_id"]) for r in list_audit(admin.db, object_type="trusted_key")
    ]
    assert actions[:2] == [("delete", "other"), ("create", "other")]


def test_bundle_import_enable_disable_delete(admin: Admin, tmp_path: Path) -> None:
    bundle = _bundle(tmp_path, "tiny")
    version = catalog_version(admin.db)
    reply = admin.call("POST", "/local-models/import", {"path": str(bundle)})
    assert reply.status == 201, reply.raw
    row = reply.body
    assert (row["name"], row["format"], row["signed_by"], row["enabled"], row["state"]) == (
        "tiny",
        "safetensors",
        "vendor",
        False,
        "disabled",
    )
    assert row["source"] == f"bundle:{bundle}" and row["path"] == str(_models_dir(admin) / "tiny")
    assert row["size_bytes"] == sum(f["size"] for f in row["manifest"]["files"])
    assert catalog_version(admin.db) > version
    # The database keeps the manifest as checked; the folder holds the same.
    stored = admin.db.execute("SELECT manifest FROM local_models WHERE name = 'tiny'").fetchone()
    assert stored[0].encode() == (_models_dir(admin) / "tiny" / MANIFEST_NAME).read_bytes()

    listed = admin.call("GET", "/local-models", role="auditor").body["data"]
    assert [(m["name"], m["state"]) for m in listed] == [("tiny", "disabled")]
    assert "manifest" not in listed[0]
    assert admin.call("GET", "/local-models/tiny").body["manifest"]["name"] == "tiny"

    version = catalog_version(admin.db)
    enabled = admin.call("POST", "/local-models/tiny/enable")
    assert enabled.status == 200 and (enabled.body["enabled"], enabled.body["state"]) == (
        True,
        "pending",
    )
    assert catalog_version(admin.db) == version + 1
    served = local_models.enabled_models(admin.db, _models_dir(admin))
    assert [(m.name, m.path, m.signed_by) for m in served] == [
        ("tiny", _models_dir(admin) / "tiny", "vendor")
    ]
    # The engines' hook, once `aigw up` runs them.
    admin.gateway.engine_states = lambda: {"tiny": "ready"}
    try:
        assert admin.call("GET", "/local-models/tiny").body["state"] == "ready"
    finally:
        admin.gateway.engine_states = dict

    refused = admin.call("DELETE", "/local-models/tiny")
    assert refused.status == 409 and "disable it first" in refused.body["error"]["message"]
    again = admin.call("POST", "/local-models/import", {"path": str(bundle), "replace": True})
    assert again.status == 409 and "disable it before replacing" in again.body["error"]["message"]

    assert admin.call("POST", "/local-models/tiny/disable").body["state"] == "disabled"
    assert local_models.enabled_models(admin.db, _models_dir(admin)) == []
    assert admin.call("POST", "/local-models/tiny/disable").status == 200  # no change, no error
    assert admin.call("DELETE", "/local-models/tiny").status == 204
    assert leftovers(_models_dir(admin)) == []
    assert admin.call("GET", "/local-models/tiny").status == 404
    actions = [r["action"] for r in list_audit(admin.db, object_type="local_model")]
    assert actions[:4] == ["delete", "disable", "enable", "import"]


def test_folder_import_and_its_refusals(admin: Admin, tmp_path: Path) -> None:
    src = make_model_folder(tmp_path / "src", context=None)
    body = {"path": str(src), "name": "folder-model"}
    reply = admin.call("POST", "/local-models/import", body)
    assert reply.status == 400 and "context length is unknown" in reply.body["error"]["message"]
    reply = admin.call("POST", "/local-models/import", {**body, "context_length": 1024})
    assert reply.status == 201, reply.raw
    assert (reply.body["signed_by"], reply.body["license"]) == (None, "unknown")
    taken = admin.call("POST", "/local-models/import", {**body, "context_length": 1024})
    assert taken.status == 409 and "replace" in taken.body["error"]["message"]
    replaced = admin.call(
        "POST",
        "/local-models/import",
        {**body, "context_length": 512, "license": "mit", "replace": True},
    )
    assert replaced.status == 201 and replaced.body["context_length"] == 512
    for bad, why in [
        ({"path": "relative/dir"}, "must be an absolute path"),
        ({"path": str(tmp_path / "none")}, "no file or folder at"),
        ({"path": str(src), "name": "Not A Name"}, "is not valid"),
        ({"path": "/", "name": "root"}, "is it a model's folder"),
    ]:
        reply = admin.call("POST", "/local-models/import", bad)
        assert reply.status == 400 and why in reply.body["error"]["message"], reply.raw
    assert admin.call("POST", "/local-models/import", body, role="auditor").status == 403
    assert leftovers(_models_dir(admin)) == ["folder-model"]
    assert admin.call("DELETE", "/local-models/folder-model").status == 204


@pytest.mark.parametrize("damage", ["signature", "hash", "missing"])
def test_a_bad_bundle_is_refused_with_its_reason(admin: Admin, tmp_path: Path, damage: str) -> None:
    src = make_model_folder(tmp_path / "src")
    manifest = describe_folder(src, name="bad")
    members = signed_head(manifest, VENDOR) + model_members(src, manifest)
    if damage == "signature":
        members[1].data = base64.b64encode(Ed25519PrivateKey.generate().sign(b"x"))
        why = "signature invalid"
    elif damage == "hash":
        members[-1].data = members[-1].data.replace(b"BPE", b"XXX")
        why = "file tokenizer/tokenizer.json: its SHA-256 does not match the manifest"
    else:
        del members[-1]
        why = "file tokenizer/tokenizer.json is listed in the manifest but missing"
    bundle = write_bundle(tmp_path / "bad.bundle", members)
    reply = admin.call("POST", "/local-models/import", {"path": str(bundle)})
    assert reply.status == 400 and why in reply.body["error"]["message"], reply.raw
    assert leftovers(_models_dir(admin)) == []
    assert admin.call("GET", "/local-models/bad").status == 404


def test_enable_refuses_a_damaged_model_and_verify_finds_it(admin: Admin, tmp_path: Path) -> None:
    reply = admin.call("POST", "/local-models/import", {"path": str(_bundle(tmp_path, "dmg"))})
    assert reply.status == 201
    check = admin.call("POST", "/local-models/dmg/verify")
    assert check.status == 200 and check.body == {"name": "dmg", "ok": True, "problems": []}
    folder = _models_dir(admin) / "dmg"
    (folder / "config.json").unlink()
    refused = admin.call("POST", "/local-models/dmg/enable")
    assert refused.status == 409
    assert (
        "cannot be enabled: file config.json is missing; import it again"
        in (refused.body["error"]["message"])
    )
    assert admin.call("GET", "/local-models/dmg").body["enabled"] is False
    check = admin.call("POST", "/local-models/dmg/verify")
    assert check.body["ok"] is False and check.body["problems"] == ["file config.json is missing"]
    assert admin.call("POST", "/local-models/nope/enable").status == 404
    assert admin.call("DELETE", "/local-models/dmg").status == 204


def test_a_manifest_spoilt_in_the_database_is_contained(admin: Admin, tmp_path: Path) -> None:
    bundle = _bundle(tmp_path, "hand")
    assert admin.call("POST", "/local-models/import", {"path": str(bundle)}).status == 201
    assert admin.call("POST", "/local-models/hand/enable").status == 200
    admin.db.execute("UPDATE local_models SET manifest = '{}' WHERE name = 'hand'")
    listed = {m["name"]: m for m in admin.call("GET", "/local-models").body["data"]}
    assert listed["hand"]["description"].startswith("unusable manifest:")
    assert local_models.enabled_models(admin.db, _models_dir(admin)) == []  # not served
    assert admin.call("POST", "/local-models/hand/disable").status == 200
    refused = admin.call("POST", "/local-models/hand/enable")
    assert refused.status == 409 and "unusable manifest" in refused.body["error"]["message"]
    assert admin.call("DELETE", "/local-models/hand").status == 204
    assert leftovers(_models_dir(admin)) == []
