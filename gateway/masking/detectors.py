"""The built-in detectors and the `Scanner` that runs a policy's detectors over a text.

Each detector has a stable name, used in policies and recorded in the ledger: the built-ins in
`BUILTIN`, and a project's own as `custom:NAME` (`gateway.masking.custom`). A `Scanner` is
compiled once per policy from the detectors it turns on; `Scanner.find` returns the
non-overlapping `Finding`s of one text.

Every pass is a regular expression that starts with a literal (see `_text` for why): all the
digit formats (card, CN id, SSN, IPv4, phone) are one alternation over the text's shape after
a `0`, IBANs start with `AA00`, email domains with `@`, IPv6 with a `:x:` hint and secrets with
their providers' prefixes, so a prompt with none of those costs a few memchr-like scans. What
a pattern finds is then checked in Python (Luhn and issuer prefixes, mod-97 and the country's
length, GB 11643 and the birth date, the SSA's unused ranges, `ipaddress`). Boundaries are
checked on the shape, so a number inside a word, a hash, a UUID or a version is no candidate.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Callable, Iterable
from typing import NamedTuple

from gateway.masking._checksums import (
    IBAN_LENGTHS,
    card_iin_ok,
    cn_id_ok,
    iban_ok,
    luhn_bytes_ok,
    ssn_ok,
)
from gateway.masking._text import Finding, Pass, Span, Text
from gateway.masking.custom import CustomDetector
from gateway.masking.errors import PolicyError

SECRET = "secret"
EMAIL = "email"
IBAN = "iban"
CN_ID = "cn_id"
CARD = "card"
US_SSN = "us_ssn"
PHONE = "phone"
IPV6 = "ipv6"
IPV4 = "ipv4"
# Also the priority when two detectors claim the same text: the more specific format wins.
BUILTIN: tuple[str, ...] = (SECRET, EMAIL, IBAN, CN_ID, CARD, US_SSN, PHONE, IPV6, IPV4)


# --- the digit formats: one alternation over the shape ----------------------------------------

# Every branch starts after the first digit: the shared `0` makes the whole alternation start
# with a literal. The first digit must not continue a word, a number or a hyphenated/dotted
# token (UUIDs, versions such as v1.2.3.4.5, hashes).
# Every format has at least 6 more digits or separators after the first digit ("1.1.1.1"):
# checking that once rejects short numbers before the branches are tried. ISO dates
# (2024-05-01), the commonest number that passes that check, are rejected next: only an E.164
# number (after a "+") can start with 4 digits, "-", 2 digits and "-", and a date costs the
# ten branches several times what this check does.
_HEAD = rb"0(?<![0aA_]0)(?<![0aA][\-.]0)(?=[0 \-.()]{6})(?:(?<=\+0)|(?!000-00-))"
_END = rb"(?![0aA_])"
_END_STRICT = rb"(?![0aA_])(?![\-.]0)"
_SEPS = b" -.()+"  # what the separators of digit formats are: deleted before a check

# A check gets (raw, shape, start, end) of a branch's match, `raw` being the text as ASCII
# bytes (`Text.ascii`: the shape matched ASCII only), and returns the finding to report, or
# None when the value fails its checksum or plausibility rules.
_Check = Callable[[bytes, bytes, int, int], Span | None]


def _check_card(raw: bytes, shape: bytes, start: int, end: int) -> Span | None:
    d = raw[start:end].translate(None, _SEPS)
    # Luhn first: it runs in C (byte sums) and rejects 9 in 10 random numbers. Then the issuer
    # prefix, without a call for the commonest first digits (4, 5 and 6 always pass).
    if 13 <= len(d) <= 19 and luhn_bytes_ok(d) and (d[0] in b"456" or card_iin_ok(d)):
        return start, end, CARD
    return None


def _check_cn_id(raw: bytes, shape: bytes, start: int, end: int) -> Span | None:
    return (start, end, CN_ID) if cn_id_ok(raw[start:end].decode()) else None


def _check_ssn(raw: bytes, shape: bytes, start: int, end: int) -> Span | None:
    v = raw[start:end].decode()
    return (start, end, US_SSN) if ssn_ok(v[0:3], v[4:6], v[7:11]) else None


def _check_ipv4(raw: bytes, shape: bytes, start: int, end: int) -> Span | None:
    try:
        ipaddress.IPv4Address(raw[start:end].decode())  # also refuses octets over 255, 01
    except ValueError:
        return None
    return start, end, IPV4


def _check_phone_intl(raw: bytes, shape: bytes, start: int, end: int) -> Span | None:
    while shape[end - 1] != 48:  # the class also took trailing separators
        end -= 1
    n = shape.count(b"0", start, end)
    if 8 <= n <= 15 and raw[start] != 48:  # E.164: at most 15 digits, no leading 0
        return start - 1, end, PHONE  # with the "+"
    return None


def _check_phone_nanp(raw: bytes, shape: bytes, start: int, end: int) -> Span | None:
    d = raw[start:end].translate(None, _SEPS)
    if d[0] in b"01" or d[3] in b"01":  # area code and exchange start with 2-9
        return None
    return (start - 1 if shape[start - 1] == 40 else start), end, PHONE  # with "(" of "(415)"


def _check_phone_cn(raw: bytes, shape: bytes, start: int, end: int) -> Span | None:
    d = raw[start:end].translate(None, _SEPS)
    if len(d) == 13 and d.startswith(b"86"):
        d = d[2:]
    if len(d) == 11 and d[0] == 49 and d[1] in b"3456789":  # 1, then 3-9
        return (start - 1 if shape[start - 1] == 43 else start), end, PHONE  # "+" of "+86"
    return None


# (detector, pattern after the first digit, check), in the order the alternation tries them.
# Branches start with a literal or a class where they can: `re` then skips a branch after one
# character test.
_DIGIT_BRANCHES: tuple[tuple[str, bytes, _Check], ...] = (
    (CN_ID, rb"00{15}[0aA]" + _END, _check_cn_id),
    (CARD, rb"00{11,17}" + _END, _check_card),
    (CARD, rb"000[ \-]0000[ \-]0000[ \-]0000(?:[ \-]0{1,3})?" + _END, _check_card),
    (CARD, rb"000[ \-]000000[ \-]0{4,5}" + _END, _check_card),  # Amex 4-6-5, Diners 4-6-4
    (US_SSN, rb"00(?:-00-| 00 )0000" + _END_STRICT, _check_ssn),
    (IPV4, rb"0{0,2}\.0{1,3}\.0{1,3}\.0{1,3}(?![0aA_])(?!\.0)", _check_ipv4),
    # E.164 after a "+": digits and single separators; the check counts the digits.
    (PHONE, rb"[0 \-.()](?<=\+0[0 \-.()])[0 \-.()]{5,21}" + _END, _check_phone_intl),
    # North American numbers need separators: (415) 555-2671, 415-555-2671, 415.555.2671.
    (PHONE, rb"0(?<=\(00)0\) ?000[\-. ]0000" + _END_STRICT + rb"(?! 0)", _check_phone_nanp),
    (PHONE, rb"00(?P<nsep>[\-. ])000(?P=nsep)0000" + _END_STRICT + rb"(?! 0)", _check_phone_nanp),
    # Chinese mobiles: 11 digits or 3-4-4, optionally after 86.
    (
        PHONE,
        rb"0(?:0{9}|0[ \-]0000[ \-]0000|[ \-]?(?:0{11}|000[ \-]0000[ \-]0000))"
        + _END_STRICT
        + rb"(?! 0)",
        _check_phone_cn,
    ),
)


class _Alternation(NamedTuple):
    rx: re.Pattern[bytes]
    branch_of_group: list[int]  # index of a branch's closing tag group -> branch index


class _DigitPass(Pass):
    """Card, CN id, SSN, IPv4 and phone: one regular expression pass over the shape."""

    def __init__(self, names: set[str]) -> None:
        self._branches = [b for b in _DIGIT_BRANCHES if b[0] in names]
        self.names = tuple(dict.fromkeys(b[0] for b in self._branches))
        # suffix[k] tries branches k.. in order: when branch k's value fails its check, the
        # later branches may still match at the same place (18 digits: CN id, else a card).
        self._suffix = [self._compile(k) for k in range(len(self._branches))]
        self._checks = [b[2] for b in self._branches]

    def _compile(self, first: int) -> _Alternation:
        # An empty group closes each branch: it is the last group to close, so `lastindex`
        # says which branch matched, and the branch itself still starts with its literal.
        ks = range(first, len(self._branches))
        parts = [self._branches[k][1] + b"(?P<b%d>)" % k for k in ks]
        rx = re.compile(_HEAD + b"(?:" + b"|".join(parts) + b")")
        branch_of_group = [0] * (rx.groups + 1)
        for k in ks:
            branch_of_group[rx.groupindex[f"b{k}"]] = k
        return _Alternation(rx, branch_of_group)

    def find(self, t: Text, out: list[Span]) -> None:
        """Append the digit formats found in `t`."""
        shape = t.shape
        if 48 not in shape:  # b"0": an int needle is a memchr; a bytes one first fails as an int
            return
        raw = t.ascii
        checks = self._checks
        first = self._suffix[0]
        branch_of_group = first.branch_of_group
        last = len(checks) - 1
        for m in first.rx.finditer(shape):
            start, end = m.span()
            k = branch_of_group[m.lastindex or 0]  # a branch's tag group closes last
            found = checks[k](raw, shape, start, end)
            if found is None and k < last:
                found = self._fallback(raw, shape, start, k)
            if found is not None:
                out.append(found)

    def _fallback(self, raw: bytes, shape: bytes, start: int, k: int) -> Span | None:
        """What the branches after `k` find at `start`, when branch k's value failed its check."""
        while k < len(self._checks) - 1:
            alt = self._suffix[k + 1]
            m = alt.rx.match(shape, start)
            if m is None:
                return None
            k = alt.branch_of_group[m.lastindex or 0]
            found = self._checks[k](raw, shape, start, m.end())
            if found is not None:
                return found
        return None


