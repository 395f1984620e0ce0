"""Policies (detector -> action) and `scan_request`, which applies one to a request body.

A `Policy` is built once when the configuration loads (`Policy.build`, or `Policy.from_config`
for the plain mapping TOML gives) and is immutable. Detectors it does not name are off, so a
project without rules costs one attribute check per request. For each request:

    result = scan_request(body, call.api, policy)
    if result.blocked_by:
        raise SensitiveDataBlocked(result.blocked_by)   # names the detector, never the value
    body = result.body                                   # what goes upstream
    ledger: result.detectors                             # sorted names that fired
    response: result.restorer.restore_json(data), or one restorer.stream() per text channel

`mask` replaces a value by `[LABEL_N]` (numbered per request and label in the order values
first appear; the same value gets the same placeholder; numbers already written in the prompt
are skipped), `redact` by `[REDACTED_LABEL]` and keeps nothing, `allow` only reports.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from types import MappingProxyType
from typing import Any

from gateway.masking._bodies import map_request
from gateway.masking._text import Finding, Span
from gateway.masking.custom import CUSTOM_PREFIX, CustomDetector, RegexDetector, WordsDetector
from gateway.masking.detectors import Scanner
from gateway.masking.errors import PolicyError
from gateway.masking.restore import PLACEHOLDER, Restorer


class Action(StrEnum):
    """What a policy does with a detector's findings."""

    ALLOW = "allow"  # report only
    MASK = "mask"  # reversible placeholder, restored in the response
    REDACT = "redact"  # irreversible marker
    BLOCK = "block"  # refuse the request


# Module constants: an enum member looked up on its class costs a lot more in the hot loop.
_ALLOW = Action.ALLOW
_MASK = Action.MASK
_BLOCK = Action.BLOCK


def label(detector: str) -> str:
    """The placeholder label of a detector: `email` -> EMAIL, `custom:acme-ids` ->
    CUSTOM_ACME_IDS."""
    return re.sub(r"[^A-Z0-9]+", "_", detector.upper())


@dataclass(frozen=True, slots=True)
class Policy:
    """Which detectors run, and what each one's findings do to the request."""

    actions: Mapping[str, Action] = field(default_factory=lambda: MappingProxyType({}))
    scanner: Scanner | None = None
    labels: Mapping[str, str] = field(default_factory=lambda: MappingProxyType({}))

    @classmethod
    def build(
        cls, rules: Mapping[str, str | Action], custom: Iterable[CustomDetector] = ()
    ) -> Policy:
        """A policy from detector name -> action (`custom:NAME` for the custom detectors).
        Custom detectors the rules do not name are not compiled in."""
        customs = {c.name: c for c in custom}
        actions: dict[str, Action] = {}
        for name, action in rules.items():
            try:
                actions[name] = Action(action)
            except ValueError:
                raise PolicyError(
                    f"masking rule {name!r}: unknown action {action!r}; use one of "
                    + ", ".join(a.value for a in Action)
                ) from None
            if name.startswith(CUSTOM_PREFIX) and name not in customs:
                raise PolicyError(f"masking rule {name!r}: no custom detector has that name")
        if not actions:
            return cls()
        builtin = [n for n in actions if not n.startswith(CUSTOM_PREFIX)]
        scanner = Scanner(builtin, [customs[n] for n in actions if n in customs])
        return cls(
            MappingProxyType(actions),
            scanner,
            MappingProxyType({n: label(n) for n in actions}),
        )

    @classmethod
    def from_config(cls, data: Mapping[str, Any]) -> Policy:
        """A policy from configuration data shaped like this TOML:

        [masking.rules]
        email = "mask"
        card = "block"
        "custom:codenames" = "redact"

        [masking.custom.codenames]
        words = ["falcon", "blue harbor"]    # or: regex = "ACME-[0-9]{6}"
        """
        rules = data.get("rules", {})
        custom_data = data.get("custom", {})
        if not isinstance(rules, Mapping) or not isinstance(custom_data, Mapping):
            raise PolicyError("masking: 'rules' and 'custom' must be tables")
        return cls.build(rules, [_custom(name, spec) for name, spec in custom_data.items()])

    @property
    def enabled(self) -> bool:
        """Whether any detector runs."""
        return self.scanner is not None

    def find(self, text: str) -> list[Finding]:
        """The findings of this policy's detectors in one text (no actions applied)."""
        return self.scanner.find(text) if self.scanner is not None else []


