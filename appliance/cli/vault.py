"""`aigw vault`: status, unseal, seal and KEK rotation through the admin API; `init` locally."""

from __future__ import annotations

import argparse

from appliance.cli._common import Ctx, SubParsers, add_json, emit_done, emit_object, read_secret
from appliance.errors import ApplianceError

# Unsealing a vault no box holds only checks the passphrase: the box opens it sealed at start.
_NO_BOX = " (no box is running: this only checked it; a starting box opens the vault sealed)"


def register_vault(sub: SubParsers, common: argparse.ArgumentParser) -> None:
    """Add `aigw vault ...`."""
    top = sub.add_parser("vault", parents=[common], help="the secrets vault")
    actions = top.add_subparsers(dest="action", required=True, metavar="ACTION")
    for name, text, func in (
        ("status", "sealed or not, KEK kind, number of secrets", status),
        ("unseal", "open a passphrase vault (passphrase from the terminal or stdin)", unseal),
        ("seal", "forget the vault's keys until the next unseal", seal),
    ):
        parser = actions.add_parser(name, parents=[common], help=text)
        add_json(parser)
        parser.set_defaults(func=func)
    rotate = actions.add_parser(
        "rotate-kek", parents=[common], help="re-wrap the vault under a new key-encryption key"
    )
    rotate.add_argument(
        "--credential-file", help="the new KEK material, for a [vault] kek = 'credential' box"
    )
    add_json(rotate)
    rotate.set_defaults(func=rotate_kek)
    init = actions.add_parser(
        "init", parents=[common], help="create a passphrase vault (local; no running box needed)"
    )
    init.set_defaults(func=init_vault)


def status(ctx: Ctx) -> None:
    """vault status."""
    emit_object(ctx, ctx.call("GET", "/vault"))


def unseal(ctx: Ctx) -> None:
    """vault unseal."""
    passphrase = read_secret("Vault passphrase: ")
    ctx.call("POST", "/vault/unseal", {"passphrase": passphrase})
    emit_done(ctx, "vault unsealed" + _NO_BOX * ctx.client.in_process, sealed=False)


def seal(ctx: Ctx) -> None:
    """vault seal."""
    ctx.call("POST", "/vault/seal")
    emit_done(ctx, "vault sealed" + _NO_BOX * ctx.client.in_process, sealed=True)


def rotate_kek(ctx: Ctx) -> None:
    """vault rotate-kek: a passphrase vault asks for the new passphrase (twice on a terminal).

    With no box running, a passphrase vault is opened sealed, so the current passphrase is
    asked first (standard input: the current one on the first line, the new one on the next).
    """
    body: dict[str, str] = {}
    if ctx.args.credential_file:
        body["credential_file"] = ctx.args.credential_file
    else:
        state = ctx.call("GET", "/vault")
        if state.get("kek") == "passphrase":
            if state.get("sealed") and ctx.client.in_process:
                current = read_secret("Current vault passphrase: ")
                ctx.call("POST", "/vault/unseal", {"passphrase": current})
            body["passphrase"] = read_secret("New vault passphrase: ", confirm=True)
    ctx.call("POST", "/vault/rotate-kek", body)
    emit_done(ctx, "vault key-encryption key rotated", rotated=True)


def init_vault(ctx: Ctx) -> None:
    """vault init: a new passphrase vault at the configured path; an existing one is kept."""
    from appliance.vault import Vault

    cfg = ctx.cfg
    if cfg.vault.kek != "passphrase":
        raise ApplianceError(
            f"[vault] kek is {cfg.vault.kek!r}: such a vault is created when the box first "
            'opens it; `aigw vault init` is for [vault] kek = "passphrase"'
        )
    if cfg.vault_path.exists():
        raise ApplianceError(f"a vault already exists at {cfg.vault_path}; it is left as it is")
    passphrase = read_secret("New vault passphrase: ", confirm=True)
    cfg.vault_path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    Vault.create(cfg.vault_path, passphrase=passphrase)
    print(f"vault created at {cfg.vault_path}; it opens sealed: unseal it with `aigw vault unseal`")