# --- IBAN ------------------------------------------------------------------------------------

# Country code and check digits, then groups of 4 (printed with single spaces, or none).
_IBAN_SHAPE = re.compile(rb"AA00(?<![0aA_]AA00)(?: ?[0A]{4}){2,7}(?: ?[0A]{1,3})?" + _END)


class _IbanPass(Pass):
    names: tuple[str, ...] = (IBAN,)

    def find(self, t: Text, out: list[Span]) -> None:
        """Append the IBANs found in `t` (upper case, contiguous or in groups of 4)."""
        shape = t.shape
        if shape.find(b"AA00") < 0:
            return
        text = t.text
        for m in _IBAN_SHAPE.finditer(shape):
            start = m.start()
            end = _iban_end(text, start, m.end())
            if end is not None:
                out.append((start, end, IBAN))


def _iban_end(text: str, start: int, end: int) -> int | None:
    """Where the IBAN at `start` ends: its country fixes the length, so a following word in
    capitals that the pattern also took is cut off again (at a space)."""
    length = IBAN_LENGTHS.get(text[start : start + 2])
    if length is None:
        return None
    chars: list[str] = []
    i = start
    while i < end and len(chars) < length:
        if text[i] != " ":
            chars.append(text[i])
        i += 1
    if len(chars) < length or (i < end and text[i] != " ") or not iban_ok("".join(chars)):
        return None
    return i


