"""The run-time configuration as a TOML file: `aigw config export` and `aigw config apply`.

The file holds departments, projects, users, providers (the name of a key's environment
variable, never a key), models and key *policies* (never hashes or secrets), each a table
named by its name (`[projects.web]`, `[keys.key_abc]`). Both directions go through the admin
API, so what apply changes is validated and audited like any other admin change.

Apply makes the box match the file: it creates, updates and deletes departments, users,
projects, providers and models in dependency order (deletes in reverse). Keys are matched by
id; apply changes the policy (and active/disabled/revoked status) of keys that exist, reports
those that do not (a key's secret is issued only by `aigw keys create`), and never deletes one.
Providers and models have no update in the API: a changed one is deleted and created again
(the models of a re-created provider with it). Routes (`[routes.ALIAS]`, see
`appliance.config_routes`) are written whole, after the providers and models they name, in
fallback order; one whose provider or fallback target is re-created or deleted is deleted
first and written again.

A project's settings (`context_trim`, `sensitive_to_trusted`, `retention`, `retention_days`)
sit in its table, and its masking rules in a `masking` table under it: a built-in detector
names its action, a custom detector (`custom:NAME`) is a table with its action and exactly one
of `pattern` (a regular expression) or `words`:

    [projects.web]
    department = "eng"
    sensitive_to_trusted = true
    retention = "metadata"

    [projects.web.masking]
    card = "block"
    email = "mask"

    [projects.web.masking."custom:codenames"]
    action = "redact"
    words = ["falcon", "blue harbor"]

Rules are compared one by one and written with the admin API's PUT (create or replace) after
the projects, and removed before a project is. Every rule is checked here first, each project's
set compiled as the gateway would compile it, so a bad pattern stops apply before any change.
"""

from __future__ import annotations

import ipaddress
import tomllib
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson
import tomli_w

from appliance import config_routes
from appliance.admin_client import AdminAPIError, segment
from appliance.errors import ApplianceError

FORMAT_VERSION = 1
BUILTIN_PROVIDER = "local"  # the box's engines; models and routes may name it
HEADER = (
    "# aigw run-time configuration (aigw config export); apply with: aigw config apply FILE\n"
    "# Secrets are never in this file: provider API keys stay in the vault or the environment,\n"
    "# gateway keys are listed by id with their policy only.\n"
)

Call = Callable[..., Any]  # AdminClient-like: call(method, path, body=None, query=None) -> JSON


@dataclass(frozen=True)
class Spec:
    """One field of an object in the file: its TOML type, and what its absence means."""

    type: str  # "str", "int", "bool" or "list"
    required: bool = False
    default: Any = None  # the value an absent field stands for
    loose: bool = False  # absent means "whatever the box has" (a default the box fills in)
    create: bool = True  # the API's create takes it; else a change right after the create


@dataclass(frozen=True)
class Kind:
    """A section of the file and the admin API collection behind it."""

    section: str
    what: str
    key: str
    fields: dict[str, Spec]
    updatable: bool = True
    refs: dict[str, str] = field(default_factory=dict)  # field → section it names


