"""`aigw config check|export|apply` and `aigw up`."""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
from pathlib import Path

from appliance import config_sync
from appliance.cli._common import Ctx, SubParsers, add_json, print_json
from appliance.errors import ApplianceError


def register_config(sub: SubParsers, common: argparse.ArgumentParser) -> None:
    """Add `aigw up` and `aigw config ...`."""
    up = sub.add_parser("up", parents=[common], help="run the gateway in the foreground")
    up.set_defaults(func=cmd_up)
    conf = sub.add_parser("config", parents=[common], help="static and run-time configuration")
    actions = conf.add_subparsers(dest="action", required=True, metavar="ACTION")
    check = actions.add_parser("check", parents=[common], help="validate the config file")
    check.set_defaults(func=check_config)
    export = actions.add_parser(
        "export", parents=[common], help="write the run-time configuration as TOML (no secrets)"
    )
    export.add_argument("--output", "-o", help="file to write (default: standard output)")
    export.set_defaults(func=export_config)
    apply = actions.add_parser(
        "apply", parents=[common], help="make the box match a file written by `config export`"
    )
    apply.add_argument("file")
    apply.add_argument("--dry-run", action="store_true", help="show the changes, make none")
    add_json(apply)
    apply.set_defaults(func=apply_config)


def cmd_up(ctx: Ctx) -> None:
    """Run the box in the foreground."""
    from appliance.runner import run

    run(ctx.cfg)


def check_config(ctx: Ctx) -> None:
    """Validate the configuration and say where it came from."""
    print(f"configuration OK ({ctx.cfg.source}); state directory {ctx.cfg.state_dir}")


def export_config(ctx: Ctx) -> None:
    """config export: to a file (written atomically) or to stdout."""
    text = config_sync.export_text(ctx.call)
    if not ctx.args.output:
        sys.stdout.write(text)
        return
    path = Path(ctx.args.output)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(fd, "w") as fh:
            fh.write(text)
        os.replace(tmp, path)
    except OSError as exc:
        Path(tmp).unlink(missing_ok=True)
        raise ApplianceError(f"cannot write {path}: {exc.strerror}") from None
    print(f"configuration written to {path}", file=sys.stderr)


def apply_config(ctx: Ctx) -> None:
    """config apply [--dry-run]."""
    path = Path(ctx.args.file)
    planned = config_sync.plan(ctx.call, config_sync.read_file(path), str(path))
    dry = ctx.args.dry_run
    if not dry and planned.changes:
        config_sync.apply(ctx.call, planned)
    if ctx.json:
        print_json(
            {
                "changes": [c.as_json() for c in planned.changes],
                "warnings": planned.warnings,
                "applied": not dry and bool(planned.changes),
            }
        )
        return
    for change in planned.changes:
        print(change.line())
    for warning in planned.warnings:
        print(f"! {warning}")
    if not planned.changes:
        print("no changes")
    elif dry:
        print(f"{len(planned.changes)} change(s) planned (dry run: nothing was changed)")
    else:
        print(f"{len(planned.changes)} change(s) applied")
