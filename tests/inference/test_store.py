"""The model store on disk: folder imports with and without a manifest, replacing, checking,
removing, and never a partial model left behind."""

from __future__ import annotations

import os
import stat
import time
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from inference import store as store_module
from inference.bundle import pack
from inference.manifest import MANIFEST_NAME, ManifestError
from inference.store import (
    INCOMING_PREFIX,
    ModelExistsError,
    ModelStore,
    ModelStoreError,
    NoSuchModelError,
    describe_folder,
)
from tests.inference.fake_models import leftovers, make_model_folder

KEY = Ed25519PrivateKey.generate()


@pytest.fixture
def store(tmp_path: Path) -> ModelStore:
    return ModelStore(tmp_path / "state" / "models")


def _tree(folder: Path) -> dict[str, bytes]:
    return {
        p.relative_to(folder).as_posix(): p.read_bytes()
        for p in sorted(folder.rglob("*"))
        if p.is_file()
    }


def test_a_folder_without_a_manifest_gets_one(tmp_path: Path, store: ModelStore) -> None:
    src = make_model_folder(tmp_path / "src")
    before = _tree(src)
    manifest = store.import_folder(src)
    assert (manifest.name, manifest.format, manifest.license) == (
        "tiny-llama",
        "safetensors",
        "unknown",
    )
    assert manifest.context_length == 2048  # config.json's max_position_embeddings
    assert [f.path for f in manifest.files] == [
        "config.json",
        "model-00001-of-00002.safetensors",
        "model-00002-of-00002.safetensors",
        "tokenizer/tokenizer.json",
    ]
    assert _tree(src) == before  # the source is left as it was
    model = store.path("tiny-llama")
    copied = _tree(model)
    assert copied.pop(MANIFEST_NAME) == manifest.to_json()
    assert copied == {k: v for k, v in before.items() if not k.startswith(".")}
    for f in manifest.files:  # copies, not links
        st = (model / f.path).stat()
        assert st.st_nlink == 1 and st.st_ino != (src / f.path).stat().st_ino
    assert stat.S_IMODE(model.stat().st_mode) == 0o750
    assert store.names() == ["tiny-llama"] and leftovers(store.root) == ["tiny-llama"]
    assert store.read_manifest("tiny-llama") == manifest


def test_a_folder_with_a_manifest_is_checked_against_it(tmp_path: Path, store: ModelStore) -> None:
    src = make_model_folder(tmp_path / "src")
    described = describe_folder(src, name="vendor-model", license="mit", context_length=512)
    (src / MANIFEST_NAME).write_bytes(described.to_json())
    (src / "notes.txt").write_text("not listed: not copied")
    assert store.import_folder(src) == described
    assert not (store.path("vendor-model") / "notes.txt").exists()
    # Overrides apply to the folder's manifest too.
    renamed = store.import_folder(src, "copy", license="apache-2.0")
    assert (renamed.name, renamed.license, renamed.files) == ("copy", "apache-2.0", described.files)

    # A file that no longer matches the manifest: refused, nothing left behind.
    weights = src / "model-00002-of-00002.safetensors"
    weights.write_bytes(bytes(weights.stat().st_size))
    with pytest.raises(ModelStoreError, match=r"model-00002-of-00002\.safetensors: its SHA-256"):
        store.import_folder(src, "third")
    weights.write_bytes(b"short")
    with pytest.raises(ModelStoreError, match="5 bytes, the manifest says 5000"):
        store.import_folder(src, "third")
    weights.unlink()
    with pytest.raises(ModelStoreError, match="is listed in the manifest but missing"):
        store.import_folder(src, "third")
    assert leftovers(store.root) == ["copy", "vendor-model"]

    (src / MANIFEST_NAME).write_text('{"name": "x"}')
    with pytest.raises(ManifestError, match=f"{src / MANIFEST_NAME}: 'format' must be"):
        store.import_folder(src, "third")


def test_what_a_folder_cannot_tell_must_be_given(tmp_path: Path, store: ModelStore) -> None:
    src = make_model_folder(tmp_path / "src", context=None)
    with pytest.raises(ModelStoreError, match="the context length is unknown"):
        store.import_folder(src)
    assert store.import_folder(src, context_length=4096).context_length == 4096
    with pytest.raises(ManifestError, match="at least 16 tokens"):
        store.import_folder(src, "small", context_length=8)

    gguf = make_model_folder(tmp_path / "g", "G", weights=".gguf")
    assert store.import_folder(gguf).format == "gguf"
    assert store.import_folder(make_model_folder(tmp_path / "p", "P", weights=".bin")).format == (
        "pytorch"
    )
    empty = tmp_path / "nothing"
    empty.mkdir()
    (empty / "readme.md").write_text("hi")
    with pytest.raises(ModelStoreError, match="cannot tell the model's format"):
        store.import_folder(empty, context_length=512)
    odd = make_model_folder(tmp_path / "odd", name="__")
    with pytest.raises(ModelStoreError, match="does not make a model name; give one"):
        store.import_folder(odd)
    assert leftovers(store.root) == ["g", "p", "tiny-llama"]


