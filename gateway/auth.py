"""Data-plane authentication: gateway keys checked from memory, never from SQLite per request.

The key table is loaded into a `KeyIndex` (SHA-256 of the secret → entry) whenever the runtime
configuration changes (the gateway polls its version once a second), so a revocation reaches the
hot path within a second. A lookup is one SHA-256 and one dict probe; the hash found is compared
again with `hmac.compare_digest` so no comparison of secret material depends on where it differs.

Each way a key can fail has its own code, in the client's own error format: an application
whose key was disabled or rotated away learns that, not just "401".
"""

from __future__ import annotations

import fnmatch
import hmac
import ipaddress
import re
import time
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import orjson
import sqlite_utils
from multidict import CIMultiDictProxy

from gateway.errors import GatewayError, InvalidRequest
from gateway.tenancy.secrets import hash_secret

IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network

# Failed attempts from one address within FAIL_WINDOW seconds beyond FAIL_FREE are answered
# after a delay that doubles per attempt up to FAIL_MAX_DELAY; attempts from that address queue
# behind each other, so opening more connections does not buy more guesses.
FAIL_WINDOW = 60.0
FAIL_FREE = 10
FAIL_BASE_DELAY = 0.05
FAIL_MAX_DELAY = 5.0
FAIL_TRACKED = 10_000


class AuthError(GatewayError):
    """The request's key is missing, unknown or not good for this request (401)."""

    status = 401
    code = "invalid_api_key"
    openai_type = "invalid_request_error"


class Forbidden(GatewayError):
    """The key is known but may not make this request (403)."""

    status = 403
    code = "permission_denied"
    openai_type = "invalid_request_error"


@dataclass(frozen=True, slots=True)
class KeyEntry:
    """A gateway key as the hot path sees it."""

    id: str
    name: str
    project: str
    department: str
    user: str | None
    status: str
    expires_at: float | None
    exact_models: frozenset[str]
    model_globs: tuple[str, ...]
    networks: tuple[IPNetwork, ...]
    rpm: int | None
    tpm: int | None
    budget_micros: int | None
    tags: tuple[str, ...]
    # Model aliases and addresses already checked against the allow-lists (bounded).
    _verdicts: dict[str, bool] = field(default_factory=dict, compare=False, repr=False)

    def allows_model(self, alias: str) -> bool:
        """True when the key's model allow-list (empty: every model) admits `alias`."""
        if not self.exact_models and not self.model_globs:
            return True
        if alias in self.exact_models:
            return True
        verdict = self._verdicts.get(alias)
        if verdict is None:
            verdict = any(fnmatch.fnmatchcase(alias, g) for g in self.model_globs)
            if len(self._verdicts) < 4096:
                self._verdicts[alias] = verdict
        return verdict

    def allows_address(self, address: str | None) -> bool:
        """True when the key has no IP allow-list or `address` is inside it."""
        if not self.networks:
            return True
        if address is None:
            return False
        verdict = self._verdicts.get(address)  # addresses and model aliases never collide
        if verdict is None:
            verdict = _inside(address, self.networks)
            if len(self._verdicts) < 4096:
                self._verdicts[address] = verdict
        return verdict


def _inside(address: str, networks: tuple[IPNetwork, ...]) -> bool:
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return False
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    return any(ip in net for net in networks)


@dataclass(frozen=True, slots=True)
class _Slot:
    """What a secret's hash points at: the key, and until when this secret is good."""

    entry: KeyEntry
    hash: str
    until: float | None  # the grace period's end for a secret replaced by a rotation
    replaced: bool


def presented_secret(headers: CIMultiDictProxy[str]) -> str | None:
    """The key a client sent: `Authorization: Bearer` (OpenAI SDK), `x-api-key` (Anthropic
    SDK) or `api-key` (Azure OpenAI SDK)."""
    value = headers.get("Authorization")
    if value is not None:
        scheme, _, token = value.partition(" ")
        return token.strip() or None if scheme.lower() == "bearer" else None
    return headers.get("x-api-key") or headers.get("api-key") or None


def _epoch(value: str | None) -> float | None:
    if not value:
        return None
    return datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp()