def _custom(name: str, spec: Any) -> CustomDetector:
    if not isinstance(spec, Mapping) or ("regex" in spec) == ("words" in spec):
        raise PolicyError(f"custom detector {name!r}: give exactly one of 'regex' or 'words'")
    if "regex" in spec:
        if not isinstance(spec["regex"], str):
            raise PolicyError(f"custom detector {name!r}: 'regex' must be a string")
        return RegexDetector(name, spec["regex"])
    words = spec["words"]
    if not isinstance(words, list) or not all(isinstance(w, str) for w in words):
        raise PolicyError(f"custom detector {name!r}: 'words' must be a list of strings")
    return WordsDetector(name, words)


@dataclass(frozen=True, slots=True)
class MaskResult:
    """What `scan_request` decided for one request."""

    body: dict[str, Any]  # to send upstream; the input object itself when nothing changed
    detectors: tuple[str, ...] = ()  # the detectors that fired, sorted, each once
    blocked_by: str | None = None  # the blocking detector (the first by name), if any
    restorer: Restorer | None = None  # None when nothing was masked

    @property
    def blocked(self) -> bool:
        """Whether the request must be refused."""
        return self.blocked_by is not None


def scan_request(body: dict[str, Any], api: str, policy: Policy) -> MaskResult:
    """Scan every prompt text of a request body (`api`: "openai" or "anthropic") and apply
    the policy's actions. The input body is never mutated."""
    scanner = policy.scanner
    if scanner is None:
        return MaskResult(body)
    found: dict[str, list[Span]] = {}  # each distinct text once, in body order

    def collect(text: str) -> str:
        if text not in found:
            found[text] = scanner.spans(text)
        return text

    map_request(body, api, collect)
    fired = sorted({f[2] for fs in found.values() for f in fs})
    if not fired:
        return MaskResult(body)
    actions = policy.actions
    blocked = next((n for n in fired if actions[n] is _BLOCK), None)
    if blocked is not None or all(actions[n] is _ALLOW for n in fired):
        return MaskResult(body, tuple(fired), blocked)
    masker = _Masker(policy, found)
    new_texts = {t: masker.apply(t, fs) for t, fs in found.items() if fs}
    new_body = map_request(body, api, lambda t: new_texts.get(t, t))
    restorer = Restorer(masker.values) if masker.values else None
    return MaskResult(new_body, tuple(fired), None, restorer)


class _Masker:
    """One request's placeholders: numbered per label, one per distinct value."""

    def __init__(self, policy: Policy, texts: Iterable[str]) -> None:
        self._actions = policy.actions
        self._labels = policy.labels
        self.values: dict[str, str] = {}  # placeholder -> value
        self._assigned: dict[str, dict[str, str]] = {}  # label -> value -> placeholder
        self._next: dict[str, int] = {}
        # Placeholder-like text the prompt already has must never be restored as ours.
        self._taken = {p for t in texts if "[" in t for p in PLACEHOLDER.findall(t)}

    def _new(self, lab: str, value: str) -> str:
        n = self._next.get(lab, 1)
        p = f"[{lab}_{n}]"
        while p in self._taken:
            n += 1
            p = f"[{lab}_{n}]"
        self._next[lab] = n + 1
        self._assigned.setdefault(lab, {})[value] = p
        self.values[p] = value
        return p

    def apply(self, text: str, findings: list[Span]) -> str:
        """`text` with each masked or redacted finding replaced."""
        actions = self._actions
        labels = self._labels
        assigned = self._assigned
        parts: list[str] = []
        last = 0
        for start, end, detector in findings:
            action = actions[detector]
            if action is _ALLOW:
                continue
            parts.append(text[last:start])
            lab = labels[detector]
            if action is _MASK:
                value = text[start:end]
                p = assigned.get(lab)
                parts.append((p and p.get(value)) or self._new(lab, value))
            else:
                parts.append(f"[REDACTED_{lab}]")
            last = end
        if not parts:
            return text
        parts.append(text[last:])
        return "".join(parts)