_TEXT = Spec("str", default="")
KINDS: dict[str, Kind] = {
    k.section: k
    for k in (
        Kind("departments", "department", "name", {"description": _TEXT}),
        Kind(
            "users",
            "user",
            "name",
            {"email": Spec("str"), "department": Spec("str")},
            refs={"department": "departments"},
        ),
        Kind(
            "projects",
            "project",
            "name",
            {
                "department": Spec("str", required=True),
                "description": _TEXT,
                "context_trim": Spec("bool", default=False, create=False),
                "sensitive_to_trusted": Spec("bool", default=False, create=False),
                "retention": Spec("str", default="none", create=False),
                "retention_days": Spec("int", default=30, create=False),
            },
            refs={"department": "departments"},
        ),
        Kind(
            "providers",
            "provider",
            "name",
            {
                "kind": Spec("str", required=True),
                "base_url": Spec("str", loose=True),
                "api_key_env": Spec("str"),
                "api_version": Spec("str", loose=True),
            },
            updatable=False,
        ),
        Kind(
            "models",
            "model",
            "alias",
            {"provider": Spec("str", required=True), "upstream_model": Spec("str", required=True)},
            updatable=False,
            refs={"provider": "providers"},
        ),
        Kind(
            "keys",
            "key",
            "id",
            {
                "name": Spec("str", required=True),
                "project": Spec("str", required=True),
                "user": Spec("str"),
                "models": Spec("list", default=[]),
                "cidrs": Spec("list", default=[]),
                "expires_at": Spec("str"),
                "rpm": Spec("int"),
                "tpm": Spec("int"),
                "budget_micros": Spec("int"),
                "tags": Spec("list", default=[]),
                "status": Spec("str", default="active"),
            },
            refs={"project": "projects", "user": "users"},
        ),
    )
}
ROUTES = "routes"  # the section of routes: nested tables, not a flat `Kind`
SECTIONS = (*KINDS, ROUTES)
# Masking rules: project → detector → rule, written under each project as `masking`.
MASKING = "masking"
RULE_FIELDS = ("action", "pattern", "words")
KEY_STATUSES = ("active", "disabled", "revoked")
RETENTION_MODES = ("none", "metadata", "full")  # gateway.tenancy.store's
Objects = dict[str, dict[str, dict[str, Any]]]  # section → name → fields
Step = tuple[tuple[int, int], str, str, Any]  # (phase, order), method, path, body


# --- reading the box and the file -----------------------------------------------------------


def _entry(kind: Kind, row: dict[str, Any]) -> dict[str, Any]:
    """An API row as a file entry: the kind's fields, absent ones at their default."""
    return {f: row.get(f, spec.default) for f, spec in kind.fields.items()}


def read_box(call: Call) -> Objects:
    """Everything the file describes, as the box has it now."""
    out: Objects = {}
    for kind in KINDS.values():
        rows = call("GET", f"/{kind.section}")["data"]
        if kind.section == "providers":  # the box's own engines: built in, not configured
            rows = [r for r in rows if r["name"] != BUILTIN_PROVIDER]
        out[kind.section] = {row[kind.key]: _entry(kind, row) for row in rows}
    rows = call("GET", f"/{ROUTES}")["data"]
    out[ROUTES] = {row["alias"]: config_routes.route_entry(row) for row in rows}
    out[MASKING] = {}
    for row in call("GET", f"/{MASKING}/rules")["data"]:
        rule = {f: row.get(f) for f in RULE_FIELDS}
        out[MASKING].setdefault(row["project"], {})[row["detector"]] = rule
    return out


