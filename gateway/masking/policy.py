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
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from itertools import chain, count, filterfalse
from operator import itemgetter
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
    # Derived from `actions` and `labels` once, for `scan_request`: plain dicts and sets are
    # cheaper to look up per value than the mapping proxies.
    _mask_labels: dict[str, str] = field(init=False, repr=False, compare=False)  # detector -> label
    _markers: dict[str, str] = field(init=False, repr=False, compare=False)  # redact: the marker
    _blocking: frozenset[str] = field(init=False, repr=False, compare=False)
    _allowed: frozenset[str] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        by = {a: {d for d, x in self.actions.items() if x is a} for a in Action}
        derived = {
            "_mask_labels": {d: self.labels[d] for d in by[_MASK]},
            "_markers": {d: f"[REDACTED_{self.labels[d]}]" for d in by[Action.REDACT]},
            "_blocking": frozenset(by[_BLOCK]),
            "_allowed": frozenset(by[_ALLOW]),
        }
        for name, value in derived.items():
            object.__setattr__(self, name, value)  # frozen: set once, here

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
    spans = scanner.spans

    def collect(text: str) -> str:
        if text not in found:
            found[text] = spans(text)
        return text

    map_request(body, api, collect)
    fired_set: set[str] = set()
    for fs in found.values():
        if fs:
            fired_set.update(map(_DETECTOR, fs))  # a C loop, no Python frame per finding
    if not fired_set:
        return MaskResult(body)
    fired = sorted(fired_set)
    blocking = fired_set.intersection(policy._blocking)
    if blocking:
        return MaskResult(body, tuple(fired), min(blocking))  # the first blocking by name
    if fired_set.issubset(policy._allowed):
        return MaskResult(body, tuple(fired))
    masker = _Masker(policy, found, fired)
    new_texts = {t: masker.apply(t, fs) for t, fs in found.items() if fs}
    new_body = map_request(body, api, lambda t: new_texts.get(t, t))
    restorer = Restorer(masker.values) if masker.values else None
    return MaskResult(new_body, tuple(fired), None, restorer)


_DETECTOR = itemgetter(2)  # of a (start, end, detector) span


# label -> its first placeholders, "[LABEL_1]" on, formatted once per process: an f-string
# costs about a third of all the other work of masking one value. Numbers beyond these are
# formatted when needed, so a huge request cannot grow the table.
_NUMBERED: dict[str, list[str]] = {}
_NUMBERED_CACHED = 256


def _placeholders(lab: str, taken: set[str]) -> Iterator[str]:
    """`[LAB_1]`, `[LAB_2]`, ... without the ones in `taken`: an endless iterator in C."""
    numbered = _NUMBERED.get(lab)
    if numbered is None:
        numbered = [f"[{lab}_{n}]" for n in range(1, _NUMBERED_CACHED + 1)]
        _NUMBERED[lab] = numbered
    later = map(f"[{lab}_{{}}]".format, count(_NUMBERED_CACHED + 1))
    fresh = chain(numbered, later)
    return filterfalse(taken.__contains__, fresh) if taken else fresh


class _Masker:
    """One request's placeholders: numbered per label, one per distinct value."""

    def __init__(self, policy: Policy, texts: Iterable[str], fired: Iterable[str]) -> None:
        self._markers = policy._markers
        self.values: dict[str, str] = {}  # placeholder -> value
        # Placeholder-like text the prompt already has must never be restored as ours.
        taken = {p for t in texts if "[" in t for p in PLACEHOLDER.findall(t)}
        # Per detector that masks, its label's value -> placeholder and the label's unused
        # placeholders, shared by detectors with the same label: no label lookup per value.
        self._known: dict[str, dict[str, str]] = {}
        self._fresh: dict[str, Iterator[str]] = {}
        by_label: dict[str, tuple[dict[str, str], Iterator[str]]] = {}
        for detector in fired:
            lab = policy._mask_labels.get(detector)
            if lab is not None:
                if lab not in by_label:
                    by_label[lab] = ({}, _placeholders(lab, taken))
                self._known[detector], self._fresh[detector] = by_label[lab]

    def apply(self, text: str, findings: list[Span]) -> str:
        """`text` with each masked or redacted finding replaced."""
        # Plain dicts in local names and no Python call: this loop runs once per value.
        known_of = self._known
        fresh = self._fresh
        markers = self._markers
        values = self.values
        parts: list[str] = []
        last = 0
        for start, end, detector in findings:
            known = known_of.get(detector)
            if known is None:
                p = markers.get(detector)
                if p is None:
                    continue  # allow: reported, left in place
            else:
                value = text[start:end]
                p = known.get(value)
                if p is None:
                    p = known[value] = next(fresh[detector])
                    values[p] = value
            parts.append(text[last:start])
            parts.append(p)
            last = end
        if not parts:
            return text
        parts.append(text[last:])
        return "".join(parts)
