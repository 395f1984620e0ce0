"""Model bundles: a good one round-trips; every kind of bad one is refused with its reason, and
leaves nothing behind in the store."""

from __future__ import annotations

import base64
import dataclasses
import os
import stat
import tarfile
from collections.abc import Callable
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from inference.bundle import (
    BundleError,
    load_private_key,
    load_public_key,
    pack,
    public_key_b64,
    verify_and_extract,
    write_private_key,
)
from inference.manifest import MANIFEST_NAME, Manifest, ModelFile, parse_manifest
from inference.store import ModelStore, describe_folder
from tests.inference.fake_models import (
    Member,
    leftovers,
    make_model_folder,
    model_members,
    signed_head,
    write_bundle,
)

VENDOR = Ed25519PrivateKey.generate()
OTHER = Ed25519PrivateKey.generate()
TRUSTED = {"vendor": VENDOR.public_key()}


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    return make_model_folder(tmp_path / "src")


@pytest.fixture
def manifest(folder: Path) -> Manifest:
    return describe_folder(folder, name="tiny", license="apache-2.0")


@pytest.fixture
def store(tmp_path: Path) -> ModelStore:
    return ModelStore(tmp_path / "state" / "models")


@pytest.mark.parametrize("compress", [False, True], ids=["tar", "tar.gz"])
def test_a_packed_bundle_imports_whole(
    tmp_path: Path, folder: Path, manifest: Manifest, store: ModelStore, compress: bool
) -> None:
    bundle = pack(folder, tmp_path / "tiny.bundle", VENDOR, manifest, compress=compress)
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []  # no temp left
    with tarfile.open(bundle) as tar:
        names = tar.getnames()
    assert names[:3] == ["manifest.json", "manifest.sig", "manifest.pub"]
    assert names[3:] == ["model/" + f.path for f in manifest.files]

    got, signer = store.import_bundle(bundle, {"other": OTHER.public_key(), **TRUSTED})
    assert (got, signer) == (manifest, "vendor")
    assert leftovers(store.root) == ["tiny"]
    model = store.path("tiny")
    for f in manifest.files:
        assert (model / f.path).read_bytes() == (folder / f.path).read_bytes()
        assert stat.S_IMODE((model / f.path).stat().st_mode) == 0o640
    assert parse_manifest((model / MANIFEST_NAME).read_bytes()) == manifest
    assert stat.S_IMODE(model.stat().st_mode) == 0o750
    assert not (model / ".git").exists() and not (model / ".gitattributes").exists()
    assert store.verify("tiny") == []


def _tampered(m: Manifest) -> bytes:
    return m.to_json().replace(b'"apache-2.0"', b'"proprietary"')


def _with_file(m: Manifest, path: str, **change: object) -> Manifest:
    files = tuple(dataclasses.replace(f, **change) if f.path == path else f for f in m.files)  # type: ignore[arg-type]
    return dataclasses.replace(m, files=files)


