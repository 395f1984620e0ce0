"""Seed files: `aigw-seed.toml` on an `AIGW-SEED` stick sets up a box in one go.

    version = 1

    [box]
    hostname = "aigw-lab"
    timezone = "Europe/Berlin"

    [trust]                      # keys whose model bundles the box accepts (aigw trust add)
    acme = "base64 of the 32-byte Ed25519 public key"

    [import]                     # bundles on the stick; absent: every *.aigwmodel beside the file
    bundles = ["llama-8b.aigwmodel"]

    [providers.openai]           # as `aigw config apply`, plus the provider's API key
    kind = "openai"
    api_key = "sk-..."           # goes into the vault; the stick still holds it

    [departments.eng]            # departments, users, projects, models, routes, keys:
    [projects.web]               # the format of `aigw config apply`
    department = "eng"

    [keys.web-app]               # a key the box does not have is issued (see below)
    project = "web"              # name: the table's name unless given
    models = ["gpt-4o*"]

The whole file is checked first, against the box (`check`): types, unknown keys, references,
every bundle read whole and its signature checked against the box's trusted keys and the
file's own. A bad file changes nothing and the error names its line. `apply` then makes the
changes through the admin API, so they are validated and audited like any other. A seed only
adds and changes: what the box has and the file does not name stays (unlike `config apply`,
which makes the box match the file), so a seed applied twice changes nothing the second time.

Keys: unlike `config apply`, a seed issues the keys the box does not have yet. A `[keys.X]`
table is the box's key `X` when the box has a key with that id (as `config export` writes
it); otherwise it is the key named `name` (default: `X`) in `project`, matched by that name
(a revoked one included: it stays revoked, the seed does not issue it again); otherwise it is
issued, with the file's policy. A new key's secret goes only into the result file on the
medium (`aigw-seed.result.txt`), never to the console, the journal or the box's own result.
"""

from __future__ import annotations

import hashlib
import re
import shutil
import subprocess
import tomllib
import zoneinfo
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

from appliance import config_sync
from appliance.admin_client import segment
from appliance.config import Config
from appliance.errors import ApplianceError

SEED_FILE = "aigw-seed.toml"
RESULT_FILE = "aigw-seed.result.txt"
SECRETS_HEAD = "API keys issued by a seed."
FORMAT_VERSION = 1
HOST_COMMAND_TIMEOUT_S = 30.0
IMPORT_TIMEOUT_S = 6 * 3600.0  # copying a large model off a stick takes a while
_OWN_SECTIONS = ("box", "trust", "import")
_BOX_KEYS = ("hostname", "timezone")
_IMPORT_KEYS = ("bundles",)

Call = Callable[..., Any]  # AdminClient-like: call(method, path, body=None, query=None) -> JSON


class SeedError(ApplianceError):
    """A seed file the box refuses; the message names the file and the line at fault."""


# --- where in the file ----------------------------------------------------------------------


def _key_path(text: str) -> tuple[str, ...] | None:
    """The dotted key of a `key = value` line or a `[table]` header, quotes resolved."""
    try:
        doc = tomllib.loads(text)
    except tomllib.TOMLDecodeError:
        return None
    path: list[str] = []
    while isinstance(doc, dict) and len(doc) == 1:
        ((name, doc),) = doc.items()
        path.append(name)
    return tuple(path)