class KeyIndex:
    """Every gateway key by the hash of its secret(s)."""

    def __init__(self, slots: dict[str, _Slot] | None = None) -> None:
        self._slots = slots or {}

    def __len__(self) -> int:
        return len({s.entry.id for s in self._slots.values()})

    @classmethod
    def load(cls, db: sqlite_utils.Database) -> KeyIndex:
        """Read the key table (with each project's department) into memory."""
        slots: dict[str, _Slot] = {}
        rows = db.query(
            "SELECT k.*, p.department AS department FROM keys k "
            "JOIN projects p ON p.name = k.project"
        )
        for r in rows:
            entry = _entry(r)
            slots[r["hash"]] = _Slot(entry, r["hash"], None, False)
            if r["prev_hash"]:
                until = _epoch(r["prev_expires_at"])
                slots[r["prev_hash"]] = _Slot(entry, r["prev_hash"], until, True)
        return cls(slots)

    def authenticate(self, secret: str | None, now: float | None = None) -> KeyEntry:
        """The key entry for `secret`, or the AuthError/Forbidden that says why not."""
        if not secret:
            raise AuthError(
                "no API key: send your aigw key as 'Authorization: Bearer sk-aigw-...' "
                "(or in 'x-api-key' / 'api-key')",
                code="missing_api_key",
            )
        digest = hash_secret(secret)
        slot = self._slots.get(digest)
        if slot is None or not hmac.compare_digest(slot.hash, digest):
            raise AuthError(
                "the API key is not valid on this gateway; check it, or ask your "
                "administrator for one",
                code="invalid_api_key",
            )
        entry = slot.entry
        now = time.time() if now is None else now
        if slot.replaced and (slot.until is None or now >= slot.until):
            raise AuthError(
                f"key {entry.id} was rotated and this secret is no longer accepted; "
                "use the new secret",
                code="key_rotated",
            )
        if entry.status == "revoked":
            raise AuthError(f"key {entry.id} has been revoked", code="key_revoked")
        if entry.expires_at is not None and now >= entry.expires_at:
            raise AuthError(
                f"key {entry.id} expired; ask your administrator to renew it",
                code="key_expired",
            )
        if entry.status == "disabled":
            raise Forbidden(
                f"key {entry.id} is disabled; ask your administrator to enable it",
                code="key_disabled",
            )
        return entry


def check_address(entry: KeyEntry, address: str | None) -> None:
    """Refuse a request from outside the key's IP allow-list."""
    if not entry.allows_address(address):
        raise Forbidden(
            f"key {entry.id} may not be used from {address or 'this address'}",
            code="ip_not_allowed",
        )


def check_model(entry: KeyEntry, alias: str) -> None:
    """Refuse a model outside the key's allow-list."""
    if not entry.allows_model(alias):
        raise Forbidden(
            f"key {entry.id} may not use the model {alias!r}; GET /v1/models lists the "
            "models this key can call",
            code="model_not_allowed",
            param="model",
        )


_TAG = re.compile(r"^[a-z0-9][a-z0-9_.-]{0,63}$")
MAX_TAGS = 16


def merge_tags(defaults: tuple[str, ...], header: str) -> tuple[str, ...]:
    """The key's default tags plus those of an `x-aigw-tags: a,b` header, checked."""
    out = list(defaults)
    for raw in header.split(","):
        tag = raw.strip().lower()
        if not tag:
            continue
        if not _TAG.match(tag):
            raise InvalidRequest(
                f"x-aigw-tags: {tag[:70]!r} is not a valid tag; use 1-64 lowercase letters, "
                "digits and _ . -, starting with a letter or digit"
            )
        if tag not in out:
            out.append(tag)
    if len(out) > MAX_TAGS:
        raise InvalidRequest(f"x-aigw-tags: at most {MAX_TAGS} tags per request, key's included")
    return tuple(out)


def _entry(r: dict[str, Any]) -> KeyEntry:
    models = orjson.loads(r["models"] or "[]")
    globs = tuple(m for m in models if any(c in m for c in "*?["))
    return KeyEntry(
        id=r["id"],
        name=r["name"],
        project=r["project"],
        department=r["department"],
        user=r["user"],
        status=r["status"],
        expires_at=_epoch(r["expires_at"]),
        exact_models=frozenset(m for m in models if m not in globs),
        model_globs=globs,
        networks=tuple(ipaddress.ip_network(c, strict=False) for c in orjson.loads(r["cidrs"])),
        rpm=r["rpm"],
        tpm=r["tpm"],
        budget_micros=r["budget_micros"],
        tags=tuple(orjson.loads(r["tags"] or "[]")),
    )


@dataclass(slots=True)
class _Failures:
    count: int
    first: float
    next_free: float


class FailureThrottle:
    """Slows down repeated authentication failures from one address."""

    def __init__(self) -> None:
        self._by_address: dict[str, _Failures] = {}

    def delay(self, address: str | None, now: float) -> float:
        """Record a failure from `address`; the seconds to wait before answering it."""
        key = address or "-"
        f = self._by_address.get(key)
        if f is None or now - f.first > FAIL_WINDOW:
            if len(self._by_address) >= FAIL_TRACKED:
                self._prune(now)
            f = self._by_address[key] = _Failures(0, now, now)
        f.count += 1
        if f.count <= FAIL_FREE:
            return 0.0
        step = min(FAIL_BASE_DELAY * 2 ** (f.count - FAIL_FREE - 1), FAIL_MAX_DELAY)
        f.next_free = max(f.next_free, now) + step
        return f.next_free - now

    def _prune(self, now: float) -> None:
        stale = [a for a, f in self._by_address.items() if now - f.first > FAIL_WINDOW]
        for a in stale:
            del self._by_address[a]
        if len(self._by_address) >= FAIL_TRACKED:  # under a spray of addresses: start over
            self._by_address.clear()
