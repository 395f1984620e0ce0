"""Realistic sensitive values for the masking tests, and generators of valid ones."""

from __future__ import annotations

import datetime

from hypothesis import strategies as st

from gateway.masking._checksums import IBAN_LENGTHS, cn_check_char

JWT = (
    "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJzdWIiOiIxMjM0NTY3ODkwIiwibmFtZSI6IkpvaG4gRG9lIn0"
    ".SflKxwRJSMeKKF2QT4fwpMeJf36POk6yJV_adQssw5c"
)
PEM = (
    "-----BEGIN RSA PRIVATE KEY-----\n"
    "MIIEowIBAAKCAQEAu1SU1LfVLPHCozMxH2Mo4lgOEePzNm0tRgeLezV6ffAt0gun\n"
    "VTLw7onLRnrq0/IzW7yWR7QkrmBL7jTKEn5u+qKhbwKfBstIs+bMY2Zkp18gnTxK\n"
    "-----END RSA PRIVATE KEY-----"
)

# detector -> values it must find, each on its own between ordinary words.
POSITIVES: dict[str, list[str]] = {
    "email": [
        "jane.doe@example.com",
        "bob+billing@mail.example.co.uk",
        "x_y-z@sub-domain.example.org",
        "ops42@corp.internal.io",
    ],
    "phone": [
        "+1 415 555 2671",
        "+1 (415) 555-2671",
        "+44 20 7946 0958",
        "+49-30-12345678",
        "+86 138 1234 5678",
        "+8613812345678",
        "13812345678",
        "138-1234-5678",
        "(415) 555-2671",
        "415-555-2671",
        "415.555.2671",
    ],
    "card": [
        "4111111111111111",
        "4111 1111 1111 1111",
        "5500-0000-0000-0004",
        "2223 0031 2200 3222",
        "378282246310005",
        "3782 822463 10005",
        "6011111111111117",
        "3530111333300000",
        "6200000000000005",
    ],
    "iban": [
        "DE89 3704 0044 0532 0130 00",
        "DE89370400440532013000",
        "GB82WEST12345698765432",
        "GB82 WEST 1234 5698 7654 32",
        "FR1420041010050500013M02606",
        "NL91ABNA0417164300",
        "BE68 5390 0754 7034",
    ],
    "cn_id": ["11010519491231002X", "110105194912310029"[:17] + cn_check_char("11010519491231002")],
    "us_ssn": ["123-45-6789", "219 09 9999", "078-05-1120"],
    "ipv4": ["192.168.1.10", "8.8.8.8", "10.0.0.1", "203.0.113.255"],
    "ipv6": [
        "2001:db8::8a2e:370:7334",
        "2001:0db8:85a3:0000:0000:8a2e:0370:7334",
        "fe80::1",
        "::ffff:192.168.1.10",
    ],
    "secret": [
        "AKIAIOSFODNN7EXAMPLE",
        "ASIAY34FZKBOKMUTVV7A",
        "AIzaSyDaGmWKa4JsXZ-HjGw7ISLn_3namBGewQe",
        "sk-proj-AbCdEf0123456789_AbCdEf0123456789-xyZ",
        "sk-ant-api03-AbCdEfGhIjKlMnOpQrStUvWxYz0123456789-_AbCd",
        "sk-" + "T3BlbkFJ" * 6,
        "sk-aigw-" + "aB3" * 13 + "x",
        "ghp_" + "a1B2c3D4e5" * 3 + "F6g7H8",
        "github_pat_11ABCDEFG0123456789_abcdefghijklmnopqrstuvwxyz",
        "xoxb-123456789012-1234567890123-AbCdEfGhIjKlMnOp",
        "sk_live_51HqLyjWDarjtT1zdp7dc",
        JWT,
        PEM,
    ],
}