# --- email -----------------------------------------------------------------------------------

# Labels, then the top-level domain. A label starts and ends with a letter or digit; it is always
# followed by its ".", so it is the whole run of label characters there: the possessive run
# never gives any back (no backtracking inside a label), and the lookbehind checks its last
# character. The same for the top-level domain (letters only, at most 63).
_EMAIL_DOMAIN = re.compile(rb"@(?:[aA0][aA0\-]*+(?<=[aA0])\.)+[aA]{2,63}+(?![aA0\-_])")
_EMAIL_LOCAL = b"aA0._%+-"  # what a local part is made of, in the shape


class _EmailPass(Pass):
    names: tuple[str, ...] = (EMAIL,)

    def find(self, t: Text, out: list[Span]) -> None:
        """Append the email addresses (ASCII) found in `t`."""
        if "@" not in t.text:
            return
        shape = t.shape
        for m in _EMAIL_DOMAIN.finditer(shape):
            at, end = m.span()
            # The local part ends at the "@" and starts where the local characters that
            # rstrip takes off the (at most) 64 bytes before it start.
            lo = at - 64 if at > 64 else 0
            start = lo + len(shape[lo:at].rstrip(_EMAIL_LOCAL))
            while shape[start] == 46:  # not from a leading "." (the "@" stops it)
                start += 1
            if start < at:
                out.append((start, end, EMAIL))


# --- IPv6 ------------------------------------------------------------------------------------

# Every IPv6 address contains "::", or at least six colons with hex digits between them: a hint
# that starts with a literal, which times (12:30:45) and MAC addresses (5 colons) never give.
_IPV6_HINT = re.compile(r":(?::|(?:[0-9A-Fa-f]{1,4}:){5})")
_IPV6 = re.compile(
    r"[0-9A-Fa-f]{0,4}(?::[0-9A-Fa-f]{0,4}){2,7}(?:(?<=[0-9])\.[0-9]{1,3}\.[0-9]{1,3}\.[0-9]{1,3})?"
)
_IPV6_CHARS = frozenset("0123456789abcdefABCDEF:")
_IPV6_RUN = re.compile(r"[0-9A-Fa-f:]*")
_ASCII_WORD = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_"
_IPV6_NOT_BEFORE = frozenset(_ASCII_WORD + ":.")
_IPV6_NOT_AFTER = frozenset(_ASCII_WORD)
_HEX_GROUPS = re.compile(r"[0-9A-Fa-f]+")


