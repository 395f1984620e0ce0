"""Commands for a named admin collection: list, add, show, update, remove."""

from __future__ import annotations

import argparse
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from appliance.admin_client import segment
from appliance.cli._common import (
    Ctx,
    SubParsers,
    add_json,
    body_of,
    emit_done,
    emit_object,
    emit_rows,
)
from appliance.errors import ApplianceError


@dataclass(frozen=True)
class Opt:
    """One option of add/update: its flag, the body field it fills, argparse settings."""

    flag: str
    body_field: str
    settings: dict[str, Any] = field(default_factory=dict)

    @property
    def dest(self) -> str:
        """The argparse attribute."""
        return self.flag.lstrip("-").replace("-", "_")


@dataclass(frozen=True)
class Collection:
    """A collection of the admin API named by one field (`name` or `alias`)."""

    plural: str
    singular: str
    key: str
    columns: list[str]
    create: list[Opt]
    update: list[Opt] | None = None
    filters: list[str] = field(default_factory=list)
    help: str = ""
    # What `add` says about the new member (default: "<singular> <name> added").
    added: Callable[[dict[str, Any]], str] | None = None

    def item(self, name: str) -> str:
        """The path of one member."""
        return f"/{self.plural}/{segment(name)}"


def register(sub: SubParsers, common: argparse.ArgumentParser, c: Collection) -> SubParsers:
    """Add `aigw <plural> list|add|show|update|remove`; returns the actions, to add more."""
    top = sub.add_parser(c.plural, parents=[common], help=c.help or f"manage {c.plural}")
    actions = top.add_subparsers(dest="action", required=True, metavar="ACTION")
    ls = actions.add_parser("list", parents=[common], help=f"list {c.plural}")
    for name in c.filters:
        ls.add_argument(f"--{name}", help=f"only those of this {name}")
    add_json(ls)
    ls.set_defaults(func=lambda ctx: _list(ctx, c))
    add = actions.add_parser("add", parents=[common], help=f"add a {c.singular}")
    add.add_argument(c.key)
    for opt in c.create:
        add.add_argument(opt.flag, dest=opt.dest, **opt.settings)
    add_json(add)
    add.set_defaults(func=lambda ctx: _add(ctx, c))
    show = actions.add_parser("show", parents=[common], help=f"show a {c.singular}")
    show.add_argument(c.key)
    add_json(show)
    show.set_defaults(func=lambda ctx: _show(ctx, c))
    if c.update is not None:
        upd = actions.add_parser("update", parents=[common], help=f"change a {c.singular}")
        upd.add_argument(c.key)
        for opt in c.update:
            upd.add_argument(opt.flag, dest=opt.dest, **opt.settings)
        add_json(upd)
        upd.set_defaults(func=lambda ctx: _update(ctx, c))
    rm = actions.add_parser("remove", parents=[common], help=f"remove a {c.singular}")
    rm.add_argument(c.key)
    add_json(rm)
    rm.set_defaults(func=lambda ctx: _remove(ctx, c))
    return actions


def _list(ctx: Ctx, c: Collection) -> None:
    query = {name: getattr(ctx.args, name, None) for name in c.filters}
    emit_rows(ctx, ctx.call("GET", f"/{c.plural}", query=query)["data"], c.columns)


def _add(ctx: Ctx, c: Collection) -> None:
    name = getattr(ctx.args, c.key)
    body = {c.key: name, **body_of(ctx.args, {o.dest: o.body_field for o in c.create})}
    row = ctx.call("POST", f"/{c.plural}", body)
    emit_object(ctx, row, c.added(row) if c.added else f"{c.singular} {name} added")


def _show(ctx: Ctx, c: Collection) -> None:
    emit_object(ctx, ctx.call("GET", c.item(getattr(ctx.args, c.key))))


def _update(ctx: Ctx, c: Collection) -> None:
    name = getattr(ctx.args, c.key)
    body = body_of(ctx.args, {o.dest: o.body_field for o in c.update or []})
    if not body:
        flags = ", ".join(o.flag for o in c.update or [])
        raise ApplianceError(f"nothing to change: give at least one of {flags}")
    row = ctx.call("PATCH", c.item(name), body)
    emit_object(ctx, row, f"{c.singular} {name} updated")


def _remove(ctx: Ctx, c: Collection) -> None:
    name = getattr(ctx.args, c.key)
    ctx.call("DELETE", c.item(name))
    emit_done(ctx, f"{c.singular} {name} removed", removed=name)
