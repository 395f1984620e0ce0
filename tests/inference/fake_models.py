"""Tiny fake models (random bytes and a config.json, no torch) and hand-made bundles, good and
bad, for the model store's tests."""

from __future__ import annotations

import base64
import io
import os
import tarfile
from dataclasses import dataclass
from pathlib import Path

import orjson
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from inference.bundle import public_key_b64
from inference.manifest import Manifest


def make_model_folder(
    root: Path,
    name: str = "Tiny-Llama",
    *,
    context: int | None = 2048,
    weights: str = ".safetensors",
) -> Path:
    """A model folder: two weight shards of random bytes, a config.json, a tokenizer in a
    subfolder, and hidden clutter that an import leaves out."""
    folder = root / name
    (folder / "tokenizer").mkdir(parents=True)
    (folder / f"model-00001-of-00002{weights}").write_bytes(os.urandom(70_000))
    (folder / f"model-00002-of-00002{weights}").write_bytes(os.urandom(5_000))
    config: dict[str, object] = {"architectures": ["LlamaForCausalLM"], "hidden_size": 64}
    if context is not None:
        config["max_position_embeddings"] = context
    (folder / "config.json").write_bytes(orjson.dumps(config))
    (folder / "tokenizer" / "tokenizer.json").write_text('{"model": {"type": "BPE"}}')
    (folder / ".git").mkdir()
    (folder / ".git" / "HEAD").write_text("ref: refs/heads/main\n")
    (folder / ".gitattributes").write_text("*.safetensors filter=lfs\n")
    return folder


def leftovers(models_dir: Path) -> list[str]:
    """Everything in the store's folder (a refused import must leave nothing)."""
    return sorted(p.name for p in models_dir.iterdir()) if models_dir.exists() else []


@dataclass
class Member:
    """One member of a hand-made bundle."""

    name: str
    data: bytes = b""
    type: bytes = tarfile.REGTYPE
    linkname: str = ""
    size: int | None = None  # a header that lies about the size


def signed_head(
    manifest: Manifest | bytes, key: Ed25519PrivateKey, *, hint: bool = True
) -> list[Member]:
    """manifest.json, its signature and (optionally) the signer's public key."""
    data = manifest if isinstance(manifest, bytes) else manifest.to_json()
    head = [
        Member("manifest.json", data),
        Member("manifest.sig", base64.b64encode(key.sign(data)) + b"\n"),
    ]
    if hint:
        head.append(Member("manifest.pub", public_key_b64(key.public_key()).encode()))
    return head


def model_members(folder: Path, manifest: Manifest) -> list[Member]:
    """The model's files as a bundle holds them."""
    return [Member("model/" + f.path, (folder / f.path).read_bytes()) for f in manifest.files]


def write_bundle(path: Path, members: list[Member], *, gzip: bool = False) -> Path:
    """A tar (or tar.gz) of exactly these members, in this order."""
    with tarfile.open(path, "w:gz" if gzip else "w", format=tarfile.PAX_FORMAT) as tar:
        for m in members:
            info = tarfile.TarInfo(m.name)
            info.type, info.linkname, info.mode = m.type, m.linkname, 0o644
            if m.type == tarfile.REGTYPE:
                info.size = len(m.data) if m.size is None else m.size
                tar.addfile(info, io.BytesIO(m.data.ljust(info.size, b"\0")))
            else:
                tar.addfile(info)
    return path