def _export_rules(rules: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """A project's rules as its `masking` table: an action, or a custom detector's table."""
    out: dict[str, Any] = {}
    for detector in sorted(rules):
        rule = rules[detector]
        if rule["pattern"] is None and rule["words"] is None:
            out[detector] = rule["action"]
        else:
            out[detector] = {f: rule[f] for f in RULE_FIELDS if rule[f] is not None}
    return out


def export_text(call: Call) -> str:
    """The box's run-time configuration as TOML (stable: the same box gives the same text)."""
    doc: dict[str, Any] = {"version": FORMAT_VERSION}
    box = read_box(call)
    masking = box.pop(MASKING)
    for section, objects in box.items():
        if section == ROUTES:
            if objects:
                doc[ROUTES] = {n: config_routes.export_route(objects[n]) for n in sorted(objects)}
            continue
        kind = KINDS[section]
        table = {}
        for name in sorted(objects):
            values = objects[name]
            table[name] = {
                f: v
                for f, v in values.items()
                if v is not None and (v != kind.fields[f].default or f == "status")
            }
            if section == "projects" and masking.get(name):
                table[name][MASKING] = _export_rules(masking[name])
        if table:
            doc[section] = table
    return HEADER + tomli_w.dumps(doc)


def _type_ok(spec: Spec, value: Any) -> bool:
    if spec.type == "bool":
        return isinstance(value, bool)
    if spec.type == "int":
        return isinstance(value, int) and not isinstance(value, bool)
    if spec.type == "list":
        return isinstance(value, list) and all(isinstance(v, str) for v in value)
    return isinstance(value, str)


_TYPE_NAMES = {
    "str": "a string",
    "int": "an integer",
    "bool": "true or false",
    "list": "an array of strings",
}


def _check_entry(kind: Kind, name: str, raw: Any, where: str) -> dict[str, Any]:
    here = f"{where}: [{kind.section}.{name}]"
    if not isinstance(raw, dict):
        raise ApplianceError(f"{here} must be a table")
    unknown = sorted(set(raw) - set(kind.fields))
    if unknown:
        allowed = ", ".join(kind.fields)
        raise ApplianceError(f"{here} unknown key {unknown[0]!r}; allowed: {allowed}")
    entry: dict[str, Any] = {}
    for f, spec in kind.fields.items():
        if f not in raw:
            if spec.required:
                raise ApplianceError(f"{here} {f} is required")
            if not spec.loose:
                entry[f] = spec.default
            continue
        if not _type_ok(spec, raw[f]):
            raise ApplianceError(f"{here} {f} must be {_TYPE_NAMES[spec.type]}, got {raw[f]!r}")
        entry[f] = raw[f]
    if kind.section == "keys":
        _normalise_key(entry, here)
    if kind.section == "projects":
        _check_project(entry, here)
    if entry.get("base_url"):
        entry["base_url"] = entry["base_url"].rstrip("/")
    return entry


def _normalise_key(entry: dict[str, Any], here: str) -> None:
    """Write a key's values the way the box stores them, so an unchanged key compares equal."""
    if entry["status"] not in KEY_STATUSES:
        raise ApplianceError(f"{here} status must be one of {', '.join(KEY_STATUSES)}")
    for name in ("models", "tags"):
        entry[name] = list(dict.fromkeys(entry[name]))
    try:
        nets = [str(ipaddress.ip_network(c, strict=False)) for c in entry["cidrs"]]
    except ValueError as exc:
        raise ApplianceError(f"{here} cidrs: {exc}") from None
    entry["cidrs"] = list(dict.fromkeys(nets))
    if entry["expires_at"] is not None:
        try:
            when = datetime.fromisoformat(entry["expires_at"])
        except ValueError:
            when = None
        if when is None or when.tzinfo is None:
            raise ApplianceError(
                f"{here} expires_at must be an ISO-8601 time with a zone, e.g. 2030-01-31T00:00:00Z"
            )
        when = when.astimezone(UTC)
        entry["expires_at"] = when.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _check_project(entry: dict[str, Any], here: str) -> None:
    """Refuse up front the project settings the box would refuse."""
    if entry.get("retention", "none") not in RETENTION_MODES:
        raise ApplianceError(f"{here} retention must be one of {', '.join(RETENTION_MODES)}")
    days = entry.get("retention_days", 30)
    if not 1 <= days <= 3650:
        raise ApplianceError(f"{here} retention_days must be 1 to 3650, got {days}")


def _check_rules(raw: Any, here: str) -> dict[str, dict[str, Any]]:
    """A project's `masking` table as detector → rule, checked and compiled the way the box
    checks and compiles it."""
    from gateway.errors import GatewayError
    from gateway.masking.store import policy_of

    if not isinstance(raw, dict):
        raise ApplianceError(f"{here} must be a table of detector = action")
    rules: dict[str, dict[str, Any]] = {}
    for detector, value in raw.items():
        at = f"{here} {detector!r}"
        spec = {"action": value} if not isinstance(value, dict) else value
        unknown = sorted(set(spec) - set(RULE_FIELDS))
        if unknown:
            raise ApplianceError(
                f"{at} unknown key {unknown[0]!r}; allowed: action, pattern, words"
            )
        if "action" not in spec:
            raise ApplianceError(f"{at} action is required")
        rule = {f: spec.get(f) for f in RULE_FIELDS}
        if not isinstance(rule["action"], str):
            raise ApplianceError(f"{at} action must be a string, got {rule['action']!r}")
        if rule["pattern"] is not None and not isinstance(rule["pattern"], str):
            raise ApplianceError(f"{at} pattern must be a string, got {rule['pattern']!r}")
        if rule["words"] is not None and not _type_ok(Spec("list"), rule["words"]):
            raise ApplianceError(f"{at} words must be an array of strings, got {rule['words']!r}")
        rules[detector] = rule
    try:
        policy_of([{"detector": d, **r} for d, r in rules.items()])
    except GatewayError as exc:
        raise ApplianceError(f"{here} {exc.message}") from None
    return rules


def parse_file(data: dict[str, Any], where: str) -> Objects:
    """Validate a parsed file; every message names the section, object and key at fault."""
    unknown = sorted(set(data) - set(SECTIONS) - {"version"})
    if unknown:
        allowed = ", ".join(f"[{s}]" for s in SECTIONS)
        raise ApplianceError(f"{where}: unknown section [{unknown[0]}]; allowed: {allowed}")
    version = data.get("version", FORMAT_VERSION)
    if version != FORMAT_VERSION:
        raise ApplianceError(f"{where}: version must be {FORMAT_VERSION}, got {version!r}")
    out: Objects = {MASKING: {}}
    for section, kind in KINDS.items():
        raw = data.get(section, {})
        if not isinstance(raw, dict):
            raise ApplianceError(f"{where}: [{section}] must be a table of tables")
        if section == "projects":
            for name, v in raw.items():
                if isinstance(v, dict) and MASKING in v:
                    here = f"{where}: [projects.{name}.{MASKING}]"
                    out[MASKING][name] = _check_rules(v[MASKING], here)
            raw = {n: _without(v, MASKING) for n, v in raw.items()}
        out[section] = {name: _check_entry(kind, name, v, where) for name, v in raw.items()}
    out[ROUTES] = _check_routes(data.get(ROUTES, {}), out, where)
    for section, kind in KINDS.items():
        for name, entry in out[section].items():
            for f, target in kind.refs.items():
                ref = entry.get(f)
                if target == "providers" and ref == BUILTIN_PROVIDER:
                    continue
                if ref is not None and ref not in out[target]:
                    raise ApplianceError(
                        f"{where}: [{section}.{name}] {f} {ref!r} is not in [{target}] of the file"
                    )
    return out


def _without(value: Any, key: str) -> Any:
    return {k: v for k, v in value.items() if k != key} if isinstance(value, dict) else value


def _check_routes(raw: Any, out: Objects, where: str) -> dict[str, dict[str, Any]]:
    """The file's routes, with the providers and fallbacks they name in the file."""
    if not isinstance(raw, dict):
        raise ApplianceError(f"{where}: [{ROUTES}] must be a table of tables")
    routes = {n: config_routes.check_route(v, f"{where}: [{ROUTES}.{n}]") for n, v in raw.items()}
    for name, entry in routes.items():
        here = f"{where}: [{ROUTES}.{name}]"
        if name in out["models"]:
            raise ApplianceError(f"{here} is also in [models]; an alias is a route or a model")
        for provider in sorted(config_routes.providers_of(entry)):
            if provider not in out["providers"] and provider != BUILTIN_PROVIDER:
                raise ApplianceError(f"{here} provider {provider!r} is not in [providers]")
        fallback = entry["fallback_alias"]
        if fallback is not None and fallback not in routes and fallback not in out["models"]:
            raise ApplianceError(
                f"{here} fallback_alias {fallback!r} is in neither [routes] nor [models]"
            )
    return routes


def read_file(path: Path) -> Objects:
    """Load and validate a configuration file."""
    try:
        with path.open("rb") as fh:
            data = tomllib.load(fh)
    except FileNotFoundError:
        raise ApplianceError(f"{path} does not exist") from None
    except tomllib.TOMLDecodeError as exc:
        raise ApplianceError(f"{path}: not valid TOML: {exc}") from None
    except OSError as exc:
        raise ApplianceError(f"{path}: cannot read: {exc.strerror}") from None
    return parse_file(data, str(path))


# --- the plan -------------------------------------------------------------------------------

# Phases: deletes of catalog objects first (a replaced provider frees its name), organisation
# creates and updates, masking rules of the projects, key policies, organisation deletes,
# catalog creates last.
DEL_ROUTES, DEL_MODELS, DEL_PROVIDERS, ORG, RULES, KEYS, DEL_ORG = range(7)
NEW_PROVIDERS, NEW_MODELS, NEW_ROUTES = range(7, 10)
_UPSERT_PHASE = {"departments": ORG, "users": ORG, "projects": ORG}
_DELETE_PHASE = {"models": DEL_MODELS, "providers": DEL_PROVIDERS}
_CREATE_PHASE = {"providers": NEW_PROVIDERS, "models": NEW_MODELS}
# Within the organisation phases, parents before children (and children first for deletes).
_ORG_ORDER = {"departments": 0, "users": 1, "projects": 2}


@dataclass
class Change:
    """One line of the plan and the API calls that carry it out, each in its phase."""

    op: str  # "+", "~" or "-"
    what: str
    name: str
    detail: str = ""
    steps: list[Step] = field(default_factory=list)

    def line(self) -> str:
        """How the plan shows this change."""
        return f"{self.op} {self.what} {self.name}" + (f": {self.detail}" if self.detail else "")

    def as_json(self) -> dict[str, Any]:
        """The change for --json."""
        return {"op": self.op, "type": self.what, "name": self.name, "detail": self.detail}


@dataclass
class Plan:
    """What apply would do, and what it cannot do (reported, not an error)."""

    changes: list[Change] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)


