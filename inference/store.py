"""The model store: one folder per model under the state directory, each with its manifest.

    <state>/models/<name>/manifest.json      the manifest (`Manifest.to_json()`)
    <state>/models/<name>/<path>             each file it lists

An import is staged in a hidden `.incoming-*` folder beside the models, checked whole (a
bundle's signature first, then every file's size and SHA-256, computed on the bytes copied)
and only then renamed to its name; any failure removes the staged folder, so no partial model
is ever seen under a name. Files are copied, never linked or moved: the source stays as it
was and the store owns its bytes. A source folder may hold links to its files (a Hugging Face
cache snapshot does); their content is what is copied.

This module knows files only. Which models are enabled, who imported them and which keys the
box trusts is kept in the database by `gateway.local_models`.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import os
import re
import secrets
import shutil
import stat
import time
from collections.abc import Iterator, Mapping
from pathlib import Path
from types import TracebackType
from typing import Any

import orjson
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from inference.bundle import (
    CHUNK_BYTES,
    DIR_MODE,
    FILE_MODE,
    copy_hashed,
    fsync_dir,
    verify_and_extract,
)
from inference.manifest import (
    MANIFEST_NAME,
    Manifest,
    ManifestError,
    ModelFile,
    check_model_name,
    check_relative_path,
    parse_manifest,
)

INCOMING_PREFIX = ".incoming-"
TRASH_PREFIX = ".removing-"
# A model folder holds tens of files; far more means the wrong folder was given (say "/").
MAX_FOLDER_FILES = 4096
STALE_S = 24 * 3600  # a staged folder this old was left by a crash
DEFAULT_LICENSE = "unknown"
_FORMATS = (
    ("safetensors", (".safetensors",)),
    ("gguf", (".gguf",)),
    ("pytorch", (".bin", ".pt", ".pth")),
)
# Where Hugging Face configs keep the context length (`text_config`: multimodal models).
_CONTEXT_KEYS = ("max_position_embeddings", "n_positions", "max_sequence_length", "seq_length")
_PLACEHOLDER_FILE = {"path": "placeholder", "sha256": "0" * 64, "size": 0}


class ModelStoreError(Exception):
    """The store refuses an import or a change; the message says why."""


class ModelExistsError(ModelStoreError):
    """A model of that name is already in the store."""


class NoSuchModelError(ModelStoreError):
    """No model of that name is in the store."""


# --- model folders --------------------------------------------------------------------------


def folder_files(src: Path) -> list[str]:
    """A model folder's files, relative and sorted; hidden ones (.git, .cache) and its
    manifest are left out, and links to folders are not followed."""
    out: list[str] = []
    for root, dirs, files in os.walk(src):
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        base = Path(root).relative_to(src)
        for name in files:
            rel = (base / name).as_posix()
            if name.startswith(".") or rel == MANIFEST_NAME:
                continue
            out.append(rel)
            if len(out) > MAX_FOLDER_FILES:
                raise ModelStoreError(
                    f"{src} holds more than {MAX_FOLDER_FILES} files: is it a model's folder?"
                )
    return sorted(out)


def guess_format(paths: list[str]) -> str:
    """safetensors, gguf or pytorch, from the weights' file names (in that order of choice)."""
    for fmt, suffixes in _FORMATS:
        if any(p.lower().endswith(suffixes) for p in paths):
            return fmt
    raise ModelStoreError(
        "cannot tell the model's format: no .safetensors, .gguf, .bin or .pt file in the folder"
    )


def read_context_length(src: Path) -> int | None:
    """The context length config.json states (max_position_embeddings), if it has one."""
    path = src / "config.json"
    try:
        raw = orjson.loads(path.read_bytes())
    except FileNotFoundError:
        return None
    except (OSError, orjson.JSONDecodeError) as exc:
        raise ModelStoreError(f"{path}: cannot read it ({exc})") from None
    sections = [raw, raw.get("text_config")] if isinstance(raw, dict) else []
    for section in sections:
        if not isinstance(section, dict):
            continue
        for key in _CONTEXT_KEYS:
            value = section.get(key)
            if isinstance(value, int) and not isinstance(value, bool) and value > 0:
                return value
    return None


