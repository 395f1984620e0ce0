"""The model store from the command line: `aigw models import|enable|disable|status|verify|
remove-local` on a box, `aigw models pack|keygen` for vendors (offline, no box needed), and
`aigw trust add|list|remove` for the keys whose bundles a box accepts.

An import runs on the box: PATH is a folder or a bundle file there (made absolute here).
`aigw models list` shows the aliases and, with provider `local`, the imported models.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from appliance.admin_client import AdminAPIError, segment
from appliance.cli._common import (
    Ctx,
    SubParsers,
    add_json,
    emit_done,
    emit_object,
    emit_rows,
    print_json,
    table,
)
from appliance.errors import ApplianceError

# Copying and hashing a large model takes minutes; the admin API answers when it is done.
IMPORT_TIMEOUT_S = 6 * 3600.0
_STATUS_COLUMNS = ["name", "state", "format", "size", "context_length", "license", "signed_by"]


def size_text(n: int) -> str:
    """Bytes for people: 1.5 GiB."""
    value = float(n)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if value < 1024 or unit == "GiB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    raise AssertionError("unreachable")


def register_local_models(
    sub: SubParsers, models: SubParsers, common: argparse.ArgumentParser
) -> None:
    """Add the model store's commands to `aigw models` (its `actions`), and `aigw trust`."""
    models.choices["list"].set_defaults(func=list_models)
    imp = models.add_parser(
        "import", parents=[common], help="import a model folder or a signed bundle on the box"
    )
    imp.add_argument("path", help="a folder (with or without manifest.json) or a bundle file")
    imp.add_argument("--name", help="the model's name (default: the manifest's or the folder's)")
    imp.add_argument("--license", help="its license, for a folder without a manifest")
    imp.add_argument(
        "--context-length", type=int, help="for a folder whose config.json does not say it"
    )
    imp.add_argument("--replace", action="store_true", help="overwrite a disabled model")
    add_json(imp)
    imp.set_defaults(func=import_model)
    for verb, func, text in (
        ("enable", enable, "enable a local model: its engine starts"),
        ("disable", disable, "disable a local model: its engine stops"),
        ("verify", verify, "read a local model's files again and check every SHA-256"),
        ("remove-local", remove_local, "delete a disabled local model and its files"),
    ):
        p = models.add_parser(verb, parents=[common], help=text)
        p.add_argument("name")
        add_json(p)
        p.set_defaults(func=func)
    st = models.add_parser("status", parents=[common], help="the local models and their state")
    st.add_argument("name", nargs="?")
    add_json(st)
    st.set_defaults(func=status)
    _register_vendor(models, common)
    _register_trust(sub, common)


def _register_vendor(models: SubParsers, common: argparse.ArgumentParser) -> None:
    pk = models.add_parser(
        "pack", parents=[common], help="sign a model folder into a bundle (offline, for vendors)"
    )
    pk.add_argument("folder")
    pk.add_argument("--key", required=True, help="the Ed25519 private key file (keygen)")
    pk.add_argument("--out", required=True, help="the bundle file to write")
    pk.add_argument("--name", help="the model's name (default: the manifest's or the folder's)")
    pk.add_argument("--license", help="its license (default: the manifest's, or unknown)")
    pk.add_argument("--context-length", type=int, help="when config.json does not say it")
    pk.add_argument("--gzip", action="store_true", help="compress (weights rarely shrink)")
    add_json(pk)
    pk.set_defaults(func=pack)
    kg = models.add_parser(
        "keygen", parents=[common], help="make an Ed25519 key pair to sign bundles with"
    )
    kg.add_argument("--out", required=True, help="the private key file to write (0600)")
    kg.add_argument("--force", action="store_true", help="overwrite an existing key file")
    add_json(kg)
    kg.set_defaults(func=keygen)


