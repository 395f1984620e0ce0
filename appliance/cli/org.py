"""`aigw departments|projects|users`: the organisation that keys and spending belong to."""

from __future__ import annotations

import argparse

from appliance.cli._common import SubParsers, limit, on_off, optional_text
from appliance.cli._crud import Collection, Opt, register

_DESCRIPTION = Opt("--description", "description", {"help": "free text"})
_NONE = " ('none' clears it)"
# Requests and tokens per minute, for all of its keys together.
_RATE_LIMITS = [
    Opt("--rpm", "rpm", {"type": limit, "help": "requests per minute" + _NONE}),
    Opt("--tpm", "tpm", {"type": limit, "help": "tokens per minute" + _NONE}),
]

DEPARTMENTS = Collection(
    "departments",
    "department",
    "name",
    ["name", "description", "created_at"],
    create=[_DESCRIPTION],
    update=[_DESCRIPTION, *_RATE_LIMITS],
    help="manage departments (the top of the chargeback tree)",
)
PROJECTS = Collection(
    "projects",
    "project",
    "name",
    ["name", "department", "description", "created_at"],
    create=[Opt("--department", "department", {"required": True}), _DESCRIPTION],
    update=[
        Opt("--department", "department", {"help": "move to this department"}),
        _DESCRIPTION,
        Opt(
            "--unpriced",
            "unpriced",
            {
                "choices": ["auto", "refuse", "allow"],
                "help": "a model without a price: refuse, allow at zero (with an alert), or "
                "auto (refuse where a hard budget applies)",
            },
        ),
        Opt(
            "--context-trim",
            "context_trim",
            {
                "type": on_off,
                "metavar": "on|off",
                "help": "trim the oldest turns of a prompt too long for every deployment",
            },
        ),
        Opt(
            "--sensitive-to-trusted",
            "sensitive_to_trusted",
            {
                "type": on_off,
                "metavar": "on|off",
                "help": "send a request in which a masking detector fired only to deployments "
                "trusted with confidential data",
            },
        ),
        Opt(
            "--retention",
            "retention",
            {
                "choices": ["none", "metadata", "full"],
                "help": "what is kept of each request's content: nothing, its metadata, or the "
                "full prompt and response encrypted in the vault",
            },
        ),
        Opt(
            "--retention-days",
            "retention_days",
            {"type": int, "help": "how long retained content is kept (1-3650 days)"},
        ),
        *_RATE_LIMITS,
    ],
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
    update=[*_USER_OPTS, *_RATE_LIMITS],
    filters=["department"],
    help="manage users (people keys can be issued to)",
)


def register_org(sub: SubParsers, common: argparse.ArgumentParser) -> None:
    """Add the organisation's commands."""
    for collection in (DEPARTMENTS, PROJECTS, USERS):
        register(sub, common, collection)