def default_name(src: Path) -> str:
    """A model name from a folder's name: `Llama-3.1-8B` → `llama-3.1-8b`."""
    slug = re.sub(r"[^a-z0-9._-]+", "-", src.name.lower()).strip("-._")[:64]
    try:
        return check_model_name(slug)
    except ManifestError:
        raise ModelStoreError(
            f"the folder's name {src.name!r} does not make a model name; give one"
        ) from None


def _plan(
    src: Path, name: str | None, license: str | None, context_length: int | None
) -> tuple[dict[str, Any], list[str], dict[str, ModelFile]]:
    """What importing `src` will make, decided before a byte is copied: the manifest's fields,
    the files to copy and, when the folder has a manifest, what each must be."""
    own = src / MANIFEST_NAME
    expected: dict[str, ModelFile] = {}
    if own.is_file():
        try:
            listed = parse_manifest(own.read_bytes())
        except ManifestError as exc:
            raise ManifestError(f"{own}: {exc}") from None
        fields = listed.to_dict()
        del fields["files"]
        expected = {f.path: f for f in listed.files}
        paths = sorted(expected)
    else:
        paths = folder_files(src)
        fields = {
            "name": name or default_name(src),
            "format": guess_format(paths),
            "license": DEFAULT_LICENSE,
            "context_length": read_context_length(src),
        }
    overrides = {"name": name, "license": license, "context_length": context_length}
    fields.update({k: v for k, v in overrides.items() if v is not None})
    if fields["context_length"] is None:
        raise ModelStoreError(
            "the context length is unknown (config.json has no max_position_embeddings): give it"
        )
    parse_manifest({**fields, "files": [_PLACEHOLDER_FILE]})  # the fields, checked now
    return fields, paths, expected


def describe_folder(
    src: Path,
    *,
    name: str | None = None,
    license: str | None = None,
    context_length: int | None = None,
) -> Manifest:
    """The manifest of a folder as it is (its files hashed where they are), for `pack`: its
    own manifest.json with the overrides when it has one, else one built from its files."""
    fields, paths, expected = _plan(src, name, license, context_length)
    files = []
    for rel in paths:
        digest, size = hash_file(src / rel)
        want = expected.get(rel)
        if want is not None and (want.sha256, want.size) != (digest, size):
            raise ModelStoreError(f"file {rel}: its size or SHA-256 does not match the manifest")
        files.append({"path": rel, "sha256": digest, "size": size})
    return parse_manifest({**fields, "files": files})


def hash_file(path: Path) -> tuple[str, int]:
    """A file's SHA-256 and size, read in 1 MiB chunks."""
    sha, size = hashlib.sha256(), 0
    with path.open("rb") as fh:
        while chunk := fh.read(CHUNK_BYTES):
            sha.update(chunk)
            size += len(chunk)
    return sha.hexdigest(), size


def _copy_files(
    src: Path, dest: Path, paths: list[str], expected: Mapping[str, ModelFile]
) -> list[dict[str, Any]]:
    """Copy `paths` from `src` into `dest`, hashing the bytes copied; each must match
    `expected` where it says."""
    files = []
    for rel in paths:
        check_relative_path(rel)
        source = src / rel
        try:
            st = source.stat()
        except FileNotFoundError:
            what = "listed in the manifest but missing" if expected else "gone or a broken link"
            raise ModelStoreError(f"file {rel} is {what}") from None
        if not stat.S_ISREG(st.st_mode):
            raise ModelStoreError(f"file {rel} is not a regular file")
        want = expected.get(rel)
        if want is not None and st.st_size != want.size:
            raise ModelStoreError(f"file {rel}: {st.st_size} bytes, the manifest says {want.size}")
        target = dest / rel
        target.parent.mkdir(mode=DIR_MODE, parents=True, exist_ok=True)
        with source.open("rb") as fh:
            digest = copy_hashed(fh, target, st.st_size, rel)
        if want is not None and digest != want.sha256:
            raise ModelStoreError(f"file {rel}: its SHA-256 does not match the manifest")
        files.append({"path": rel, "sha256": digest, "size": st.st_size})
    return files