class _Ipv6Pass(Pass):
    names: tuple[str, ...] = (IPV6,)

    def find(self, t: Text, out: list[Span]) -> None:
        """Append the IPv6 addresses found in `t`."""
        text = t.text
        if text.find(":") < 0:
            return
        pos = 0
        while (hint := _IPV6_HINT.search(text, pos)) is not None:
            # An address starts where a run of hex digits and colons does (nothing of that run
            # may come before it), at most 39 characters before its hint.
            start = hint.start()
            floor = max(pos, start - 39)
            while start > floor and text[start - 1] in _IPV6_CHARS:
                start -= 1
            end = None
            if start == 0 or text[start - 1] not in _IPV6_CHARS:
                m = _IPV6.match(text, start)
                end = _ipv6_end(text, start, m.end()) if m is not None else None
            if end is not None:
                out.append((start, end, IPV6))
                pos = end
            else:  # no address starts later in the same run: skip all of it
                run = _IPV6_RUN.match(text, hint.end())
                pos = run.end() if run is not None else hint.end()


def _ipv6_end(text: str, start: int, end: int) -> int | None:
    """Where the address at `start` ends, or None: not part of a longer token, valid, and
    unambiguous."""
    if start > 0 and text[start - 1] in _IPV6_NOT_BEFORE:
        return None
    if end < len(text) and text[end] in _IPV6_NOT_AFTER:
        return None
    candidate = text[start:end]
    if candidate.endswith(":") and not candidate.endswith("::"):
        candidate = candidate[:-1]  # "fe80::1: is up"
    colons = candidate.count(":")
    if "::" not in candidate and colons != 7 and not (colons == 6 and "." in candidate):
        return None  # cheaper than the exception ipaddress raises
    try:
        ipaddress.IPv6Address(candidate)
    except ValueError:
        return None
    # "::1", "a::b" (a slice in code) are valid addresses but too ambiguous to report.
    groups = _HEX_GROUPS.findall(candidate.split(".")[0])
    if len(groups) < 2 or sum(map(len, groups)) < 4:
        return None
    return start + len(candidate)


# --- secrets: provider key prefixes --------------------------------------------------------------

# Each pattern starts with a literal, which `re` skips to in C, then checks that no token
# character comes right before it. Bodies follow the providers' documented formats. Each is
# searched outright: testing its prefixes with `in` first cost a scan of the text per prefix,
# each about as slow as the pattern's own search. Only the GitHub pattern, whose first letter
# "g" is common, is guarded, by a one-character test (a memchr).
_SECRETS: tuple[tuple[str, re.Pattern[str]], ...] = (
    # AWS access key ids (long-term and STS) and Google API keys.
    (
        "",
        re.compile(
            r"A(?<![A-Za-z0-9_]A)(?:(?:KIA|SIA)[A-Z0-9]{16}(?![A-Za-z0-9])|Iza[\w-]{35}(?![\w-]))",
            re.ASCII,
        ),
    ),
    # OpenAI (sk-, sk-proj-, ...), Anthropic (sk-ant-), this gateway's keys (sk-aigw-), Stripe.
    (
        "",
        re.compile(
            r"sk(?<![A-Za-z0-9_\-]sk)(?:-(?:ant-[\w-]{20,}|aigw-[A-Za-z0-9]{40}(?![A-Za-z0-9])"
            r"|(?:proj|svcacct|admin)-[\w-]{20,}|[A-Za-z0-9]{32,}(?![\w-]))"
            r"|_live_[A-Za-z0-9]{16,})",
            re.ASCII,
        ),
    ),
    # GitHub tokens: classic (ghp_, gho_, ghu_, ghs_, ghr_) and fine-grained; all have a "_".
    (
        "_",
        re.compile(
            r"g(?<![A-Za-z0-9_]g)(?:h[pousr]_[A-Za-z0-9]{36,}|ithub_pat_\w{22,})(?!\w)",
            re.ASCII,
        ),
    ),
    # Slack tokens.
    ("", re.compile(r"xox(?<![A-Za-z0-9_]xox)[abpr]-[A-Za-z0-9-]{10,}", re.ASCII)),
    # JWTs: base64url JSON header and payload, then the signature (empty for alg "none").
    (
        "",
        re.compile(r"eyJ(?<![A-Za-z0-9_\-]eyJ)[\w-]{8,}\.eyJ[\w-]{8,}\.[\w-]*", re.ASCII),
    ),
)