def _show(value: Any) -> str:
    return orjson.dumps(value).decode()


def _diff(kind: Kind, have: dict[str, Any], want: dict[str, Any]) -> dict[str, tuple[Any, Any]]:
    """Fields whose value changes (fields the file leaves loose are not compared)."""
    return {f: (have.get(f), v) for f, v in want.items() if have.get(f) != v}


def _describe(changes: dict[str, tuple[Any, Any]]) -> str:
    return ", ".join(f"{f} {_show(a)} → {_show(b)}" for f, (a, b) in changes.items())


def _create_body(kind: Kind, name: str, want: dict[str, Any]) -> dict[str, Any]:
    body = {kind.key: name}
    body.update({f: v for f, v in want.items() if v is not None and v != kind.fields[f].default})
    return body


def _on_create(kind: Kind, f: str) -> bool:
    """Whether the API's create takes field `f` (the key field is not in `fields`)."""
    return f not in kind.fields or kind.fields[f].create


def _path(kind: Kind, name: str) -> str:
    return f"/{kind.section}/{segment(name)}"


def _org_and_catalog(plan: Plan, box: Objects, file: Objects) -> None:
    """Creates, updates, replacements and deletes of everything but keys."""
    replaced_providers: set[str] = set()
    for section in ("departments", "users", "projects", "providers", "models"):
        kind = KINDS[section]
        have_all, want_all = box[section], file[section]
        order = _ORG_ORDER.get(section, 0)
        for name, want in want_all.items():
            have = have_all.get(name)
            create = (_CREATE_PHASE.get(section, ORG), order), "POST", f"/{section}"
            if have is None:
                body = _create_body(kind, name, want)
                # Settings the create does not take follow it as a change (same phase: after).
                later = {f: body.pop(f) for f in list(body) if not _on_create(kind, f)}
                steps = [(*create, body)]
                if later:
                    steps.append(((ORG, order), "PATCH", _path(kind, name), later))
                plan.changes.append(Change("+", kind.what, name, steps=steps))
                continue
            diff = _diff(kind, have, want)
            replaced = section == "models" and have["provider"] in replaced_providers
            if not diff and not replaced:
                continue
            if kind.updatable:
                body = {f: b for f, (_, b) in diff.items()}
                step: Step = ((ORG, order), "PATCH", _path(kind, name), body)
                plan.changes.append(Change("~", kind.what, name, _describe(diff), [step]))
                continue
            if section == "providers":
                replaced_providers.add(name)
            why = _describe(diff) if diff else f"its provider {have['provider']} is re-created"
            delete: Step = ((_DELETE_PHASE[section], 0), "DELETE", _path(kind, name), None)
            full = want if "kind" in diff else {**have, **want}  # loose fields stay the box's
            steps = [delete, (*create, _create_body(kind, name, full))]
            plan.changes.append(Change("~", kind.what, name, f"re-created: {why}", steps))
        for name in sorted(set(have_all) - set(want_all)):
            phase = _DELETE_PHASE.get(section, DEL_ORG)
            step = ((phase, -order), "DELETE", _path(kind, name), None)
            plan.changes.append(Change("-", kind.what, name, steps=[step]))