def line_of(text: str, path: tuple[str, ...]) -> int | None:
    """The line (from 1) that defines `path` in the TOML `text`, or the closest enclosing
    table's; None when nothing in the file names it."""
    table: tuple[str, ...] = ()
    best: tuple[int, int] | None = None  # (length of the matched path, line)
    under: int | None = None
    for number, raw in enumerate(text.splitlines(), start=1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        if line.startswith("["):
            header = line.split("]]" if line.startswith("[[") else "]", 1)[0]
            found = _key_path(header.lstrip("[").join(("[", "]")))
            if found is None:
                continue
            table, here = found, found
        elif "=" in line:
            here_key = _key_path(line.split("=", 1)[0] + "= 0")
            if here_key is None:
                continue
            here = table + here_key
        else:
            continue
        if here == path:
            return number
        if path[: len(here)] == here and (best is None or len(here) > best[0]):
            best = (len(here), number)
        if here[: len(path)] == path and under is None:
            under = number  # `[a.b]` defines `a` when no `[a]` does
    return best[1] if best else under


_SECTION_REF = re.compile(r"\[([^\]]+)\]")
_SECTION = re.compile(r"unknown section \[([^\]]+)\]")
_QUOTED = re.compile(r"'([^']*)'")


def _path_of_message(message: str) -> tuple[str, ...]:
    """What a `config_sync` message is about: `[keys.k] rpm must be ...` → (keys, k, rpm)."""
    section = _SECTION.search(message)
    if section:
        return (section.group(1),)
    ref = _SECTION_REF.search(message)
    if ref is None:
        return ()
    table = tuple(_key_path(f"[{ref.group(1)}]") or ())
    rest = message[ref.end() :].strip()
    if rest.startswith("unknown key") or rest.startswith("'"):
        quoted = _QUOTED.search(rest)
        return (*table, quoted.group(1)) if quoted else table
    first = rest.split(" ", 1)[0]
    return (*table, first) if re.fullmatch(r"[a-z_]+", first) else table


# --- the checked seed -----------------------------------------------------------------------


@dataclass
class Bundle:
    """A bundle on the medium, checked whole: its model and who signed it."""

    path: Path
    model: str
    signer: str
    size: int
    present: bool  # the box already has this very model (same manifest): nothing to do


@dataclass
class NewKey:
    """A key the box does not have: the file's table name and the key's checked fields."""

    label: str
    entry: dict[str, Any]


@dataclass
class IssuedKey:
    """A key a seed issued; its secret is for the result file on the medium and nowhere else."""

    id: str
    name: str
    project: str
    secret: str = field(repr=False)


@dataclass
class Seed:
    """A seed file checked against the box: everything `apply` will do."""

    path: Path
    sha256: str
    hostname: str | None = None
    timezone: str | None = None
    trust: dict[str, str] = field(default_factory=dict)  # new trusted keys: name → base64
    trusted_already: list[str] = field(default_factory=list)
    provider_keys: dict[str, str] = field(default_factory=dict)  # provider → API key
    plan: config_sync.Plan = field(default_factory=config_sync.Plan)
    bundles: list[Bundle] = field(default_factory=list)
    new_keys: list[NewKey] = field(default_factory=list)

    def summary(self) -> list[str]:
        """What applying it does, one line per change."""
        lines = [f"+ trusted key {n}" for n in self.trust]
        lines += [f"= trusted key {n} (already trusted)" for n in self.trusted_already]
        lines += [c.line() for c in self.plan.changes]
        lines += [f"+ API key of provider {p} (into the vault)" for p in self.provider_keys]
        lines += [
            f"+ key {k.entry['name']} in project {k.entry['project']} (issued; its secret goes "
            f"to {RESULT_FILE} on the medium only)"
            for k in self.new_keys
        ]
        for b in self.bundles:
            done = " (already imported)" if b.present else ""
            lines.append(f"{'=' if b.present else '+'} model {b.model} from {b.path.name}{done}")
        if self.hostname:
            lines.append(f"~ hostname {self.hostname}")
        if self.timezone:
            lines.append(f"~ time zone {self.timezone}")
        return lines


class _Where:
    """Error messages that name the seed file and the line."""

    def __init__(self, path: Path, text: str) -> None:
        self.path, self.text = path, text

    def error(self, key: tuple[str, ...], message: str) -> SeedError:
        line = line_of(self.text, key) if key else None
        at = f"{self.path}, line {line}" if line else str(self.path)
        return SeedError(f"{at}: {message}")


def read_seed(path: Path) -> tuple[dict[str, Any], str]:
    """The parsed file and its text; a syntax error says where (tomllib gives the line)."""
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        raise SeedError(f"{path} does not exist") from None
    except OSError as exc:
        raise SeedError(f"{path}: cannot read: {exc.strerror}") from None
    try:
        text = raw.decode("utf-8")
        return tomllib.loads(text), text
    except UnicodeDecodeError:
        raise SeedError(f"{path}: not UTF-8 text") from None
    except tomllib.TOMLDecodeError as exc:
        raise SeedError(f"{path}: not valid TOML: {exc}") from None


def check(path: Path, call: Call, cfg: Config) -> Seed:
    """Read and check a seed file whole against the box; nothing is changed."""
    path = path.absolute()
    data, text = read_seed(path)
    where = _Where(path, text)
    seed = Seed(path, hashlib.sha256(text.encode()).hexdigest())
    allowed = (*_OWN_SECTIONS, *config_sync.SECTIONS)
    for name in data:
        if name != "version" and name not in allowed:
            choices = ", ".join(f"[{s}]" for s in allowed)
            raise where.error((name,), f"unknown section [{name}]; allowed: {choices}")
    if "version" not in data:
        raise SeedError(f"{path}: version = {FORMAT_VERSION} is required at the top of the file")
    if data["version"] != FORMAT_VERSION:
        got = data["version"]
        raise where.error(("version",), f"version must be {FORMAT_VERSION}, got {got!r}")
    _check_box(seed, _table(data, "box", where), cfg, where)
    _check_trust(seed, _table(data, "trust", where), call, where)
    config = {k: v for k, v in data.items() if k in config_sync.SECTIONS}
    seed.provider_keys = _take_api_keys(config, where)
    _name_keys(config)
    try:
        objects = config_sync.parse_file({"version": config_sync.FORMAT_VERSION, **config}, "")
    except ApplianceError as exc:
        message = str(exc).removeprefix(": ")
        if message.startswith("[providers.") and "; allowed: " in message:
            message += ", api_key"  # the seed's own addition to a provider
        raise where.error(_path_of_message(message), message) from None
    box = config_sync.read_box(call)
    _check_key_values(objects["keys"], where)
    seed.new_keys = _match_keys(objects["keys"], box["keys"], where)
    seed.plan = config_sync.plan(call, _merged(box, objects), str(path))
    _check_bundles(seed, _table(data, "import", where), call, where)
    return seed


def _table(data: dict[str, Any], name: str, where: _Where) -> dict[str, Any]:
    value = data.get(name, {})
    if not isinstance(value, dict):
        raise where.error((name,), f"[{name}] must be a table")
    return value


def _unknown(table: dict[str, Any], allowed: tuple[str, ...], name: str, where: _Where) -> None:
    for key in table:
        if key not in allowed:
            raise where.error(
                (name, key), f"[{name}] unknown key {key!r}; allowed: {', '.join(allowed)}"
            )


def _string(table: dict[str, Any], key: str, name: str, where: _Where) -> str | None:
    value = table.get(key)
    if value is not None and not isinstance(value, str):
        raise where.error((name, key), f"[{name}] {key} must be a string, got {value!r}")
    return value


def _check_box(seed: Seed, box: dict[str, Any], cfg: Config, where: _Where) -> None:
    from appliance.identity import check_hostname, load_identity

    _unknown(box, _BOX_KEYS, "box", where)
    hostname = _string(box, "hostname", "box", where)
    if hostname is not None:
        try:
            seed.hostname = check_hostname(hostname)
        except ApplianceError as exc:
            raise where.error(("box", "hostname"), f"[box] {exc}") from None
        if load_identity(cfg.state_dir) is None:
            raise where.error(
                ("box", "hostname"),
                f"[box] hostname: {cfg.state_dir} has no identity yet; run `aigw firstboot` first",
            )
    tz = _string(box, "timezone", "box", where)
    if tz is not None:
        try:
            zoneinfo.ZoneInfo(tz)
        except (ValueError, zoneinfo.ZoneInfoNotFoundError):
            raise where.error(
                ("box", "timezone"), f"[box] timezone {tz!r} is not an IANA zone such as UTC"
            ) from None
        seed.timezone = tz


def _check_trust(seed: Seed, trust: dict[str, Any], call: Call, where: _Where) -> None:
    from gateway.catalog import check_name
    from gateway.errors import GatewayError
    from inference.bundle import BundleError, load_public_key, public_key_b64

    have = {row["name"]: row["public_key"] for row in call("GET", "/trusted-keys")["data"]}
    by_key = {v: k for k, v in have.items()}
    for name, text in trust.items():
        at = ("trust", name)
        if not isinstance(text, str):
            raise where.error(at, f"[trust] {name} must be a public key as a string")
        try:
            check_name("key name", name)
            b64 = public_key_b64(load_public_key(text))
        except (BundleError, GatewayError) as exc:
            raise where.error(at, f"[trust] {name}: {exc}") from None
        if have.get(name) == b64 or (name not in have and b64 in by_key):
            seed.trusted_already.append(name if name in have else by_key[b64])
        elif name in have:
            raise where.error(
                at, f"[trust] {name}: the box trusts another key under this name; rename it"
            )
        else:
            seed.trust[name] = b64


def _take_api_keys(config: dict[str, Any], where: _Where) -> dict[str, str]:
    """Remove `api_key` from the providers (the rest is `config apply`'s) and return them."""
    providers = config.get("providers")
    if not isinstance(providers, dict):
        return {}
    keys: dict[str, str] = {}
    for name, entry in list(providers.items()):
        if isinstance(entry, dict) and "api_key" in entry:
            secret = entry["api_key"]
            if not isinstance(secret, str) or not secret.strip():
                raise where.error(
                    ("providers", name, "api_key"),
                    f"[providers.{name}] api_key must be a non-empty string",
                )
            keys[name] = secret.strip()
            providers[name] = {k: v for k, v in entry.items() if k != "api_key"}
    return keys


def _name_keys(config: dict[str, Any]) -> None:
    """A key table without `name` is named by its table (`[keys.web-app]`)."""
    keys = config.get("keys")
    if isinstance(keys, dict):
        for label, entry in keys.items():
            if isinstance(entry, dict) and "name" not in entry:
                entry["name"] = label


def _check_key_values(keys: dict[str, dict[str, Any]], where: _Where) -> None:
    """Refuse up front the key values the box would refuse (types were checked already)."""
    from gateway.catalog import check_name
    from gateway.errors import GatewayError
    from gateway.tenancy import _checks

    checks: dict[str, Callable[[Any], Any]] = {
        "name": lambda v: check_name("key name", _checks.text("name", v, 128)),
        "models": _checks.models,
        "cidrs": _checks.cidrs,
        "tags": _checks.tags,
        **{f: partial(_checks.limit, f) for f in ("rpm", "tpm", "budget_micros")},
    }
    for label, entry in keys.items():
        for name, check_value in checks.items():
            try:
                check_value(entry[name])
            except GatewayError as exc:
                raise where.error(("keys", label, name), f"[keys.{label}] {exc.message}") from None


def _match_keys(
    keys: dict[str, dict[str, Any]], have: dict[str, dict[str, Any]], where: _Where
) -> list[NewKey]:
    """Match the file's keys to the box's, renaming them to the box's ids (what `config_sync`
    compares); take out and return those the box does not have, to be issued."""
    from gateway.errors import GatewayError
    from gateway.tenancy import _checks

    by_name: dict[tuple[str, str], list[str]] = {}
    for key_id, row in have.items():
        by_name.setdefault((row["project"], row["name"]), []).append(key_id)
    matched: dict[str, str] = {}  # box id → the file's table
    named: dict[tuple[str, str], str] = {}  # (project, name) → the file's table
    new: list[NewKey] = []
    for label, entry in list(keys.items()):
        at, ident = ("keys", label), (entry["project"], entry["name"])
        if ident in named:
            raise where.error(
                at,
                f"[keys.{label}] is the key of [keys.{named[ident]}] again: name "
                f"{entry['name']!r} in project {entry['project']!r}",
            )
        named[ident] = label
        ids = [label] if label in have else by_name.get(ident, [])
        live = [i for i in ids if have[i]["status"] != "revoked"]
        if len(live) > 1:
            raise where.error(
                at,
                f"[keys.{label}] the box has {len(live)} keys named {entry['name']!r} in project "
                f"{entry['project']!r} ({', '.join(sorted(live))}); name the table by the id of "
                "the one meant",
            )
        match = (live or ids)[:1]
        if match and match[0] in matched:
            raise where.error(at, f"[keys.{label}] is the key of [keys.{matched[match[0]]}] again")
        if match:
            matched[match[0]] = label
            keys[match[0]] = keys.pop(label)
            continue
        if entry["status"] == "revoked":
            raise where.error((*at, "status"), f"[keys.{label}] a new key cannot be revoked")
        try:
            _checks.future_utc("expires_at", entry["expires_at"])
        except GatewayError as exc:
            raise where.error((*at, "expires_at"), f"[keys.{label}] {exc.message}") from None
        new.append(NewKey(label, keys.pop(label)))
    return new


def _merged(box: config_sync.Objects, seed: config_sync.Objects) -> config_sync.Objects:
    """The box with the seed's objects laid over it: planned, it adds and changes only."""
    out: config_sync.Objects = {}
    for section in set(box) | set(seed):
        out[section] = {**box.get(section, {}), **seed.get(section, {})}
    rules = {p: dict(r) for p, r in box.get(config_sync.MASKING, {}).items()}
    for project, more in seed.get(config_sync.MASKING, {}).items():
        rules.setdefault(project, {}).update(more)
    out[config_sync.MASKING] = rules
    return out


def _check_bundles(seed: Seed, table: dict[str, Any], call: Call, where: _Where) -> None:
    """Every bundle read whole and its signature checked, before anything is changed."""
    from inference.bundle import SUFFIX, BundleError, load_public_key, verify

    _unknown(table, _IMPORT_KEYS, "import", where)
    folder = seed.path.parent
    listed = table.get("bundles")
    if listed is None:
        paths = sorted(p for p in folder.glob(f"*{SUFFIX}") if p.is_file())
    elif not isinstance(listed, list) or not all(isinstance(p, str) for p in listed):
        raise where.error(("import", "bundles"), "[import] bundles must be an array of strings")
    else:
        paths = [_inside(folder, p, where) for p in listed]
    rows = call("GET", "/trusted-keys")["data"]
    trusted = {r["name"]: load_public_key(r["public_key"]) for r in rows}
    trusted.update({n: load_public_key(k) for n, k in seed.trust.items()})
    models = {m["name"] for m in call("GET", "/local-models")["data"]}
    for path in paths:
        try:
            manifest, signer = verify(path, trusted)
        except BundleError as exc:
            raise where.error(("import", "bundles"), f"bundle {path.name}: {exc}") from None
        except OSError as exc:
            raise where.error(
                ("import", "bundles"), f"bundle {path.name}: {exc.strerror or exc}"
            ) from None
        present = False
        if manifest.name in models:
            have = call("GET", f"/local-models/{segment(manifest.name)}")["manifest"]
            if have != manifest.to_dict():
                raise where.error(
                    ("import", "bundles"),
                    f"bundle {path.name}: the box has another model named {manifest.name!r}",
                )
            present = True
        seed.bundles.append(Bundle(path, manifest.name, signer, manifest.total_bytes, present))


def _inside(folder: Path, name: str, where: _Where) -> Path:
    """A bundle named in the file: a file in the seed's folder (links may not lead out)."""
    path = (folder / name).resolve()
    if folder.resolve() not in path.parents:
        raise where.error(("import", "bundles"), f"bundle {name!r} is not on the medium")
    if not path.is_file():
        raise where.error(("import", "bundles"), f"bundle {name!r} is not on the medium")
    return path


# --- applying -------------------------------------------------------------------------------


@dataclass
class Outcome:
    """What applying a seed did: lines for people, warnings, and whether it all went through."""

    done: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    error: str | None = None
    issued: list[IssuedKey] = field(default_factory=list)  # their secrets: the medium only

    @property
    def ok(self) -> bool:
        """Whether every step was made."""
        return self.error is None


def apply(seed: Seed, call: Call, cfg: Config) -> Outcome:
    """Make the checked seed's changes; a failing step stops there and is reported."""
    out = Outcome()
    try:
        _apply(seed, call, cfg, out)
    except ApplianceError as exc:
        out.error = f"{exc} (the steps above were made; fix the cause and apply again)"
    if seed.provider_keys:
        out.warnings.append(
            f"the medium still holds {len(seed.provider_keys)} provider API key(s) in clear in "
            f"{seed.path.name}: remove them from it, or wipe it"
        )
    if out.issued:
        ids = ", ".join(k.id for k in out.issued)
        out.warnings.append(
            f"the medium now holds the secrets of {len(out.issued)} new API key(s) ({ids}) in "
            f"{RESULT_FILE}: hand each to its owner, then wipe the medium (a lost secret is "
            "replaced with: aigw keys rotate ID --grace 0)"
        )
    out.warnings += seed.plan.warnings
    return out


def secrets_text(issued: list[IssuedKey], earlier: str = "") -> str:
    """The part of the result file that holds the new keys' secrets ("" when none); the
    secrets an `earlier` result file on the medium held are kept, so applying the seed again
    before they were handed out does not lose them."""
    kept = [line for line in _secret_lines(earlier) if not any(k.id in line for k in issued)]
    if not issued and not kept:
        return ""
    lines = [
        "",
        f"{SECRETS_HEAD} Each secret is written here and nowhere else: hand it to",
        "the key's owner (it goes in the app's `Authorization: Bearer` header), then wipe this",
        "medium.",
    ]
    lines += [f"  {k.id}  {k.name} (project {k.project})  {k.secret}" for k in issued]
    if kept:
        lines.append("  issued by an earlier application of a seed, kept from its result file:")
        lines += kept
    return "\n".join(lines) + "\n"


def _secret_lines(text: str) -> list[str]:
    """The key lines of the secrets part of a result file."""
    found, inside = [], False
    for line in text.splitlines():
        if line.startswith(SECRETS_HEAD):
            inside = True
        elif inside and line.startswith("  key_"):
            found.append(line)
    return found


def _apply(seed: Seed, call: Call, cfg: Config, out: Outcome) -> None:
    for name, key in seed.trust.items():
        call("POST", "/trusted-keys", {"name": name, "public_key": key})
        out.done.append(f"+ trusted key {name}")
    out.done += [f"= trusted key {n} (already trusted)" for n in seed.trusted_already]
    if seed.plan.changes:
        config_sync.apply(call, seed.plan)
        out.done += [c.line() for c in seed.plan.changes]
    for provider, secret in seed.provider_keys.items():
        call("PUT", f"/providers/{segment(provider)}/key", {"api_key": secret})
        out.done.append(f"+ API key of provider {provider} stored in the vault")
    for new in seed.new_keys:
        _issue(new, call, out)
    for b in seed.bundles:
        if b.present:
            out.done.append(f"= model {b.model} (already imported)")
            continue
        row = call("POST", "/local-models/import", {"path": str(b.path)})
        out.done.append(
            f"+ model {row['name']} imported from {b.path.name}, signed by {row['signed_by']}; "
            f"enable it with: aigw models enable {row['name']}"
        )
    if seed.hostname:
        out.done.append(_set_hostname(cfg, seed.hostname))
    if seed.timezone and not cfg.provisioning.set_hostname:
        out.warnings.append(f"time zone {seed.timezone} not applied: this host is not an appliance")
    elif seed.timezone:
        out.done.append(_set_timezone(seed.timezone))


def _issue(new: NewKey, call: Call, out: Outcome) -> None:
    """Issue one key (after the projects and users it names exist); its secret is kept aside."""
    spec = config_sync.KINDS["keys"].fields
    body = {
        f: v
        for f, v in new.entry.items()
        if f != "status" and v is not None and (spec[f].required or v != spec[f].default)
    }
    row = call("POST", "/keys", body)
    out.issued.append(IssuedKey(row["id"], row["name"], row["project"], row.pop("secret")))
    disabled = new.entry["status"] == "disabled"
    if disabled:
        call("POST", f"/keys/{segment(row['id'])}/disable")
    out.done.append(
        f"+ key {row['id']} ({row['name']}) in project {row['project']} issued"
        + (" and disabled" if disabled else "")
        + f"; its secret is in {RESULT_FILE} on the medium only"
    )


def _host_command(argv: list[str]) -> str | None:
    """Run a host tool (hostnamectl, timedatectl); None when it worked, else why not."""
    if shutil.which(argv[0]) is None:
        return f"{argv[0]} is not installed"
    try:
        done = subprocess.run(
            argv, capture_output=True, text=True, timeout=HOST_COMMAND_TIMEOUT_S, check=False
        )
    except subprocess.TimeoutExpired:
        return f"{argv[0]} did not finish within {HOST_COMMAND_TIMEOUT_S:g} s"
    if done.returncode != 0:
        return (done.stderr.strip().splitlines() or [f"exit status {done.returncode}"])[-1]
    return None


def _set_hostname(cfg: Config, name: str) -> str:
    """The box's identity always; the host's own name only on the appliance."""
    from appliance.identity import set_hostname

    set_hostname(cfg.state_dir, name)
    if not cfg.provisioning.set_hostname:
        return f"~ hostname {name} (the box's name; this host keeps its own: not an appliance)"
    why = _host_command(["hostnamectl", "set-hostname", name])
    if why is not None:
        raise ApplianceError(f"hostname {name} kept by the box, but the host refused it: {why}")
    return f"~ hostname {name}"


def _set_timezone(tz: str) -> str:
    """The host's time zone (the box itself keeps time in UTC; this is for people)."""
    why = _host_command(["timedatectl", "set-timezone", tz])
    if why is not None:
        raise ApplianceError(f"time zone {tz}: {why}")
    return f"~ time zone {tz}"