_WEIGHTS = "model-00002-of-00002.safetensors"
# name → (members of the bundle, from the good folder and manifest; what the refusal says)
Case = Callable[[Path, Manifest], list[Member]]
CASES: dict[str, tuple[Case, str]] = {
    "other key": (
        lambda d, m: signed_head(m, OTHER) + model_members(d, m),
        "signed by no key this box trusts: the signer's public key is "
        + public_key_b64(OTHER.public_key()),
    ),
    "other key, no hint": (
        lambda d, m: signed_head(m, OTHER, hint=False) + model_members(d, m),
        "signature invalid, or signed by no key this box trusts",
    ),
    "tampered manifest": (
        lambda d, m: (
            [
                Member("manifest.json", _tampered(m)),
                *signed_head(m, VENDOR)[1:],
                *model_members(d, m),
            ]
        ),
        "signature invalid: the manifest or its signature was changed after trusted key "
        "'vendor' signed it",
    ),
    "signature of another manifest": (
        lambda d, m: (
            [
                Member("manifest.json", _tampered(m)),
                *signed_head(m, OTHER)[1:],
                *model_members(d, m),
            ]
        ),
        "signature invalid: it does not match the manifest",
    ),
    "garbage signature": (
        lambda d, m: [signed_head(m, VENDOR)[0], Member("manifest.sig", b"not base64!")],
        "manifest.sig is not a base64 Ed25519 signature",
    ),
    "unsigned": (
        lambda d, m: [signed_head(m, VENDOR)[0], *model_members(d, m)],
        "the bundle is not signed: manifest.sig is missing",
    ),
    "wrong hash": (
        lambda d, m: (
            signed_head(_with_file(m, _WEIGHTS, sha256="ab" * 32), VENDOR) + model_members(d, m)
        ),
        f"file {_WEIGHTS}: its SHA-256 does not match the manifest",
    ),
    "altered file": (
        lambda d, m: (
            signed_head(m, VENDOR)
            + [
                mm if not mm.name.endswith(_WEIGHTS) else Member(mm.name, bytes(len(mm.data)))
                for mm in model_members(d, m)
            ]
        ),
        f"file {_WEIGHTS}: its SHA-256 does not match the manifest",
    ),
    "missing file": (
        lambda d, m: signed_head(m, VENDOR) + model_members(d, m)[:-1],
        "file tokenizer/tokenizer.json is listed in the manifest but missing",
    ),
    "extra file": (
        lambda d, m: (
            signed_head(m, VENDOR) + model_members(d, m) + [Member("model/extra.bin", b"x")]
        ),
        "member model/extra.bin is not listed in the manifest",
    ),
    "traversal": (
        lambda d, m: [*signed_head(m, VENDOR), Member("../x", b"evil"), *model_members(d, m)],
        "member ../x points outside the bundle",
    ),
    "traversal inside model": (
        lambda d, m: [*signed_head(m, VENDOR), Member("model/../../x", b"evil")],
        "member model/../../x points outside the bundle",
    ),
    "absolute path": (
        lambda d, m: [*signed_head(m, VENDOR), Member("/etc/cron.d/x", b"evil")],
        "member /etc/cron.d/x has an absolute path",
    ),
    "symlink": (
        lambda d, m: (
            [
                *signed_head(m, VENDOR),
                Member("model/config.json", type=tarfile.SYMTYPE, linkname="/etc/passwd"),
            ]
        ),
        "member model/config.json is a symbolic link",
    ),
    "hard link": (
        lambda d, m: (
            [
                *signed_head(m, VENDOR),
                Member("model/config.json", type=tarfile.LNKTYPE, linkname="manifest.json"),
            ]
        ),
        "member model/config.json is a hard link",
    ),
    "device": (
        lambda d, m: [*signed_head(m, VENDOR), Member("model/config.json", type=tarfile.CHRTYPE)],
        "member model/config.json is a device",
    ),
    "duplicate": (
        lambda d, m: signed_head(m, VENDOR) + model_members(d, m) + model_members(d, m)[:1],
        "member model/config.json appears twice",
    ),
    "size beyond the manifest": (
        lambda d, m: (
            [
                *signed_head(m, VENDOR),
                Member("model/config.json", size=10000000, data=b"{}"),
                *model_members(d, m),
            ]
        ),
        "file config.json: the bundle holds 10000000 bytes, the manifest says",
    ),
    "manifest not first": (
        lambda d, m: model_members(d, m) + signed_head(m, VENDOR),
        "the bundle does not start with manifest.json",
    ),
    "manifest after model files": (
        lambda d, m: signed_head(m, VENDOR)[:2] + model_members(d, m) + signed_head(m, VENDOR)[2:],
        "member manifest.pub must come before the model's files",
    ),
    "invalid manifest": (
        lambda d, m: signed_head(b'{"name": "tiny"}', VENDOR),
        "manifest.json: 'format' must be a string",
    ),
    "empty archive": (lambda d, m: [], "the bundle does not start with manifest.json"),
}


@pytest.mark.parametrize("case", list(CASES))
@pytest.mark.parametrize("compress", [False, True], ids=["tar", "gz"])
def test_a_bad_bundle_is_refused_and_leaves_nothing(
    tmp_path: Path,
    folder: Path,
    manifest: Manifest,
    store: ModelStore,
    case: str,
    compress: bool,
) -> None:
    build, reason = CASES[case]
    bundle = write_bundle(tmp_path / "bad.bundle", build(folder, manifest), gzip=compress)
    with pytest.raises(BundleError) as err:
        store.import_bundle(bundle, TRUSTED)
    assert reason in str(err.value)
    assert leftovers(store.root) == []
    assert not (tmp_path / "x").exists() and not (tmp_path.parent / "x").exists()


