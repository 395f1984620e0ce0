"""Durable file writes shared by the vault, the identity, backups and the model store."""

from __future__ import annotations

import os
import tempfile
from importlib import metadata
from pathlib import Path


def fsync_dir(directory: Path) -> None:
    """Make a rename or a new entry in `directory` durable."""
    fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def write_atomic(path: Path, data: bytes, mode: int) -> None:
    """Write `path` via a temporary file in its directory, fsync and rename, with `mode`."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        os.fchmod(fd, mode)
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    fsync_dir(path.parent)


def version() -> str:
    """This software's version, as installed (`unknown` in a bare source tree)."""
    try:
        return metadata.version("aigw")
    except metadata.PackageNotFoundError:
        return "unknown"
