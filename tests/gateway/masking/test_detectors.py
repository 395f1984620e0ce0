"""The detectors: realistic values found, look-alikes not, checksums property-tested."""

from __future__ import annotations

import itertools
import random
import time

import pytest
from hypothesis import given
from hypothesis import strategies as st

from gateway.masking import (
    BUILTIN,
    Finding,
    PolicyError,
    RegexDetector,
    Scanner,
    WordsDetector,
)
from gateway.masking._checksums import cn_id_ok, luhn_ok
from tests.gateway.masking.values import (
    NEGATIVES,
    POSITIVES,
    cards,
    cn_ids,
    formatted_card,
    ibans,
    spaced_iban,
)

ALL = Scanner(BUILTIN)


def _found(scanner: Scanner, text: str) -> list[tuple[str, str]]:
    return [(text[f.start : f.end], f.detector) for f in scanner.find(text)]


@pytest.mark.parametrize(
    ("detector", "value"), [(d, v) for d, values in POSITIVES.items() for v in values]
)
@pytest.mark.parametrize("context", ["before {} after.", "{}", "(see: {})", "联系{}谢谢"])
def test_realistic_values_are_found_by_their_detector(
    detector: str, value: str, context: str
) -> None:
    text = context.format(value)
    assert _found(ALL, text) == [(value, detector)]
    # ... and by a scanner that runs only that detector.
    assert _found(Scanner([detector]), text) == [(value, detector)]


@pytest.mark.parametrize("text", NEGATIVES)
def test_look_alikes_are_not_found(text: str) -> None:
    assert ALL.find(text) == []


def test_detectors_that_are_off_do_not_run() -> None:
    text = "mail jane@example.com, card 4111 1111 1111 1111"
    assert _found(Scanner(["card"]), text) == [("4111 1111 1111 1111", "card")]
    assert Scanner([]).find(text) == []


def test_findings_are_ordered_and_do_not_overlap() -> None:
    text = (
        "IBAN DE89 3704 0044 0532 0130 00, mail ops+13812345678@example.com, "
        "ip ::ffff:192.168.1.10 and 10.0.0.1"
    )
    assert _found(ALL, text) == [
        ("DE89 3704 0044 0532 0130 00", "iban"),  # the digits inside are no card
        ("ops+13812345678@example.com", "email"),  # the phone in the local part is not one
        ("::ffff:192.168.1.10", "ipv6"),  # the IPv4 inside is part of it
        ("10.0.0.1", "ipv4"),
    ]
    found = ALL.find(text)
    assert found[0] == Finding(5, 32, "iban") and text[found[3].start : found[3].end] == "10.0.0.1"


def test_a_number_inside_a_word_or_token_is_no_candidate() -> None:
    for text in ("ID4111111111111111", "4111111111111111x", "x_13812345678", "ab-192.168.1.10"):
        assert ALL.find(text) == [], text


def test_phone_formats() -> None:
    text = "call +1 415 555 2671 (cell), or 138 1234 5678, or 86 13812345678"
    assert _found(ALL, text) == [
        ("+1 415 555 2671", "phone"),
        ("138 1234 5678", "phone"),
        ("86 13812345678", "phone"),
    ]
    # North American numbers need separators; Chinese mobiles start with 13-19.
    assert ALL.find("call 4155552671 or 12812345678") == []


def test_an_18_digit_value_that_is_no_cn_id_can_still_be_a_card() -> None:
    card = "6" + "2" * 16
    card = card[:17] + str(next(d for d in range(10) if luhn_ok(card[:17] + str(d))))
    assert not cn_id_ok(card)
    assert _found(ALL, f"card {card}") == [(card, "card")]


def test_pem_key_without_end_is_masked_to_the_end_of_its_base64() -> None:
    body = "MIIEowIBAAKCAQEAu1SU1LfVLPHCozMxH2Mo4lgOEePzNm0tRgeLezV6ffAt0gun"
    text = f"key:\n-----BEGIN PRIVATE KEY-----\n{body}\n{body}\nand then some words"
    assert _found(ALL, text) == [(text[5 : text.index("\nand")], "secret")]