def _keys(plan: Plan, box: Objects, file: Objects) -> None:
    """Policy and status changes of keys that exist; the others are reported."""
    kind = KINDS["keys"]
    for key_id, want in file["keys"].items():
        have = box["keys"].get(key_id)
        if have is None:
            plan.warnings.append(
                f"key {key_id} ({want['name']}) is not on this box: apply never creates keys; "
                "issue one with `aigw keys create`"
            )
            continue
        if have["project"] != want["project"]:
            plan.warnings.append(
                f"key {key_id}: its project cannot change (box: {have['project']}, "
                f"file: {want['project']}); left as it is"
            )
        if have["status"] == "revoked":
            if want["status"] != "revoked" or _diff(kind, have, want):
                plan.warnings.append(f"key {key_id} is revoked on this box and stays as it is")
            continue
        policy = {k: v for k, v in want.items() if k not in ("project", "status")}
        diff = _diff(kind, have, policy)
        steps: list[Step] = []
        if diff:
            body = {f: b for f, (_, b) in diff.items()}
            steps.append(((KEYS, 0), "PATCH", _path(kind, key_id), body))
        if want["status"] != have["status"]:
            diff["status"] = (have["status"], want["status"])
            action = {"active": "enable", "disabled": "disable", "revoked": "revoke"}
            path = f"{_path(kind, key_id)}/{action[want['status']]}"
            steps.append(((KEYS, 1), "POST", path, None))
        if steps:
            plan.changes.append(Change("~", "key", key_id, _describe(diff), steps))


