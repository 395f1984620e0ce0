"""`aigw backup create|verify|restore` and `aigw factory-reset`: local, no admin API needed."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from appliance.cli._common import Ctx, SubParsers, add_json, print_json, read_secret
from appliance.errors import ApplianceError


def register_backup(sub: SubParsers, common: argparse.ArgumentParser) -> None:
    """Add `aigw backup ...` and `aigw factory-reset`."""
    top = sub.add_parser("backup", parents=[common], help="encrypted backups of this box")
    actions = top.add_subparsers(dest="action", required=True, metavar="ACTION")
    create = actions.add_parser(
        "create", parents=[common], help="write one encrypted archive of this box"
    )
    create.add_argument("-o", "--output", help="archive file (default: aigw-HOST-TIME.aigw-backup)")
    _passphrase_option(create)
    add_json(create)
    create.set_defaults(func=create_cmd)
    verify = actions.add_parser(
        "verify", parents=[common], help="check an archive fully and show what it holds"
    )
    verify.add_argument("file", help="the .aigw-backup archive")
    _passphrase_option(verify)
    add_json(verify)
    verify.set_defaults(func=verify_cmd)
    restore = actions.add_parser(
        "restore", parents=[common], help="replace this box's state with an archive's"
    )
    restore.add_argument("file", help="the .aigw-backup archive")
    _passphrase_option(restore)
    restore.add_argument(
        "--take-identity",
        action="store_true",
        help="also take the archive's appliance id, device key and TLS certificate "
        "(this box replaces the one that made it)",
    )
    restore.add_argument(
        "--vault-passphrase-file",
        help="file holding the vault passphrase, where either vault is a passphrase vault",
    )
    _stop_option(restore, "it is started again afterwards")
    add_json(restore)
    restore.set_defaults(func=restore_cmd)
    reset = sub.add_parser(
        "factory-reset", parents=[common], help="wipe all state and return to first boot"
    )
    reset.add_argument("--confirm", metavar="ID", help="the appliance id, for scripts")
    _stop_option(reset, "reboot afterwards for first boot")
    add_json(reset)
    reset.set_defaults(func=reset_cmd)


def _passphrase_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--passphrase-file",
        help="file whose first line is the backup passphrase (default: asked on the terminal, "
        "or one line of standard input)",
    )


def _stop_option(parser: argparse.ArgumentParser, then: str) -> None:
    parser.add_argument(
        "--stop-gateway",
        action="store_true",
        help=f"stop aigw-gateway.service first (systemd boxes); {then}",
    )


def _read_file_secret(path: str) -> str:
    try:
        with open(path, encoding="utf-8") as fh:
            value = fh.readline().rstrip("\r\n")
    except OSError as exc:
        raise ApplianceError(f"cannot read {path}: {exc.strerror}") from None
    except UnicodeDecodeError:
        raise ApplianceError(f"{path} is not UTF-8 text") from None
    if not value:
        raise ApplianceError(f"{path} holds no passphrase on its first line")
    return value


def _passphrase(ctx: Ctx, *, confirm: bool = False) -> str:
    if ctx.args.passphrase_file:
        return _read_file_secret(ctx.args.passphrase_file)
    return read_secret("Backup passphrase: ", confirm=confirm)


def create_cmd(ctx: Ctx) -> None:
    """backup create."""
    from appliance.identity import load_identity
    from provisioning.backup import create_backup, default_name
    from provisioning.backup_archive import check_passphrase

    if ctx.args.output:
        out = Path(ctx.args.output)
    else:
        ident = load_identity(ctx.cfg.state_dir)
        out = Path(default_name(ident.hostname if ident else ctx.cfg.box.name))
    passphrase = check_passphrase(_passphrase(ctx, confirm=True))
    contents = create_backup(ctx.cfg, out, passphrase)
    if ctx.json:
        print_json({"file": str(out), **contents.summary()})
        return
    secrets = len(contents.secrets) if contents.vault_kind == "secrets" else "sealed file"
    print(
        f"backup written to {out} ({out.stat().st_size} bytes: database schema "
        f"{contents.db_schema}, {len(contents.files)} files, vault: {secrets})\n"
        "Keep the passphrase apart from the archive: without it nothing can be restored."
    )


def verify_cmd(ctx: Ctx) -> None:
    """backup verify."""
    from provisioning.backup import verify_backup

    summary = verify_backup(Path(ctx.args.file), _passphrase(ctx))
    if ctx.json:
        print_json({"ok": True, **summary})
        return
    print(f"{ctx.args.file}: OK (every segment, file hash and the database checked)")
    _print_summary(summary)


def _print_summary(s: dict[str, Any]) -> None:
    db, vault = s["database"], s["vault"]
    rows = [
        ("appliance", f"{s['hostname']} ({s['appliance_id'] or 'no identity'})"),
        ("created", f"{s['created_at']} by aigw {s['aigw']}"),
        (
            "database",
            f"schema {db['schema']} (this aigw: {db['this_software']}), "
            + ", ".join(f"{k} {v}" for k, v in db.items() if k not in ("schema", "this_software")),
        ),
        (
            "vault",
            "none"
            if vault["kind"] is None
            else "passphrase vault file"
            if vault["kind"] == "file"
            else f"{vault['secrets']} secrets",
        ),
        ("identity", ", ".join(s["identity"]) or "none"),
        ("config", s["config"] or "none (built-in defaults)"),
        ("models", ", ".join(s["models"]) or "none"),
    ]
    for key, value in rows:
        print(f"  {key:<9} {value}")


def restore_cmd(ctx: Ctx) -> None:
    """backup restore."""
    from provisioning.offline import systemctl
    from provisioning.restore import restore_backup

    args = ctx.args
    passphrase = _passphrase(ctx)
    vault_pass = (
        _read_file_secret(args.vault_passphrase_file) if args.vault_passphrase_file else None
    )
    if args.stop_gateway:
        systemctl("stop")
    try:
        result = restore_backup(
            ctx.cfg,
            Path(args.file),
            passphrase,
            take_identity=args.take_identity,
            vault_passphrase=vault_pass,
        )
    finally:
        if args.stop_gateway:  # restored or refused (then unchanged): the box serves again
            systemctl("start")
    if ctx.json:
        print_json(result.as_dict())
        return
    s = result.summary
    print(f"restored {args.file} (from {s['hostname']}, {s['created_at']})")
    print(f"  vault     {result.vault}")
    taken = result.identity == "restored"
    print(f"  identity  {'taken from the backup' if taken else 'this box kept its own'}")
    if s["database"]["schema"] < s["database"]["this_software"]:
        print("  database  an older schema: it is migrated when the gateway starts")
    if result.missing_models:
        print(
            f"  models    not on this box: {', '.join(result.missing_models)} "
            f"(manifests in {ctx.cfg.state_dir}/restored/models; import their bundles again)"
        )
    if not args.stop_gateway:
        print("Start the gateway: systemctl start aigw-gateway (or aigw up).")


def reset_cmd(ctx: Ctx) -> None:
    """factory-reset."""
    from provisioning.offline import refuse_while_running, systemctl
    from provisioning.reset import confirmation_word, factory_reset

    cfg = ctx.cfg
    expected = confirmation_word(cfg)
    confirm = ctx.args.confirm
    if confirm is None:
        if not sys.stdin.isatty():
            raise ApplianceError("give the appliance id with --confirm ID; nothing was changed")
        if not ctx.args.stop_gateway:
            refuse_while_running(cfg)
        print(
            f"This erases everything in {cfg.state_dir}: the database, the vault and its key, the "
            "identity, TLS, models.\nThe box returns to first boot. There is no undo.\n"
            f"Appliance id: {expected}",
            file=sys.stderr,
        )
        confirm = input("Type the appliance id to confirm: ")
    if confirm.strip() != expected:
        raise ApplianceError(
            f"the confirmation does not match the appliance id {expected}; nothing was changed"
        )
    if ctx.args.stop_gateway:
        systemctl("stop")
    result = factory_reset(cfg, confirm)
    if ctx.json:
        print_json(result.as_dict())
        return
    print(
        f"factory reset done: {len(result.removed)} entries removed, "
        f"{len(result.overwritten)} key files overwritten first"
        + (", the TPM drop-in removed" if result.dropin_removed else "")
        + ".\nThe box returns to first boot: reboot it, or run `systemctl start "
        "aigw-firstboot` (development: `aigw up`)."
    )
