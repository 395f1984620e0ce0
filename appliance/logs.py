"""Log lines: JSON for the journal (or text for developers), the request's trace id on every
line, and no secret in any of them.

A foundation module: it imports no other package of the project, so the gateway's secret
prefixes are repeated here (tests check they agree with gateway/tenancy/secrets.py).
"""

from __future__ import annotations

import functools
import logging
import re
import time
from collections.abc import Callable
from contextvars import ContextVar, Token
from typing import Any, TextIO

import orjson

REDACTED = "[REDACTED]"
# `log.info("...", extra={FIELDS: {"model": alias}})` adds those fields to the JSON line.
FIELDS = "fields"
FORMATS = ("json", "text")

# The trace id of the request being handled. asyncio tasks copy the context when they are
# created, so tasks a request spawns log its trace id too.
_TRACE: ContextVar[str | None] = ContextVar("aigw_trace_id", default=None)

# The ContextVar's own bound methods, not wrappers: binding costs one C call per request.
bind_trace: Callable[[str], Token[str | None]] = _TRACE.set
reset_trace: Callable[[Token[str | None]], None] = _TRACE.reset
current_trace: Callable[[], str | None] = _TRACE.get


# --- redaction ---

# Gateway keys (sk-aigw-) and admin tokens (aigw-admin-) show this many characters after their
# prefix in the key list: enough to tell them apart.
_DISPLAY_CHARS = 4


def _keep_display_prefix(m: re.Match[str]) -> str:
    # A short string after the prefix is no real secret but could be most of a mistyped one:
    # only full-length secrets keep their display characters.
    body = m.group(2)
    keep = body[:_DISPLAY_CHARS] if len(body) >= 16 else ""
    return m.group(1) + keep + REDACTED


def _keep_kind(m: re.Match[str]) -> str:
    # Every alternative has exactly one group, the non-secret kind prefix ("sk-proj-", "AKIA").
    return (m.group(m.lastindex) if m.lastindex else "") + REDACTED


_PROVIDER_KEYS = "|".join(
    (
        # OpenAI (sk-, sk-proj-, sk-svcacct-, sk-admin-) and Anthropic (sk-ant-)
        r"(?<![A-Za-z0-9])(sk-(?:ant-|proj-|svcacct-|admin-)?)[A-Za-z0-9_-]{20,}",
        r"(AIza)[A-Za-z0-9_-]{30,}",  # Google
        r"(?<![A-Za-z0-9])(AKIA|ASIA)[A-Z0-9]{16}",  # AWS access key ids
        r"(gh[pousr]_)[A-Za-z0-9]{30,}",  # GitHub tokens
        r"(github_pat_)[A-Za-z0-9_]{22,}",
        r"(xox[a-z]-)[A-Za-z0-9-]{10,}",  # Slack
        r"((?:sk|rk)_(?:live|test)_)[A-Za-z0-9]{10,}",  # Stripe
    )
)

# (markers, pattern, replacement): a pattern runs only when one of its markers occurs in the
# lower-cased text, so a line without anything that looks like a secret costs a few substring
# searches. Our own prefixes go first, so no other pattern can eat into one of our secrets.
_RULES: tuple[
    tuple[tuple[str, ...], re.Pattern[str], str | Callable[[re.Match[str]], str]], ...
] = (
    (
        ("aigw-",),
        # A body stops where another of our secrets starts, and "sk-aigw-admin-..." is an admin
        # token after "sk-": no match may swallow the start of the next secret.
        re.compile(
            r"(sk-(?!aigw-admin-)aigw-|aigw-admin-)((?:(?!sk-aigw-|aigw-admin-)[A-Za-z0-9])+)"
        ),
        _keep_display_prefix,
    ),
    (
        ("private key",),
        re.compile(
            r"-----BEGIN[A-Z ]*PRIVATE KEY-----[\s\S]*?(?:-----END[A-Z ]*PRIVATE KEY-----|\Z)"
        ),
        REDACTED,
    ),
    (
        ("authorization", "api-key"),  # also x-api-key, x-goog-api-key, Azure's api-key
        re.compile(
            r"(?i)((?:authorization|api-key)[\"']?\s*[:=]\s*[\"']?(?:(?:bearer|basic|token)\s+)?+)"
            r"(?!sk-aigw-|aigw-admin-)[^\s\"',;}\]]+"  # our secrets already show their prefix
        ),
        r"\1" + REDACTED,
    ),
    (
        ("bearer",),
        re.compile(r"(?i)(\bbearer\s+)(?!sk-aigw-|aigw-admin-)[A-Za-z0-9._~+/-]{16,}=*"),
        r"\1" + REDACTED,
    ),
    (
        ("eyj",),  # a JWT: base64url of '{"' starts both the header and the payload
        re.compile(r"eyJ[A-Za-z0-9_-]{8,}\.eyJ[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]*"),
        REDACTED,
    ),
    (
        (
            *("sk-", "aiza", "akia", "asia", "xox", "k_live_", "k_test_", "github_pat_"),
            *("ghp_", "gho_", "ghu_", "ghs_", "ghr_"),
        ),
        re.compile(_PROVIDER_KEYS),
        _keep_kind,
    ),
)