_N = 256 * 1024
PATHOLOGICAL = {
    "colons": ":" * _N,
    "times": "12:30:45 " * (_N // 9),
    "hex and colons": "ab12:" * (_N // 5),
    "at signs": "@a" * (_N // 2),
    "a long domain": "x@" + "a." * (_N // 2 - 2),
    "digits": "1 " * (_N // 2),
    "PEM lines without END": "-----BEGIN PRIVATE KEY-----\n" * (_N // 28),
    "JWT headers": "eyJ" * (_N // 3),
    "key prefixes": "sk-ghp_AKIAxoxb-" * (_N // 16),
    "IBAN-like": "AA00 " * (_N // 5),
}


@pytest.mark.parametrize("text", PATHOLOGICAL.values(), ids=PATHOLOGICAL.keys())
def test_no_pass_is_quadratic_on_pathological_text(text: str) -> None:
    # 256 KB each: linear passes take milliseconds, a quadratic one many seconds.
    start = time.process_time()
    ALL.find(text)
    assert time.process_time() - start < 2.0


# --- checksums, property-tested ---------------------------------------------------------------


def _one_digit_changed(value: str, rnd: random.Random) -> str:
    positions = [i for i, c in enumerate(value) if c.isdigit()]
    i = rnd.choice(positions)
    digit = rnd.choice([d for d in "0123456789" if d != value[i]])
    return value[:i] + digit + value[i + 1 :]


@given(cards(), st.sampled_from(["", " ", "-"]), st.randoms(use_true_random=False))
def test_valid_cards_are_found_and_one_changed_digit_is_not(
    number: str, sep: str, rnd: random.Random
) -> None:
    card = formatted_card(number, sep)
    scanner = Scanner(["card"])
    assert _found(scanner, f"pay with {card} today") == [(card, "card")]
    # Luhn catches every single-digit error.
    wrong = _one_digit_changed(card, rnd)
    assert scanner.find(f"pay with {wrong} today") == []


@given(ibans(), st.booleans(), st.randoms(use_true_random=False))
def test_valid_ibans_are_found_and_one_changed_digit_is_not(
    iban: str, spaced: bool, rnd: random.Random
) -> None:
    value = spaced_iban(iban) if spaced else iban
    scanner = Scanner(["iban"])
    assert _found(scanner, f"to {value}, thanks") == [(value, "iban")]
    # mod-97 catches every single-character error.
    wrong = _one_digit_changed(value, rnd)
    assert scanner.find(f"to {wrong}, thanks") == []


@given(cn_ids(), st.randoms(use_true_random=False))
def test_valid_cn_ids_are_found_and_one_changed_digit_is_not(
    value: str, rnd: random.Random
) -> None:
    scanner = Scanner(["cn_id"])
    assert _found(scanner, f"身份证号码{value}。") == [(value, "cn_id")]
    # The weights are all non-zero mod 11: every single-digit error changes the check.
    wrong = value[:17] if value[17] == "X" else value
    wrong = _one_digit_changed(wrong[:17], rnd) + value[17]
    assert scanner.find(f"身份证号码{wrong}。") == []


@given(st.text(max_size=200))
def test_scanning_any_text_terminates_with_well_formed_findings(text: str) -> None:
    found = ALL.find(text)
    for a, b in itertools.pairwise(found):
        assert a.end <= b.start
    assert all(0 <= f.start < f.end <= len(text) for f in found)


# --- custom detectors --------------------------------------------------------------------------


def test_regex_detector_is_named_custom_and_finds_matches() -> None:
    d = RegexDetector("acme_ids", r"ACME-\d{6}")
    scanner = Scanner([], [d])
    assert d.name == "custom:acme_ids"
    assert _found(scanner, "tickets ACME-123456 and ACME-12") == [
        ("ACME-123456", "custom:acme_ids")
    ]


@pytest.mark.parametrize(
    ("pattern", "error"),
    [("ACME-(", "bad regular expression"), ("x*", "matches empty text")],
)
def test_bad_custom_regexes_are_refused_with_the_detector_name(pattern: str, error: str) -> None:
    with pytest.raises(PolicyError, match=f"'acme'.*{error}"):
        RegexDetector("acme", pattern)


def test_custom_names_are_checked() -> None:
    with pytest.raises(PolicyError, match="name"):
        WordsDetector("no spaces", ["x"])
    with pytest.raises(PolicyError, match="empty"):
        WordsDetector("empty", ["", "  "])


@pytest.mark.parametrize("many", [False, True])
def test_word_lists_match_whole_words_case_insensitively(many: bool) -> None:
    words = ["Falcon", "blue harbor", "c++", "猎鹰"]
    if many:  # from 8 words on, a token set narrows the candidates first
        words += [f"filler{i}" for i in range(10)]
    scanner = Scanner([], [WordsDetector("code", words)])
    text = "FALCON, falcons, Blue\n  Harbor, bluehar, C++ and 猎鹰计划"
    assert _found(scanner, text) == [
        ("FALCON", "custom:code"),
        ("Blue\n  Harbor", "custom:code"),
        ("C++", "custom:code"),
        ("猎鹰", "custom:code"),
    ]


def test_custom_and_builtin_detectors_run_together() -> None:
    scanner = Scanner(["email"], [WordsDetector("code", ["falcon"])])
    assert scanner.names == ("email", "custom:code")
    assert _found(scanner, "falcon@example.com and falcon") == [
        ("falcon@example.com", "email"),
        ("falcon", "custom:code"),
    ]


def test_unknown_builtin_detectors_are_refused() -> None:
    with pytest.raises(PolicyError, match="unknown detector 'emial'"):
        Scanner(["emial"])
