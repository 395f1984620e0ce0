"""What every detector pass shares: the text's shape, the `Finding` it reports, the pass base.

CPython's `re` tests a character class at every position of a text slowly (tens of ns a
character on the appliance), but skips to a literal prefix in C almost for free. So a text is
mapped once to its *shape*: bytes, one per character (str index = byte index), where ASCII
digits become `0`, letters `a` or `A`, other ASCII stays and everything else is `?`. Patterns
over the shape can then start with a literal (`0` for any digit) and check word boundaries
with one byte class.
"""

from __future__ import annotations

from typing import NamedTuple


class Finding(NamedTuple):
    """One detected value: `text[start:end]`, found by `detector`."""

    start: int
    end: int
    detector: str


# What passes collect: (start, end, detector), a plain tuple (a Finding costs a Python call).
Span = tuple[int, int, str]


_SHAPE = bytearray(range(256))
for _c in b"0123456789":
    _SHAPE[_c] = ord("0")
for _c in b"abcdefghijklmnopqrstuvwxyz":
    _SHAPE[_c] = ord("a")
for _c in b"ABCDEFGHIJKLMNOPQRSTUVWXYZ":
    _SHAPE[_c] = ord("A")
SHAPE_TABLE = bytes(_SHAPE)


class Text:
    """One text being scanned, with its shape made on first use."""

    __slots__ = ("_ascii", "_shape", "text")

    def __init__(self, text: str) -> None:
        self.text = text
        self._ascii = b""
        self._shape: bytes | None = None

    @property
    def shape(self) -> bytes:
        """One byte per character: 0 digit, a/A letter, ? non-ASCII, other ASCII as is."""
        if self._shape is None:
            self._ascii = self.text.encode("ascii", "replace")
            self._shape = self._ascii.translate(SHAPE_TABLE)
        return self._shape

    @property
    def ascii(self) -> bytes:
        """The text as bytes, one per character (? for non-ASCII): what the checks of values
        that the shape found read, without decoding or a str method per value."""
        if self._shape is None:
            self.shape  # noqa: B018 - made together
        return self._ascii


class Pass:
    """One family of detectors, run over a text in one or a few regular expression passes."""

    names: tuple[str, ...] = ()

    def find(self, t: Text, out: list[Span]) -> None:
        """Append (start, end, detector) for each value found in `t`, in any order."""
        raise NotImplementedError
