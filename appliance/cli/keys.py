"""`aigw keys` and `aigw admin token`: gateway keys and admin API tokens.

A secret is printed once, by `create` (and `rotate` for keys); lists and `show` never have it.
"""

from __future__ import annotations

import argparse
import sys
from typing import Any

from appliance.admin_client import segment
from appliance.cli._common import (
    Ctx,
    SubParsers,
    add_json,
    body_of,
    csv_list,
    emit_done,
    emit_object,
    emit_rows,
    expiry,
    limit,
    optional_text,
    print_json,
    seconds,
)
from appliance.errors import ApplianceError

KEY_COLUMNS = ["id", "name", "project", "user", "prefix", "status", "models", "expires_at"]
TOKEN_COLUMNS = ["id", "name", "role", "prefix", "created_at", "revoked_at"]
ONCE = "This secret will not be shown again: store it now."
# attribute → body field of the key policy options (create and update)
_POLICY = {
    "user": "user",
    "models": "models",
    "cidrs": "cidrs",
    "expires": "expires_at",
    "rpm": "rpm",
    "tpm": "tpm",
    "budget": "budget_micros",
    "tags": "tags",
}


def _policy_options(parser: argparse.ArgumentParser) -> None:
    none = " ('none' clears it)"
    parser.add_argument("--user", type=optional_text, help="the user holding the key" + none)
    parser.add_argument(
        "--models", type=csv_list, help="allowed models or globs, a,b* (empty: all)"
    )
    parser.add_argument("--cidrs", type=csv_list, help="allowed client networks (empty: all)")
    parser.add_argument(
        "--expires", type=expiry, help="ISO time (2027-01-01T00:00:00Z) or 90d from now" + none
    )
    parser.add_argument("--rpm", type=limit, help="requests per minute" + none)
    parser.add_argument("--tpm", type=limit, help="tokens per minute" + none)
    parser.add_argument("--budget", type=limit, help="budget in micro-units" + none)
    parser.add_argument("--tags", type=csv_list, help="report labels, a,b")


def _id_action(actions: SubParsers, common: argparse.ArgumentParser, name: str, text: str) -> Any:
    parser = actions.add_parser(name, parents=[common], help=text)
    parser.add_argument("id")
    add_json(parser)
    return parser


def register_keys(sub: SubParsers, common: argparse.ArgumentParser) -> None:
    """Add `aigw keys ...`."""
    top = sub.add_parser("keys", parents=[common], help="manage gateway keys")
    actions = top.add_subparsers(dest="action", required=True, metavar="ACTION")
    ls = actions.add_parser("list", parents=[common], help="list keys (never their secrets)")
    ls.add_argument("--project")
    ls.add_argument("--user")
    add_json(ls)
    ls.set_defaults(func=list_keys)
    create = actions.add_parser("create", parents=[common], help="issue a key (secret shown once)")
    create.add_argument("--project", required=True)
    create.add_argument("--name", required=True)
    _policy_options(create)
    add_json(create)
    create.set_defaults(func=create_key)
    _id_action(actions, common, "show", "show a key").set_defaults(func=show_key)
    update = _id_action(actions, common, "update", "change a key's policy")
    update.add_argument("--name")
    _policy_options(update)
    update.set_defaults(func=update_key)
    rotate = _id_action(actions, common, "rotate", "issue a new secret (shown once)")
    rotate.add_argument(
        "--grace", type=seconds, help="how long the old secret keeps working (default 24h; 0)"
    )
    rotate.set_defaults(func=rotate_key)
    for action, text in (
        ("disable", "stop a key from working, reversibly"),
        ("enable", "let a disabled key work again"),
        ("revoke", "end a key for good"),
    ):
        parser = _id_action(actions, common, action, text)
        parser.set_defaults(func=lambda ctx, a=action: key_action(ctx, a))
    _id_action(actions, common, "delete", "delete a revoked key").set_defaults(func=delete_key)


def list_keys(ctx: Ctx) -> None:
    """keys list."""
    query = {"project": ctx.args.project, "user": ctx.args.user}
    emit_rows(ctx, ctx.call("GET", "/keys", query=query)["data"], KEY_COLUMNS)


