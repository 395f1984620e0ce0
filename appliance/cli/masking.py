"""`aigw masking`: what each project does when a detector finds sensitive data in a prompt.

Rules are per project: a built-in detector (`aigw masking detectors`) or a custom one
(`custom:NAME` with `--pattern` or `--words`) and an action: allow, mask, redact or block.
`aigw masking test` shows what rules would do to a text before they are enabled; it prints
positions and the text as it would be sent, never the values found on their own.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from appliance.admin_client import segment
from appliance.cli._common import (
    Ctx,
    SubParsers,
    add_json,
    csv_list,
    emit_done,
    emit_object,
    emit_rows,
    print_json,
    table,
)
from appliance.errors import ApplianceError

ACTIONS = ("allow", "mask", "redact", "block")
RULE_COLUMNS = ["project", "detector", "action", "pattern", "words", "updated_at"]
FINDING_COLUMNS = ["start", "end", "detector", "action"]
_CUSTOM = "custom:"


def _pair(what: str) -> Any:
    """An argparse type for `KEY=VALUE` (split at the first '=')."""

    def parse(raw: str) -> tuple[str, str]:
        key, sep, value = raw.partition("=")
        if not sep or not key.strip():
            raise argparse.ArgumentTypeError(f"{raw!r}: use {what}")
        return key.strip(), value

    return parse


def register_masking(sub: SubParsers, common: argparse.ArgumentParser) -> None:
    """Add `aigw masking detectors|list|set|remove|test`."""
    top = sub.add_parser(
        "masking", parents=[common], help="mask, redact or block sensitive data per project"
    )
    actions = top.add_subparsers(dest="action", required=True, metavar="ACTION")

    det = actions.add_parser(
        "detectors", parents=[common], help="the built-in detectors and the actions"
    )
    add_json(det)
    det.set_defaults(func=list_detectors)

    ls = actions.add_parser("list", parents=[common], help="list masking rules")
    ls.add_argument("--project", help="only this project's rules")
    add_json(ls)
    ls.set_defaults(func=list_rules)

    st = actions.add_parser(
        "set", parents=[common], help="create or replace what a project does when a detector fires"
    )
    st.add_argument("project")
    st.add_argument("detector", help="a built-in detector, or custom:NAME with a pattern or words")
    st.add_argument("rule_action", metavar="ACTION", choices=ACTIONS, help=", ".join(ACTIONS))
    source = st.add_mutually_exclusive_group()
    source.add_argument("--pattern", metavar="RE", help="a custom detector's regular expression")
    source.add_argument(
        "--words", type=csv_list, metavar="W1,W2", help="a custom detector's words or phrases"
    )
    source.add_argument(
        "--words-file",
        metavar="FILE",
        help="a custom detector's words or phrases, one a line (blank lines skipped)",
    )
    add_json(st)
    st.set_defaults(func=set_rule)

    rm = actions.add_parser("remove", parents=[common], help="stop applying a detector")
    rm.add_argument("project")
    rm.add_argument("detector")
    add_json(rm)
    rm.set_defaults(func=remove_rule)

    ts = actions.add_parser(
        "test",
        parents=[common],
        help="show what rules would do to a text (a project's, given ones, or both)",
    )
    ts.add_argument("--project", help="use this project's rules")
    ts.add_argument(
        "--rule",
        action="append",
        type=_pair("DETECTOR=ACTION"),
        default=[],
        metavar="DETECTOR=ACTION",
        help="a rule to try (repeatable; over the project's rules with --project)",
    )
    ts.add_argument(
        "--pattern",
        action="append",
        type=_pair("NAME=RE"),
        default=[],
        metavar="NAME=RE",
        help="the regular expression of custom:NAME (repeatable)",
    )
    ts.add_argument(
        "--words",
        action="append",
        type=_pair("NAME=W1,W2"),
        default=[],
        metavar="NAME=W1,W2",
        help="the words of custom:NAME (repeatable)",
    )
    ts.add_argument("text", metavar="TEXT", help="the text to scan, or - to read standard input")
    add_json(ts)
    ts.set_defaults(func=try_rules)


def list_detectors(ctx: Ctx) -> None:
    """aigw masking detectors."""
    data = ctx.call("GET", "/masking/detectors")
    if ctx.json:
        print_json(data)
        return
    print(table(data["data"], ["name", "description"]))
    print()
    actions = [{"action": x["name"], "description": x["description"]} for x in data["actions"]]
    print(table(actions, ["action", "description"]))
    print()
    print(f"custom detectors: {data['custom']}")


def list_rules(ctx: Ctx) -> None:
    """aigw masking list."""
    rows = ctx.call("GET", "/masking/rules", query={"project": ctx.args.project})["data"]
    emit_rows(ctx, rows, RULE_COLUMNS)


def _words_file(path: str) -> list[str]:
    try:
        lines = Path(path).read_text(encoding="utf-8").splitlines()
    except FileNotFoundError:
        raise ApplianceError(f"{path} does not exist") from None
    except UnicodeDecodeError:
        raise ApplianceError(f"{path}: not UTF-8 text") from None
    return [w.strip() for w in lines if w.strip()]


def set_rule(ctx: Ctx) -> None:
    """aigw masking set."""
    a = ctx.args
    body: dict[str, Any] = {"action": a.rule_action}
    if a.pattern is not None:
        body["pattern"] = a.pattern
    if a.words is not None:
        body["words"] = a.words
    if a.words_file is not None:
        body["words"] = _words_file(a.words_file)
    row = ctx.call("PUT", f"/projects/{segment(a.project)}/masking/{segment(a.detector)}", body)
    emit_object(ctx, row, f"masking rule {a.project}/{a.detector}: {row['action']}")


def remove_rule(ctx: Ctx) -> None:
    """aigw masking remove."""
    a = ctx.args
    ctx.call("DELETE", f"/projects/{segment(a.project)}/masking/{segment(a.detector)}")
    emit_done(
        ctx,
        f"masking rule {a.project}/{a.detector} removed",
        removed={"project": a.project, "detector": a.detector},
    )


def _short(name: str) -> str:
    return name[len(_CUSTOM) :] if name.startswith(_CUSTOM) else name


def try_rules(ctx: Ctx) -> None:
    """aigw masking test."""
    a = ctx.args
    if a.project is None and not a.rule:
        raise ApplianceError("give --project, --rule DETECTOR=ACTION, or both")
    text = sys.stdin.read() if a.text == "-" else a.text
    body: dict[str, Any] = {"text": text}
    if a.project is not None:
        body["project"] = a.project
    if a.rule:
        body["rules"] = dict(a.rule)
    custom: dict[str, dict[str, Any]] = {}
    for name, pattern in a.pattern:
        custom[_short(name)] = {"pattern": pattern}
    for name, words in a.words:
        if _short(name) in custom:
            raise ApplianceError(f"custom:{_short(name)} has both --pattern and --words")
        custom[_short(name)] = {"words": csv_list(words)}
    if custom:
        body["custom"] = custom
    result = ctx.call("POST", "/masking/test", body)
    if ctx.json:
        print_json(result)
        return
    print(table(result["findings"], FINDING_COLUMNS))
    print()
    if result["blocked_by"] is not None:
        print(f"blocked by {result['blocked_by']}: the request would be refused")
    else:
        print(result["text"])