@pytest.mark.parametrize("compress", [False, True], ids=["tar", "gz"])
def test_a_truncated_bundle_is_refused(
    tmp_path: Path, folder: Path, manifest: Manifest, store: ModelStore, compress: bool
) -> None:
    bundle = pack(folder, tmp_path / "b", VENDOR, manifest, compress=compress)
    data = bundle.read_bytes()
    bundle.write_bytes(data[: len(data) // 2])
    with pytest.raises(BundleError, match="truncated"):
        store.import_bundle(bundle, TRUSTED)
    assert leftovers(store.root) == []


def test_not_a_bundle(tmp_path: Path, store: ModelStore) -> None:
    junk = tmp_path / "junk"
    junk.write_bytes(os.urandom(4096))
    with pytest.raises(BundleError, match="not a tar archive"):
        store.import_bundle(junk, TRUSTED)
    junk.write_bytes(b"\x1f\x8b" + os.urandom(4096))
    with pytest.raises(BundleError, match="not a gzip-compressed tar archive"):
        store.import_bundle(junk, TRUSTED)
    assert leftovers(store.root) == []


def test_a_bundle_without_trusted_keys_says_so(
    tmp_path: Path, folder: Path, manifest: Manifest, store: ModelStore
) -> None:
    bundle = write_bundle(tmp_path / "b", signed_head(manifest, VENDOR, hint=False))
    with pytest.raises(BundleError, match="it trusts none yet"):
        store.import_bundle(bundle, {})


def test_the_name_of_a_bundle_is_signed(tmp_path: Path, folder: Path, manifest: Manifest) -> None:
    bundle = pack(folder, tmp_path / "b", VENDOR, manifest)
    with pytest.raises(BundleError, match="holds model 'tiny', not 'other'"):
        verify_and_extract(bundle, tmp_path / "out", TRUSTED, name="other")
    assert verify_and_extract(bundle, tmp_path / "out2", TRUSTED, name="tiny")[1] == "vendor"


def test_pack_refuses_a_folder_that_differs_from_its_manifest(
    tmp_path: Path, folder: Path, manifest: Manifest
) -> None:
    original = (folder / "config.json").read_bytes()
    (folder / "config.json").write_bytes(original + b" ")
    with pytest.raises(BundleError, match=r"file config\.json"):
        pack(folder, tmp_path / "b", VENDOR, manifest)
    size = next(f.size for f in manifest.files if f.path == "config.json")
    (folder / "config.json").write_bytes(b"x" * size)
    with pytest.raises(BundleError, match=r"file config\.json: its SHA-256 does not match"):
        pack(folder, tmp_path / "b", VENDOR, manifest)
    assert list(tmp_path.glob("*b*")) == []  # nothing written, no temporary file left
    (folder / "config.json").write_bytes(original)
    gone = dataclasses.replace(
        manifest, files=(*manifest.files, ModelFile("gone.bin", "0" * 64, 1))
    )
    with pytest.raises(BundleError, match=r"gone\.bin is listed in the manifest but not in"):
        pack(folder, tmp_path / "b", VENDOR, gone)


def test_public_keys_in_every_usual_form() -> None:
    key = VENDOR.public_key()
    b64 = public_key_b64(key)
    pem = key.public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    ).decode()
    ssh = key.public_bytes(serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH)
    for text in (b64, f"  {b64}\n", pem, ssh.decode() + " vendor@build"):
        assert public_key_b64(load_public_key(text)) == b64
    rsa_pem = (
        rsa.generate_private_key(public_exponent=65537, key_size=2048)
        .public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
        .decode()
    )
    for bad, why in [
        (base64.b64encode(b"x" * 31).decode(), "32 bytes, this one is 31"),
        ("not a key", "not an Ed25519 public key"),
        (rsa_pem, "not an Ed25519 key but RSAPublic"),
        (
            VENDOR.private_bytes(
                serialization.Encoding.PEM,
                serialization.PrivateFormat.PKCS8,
                serialization.NoEncryption(),
            ).decode(),
            "this is a private key",
        ),
    ]:
        with pytest.raises(BundleError, match=why):
            load_public_key(bad)


def test_signing_keys_are_written_0600_and_never_overwritten(tmp_path: Path) -> None:
    path = tmp_path / "vendor.pem"
    write_private_key(path, VENDOR)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert public_key_b64(load_private_key(path.read_bytes()).public_key()) == public_key_b64(
        VENDOR.public_key()
    )
    with pytest.raises(FileExistsError):
        write_private_key(path, OTHER)
    write_private_key(path, OTHER, overwrite=True)
    assert load_private_key(path.read_bytes()).public_key() == OTHER.public_key()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["vendor.pem"]
    with pytest.raises(BundleError, match="cannot read the private key"):
        load_private_key(b"junk")