# PEM private keys: the BEGIN line; the key runs to its END line, or, when the text has none
# before the next BEGIN, to the end of its headers and base64 lines.
_PEM_BEGIN = re.compile(r"-----BEGIN (?:[A-Z0-9]+ )*PRIVATE KEY-----", re.ASCII)
_PEM_END = re.compile(r"-----END (?:[A-Z0-9]+ )*PRIVATE KEY-----", re.ASCII)
_PEM_BODY = re.compile(r"(?:\s*[A-Za-z][\w-]*: [^\n]*)*(?:\s*[A-Za-z0-9+/=]{16,})*", re.ASCII)


class _SecretPass(Pass):
    names: tuple[str, ...] = (SECRET,)

    def find(self, t: Text, out: list[Span]) -> None:
        """Append the cloud and API keys, tokens and private keys found in `t`."""
        text = t.text
        for guard, rx in _SECRETS:
            if guard and text.find(guard) < 0:
                continue
            for m in rx.finditer(text):
                out.append((m.start(), m.end(), SECRET))
        if "-----BEGIN" in text:
            _pem(text, out)


def _pem(text: str, out: list[Span]) -> None:
    """Append the PEM private keys; linear however many BEGIN lines lack their END."""
    pos = 0
    while (begin := _PEM_BEGIN.search(text, pos)) is not None:
        start, pos = begin.span()
        bound = text.find("-----BEGIN", pos)
        end = _PEM_END.search(text, pos, len(text) if bound < 0 else bound)
        if end is not None:
            pos = end.end()
        elif (body := _PEM_BODY.match(text, pos)) is not None:  # it always matches
            pos = body.end()
        out.append((start, pos, SECRET))


# --- the scanner -----------------------------------------------------------------------------

# Shorter than the shortest built-in value ("a@b.co"): only custom detectors look at it.
_MIN_BUILTIN_LEN = 6


class Scanner:
    """The detectors of one policy, compiled once; `find` runs only the passes they need."""

    def __init__(self, names: Iterable[str], custom: Iterable[CustomDetector] = ()) -> None:
        wanted = set(names)
        unknown = wanted.difference(BUILTIN)
        if unknown:
            raise PolicyError(
                f"unknown detector {sorted(unknown)[0]!r}; the built-in detectors are "
                + ", ".join(BUILTIN)
            )
        passes: list[Pass] = []
        if SECRET in wanted:
            passes.append(_SecretPass())
        if EMAIL in wanted:
            passes.append(_EmailPass())
        if IBAN in wanted:
            passes.append(_IbanPass())
        if wanted & {CN_ID, CARD, US_SSN, PHONE, IPV4}:
            passes.append(_DigitPass(wanted))
        if IPV6 in wanted:
            passes.append(_Ipv6Pass())
        self._builtin = tuple(passes)
        self._custom = tuple(custom)
        self.names: tuple[str, ...] = tuple(n for n in BUILTIN if n in wanted)
        self.names += tuple(c.name for c in self._custom)
        if len(set(self.names)) != len(self.names):
            raise PolicyError("two custom detectors have the same name")
        self._priority = {n: i for i, n in enumerate(self.names)}

    @property
    def passes(self) -> tuple[Pass, ...]:
        """The passes `spans` runs over a text, built-in then custom (for measuring them)."""
        return self._builtin + self._custom

    def find(self, text: str) -> list[Finding]:
        """The values found in `text`, in order and without overlaps: where two overlap, the
        one that starts first wins, then the longer, then the earlier in `names`."""
        return [Finding(*s) for s in self.spans(text)]

    def spans(self, text: str) -> list[Span]:
        """`find` as plain (start, end, detector) tuples, for the hot path."""
        t = Text(text)
        found: list[Span] = []
        if len(text) >= _MIN_BUILTIN_LEN:
            for p in self._builtin:
                p.find(t, found)
        for c in self._custom:
            c.find(t, found)
        if len(found) < 2:
            return found
        found.sort()  # by start, then end (the shorter first)
        # Values rarely overlap: check that in one cheap loop, and merge only when some do.
        end = 0
        for f in found:
            if f[0] < end:
                return self._merge(found)
            end = f[1]
        return found

    def _merge(self, found: list[Span]) -> list[Span]:
        """Sorted spans without overlaps: the first to start wins, at the same start the
        longer, then the earlier detector in `names`."""
        prio = self._priority
        last = found[0]
        kept = [last]
        for f in found[1:]:
            if f[0] >= last[1]:
                kept.append(f)
                last = f
            elif f[0] == last[0] and (f[1] > last[1] or prio[f[2]] < prio[last[2]]):
                kept[-1] = last = f  # the same start: the longer, or the earlier detector
        return kept