def test_links_in_the_source_are_copied_as_files(tmp_path: Path, store: ModelStore) -> None:
    """A Hugging Face cache snapshot: every file a link into a blobs folder."""
    blobs = make_model_folder(tmp_path / "blobs")
    snap = tmp_path / "snapshot"
    snap.mkdir()
    for name in ("config.json", "model-00001-of-00002.safetensors"):
        (snap / name).symlink_to(blobs / name)
    (snap / "linked-dir").symlink_to(blobs / "tokenizer")  # links to folders are not followed
    manifest = store.import_folder(snap, "snap")
    assert [f.path for f in manifest.files] == ["config.json", "model-00001-of-00002.safetensors"]
    weights = store.path("snap") / "model-00001-of-00002.safetensors"
    assert (
        not weights.is_symlink()
        and weights.read_bytes() == (blobs / "model-00001-of-00002.safetensors").read_bytes()
    )
    (snap / "broken.safetensors").symlink_to(tmp_path / "nowhere")
    with pytest.raises(ModelStoreError, match=r"broken\.safetensors is gone or a broken link"):
        store.import_folder(snap, "broken")
    assert leftovers(store.root) == ["snap"]


def test_an_existing_model_is_replaced_only_when_asked(tmp_path: Path, store: ModelStore) -> None:
    src = make_model_folder(tmp_path / "src")
    first = store.import_folder(src, "m")
    (src / "config.json").write_text('{"max_position_embeddings": 1024}')
    with pytest.raises(ModelExistsError, match="a model named 'm' is already in the store"):
        store.import_folder(src, "m")
    assert store.read_manifest("m") == first
    second = store.import_folder(src, "m", replace=True)
    assert second.context_length == 1024 and store.read_manifest("m") == second
    assert leftovers(store.root) == ["m"]


def test_a_commit_undone_puts_the_old_model_back(tmp_path: Path, store: ModelStore) -> None:
    """What happens when the database refuses the row after the files were put in place."""
    src = make_model_folder(tmp_path / "src")
    old = store.import_folder(src, "m")
    (src / "config.json").write_text('{"max_position_embeddings": 1024}')
    with pytest.raises(RuntimeError), store.stage_folder(src, name="m") as staged:
        staged.commit(replace=True)
        assert store.read_manifest("m").context_length == 1024
        raise RuntimeError("the database said no")
    assert store.read_manifest("m") == old
    assert leftovers(store.root) == ["m"]
    with store.stage_folder(src, name="n"):
        pass  # never committed: thrown away
    assert leftovers(store.root) == ["m"]


def test_bundles_and_folders_through_stage(tmp_path: Path, store: ModelStore) -> None:
    src = make_model_folder(tmp_path / "src")
    bundle = pack(src, tmp_path / "m.bundle", KEY, describe_folder(src, name="b"))
    trusted = {"k": KEY.public_key()}
    with store.stage(bundle, trusted) as staged:
        assert (staged.name, staged.signer, staged.source) == ("b", "k", f"bundle:{bundle}")
        staged.commit()
    with pytest.raises(ModelStoreError, match="license and context length are in its signed"):
        store.stage(bundle, trusted, license="mit")
    with pytest.raises(ModelStoreError, match="no file or folder at"):
        store.stage(tmp_path / "nothing", trusted)
    with pytest.raises(ModelStoreError, match="is neither a folder nor a bundle file"):
        store.stage(Path("/dev/null"), trusted)
    with pytest.raises(ModelStoreError, match="is inside the model store"):
        store.stage(store.path("b"), trusted, name="again")
    assert leftovers(store.root) == ["b"]


def test_a_folder_of_too_many_files_is_refused_early(
    tmp_path: Path, store: ModelStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(store_module, "MAX_FOLDER_FILES", 3)
    src = make_model_folder(tmp_path / "src")
    with pytest.raises(ModelStoreError, match="holds more than 3 files: is it a model's folder"):
        store.import_folder(src)
    assert leftovers(store.root) == []


def test_check_and_verify_find_damage(tmp_path: Path, store: ModelStore) -> None:
    manifest = store.import_folder(make_model_folder(tmp_path / "src"), "m")
    assert store.check("m") == store.verify("m") == []
    folder = store.path("m")
    weights = folder / "model-00001-of-00002.safetensors"
    weights.write_bytes(bytes(weights.stat().st_size))
    assert store.check("m") == []  # sizes only
    assert store.verify("m", manifest) == [
        "file model-00001-of-00002.safetensors: its SHA-256 does not match the manifest"
    ]
    (folder / "config.json").unlink()
    (folder / "tokenizer" / "tokenizer.json").write_text("{}")
    damage = [
        "file config.json is missing",
        f"file tokenizer/tokenizer.json: 2 bytes, the manifest says {manifest.files[-1].size}",
    ]
    assert store.check("m") == damage
    assert len(store.verify("m")) == 3
    (folder / MANIFEST_NAME).unlink()
    assert store.check("m", manifest) == damage  # the manifest the database kept
    assert store.check("m")[0].startswith("manifest.json: no model named 'm'")
    store.remove("m")
    assert store.check("m", manifest) == [f"its folder {folder} is missing"]


def test_remove(tmp_path: Path, store: ModelStore) -> None:
    store.import_folder(make_model_folder(tmp_path / "src"), "m")
    store.remove("m")
    assert leftovers(store.root) == [] and not store.exists("m")
    with pytest.raises(NoSuchModelError, match="no model named 'm'"):
        store.remove("m")
    store.remove("m", missing_ok=True)
    with pytest.raises(ManifestError, match="is not valid"):
        store.path("../etc")


def test_stale_staging_folders_are_cleaned(tmp_path: Path, store: ModelStore) -> None:
    store.root.mkdir(parents=True)
    stale = store.root / f"{INCOMING_PREFIX}crashed"
    fresh = store.root / f"{INCOMING_PREFIX}running"
    for d in (stale, fresh):
        d.mkdir()
        (d / "part").write_bytes(b"x")
    old = time.time() - 2 * store_module.STALE_S
    os.utime(stale, (old, old))
    store.import_folder(make_model_folder(tmp_path / "src"), "m")
    assert leftovers(store.root) == [fresh.name, "m"]