# --- the store ------------------------------------------------------------------------------


class ModelStore:
    """The models under one folder (the state directory's `models`)."""

    def __init__(self, models_dir: Path) -> None:
        self.root = Path(models_dir)

    def path(self, name: str) -> Path:
        """A model's folder (whether it exists or not)."""
        return self.root / check_model_name(name)

    def exists(self, name: str) -> bool:
        """Whether a model of this name is in the store."""
        return self.path(name).is_dir()

    def names(self) -> list[str]:
        """The models' names, sorted."""
        if not self.root.is_dir():
            return []
        return sorted(p.name for p in self.root.iterdir() if p.is_dir() and p.name[0] != ".")

    def read_manifest(self, name: str) -> Manifest:
        """The manifest kept in a model's folder."""
        try:
            return parse_manifest((self.path(name) / MANIFEST_NAME).read_bytes())
        except FileNotFoundError:
            raise NoSuchModelError(f"no model named {name!r} in {self.root}") from None

    # Imports --------------------------------------------------------------------------------

    def stage(
        self,
        path: Path,
        trusted: Mapping[str, Ed25519PublicKey],
        *,
        name: str | None = None,
        license: str | None = None,
        context_length: int | None = None,
    ) -> Staged:
        """Stage a folder, or a bundle (a file), whichever `path` is."""
        if Path(path).is_dir():
            return self.stage_folder(
                path, name=name, license=license, context_length=context_length
            )
        if license is not None or context_length is not None:
            raise ModelStoreError(
                "a bundle's license and context length are in its signed manifest; leave them out"
            )
        return self.stage_bundle(path, trusted, name=name)

    def stage_folder(
        self,
        src: Path,
        *,
        name: str | None = None,
        license: str | None = None,
        context_length: int | None = None,
    ) -> Staged:
        """Copy and check a model folder (with its manifest.json, or one is built from its
        files) into a staged folder of the store."""
        src = self._source(src)
        if not src.is_dir():
            raise ModelStoreError(f"{src} is not a folder")
        try:
            fields, paths, expected = _plan(src, name, license, context_length)
        except OSError as exc:
            raise ModelStoreError(f"{exc.filename or src}: {exc.strerror or exc}") from None
        tmp = self._incoming()
        try:
            files = _copy_files(src, tmp, paths, expected)
            manifest = parse_manifest({**fields, "files": files})
            return self._staged(tmp, manifest, None, f"folder:{src}")
        except BaseException as exc:
            raise _failed(tmp, exc) from None

    def stage_bundle(
        self, bundle: Path, trusted: Mapping[str, Ed25519PublicKey], *, name: str | None = None
    ) -> Staged:
        """Check a signed bundle and extract it into a staged folder of the store."""
        bundle = self._source(bundle)
        try:
            mode = bundle.stat().st_mode
        except FileNotFoundError:
            raise ModelStoreError(f"no file or folder at {bundle}") from None
        except OSError as exc:
            raise ModelStoreError(f"{bundle}: {exc.strerror or exc}") from None
        if not stat.S_ISREG(mode):
            raise ModelStoreError(f"{bundle} is neither a folder nor a bundle file")
        tmp = self._incoming()
        try:
            manifest, signer = verify_and_extract(bundle, tmp, trusted, name=name)
            return self._staged(tmp, manifest, signer, f"bundle:{bundle}")
        except BaseException as exc:
            raise _failed(tmp, exc) from None

    def import_folder(
        self,
        src: Path,
        name: str | None = None,
        *,
        license: str | None = None,
        context_length: int | None = None,
        replace: bool = False,
    ) -> Manifest:
        """Import a folder under its name; an existing model is refused unless `replace`."""
        with self.stage_folder(
            src, name=name, license=license, context_length=context_length
        ) as staged:
            staged.commit(replace=replace)
            return staged.manifest

    def import_bundle(
        self,
        path: Path,
        trusted: Mapping[str, Ed25519PublicKey],
        *,
        replace: bool = False,
    ) -> tuple[Manifest, str]:
        """Import a bundle signed by a `trusted` key; returns its manifest and signer's name."""
        with self.stage_bundle(path, trusted) as staged:
            staged.commit(replace=replace)
            assert staged.signer is not None
            return staged.manifest, staged.signer

    def _source(self, path: Path) -> Path:
        path = Path(path).absolute()
        resolved = path.resolve()
        if resolved == self.root.resolve() or self.root.resolve() in resolved.parents:
            raise ModelStoreError(f"{path} is inside the model store; import from elsewhere")
        return path

    def _incoming(self) -> Path:
        """A new hidden folder in the store to stage an import in."""
        tmp = self.root / f"{INCOMING_PREFIX}{secrets.token_hex(6)}"
        try:
            self._ensure_root()
            self.clean_stale()
            tmp.mkdir(mode=DIR_MODE)
        except OSError as exc:
            raise ModelStoreError(f"cannot write in {self.root}: {exc.strerror or exc}") from None
        return tmp

    def _staged(self, tmp: Path, manifest: Manifest, signer: str | None, source: str) -> Staged:
        """Write the manifest into the staged folder and make it all durable."""
        fd = os.open(tmp / MANIFEST_NAME, os.O_WRONLY | os.O_CREAT | os.O_EXCL, FILE_MODE)
        with os.fdopen(fd, "wb") as fh:
            fh.write(manifest.to_json())
            fh.flush()
            os.fsync(fh.fileno())
        for folder, _, _ in os.walk(tmp):
            fsync_dir(Path(folder))
        return Staged(self, tmp, manifest, signer, source)

    def _ensure_root(self) -> None:
        self.root.mkdir(mode=DIR_MODE, parents=True, exist_ok=True)

    @contextlib.contextmanager
    def _locked(self) -> Iterator[None]:
        """The store's lock, across processes, for renames under a model's name."""
        self._ensure_root()
        fd = os.open(self.root, os.O_RDONLY | os.O_DIRECTORY)  # the folder itself is the lock
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            os.close(fd)

    def _trash(self) -> Path:
        return self.root / f"{TRASH_PREFIX}{secrets.token_hex(6)}"

    def clean_stale(self, older_than_s: float = STALE_S) -> None:
        """Remove staged and half-removed folders left behind by a crash."""
        if not self.root.is_dir():
            return
        cutoff = time.time() - older_than_s
        for entry in self.root.iterdir():
            if entry.name.startswith((INCOMING_PREFIX, TRASH_PREFIX)):
                with contextlib.suppress(OSError):
                    if entry.stat().st_mtime < cutoff:
                        shutil.rmtree(entry, ignore_errors=True)

    # Removal and checks ---------------------------------------------------------------------

    def remove(self, name: str, *, missing_ok: bool = False) -> None:
        """Delete a model's folder (first renamed away, so its name is free at once)."""
        trash = self._trash()
        with self._locked():
            try:
                os.rename(self.path(name), trash)
            except FileNotFoundError:
                if missing_ok:
                    return
                raise NoSuchModelError(f"no model named {name!r} in {self.root}") from None
        shutil.rmtree(trash, ignore_errors=True)

    def check(self, name: str, manifest: Manifest | None = None) -> list[str]:
        """Quick: every file of the manifest (by default, the folder's own) is there, a regular
        file of the size it says. The problems found; none when all is well."""
        try:
            manifest = manifest or self.read_manifest(name)
        except (ManifestError, ModelStoreError, OSError) as exc:
            return [f"{MANIFEST_NAME}: {exc}"]
        return list(self._quick(name, manifest).values())

    def verify(self, name: str, manifest: Manifest | None = None) -> list[str]:
        """Thorough: `check`, then every file's SHA-256 read again. The problems found."""
        try:
            manifest = manifest or self.read_manifest(name)
        except (ManifestError, ModelStoreError, OSError) as exc:
            return [f"{MANIFEST_NAME}: {exc}"]
        problems, folder = self._quick(name, manifest), self.path(name)
        for f in manifest.files:
            if "" in problems or f.path in problems:
                continue
            if hash_file(folder / f.path)[0] != f.sha256:
                problems[f.path] = f"file {f.path}: its SHA-256 does not match the manifest"
        return list(problems.values())

    def _quick(self, name: str, manifest: Manifest) -> dict[str, str]:
        """File path (or the folder, "") → what is wrong with it, by size and kind only."""
        folder = self.path(name)
        if not folder.is_dir():
            return {"": f"its folder {folder} is missing"}
        problems = {}
        for f in manifest.files:
            try:
                st = (folder / f.path).lstat()
            except FileNotFoundError:
                problems[f.path] = f"file {f.path} is missing"
                continue
            if not stat.S_ISREG(st.st_mode):
                problems[f.path] = f"file {f.path} is not a regular file"
            elif st.st_size != f.size:
                problems[f.path] = f"file {f.path}: {st.st_size} bytes, the manifest says {f.size}"
        return problems