def _register_trust(sub: SubParsers, common: argparse.ArgumentParser) -> None:
    top = sub.add_parser(
        "trust", parents=[common], help="manage the keys whose model bundles this box accepts"
    )
    actions = top.add_subparsers(dest="action", required=True, metavar="ACTION")
    add = actions.add_parser("add", parents=[common], help="trust a vendor's public key")
    add.add_argument("name")
    add.add_argument("public_key", nargs="?", help="base64 of the 32-byte key (keygen prints it)")
    add.add_argument("--file", help="a file holding the public key (PEM, base64 or OpenSSH)")
    add_json(add)
    add.set_defaults(func=trust_add)
    ls = actions.add_parser("list", parents=[common], help="list trusted keys")
    add_json(ls)
    ls.set_defaults(func=trust_list)
    rm = actions.add_parser("remove", parents=[common], help="stop trusting a key")
    rm.add_argument("name")
    add_json(rm)
    rm.set_defaults(func=trust_remove)


# --- on the box -----------------------------------------------------------------------------


def _item(name: str) -> str:
    return f"/local-models/{segment(name)}"


def list_models(ctx: Ctx) -> None:
    """Model aliases, then the imported local models (provider `local`)."""
    rows: list[dict[str, Any]] = ctx.call("GET", "/models")["data"]
    try:
        local = ctx.call("GET", "/local-models")["data"]
    except AdminAPIError as exc:
        if exc.status != 404:  # a box from before the model store
            raise
        local = []
    columns = ["alias", "provider", "upstream_model"]
    if local:
        columns.append("state")
        rows += [
            {
                "alias": m["name"],
                "provider": "local",
                "upstream_model": m["name"],
                "state": m["state"],
                "enabled": m["enabled"],
            }
            for m in local
        ]
    emit_rows(ctx, rows, columns)


def import_model(ctx: Ctx) -> None:
    """POST /local-models/import, waiting as long as the copy takes."""
    a = ctx.args
    body: dict[str, Any] = {"path": str(Path(a.path).expanduser().absolute())}
    for field in ("name", "license", "context_length"):
        if getattr(a, field) is not None:
            body[field] = getattr(a, field)
    if a.replace:
        body["replace"] = True
    client = ctx.client
    client.timeout = max(client.timeout, IMPORT_TIMEOUT_S)
    row = ctx.call("POST", "/local-models/import", body)
    signer = f"signed by {row['signed_by']}" if row["signed_by"] else "unsigned folder"
    emit_object(
        ctx,
        row,
        f"model {row['name']} imported ({row['format']}, {size_text(row['size_bytes'])}, "
        f"{signer}); enable it with: aigw models enable {row['name']}",
    )


def enable(ctx: Ctx) -> None:
    """POST /local-models/{name}/enable."""
    row = ctx.call("POST", _item(ctx.args.name) + "/enable")
    emit_object(ctx, row, f"model {row['name']} enabled ({row['state']})")


def disable(ctx: Ctx) -> None:
    """POST /local-models/{name}/disable."""
    row = ctx.call("POST", _item(ctx.args.name) + "/disable")
    emit_object(ctx, row, f"model {row['name']} disabled")


def verify(ctx: Ctx) -> None:
    """POST /local-models/{name}/verify; problems are an error."""
    client = ctx.client
    client.timeout = max(client.timeout, IMPORT_TIMEOUT_S)
    result = ctx.call("POST", _item(ctx.args.name) + "/verify")
    if not result["ok"]:
        raise ApplianceError(f"model {result['name']} is damaged: {'; '.join(result['problems'])}")
    emit_object(ctx, result, f"model {result['name']}: every file matches its SHA-256")


def remove_local(ctx: Ctx) -> None:
    """DELETE /local-models/{name}."""
    name = ctx.args.name
    ctx.call("DELETE", _item(name))
    emit_done(ctx, f"model {name} and its files removed", removed=name)