# Text that looks a bit like sensitive data but is not: no detector may fire on it.
NEGATIVES: list[str] = [
    "version 1.2.3 of the library",
    "upgrade to v1.2.3.4 today",
    "release 1.2.3.4.5 is out",
    "on 2023-10-05 at 12:30:45",
    "on 10/05/2023 and 05.10.2023",
    "request 550e8400-e29b-41d4-a716-446655440000 failed",
    "commit 3f786850e387550fdab836ed7e6dc881de23001b fixed it",
    "sha256 e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
    "Order 4111111111111112 shipped",  # fails Luhn
    "Order number 1234 5678 9012 3456",  # no card scheme starts with 1
    "invoice 9876543210123 is paid",
    "reach me at user@localhost or @channel",
    "use std::vector and a::b, and ::1",
    "MAC 00:1A:2B:3C:4D:5E on port 8080",
    "ISO8601 and COVID19 and ABCD1234 codes",
    "SSN-like 000-12-3456, 666-12-3456, 900-12-3456, 123-00-4567, 123-45-0000",
    "a task-based, risk-free sk-short plan",
    "the header eyJhbGciOiJIUzI1NiJ9 alone",
    "AKIA is a prefix and AKIAIOSFODNN7 is short",
    "totals 1,234,567.89 and +1.5% and 12345678",
    "addresses 999.999.999.999, 256.1.1.1 and 01.02.03.04",
    "DE88 3704 0044 0532 0130 00 has a wrong check",
    "id 110105194902310021 has no such date",
    "call +1 23 later",
    "-----BEGIN PUBLIC KEY----- is not a secret",
]


def luhn_complete(body: str) -> str:
    """`body` with its Luhn check digit appended."""
    total = 0
    for i, c in enumerate(reversed(body)):
        d = int(c) * (2 if i % 2 == 0 else 1)
        total += d - 9 if d > 9 else d
    return body + str((10 - total % 10) % 10)


# (issuer prefix, length) of the card schemes the detector knows.
_CARD_SCHEMES = [
    ("4", 16), ("4", 13), ("4", 19), ("51", 16), ("55", 16), ("2221", 16), ("2720", 16),
    ("34", 15), ("37", 15), ("6011", 16), ("65", 16), ("62", 19), ("3528", 16), ("36", 14),
]  # fmt: skip


@st.composite
def cards(draw: st.DrawFn) -> str:
    """A valid card number (digits only)."""
    prefix, length = draw(st.sampled_from(_CARD_SCHEMES))
    body = draw(
        st.text("0123456789", min_size=length - 1 - len(prefix), max_size=length - 1 - len(prefix))
    )
    return luhn_complete(prefix + body)


def formatted_card(number: str, sep: str) -> str:
    """How people write the number: in groups of 4 (Amex 4-6-5) or in one piece."""
    if not sep:
        return number
    if len(number) == 15:
        return sep.join((number[:4], number[4:10], number[10:]))
    if len(number) == 16:
        return sep.join(number[i : i + 4] for i in range(0, 16, 4))
    return number


_LETTER_VALUES = {chr(c): str(c - 55) for c in range(65, 91)}


def iban_check_digits(country: str, bban: str) -> str:
    """The two ISO 13616 check digits of a country and BBAN."""
    numeric = "".join(_LETTER_VALUES.get(c, c) for c in bban + country + "00")
    return f"{98 - int(numeric) % 97:02d}"


@st.composite
def ibans(draw: st.DrawFn) -> str:
    """A valid IBAN (compact) of one of several countries; BBANs of digits and capitals."""
    country = draw(st.sampled_from(["DE", "FR", "GB", "NL", "ES", "IT", "BE", "CH", "NO", "PL"]))
    n = IBAN_LENGTHS[country] - 4
    letters = draw(st.text("ABCDEFGHIJKLMNOPQRSTUVWXYZ", min_size=4, max_size=4))
    digits = draw(st.text("0123456789", min_size=n, max_size=n))
    bban = letters + digits[4:] if country in ("GB", "NL") else digits
    return country + iban_check_digits(country, bban) + bban


def spaced_iban(iban: str) -> str:
    """The print form: groups of 4 separated by spaces."""
    return " ".join(iban[i : i + 4] for i in range(0, len(iban), 4))


_PROVINCES = ["11", "12", "31", "32", "33", "44", "51", "65", "81"]


@st.composite
def cn_ids(draw: st.DrawFn) -> str:
    """A valid 18-character resident identity number."""
    region = draw(st.sampled_from(_PROVINCES)) + draw(st.text("0123456789", min_size=4, max_size=4))
    born = draw(
        st.dates(
            min_value=datetime.date(1900, 1, 1),
            max_value=datetime.date(2020, 12, 31),
        )
    )
    seq = draw(st.text("0123456789", min_size=3, max_size=3))
    first17 = region + born.strftime("%Y%m%d") + seq
    return first17 + cn_check_char(first17)