def _show_secret(ctx: Ctx, row: dict[str, Any], secret_field: str, headline: str) -> None:
    """The one time a secret is printed."""
    if ctx.json:
        print_json(row)
        print(ONCE, file=sys.stderr)
        return
    print(headline)
    print(f"secret: {row[secret_field]}")
    print(ONCE)


def create_key(ctx: Ctx) -> None:
    """keys create."""
    body = {"project": ctx.args.project, "name": ctx.args.name, **body_of(ctx.args, _POLICY)}
    row = ctx.call("POST", "/keys", body)
    _show_secret(ctx, row, "secret", f"key {row['id']} ({row['name']}) issued to {row['project']}")


def show_key(ctx: Ctx) -> None:
    """keys show."""
    emit_object(ctx, ctx.call("GET", f"/keys/{segment(ctx.args.id)}"))


def update_key(ctx: Ctx) -> None:
    """keys update."""
    body = body_of(ctx.args, {"name": "name", **_POLICY})
    if not body:
        raise ApplianceError("nothing to change: give at least one option (see --help)")
    row = ctx.call("PATCH", f"/keys/{segment(ctx.args.id)}", body)
    emit_object(ctx, row, f"key {row['id']} updated")


def rotate_key(ctx: Ctx) -> None:
    """keys rotate."""
    body = {} if ctx.args.grace is None else {"grace_seconds": ctx.args.grace}
    row = ctx.call("POST", f"/keys/{segment(ctx.args.id)}/rotate", body)
    until = row.get("prev_expires_at")
    old = f"the old secret works until {until}" if until else "the old secret no longer works"
    _show_secret(ctx, row, "secret", f"key {row['id']} rotated; {old}")


def key_action(ctx: Ctx, action: str) -> None:
    """keys disable|enable|revoke."""
    row = ctx.call("POST", f"/keys/{segment(ctx.args.id)}/{action}")
    emit_object(ctx, row, f"key {row['id']} {row['status']}")


def delete_key(ctx: Ctx) -> None:
    """keys delete."""
    ctx.call("DELETE", f"/keys/{segment(ctx.args.id)}")
    emit_done(ctx, f"key {ctx.args.id} deleted", deleted=ctx.args.id)


def register_admin(sub: SubParsers, common: argparse.ArgumentParser) -> None:
    """Add `aigw admin token create|list|show|revoke`."""
    from gateway.tenancy.tokens import ROLES

    admin = sub.add_parser("admin", parents=[common], help="admin API access")
    nouns = admin.add_subparsers(dest="noun", required=True, metavar="NOUN")
    token = nouns.add_parser("token", parents=[common], help="admin API tokens")
    actions = token.add_subparsers(dest="action", required=True, metavar="ACTION")
    create = actions.add_parser("create", parents=[common], help="create a token (shown once)")
    create.add_argument("--role", required=True, choices=ROLES)
    create.add_argument("--name", help="what the token is for (default: <role>-token)")
    add_json(create)
    create.set_defaults(func=create_token)
    ls = actions.add_parser("list", parents=[common], help="list tokens (never their secrets)")
    add_json(ls)
    ls.set_defaults(func=list_tokens)
    _id_action(actions, common, "show", "show a token").set_defaults(func=show_token)
    _id_action(actions, common, "revoke", "revoke a token").set_defaults(func=revoke_token)


def create_token(ctx: Ctx) -> None:
    """admin token create."""
    body = {"role": ctx.args.role, "name": ctx.args.name or f"{ctx.args.role}-token"}
    row = ctx.call("POST", "/admin-tokens", body)
    _show_secret(ctx, row, "token", f"admin token {row['id']} ({row['role']}) created")


def list_tokens(ctx: Ctx) -> None:
    """admin token list."""
    emit_rows(ctx, ctx.call("GET", "/admin-tokens")["data"], TOKEN_COLUMNS)


def show_token(ctx: Ctx) -> None:
    """admin token show."""
    emit_object(ctx, ctx.call("GET", f"/admin-tokens/{segment(ctx.args.id)}"))


def revoke_token(ctx: Ctx) -> None:
    """admin token revoke."""
    row = ctx.call("POST", f"/admin-tokens/{segment(ctx.args.id)}/revoke")
    emit_object(ctx, row, f"admin token {row['id']} revoked")