def _check_deletes(box: Objects, file: Objects, where: str) -> None:
    """Refuse up front the deletes the box would refuse: projects and users that hold keys."""
    for key_id, key in box["keys"].items():
        project = key["project"]
        if project not in file["projects"]:
            raise ApplianceError(
                f"project {project!r} is not in {where} but key {key_id} belongs to it; keep the "
                "project in the file, or revoke and delete its keys first"
            )
        wanted = file["keys"].get(key_id)
        user = wanted["user"] if wanted is not None and key["status"] != "revoked" else key["user"]
        if user is not None and user not in file["users"]:
            raise ApplianceError(
                f"user {user!r} is not in {where} but key {key_id} is held by them; keep the user "
                "in the file, or move or delete the key first"
            )


def _deleted(plan: Plan, what: str) -> set[str]:
    """The objects of one type that the plan deletes (removed or re-created)."""
    return {
        c.name for c in plan.changes if c.what == what and any(s[1] == "DELETE" for s in c.steps)
    }


def _routes(plan: Plan, box: Objects, file: Objects) -> None:
    """Routes written (PUT) after the catalog, deleted before it, both in fallback order."""
    have_all, want_all = box[ROUTES], file[ROUTES]
    gone_providers, gone_models = _deleted(plan, "provider"), _deleted(plan, "model")
    # A route on the box must go before what it uses goes, and so must every route that
    # falls back to a route that goes.
    gone = {
        name
        for name, have in have_all.items()
        if name not in want_all
        or config_routes.providers_of(have) & gone_providers
        or have["fallback_alias"] in gone_models
    }
    while more := {n for n, h in have_all.items() if n not in gone and h["fallback_alias"] in gone}:
        gone |= more
    for name in sorted(set(have_all) | set(want_all)):
        have, want = have_all.get(name), want_all.get(name)
        path, steps = f"/{ROUTES}/{segment(name)}", list[Step]()
        if name in gone:
            order = -config_routes.depth(have_all, name)
            steps.append(((DEL_ROUTES, order), "DELETE", path, None))
        if want is not None and (name in gone or want != have):
            body = {k: v for k, v in want.items() if v is not None}
            steps.append(((NEW_ROUTES, config_routes.depth(want_all, name)), "PUT", path, body))
        if not steps:
            continue
        if want is None:
            plan.changes.append(Change("-", "route", name, steps=steps))
        elif have is None:
            plan.changes.append(Change("+", "route", name, steps=steps))
        else:
            diff = {k: (have[k], v) for k, v in want.items() if have[k] != v}
            why = _describe(diff) if diff else "what it uses is re-created"
            plan.changes.append(Change("~", "route", name, why, steps))