def redact(text: str) -> str:
    """The text with every secret it holds replaced by REDACTED."""
    low = text.lower()
    for markers, pattern, repl in _RULES:
        for marker in markers:
            if marker in low:
                redacted = pattern.sub(repl, text)
                if redacted != text:  # later rules look at what is left
                    text, low = redacted, redacted.lower()
                break
    return text


@functools.lru_cache(maxsize=256)
def _safe_trace(trace_id: str) -> str:
    """A trace id fit for a log line: a client's x-request-id could be anything. Cached, since
    every line of a request carries the same one."""
    return redact(trace_id)


def _redact_value(value: Any) -> Any:
    """A field of a log line, redacted (containers walked; other objects as their str)."""
    if isinstance(value, str):
        return redact(value)
    if value is None or isinstance(value, bool | int | float):
        return value
    if isinstance(value, dict):
        return {str(k): _redact_value(v) for k, v in value.items()}
    if isinstance(value, list | tuple | set | frozenset):
        return [_redact_value(v) for v in value]
    return redact(str(value))


class RedactSecrets(logging.Filter):
    """Removes secrets from everything a record will print: message, traceback, stack, fields.

    It rewrites the record itself (message formatted with its arguments, traceback rendered
    into exc_text), so every formatter and every later handler sees only the redacted text.
    """

    _render = logging.Formatter()

    def filter(self, record: logging.LogRecord) -> bool:
        """Redact the record in place; never drops one."""
        if getattr(record, "_aigw_redacted", False):
            return True
        try:
            message = record.getMessage()
        except Exception:  # a bad format string: log what there is rather than fail the caller
            message = f"{record.msg} {record.args!r}"
        record.msg, record.args = redact(message), None
        if record.exc_info and not record.exc_text:
            record.exc_text = self._render.formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = redact(record.exc_text)
        if record.stack_info:
            record.stack_info = redact(record.stack_info)
        fields = getattr(record, FIELDS, None)
        if fields is not None:
            setattr(record, FIELDS, _redact_value(fields))
        setattr(record, "_aigw_redacted", True)  # noqa: B010 (not a LogRecord attribute)
        return True


# --- formatting ---


class JsonFormatter(logging.Formatter):
    """One JSON object per line: ts, level, logger, msg, trace_id, the extra fields, exc."""

    _second: tuple[int, str] = (-1, "")  # the last second rendered, reused within it

    def _timestamp(self, created: float, msecs: float) -> str:
        second = int(created)
        cached = self._second
        if cached[0] != second:
            cached = (second, time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(second)))
            self._second = cached
        return f"{cached[1]}.{int(msecs):03d}Z"

    def format(self, record: logging.LogRecord) -> str:
        """The record as one line of JSON."""
        doc: dict[str, Any] = {
            "ts": self._timestamp(record.created, record.msecs),
            "level": record.levelname,
            "logger": record.name,
            "msg": record.getMessage(),
        }
        trace = _TRACE.get()
        if trace is not None:
            doc["trace_id"] = _safe_trace(trace)
        fields = getattr(record, FIELDS, None)
        if isinstance(fields, dict):
            for key, value in fields.items():
                doc.setdefault(str(key), value)  # never overrides the keys above
        if record.exc_info and not record.exc_text:
            record.exc_text = self.formatException(record.exc_info)
        if record.exc_text:
            doc["exc"] = record.exc_text
        if record.stack_info:
            doc["stack"] = record.stack_info
        try:
            return orjson.dumps(doc, default=str).decode()
        except TypeError:  # e.g. an int beyond 64 bits: a line as text beats a lost line
            flat = {k: v if isinstance(v, str) else str(v) for k, v in doc.items()}
            return orjson.dumps(flat).decode()


class TextFormatter(logging.Formatter):
    """The developer's format: timestamp, level, logger, message, then trace id and fields."""

    def __init__(self) -> None:
        super().__init__("%(asctime)s %(levelname)s %(name)s: %(message)s", "%Y-%m-%dT%H:%M:%S%z")

    def formatMessage(self, record: logging.LogRecord) -> str:
        """The first line, with the trace id and the extra fields after the message."""
        line = super().formatMessage(record)
        trace = _TRACE.get()
        if trace is not None:
            line += f" trace={_safe_trace(trace)}"
        fields = getattr(record, FIELDS, None)
        if isinstance(fields, dict):
            line += "".join(f" {k}={v}" for k, v in fields.items())
        return line


def make_handler(fmt: str, stream: TextIO) -> logging.Handler:
    """A handler writing `fmt` ("json" or "text") lines to `stream`, secrets redacted."""
    if fmt not in FORMATS:
        raise ValueError(f"log format must be one of {', '.join(FORMATS)}, got {fmt!r}")
    handler = logging.StreamHandler(stream)
    handler.setFormatter(JsonFormatter() if fmt == "json" else TextFormatter())
    handler.addFilter(RedactSecrets())
    return handler
