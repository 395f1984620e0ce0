"""Putting the original values back where a response repeats a request's placeholders.

A `Restorer` holds what one request masked (placeholder -> original value). `restore_text`
and `restore_json` restore whole texts and whole responses; `stream()` gives a
`StreamRestorer` per text channel of a streamed response, which holds back only what could
still become a placeholder at the end of a chunk. Inside JSON strings (tool call arguments,
`partial_json` deltas) the values go back JSON-escaped, so the arguments stay valid JSON.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

import orjson

from gateway.masking._bodies import map_response

# Everything a placeholder can look like: `[LABEL_N]`. It contains exactly one "[", at its
# start, which is what makes a chunk boundary before a "[" safe to cut at.
PLACEHOLDER = re.compile(r"\[[A-Z][A-Z0-9_]*_[0-9]+\]")


class Restorer:
    """The placeholders one request introduced, and the values they stand for."""

    __slots__ = ("_escaped", "_longest", "_prefixes", "_values")

    def __init__(self, values: Mapping[str, str]) -> None:
        self._values = dict(values)
        # Made on first use: most responses need neither (no stream, no tool arguments).
        self._escaped: dict[str, str] | None = None
        self._prefixes: frozenset[str] | None = None
        self._longest = 0

    @property
    def values(self) -> Mapping[str, str]:
        """Placeholder -> original value."""
        return self._values

    def restore_text(self, s: str, *, json_escaped: bool = False) -> str:
        """`s` with every placeholder of this request replaced by its value; other bracketed
        text stays. `json_escaped`: `s` is inside a JSON string, escape the values for it."""
        if "[" not in s:
            return s
        values = self._values
        if json_escaped:
            if self._escaped is None:
                self._escaped = {p: orjson.dumps(v).decode()[1:-1] for p, v in values.items()}
            values = self._escaped
        return PLACEHOLDER.sub(lambda m: values.get(m[0], m[0]), s)

    def restore_json(self, obj: Any) -> Any:
        """A whole response (OpenAI chat completion or completion, Anthropic message) with its
        texts, tool call arguments and tool inputs restored; copied only where changed."""
        return map_response(
            obj, self.restore_text, lambda s: self.restore_text(s, json_escaped=True)
        )

    def stream(self, *, json_escaped: bool = False) -> StreamRestorer:
        """A restorer for one text channel of a stream: a choice's content, a content
        block's text, one tool call's arguments (`json_escaped=True`)."""
        if self._prefixes is None:
            # Every proper prefix of a placeholder: what a stream holds back at a chunk's end.
            self._prefixes = frozenset(p[:i] for p in self._values for i in range(1, len(p)))
            self._longest = max(map(len, self._values), default=0)
        return StreamRestorer(self, self._prefixes, self._longest, json_escaped)


class StreamRestorer:
    """Restores one channel's text deltas as they come; `flush` at the channel's end.

    The output so far always equals `restore_text` of the input so far, less a held-back tail
    that is a proper prefix of one of the request's placeholders (shorter than the longest).
    """

    __slots__ = ("_held", "_json", "_longest", "_prefixes", "_restorer")

    def __init__(
        self,
        restorer: Restorer,
        prefixes: frozenset[str],
        longest: int,
        json_escaped: bool = False,
    ) -> None:
        self._restorer = restorer
        self._prefixes = prefixes
        self._longest = longest  # of the placeholders: a longer tail is no prefix of one
        self._json = json_escaped
        self._held = ""

    @property
    def pending(self) -> str:
        """The text held back: a proper prefix of a placeholder, released by `feed`/`flush`."""
        return self._held

    def feed(self, delta: str) -> str:
        """The restored text that can be released after `delta` (may be empty)."""
        text = self._held + delta if self._held else delta
        cut = text.rfind("[")
        if cut < 0:
            self._held = ""
            return text
        # Only the last "[" can open a placeholder still being written: one holds no other.
        if len(text) - cut < self._longest and text[cut:] in self._prefixes:
            self._held = text[cut:]
            text = text[:cut]
        else:
            self._held = ""
        return self._restorer.restore_text(text, json_escaped=self._json)

    def flush(self) -> str:
        """What is still held at the channel's end: it never became a placeholder."""
        held, self._held = self._held, ""
        return held