def _rules(plan: Plan, box: Objects, file: Objects) -> None:
    """Masking rules written (PUT) once their project exists, removed before it goes."""
    have_all, want_all = box[MASKING], file[MASKING]
    for project in sorted(set(have_all) | set(want_all)):
        have, want = have_all.get(project, {}), want_all.get(project, {})
        base = f"/projects/{segment(project)}/{MASKING}"
        for detector in sorted(set(have) | set(want)):
            name, path = f"{project}/{detector}", f"{base}/{segment(detector)}"
            if detector not in want:
                step: Step = ((RULES, 0), "DELETE", path, None)
                plan.changes.append(Change("-", "masking rule", name, steps=[step]))
                continue
            rule = want[detector]
            if rule == have.get(detector):
                continue
            body = {f: v for f, v in rule.items() if v is not None}
            step = ((RULES, 1), "PUT", path, body)
            if detector not in have:
                plan.changes.append(Change("+", "masking rule", name, rule["action"], [step]))
                continue
            old = have[detector]
            diff = {f: (old[f], v) for f, v in rule.items() if old[f] != v}
            plan.changes.append(Change("~", "masking rule", name, _describe(diff), [step]))


def plan(call: Call, file: Objects, where: str = "the file") -> Plan:
    """What it takes to make the box match `file`."""
    box = read_box(call)
    _check_deletes(box, file, where)
    result = Plan()
    _org_and_catalog(result, box, file)
    _routes(result, box, file)
    _rules(result, box, file)
    _keys(result, box, file)
    return result


def apply(call: Call, planned: Plan) -> int:
    """Carry out a plan in dependency order; returns the number of API calls made."""
    steps = [(s, c) for c in planned.changes for s in c.steps]
    steps.sort(key=lambda sc: sc[0][0])  # stable: a change's own steps keep their order
    for done, ((_, method, path, body), change) in enumerate(steps):
        try:
            call(method, path, body)
        except AdminAPIError as exc:
            raise ApplianceError(
                f"{exc.message} (while applying `{change.line()}`; {done} of {len(steps)} "
                "steps were made: fix the cause and apply again)"
            ) from None
    return len(steps)