def _failed(tmp: Path, exc: BaseException) -> BaseException:
    """Remove a staged folder after a failure; the exception to raise (an OS error is said in
    the store's words)."""
    shutil.rmtree(tmp, ignore_errors=True)
    if isinstance(exc, OSError):
        return ModelStoreError(f"{exc.filename or tmp}: {exc.strerror or exc}")
    return exc


class Staged:
    """A model checked whole in a hidden folder of the store, not yet under its name.

    Use it as a context manager: on leaving, staged files never committed are removed, and a
    commit followed by an exception (say, the database refused the row) is undone, putting
    back the model it replaced.
    """

    def __init__(
        self,
        store: ModelStore,
        tmp: Path,
        manifest: Manifest,
        signer: str | None,
        source: str,
    ) -> None:
        self.store, self.tmp, self.manifest = store, tmp, manifest
        self.signer, self.source = signer, source
        self.committed = False
        self._replaced: Path | None = None

    @property
    def name(self) -> str:
        """The model's name."""
        return self.manifest.name

    def commit(self, *, replace: bool = False) -> Path:
        """Rename the staged folder to the model's name; an existing model is refused unless
        `replace`, and is then swapped out (and deleted when the context ends well)."""
        final = self.store.path(self.name)
        with self.store._locked():
            if os.path.lexists(final):
                if not replace:
                    raise ModelExistsError(f"a model named {self.name!r} is already in the store")
                self._replaced = self.store._trash()
                os.rename(final, self._replaced)
            try:
                os.rename(self.tmp, final)
            except BaseException:
                self._put_back(final)
                raise
            fsync_dir(self.store.root)
        self.committed = True
        return final

    def _put_back(self, final: Path) -> None:
        if self._replaced is not None:
            os.rename(self._replaced, final)
            self._replaced = None

    def discard(self) -> None:
        """Remove the staged files (undoing a commit, and putting back what it replaced)."""
        if self.committed:
            final = self.store.path(self.name)
            with self.store._locked():
                os.rename(final, self.tmp)
                self._put_back(final)
            self.committed = False
        shutil.rmtree(self.tmp, ignore_errors=True)

    def __enter__(self) -> Staged:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if exc_type is not None or not self.committed:
            self.discard()
        elif self._replaced is not None:
            shutil.rmtree(self._replaced, ignore_errors=True)
            self._replaced = None
