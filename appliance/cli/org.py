"""`aigw departments|projects|users`: the organisation that keys and spending belong to."""

from __future__ import annotations

import argparse

from appliance.cli._common import SubParsers, optional_text
from appliance.cli._crud import Collection, Opt, register

_DESCRIPTION = Opt("--description", "description", {"help": "free text"})
_NONE = " ('none' clears it)"

DEPARTMENTS = Collection(
    "departments",
    "department",
    "name",
    ["name", "description", "created_at"],
    create=[_DESCRIPTION],
    update=[_DESCRIPTION],
    help="manage departments (the top of the chargeback tree)",
)
PROJECTS = Collection(
    "projects",
    "project",
    "name",
    ["name", "department", "description", "created_at"],
    create=[Opt("--department", "department", {"required": True}), _DESCRIPTION],
    update=[Opt("--department", "department", {"help": "move to this department"}), _DESCRIPTION],
    filters=["department"],
    help="manage projects (keys belong to projects)",
)
_USER_OPTS = [
    Opt("--email", "email", {"type": optional_text, "help": "contact address" + _NONE}),
    Opt("--department", "department", {"type": optional_text, "help": "department" + _NONE}),
]
USERS = Collection(
    "users",
    "user",
    "name",
    ["name", "email", "department", "created_at"],
    create=_USER_OPTS,
    update=_USER_OPTS,
    filters=["department"],
    help="manage users (people keys can be issued to)",
)


def register_org(sub: SubParsers, common: argparse.ArgumentParser) -> None:
    """Add the organisation's commands."""
    for collection in (DEPARTMENTS, PROJECTS, USERS):
        register(sub, common, collection)
