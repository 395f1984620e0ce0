"""`aigw media handle DEVNODE` (what `aigw-media@.service` runs) and `aigw seed check|apply`."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from appliance.cli._common import Ctx, SubParsers, add_json, print_json
from appliance.errors import ApplianceError


def register_media(sub: SubParsers, common: argparse.ArgumentParser) -> None:
    """Add `aigw media ...` and `aigw seed ...`."""
    media = sub.add_parser("media", parents=[common], help="removable media (seed, bundles)")
    actions = media.add_subparsers(dest="action", required=True, metavar="ACTION")
    handle = actions.add_parser(
        "handle", parents=[common], help="mount a medium read-only and act on what it holds"
    )
    handle.add_argument("devnode", help="the block device, e.g. /dev/sdb1")
    add_json(handle)
    handle.set_defaults(func=handle_medium)
    last = actions.add_parser("last", parents=[common], help="the last medium's result")
    add_json(last)
    last.set_defaults(func=last_medium)
    seed = sub.add_parser("seed", parents=[common], help="seed files (aigw-seed.toml)")
    verbs = seed.add_subparsers(dest="action", required=True, metavar="ACTION")
    check = verbs.add_parser(
        "check", parents=[common], help="check a seed file against the box; change nothing"
    )
    check.add_argument("file")
    add_json(check)
    check.set_defaults(func=check_seed)
    apply = verbs.add_parser("apply", parents=[common], help="check a seed file, then apply it")
    apply.add_argument("file")
    add_json(apply)
    apply.set_defaults(func=apply_seed)


def _widen_timeout(ctx: Ctx) -> None:
    from provisioning.seed import IMPORT_TIMEOUT_S

    client = ctx.client
    client.timeout = max(client.timeout, IMPORT_TIMEOUT_S)


def handle_medium(ctx: Ctx) -> None:
    """media handle: the result on stdout (the journal); a failure is the exit status."""
    from provisioning.media import handle

    _widen_timeout(ctx)
    result = handle(ctx.cfg, ctx.args.devnode, ctx.call)
    if ctx.json:
        print_json(result.as_json())
    else:
        sys.stdout.write(result.text())
    if not result.ok:
        raise ApplianceError(f"{result.device}: {result.error}")


def last_medium(ctx: Ctx) -> None:
    """media last: what the console shows."""
    from provisioning.media import last_result

    last = last_result(ctx.cfg)
    if ctx.json:
        print_json(last)
    elif last is None:
        print("no medium handled yet")
    else:
        lines = [*last["lines"], *(f"! {w}" for w in last["warnings"])]
        head = f"{last['device']} at {last['at']}: {last['kind']}"
        print("\n".join([head, *lines, f"FAILED: {last['error']}" if last["error"] else "done"]))


def check_seed(ctx: Ctx) -> None:
    """seed check: what applying it would do."""
    from provisioning.seed import check

    seed = check(Path(ctx.args.file), ctx.call, ctx.cfg)
    if ctx.json:
        print_json({"changes": seed.summary(), "warnings": seed.plan.warnings})
        return
    for line in seed.summary() or ["no changes"]:
        print(line)
    for warning in seed.plan.warnings:
        print(f"! {warning}")
    print(f"{seed.path}: OK (nothing was changed)")


def apply_seed(ctx: Ctx) -> None:
    """seed apply: the result is printed and kept; it is written beside the file if it can be."""
    from appliance.identity import write_atomic
    from provisioning.media import MediaResult, save_result
    from provisioning.media import apply_seed as apply_file
    from provisioning.seed import RESULT_FILE

    path = Path(ctx.args.file).absolute()
    _widen_timeout(ctx)
    result = MediaResult("-", "seed", source=str(path))
    if apply_file(ctx.cfg, path, ctx.call, result) is None:
        raise ApplianceError(result.error or "the seed was refused")  # nothing was changed
    try:  # 0600: it may hold the secrets of the keys the seed issued
        target = path.parent / RESULT_FILE
        earlier = target.read_text(errors="replace") if target.is_file() else ""
        write_atomic(target, result.medium_text(earlier).encode(), 0o600)
        result.lines.append(f"result written to {path.parent / RESULT_FILE}")
    except OSError as exc:
        result.lines.append(f"result not written beside the file: {exc.strerror or exc}")
    save_result(ctx.cfg, result)
    if ctx.json:
        print_json(result.as_json())
    else:
        sys.stdout.write(result.text())
    if not result.ok:
        raise ApplianceError(result.error or "the seed was not applied")
