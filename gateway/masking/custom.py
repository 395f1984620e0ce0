"""A project's own detectors: a regular expression or a word list, named `custom:NAME`.

Both are compiled once, when the policy is built; a bad pattern or an empty list is a
`PolicyError` that names the detector.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence

from gateway.masking._text import Pass, Span, Text
from gateway.masking.errors import PolicyError

CUSTOM_PREFIX = "custom:"
_CUSTOM_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]{0,39}")


class CustomDetector(Pass):
    """A project's own detector, named `custom:NAME` in policies and the ledger."""

    def __init__(self, name: str) -> None:
        if not _CUSTOM_NAME.fullmatch(name):
            raise PolicyError(
                f"custom detector name {name!r}: use 1-40 letters, digits, '_' or '-'"
            )
        self.name = CUSTOM_PREFIX + name
        self.names = (self.name,)


class RegexDetector(CustomDetector):
    """Every match of a regular expression (Python syntax, compiled once)."""

    def __init__(self, name: str, pattern: str) -> None:
        super().__init__(name)
        try:
            self._rx = re.compile(pattern)
        except re.error as e:
            raise PolicyError(f"custom detector {name!r}: bad regular expression: {e}") from e
        if self._rx.fullmatch("") is not None:
            raise PolicyError(f"custom detector {name!r}: the pattern matches empty text")

    def find(self, t: Text, out: list[Span]) -> None:
        """Append the pattern's non-empty matches."""
        name = self.name
        for m in self._rx.finditer(t.text):
            if m.end() > m.start():
                out.append((m.start(), m.end(), name))


_WORD_BYTES = b"abcdefghijklmnopqrstuvwxyz0123456789_"
# Lower-cased ASCII with every non-word byte a space: what the token pre-check splits.
_TOKENS = bytes(c if c in _WORD_BYTES else 32 for c in bytes(range(256)).lower())
# Below this many words, one literal-prefixed search per word beats building a token set.
_TOKEN_SET_FROM = 8


class WordsDetector(CustomDetector):
    """Whole words or phrases from a list, case-insensitive. ASCII words match on word
    boundaries (phrases with any whitespace between their words); words with other letters,
    such as CJK names, which have no word boundaries, match as case-insensitive substrings."""

    def __init__(self, name: str, words: Iterable[str]) -> None:
        super().__init__(name)
        # (first token, pattern over the lower-cased ASCII text) per ASCII word.
        self._ascii: list[tuple[bytes, re.Pattern[bytes]]] = []
        other: list[str] = []
        for word in dict.fromkeys(w.strip() for w in words):
            if not word.isascii():
                other.append(word)
            elif word:
                self._ascii.append(_word_pattern(word.lower().split()))
        if not self._ascii and not other:
            raise PolicyError(f"custom detector {name!r}: the word list is empty")
        self._other = re.compile("|".join(map(re.escape, other)), re.IGNORECASE) if other else None

    def find(self, t: Text, out: list[Span]) -> None:
        """Append every occurrence of a listed word."""
        name = self.name
        if self._ascii:
            low = t.text.encode("ascii", "replace").lower()
            candidates: Sequence[tuple[bytes, re.Pattern[bytes]]] = self._ascii
            if len(candidates) >= _TOKEN_SET_FROM:
                tokens = set(low.translate(_TOKENS).split())
                candidates = [c for c in candidates if not c[0] or c[0] in tokens]
            for _, rx in candidates:
                for m in rx.finditer(low):
                    out.append((m.start(), m.end(), name))
        if self._other is not None:
            for o in self._other.finditer(t.text):
                out.append((o.start(), o.end(), name))


def _word_pattern(parts: list[str]) -> tuple[bytes, re.Pattern[bytes]]:
    """The pattern of one lower-cased ASCII word or phrase, and its first token (b"" when it
    has none, e.g. "++"). The boundary checks come after the first part so that the pattern
    starts with a literal."""
    first = parts[0].encode()
    rx = re.escape(first)
    if first[:1] in _WORD_BYTES:
        rx += rb"(?<![a-z0-9_]" + re.escape(first) + rb")"
    for p in parts[1:]:
        rx += rb"\s+" + re.escape(p.encode())
    if parts[-1].encode()[-1:] in _WORD_BYTES:
        rx += rb"(?![a-z0-9_])"
    tokens = first.translate(_TOKENS).split()
    return (tokens[0] if tokens else b""), re.compile(rx)
