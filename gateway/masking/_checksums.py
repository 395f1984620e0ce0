"""Check digits and plausibility rules of the formats that have them (card, IBAN, CN id, SSN).

Each takes the candidate as found in the text (separators already removed where noted) and
answers whether it is a real-looking value: the regular expressions only find the shapes.
"""

from __future__ import annotations

import datetime


def luhn_ok(digits: str) -> bool:
    """The Luhn (mod 10) check of an ASCII digit string, its check digit last."""
    return luhn_bytes_ok(digits.encode("ascii"))


def luhn_bytes_ok(b: bytes) -> bool:
    """`luhn_ok` of ASCII digits already in bytes (what the detectors have)."""
    # A plain loop over small ints: mypyc compiles it to C arithmetic (setup.py).
    total = 0
    i = len(b) - 1
    double = False
    while i >= 0:
        d = b[i] - 48
        if double:
            d = d * 2 - 9 if d > 4 else d * 2
        total += d
        double = not double
        i -= 1
    return total % 10 == 0


def card_iin_ok(digits: bytes) -> bool:
    """Whether the number (ASCII digits) starts with an issuer prefix of a card scheme in use."""
    first = digits[0]
    if first == 52 or first == 53 or first == 54:  # 4, 5, 6
        return True  # Visa; Mastercard, Maestro; Discover, UnionPay, Maestro
    four = int(digits[:4])
    if first == 50:  # 2: Mastercard's 2-series
        return 2221 <= four <= 2720
    if first == 51:  # 3: Amex 34/37, Diners 300-305/36/38/39, JCB 3528-3589
        two = four // 100
        return two in (34, 36, 37, 38, 39) or 3000 <= four <= 3059 or 3528 <= four <= 3589
    return False


# ISO 13616 registry: the IBAN length of each country that issues them.
IBAN_LENGTHS: dict[str, int] = {
    "AD": 24, "AE": 23, "AL": 28, "AT": 20, "AZ": 28, "BA": 20, "BE": 16, "BG": 22, "BH": 22,
    "BI": 27, "BR": 29, "BY": 28, "CH": 21, "CR": 22, "CY": 28, "CZ": 24, "DE": 22, "DJ": 27,
    "DK": 18, "DO": 28, "EE": 20, "EG": 29, "ES": 24, "FI": 18, "FK": 18, "FO": 18, "FR": 27,
    "GB": 22, "GE": 22, "GI": 23, "GL": 18, "GR": 27, "GT": 28, "HR": 21, "HU": 28, "IE": 22,
    "IL": 23, "IQ": 23, "IS": 26, "IT": 27, "JO": 30, "KW": 30, "KZ": 20, "LB": 28, "LC": 32,
    "LI": 21, "LT": 20, "LU": 20, "LV": 21, "LY": 25, "MC": 27, "MD": 24, "ME": 22, "MK": 19,
    "MN": 20, "MR": 27, "MT": 31, "MU": 30, "NI": 28, "NL": 18, "NO": 15, "OM": 23, "PK": 24,
    "PL": 28, "PS": 29, "PT": 25, "QA": 29, "RO": 24, "RS": 22, "RU": 33, "SA": 24, "SC": 31,
    "SD": 18, "SE": 24, "SI": 19, "SK": 24, "SM": 27, "SO": 23, "ST": 25, "SV": 28, "TL": 23,
    "TN": 24, "TR": 26, "UA": 29, "VA": 22, "VG": 24, "XK": 20, "YE": 30,
}  # fmt: skip

# Mod-97 works on the number where each letter stands for two digits: A=10 ... Z=35.
_IBAN_LETTERS = {ord(c): str(i) for i, c in enumerate("ABCDEFGHIJKLMNOPQRSTUVWXYZ", 10)}


def iban_ok(iban: str) -> bool:
    """ISO 13616: the country's length, alphanumerics only, and the mod-97 remainder 1."""
    if IBAN_LENGTHS.get(iban[:2]) != len(iban) or not iban.isalnum() or not iban.isascii():
        return False
    return int((iban[4:] + iban[:4]).translate(_IBAN_LETTERS)) % 97 == 1


# GB 11643-1999: the weights of the first 17 digits and the check character for sum mod 11.
_CN_WEIGHTS = (7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2)
_CN_CHECK = "10X98765432"
# The first two digits: the provinces of GB/T 2260, and 71/81/82/83 (Taiwan, Hong Kong, Macao
# and the residence permits of their residents).
_CN_PROVINCES = frozenset(
    {"11", "12", "13", "14", "15", "21", "22", "23", "31", "32", "33", "34", "35", "36", "37",
     "41", "42", "43", "44", "45", "46", "50", "51", "52", "53", "54", "61", "62", "63", "64",
     "65", "71", "81", "82", "83"}
)  # fmt: skip


def cn_id_ok(value: str, today: datetime.date | None = None) -> bool:
    """An 18-character resident identity number: province, a birth date that exists and is
    not in the future (1900 or later), and the GB 11643 check character (X for 10)."""
    if len(value) != 18 or not value[:17].isdigit() or not value.isascii():
        return False
    check = value[17].upper()
    if value[:2] not in _CN_PROVINCES or check not in "0123456789X":
        return False
    try:
        born = datetime.date(int(value[6:10]), int(value[10:12]), int(value[12:14]))
    except ValueError:
        return False
    if born.year < 1900 or born > (today or datetime.date.today()):
        return False
    total = sum(w * int(c) for w, c in zip(_CN_WEIGHTS, value, strict=False))
    return _CN_CHECK[total % 11] == check


def cn_check_char(first17: str) -> str:
    """The GB 11643 check character of 17 digits (for building test values)."""
    return _CN_CHECK[sum(w * int(c) for w, c in zip(_CN_WEIGHTS, first17, strict=True)) % 11]


def ssn_ok(area: str, group: str, serial: str) -> bool:
    """A US SSN outside the never-issued ranges: area 000, 666, 9xx; group 00; serial 0000."""
    return area != "000" and area != "666" and area[0] != "9" and group != "00" and serial != "0000"