def status(ctx: Ctx) -> None:
    """The local models (or one) with state, size, format and signer."""
    if ctx.args.name:
        row = ctx.call("GET", _item(ctx.args.name))
        if not ctx.json:
            row = {k: v for k, v in row.items() if k != "manifest"}
            row["size_bytes"] = size_text(row["size_bytes"])
        emit_object(ctx, row)
        return
    rows = ctx.call("GET", "/local-models")["data"]
    if ctx.json:
        print_json(rows)
    else:
        print(table([{**r, "size": size_text(r["size_bytes"])} for r in rows], _STATUS_COLUMNS))


def trust_add(ctx: Ctx) -> None:
    """POST /trusted-keys, the key from the argument or a file (never a private key)."""
    a = ctx.args
    if (a.public_key is None) == (a.file is None):
        raise ApplianceError("give the public key, or --file with it (one of the two)")
    text = a.public_key if a.file is None else Path(a.file).expanduser().read_text()
    if "PRIVATE KEY" in text:
        raise ApplianceError(
            "that is a private key: it stays with whoever signs; give its public key "
            "(aigw models keygen printed it)"
        )
    row = ctx.call("POST", "/trusted-keys", {"name": a.name, "public_key": text.strip()})
    emit_object(ctx, row, f"key {row['name']} trusted: bundles it signs may be imported")


def trust_list(ctx: Ctx) -> None:
    """GET /trusted-keys."""
    emit_rows(ctx, ctx.call("GET", "/trusted-keys")["data"], ["name", "public_key", "added_at"])


def trust_remove(ctx: Ctx) -> None:
    """DELETE /trusted-keys/{name}."""
    name = ctx.args.name
    ctx.call("DELETE", f"/trusted-keys/{segment(name)}")
    emit_done(ctx, f"key {name} no longer trusted", removed=name)


# --- for vendors, offline -------------------------------------------------------------------


def pack(ctx: Ctx) -> None:
    """Describe a folder (or take its manifest.json) and write a signed bundle of it."""
    from inference.bundle import BundleError, load_private_key, public_key_b64
    from inference.bundle import pack as write_bundle
    from inference.manifest import ManifestError
    from inference.store import ModelStoreError, describe_folder

    a = ctx.args
    folder = Path(a.folder).expanduser()
    if not folder.is_dir():
        raise ApplianceError(f"{folder} is not a folder")
    try:
        key = load_private_key(Path(a.key).expanduser().read_bytes())
        manifest = describe_folder(
            folder, name=a.name, license=a.license, context_length=a.context_length
        )
        out = write_bundle(folder, Path(a.out).expanduser(), key, manifest, compress=a.gzip)
    except (BundleError, ManifestError, ModelStoreError) as exc:
        raise ApplianceError(str(exc)) from None
    info = {
        "bundle": str(out),
        "name": manifest.name,
        "format": manifest.format,
        "files": len(manifest.files),
        "size_bytes": manifest.total_bytes,
        "public_key": public_key_b64(key.public_key()),
    }
    emit_object(
        ctx,
        info,
        f"bundle {out} written: model {manifest.name} ({manifest.format}, "
        f"{len(manifest.files)} files, {size_text(manifest.total_bytes)}), signed by "
        f"{info['public_key']}",
    )


def keygen(ctx: Ctx) -> None:
    """Make a signing key: the private half to a 0600 file, the public half printed."""
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    from inference.bundle import public_key_b64, write_private_key

    out = Path(ctx.args.out).expanduser()
    key = Ed25519PrivateKey.generate()
    try:
        write_private_key(out, key, overwrite=ctx.args.force)
    except FileExistsError:
        raise ApplianceError(
            f"{out} exists: keep it (it signs your bundles), or give --force to replace it"
        ) from None
    public = public_key_b64(key.public_key())
    emit_object(
        ctx,
        {"key_file": str(out.absolute()), "public_key": public},
        f"private key written to {out} (keep it secret)\npublic key: {public}\n"
        f"on each box that should accept your bundles: aigw trust add NAME {public}",
    )
