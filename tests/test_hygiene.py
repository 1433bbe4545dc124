"""The suite-wide secret hygiene scan itself: it must be able to fail."""

from __future__ import annotations

from rotator.sandbox import ISSUED, record_issued
from tests.conftest import leaked


def test_scan_finds_an_issued_value_in_text() -> None:
    """A value in the middle of a log line, JSON or a traceback is found."""
    values = {"Zq3-secret_value_0123456789", "hvs.CAESIJ2token"}
    texts = [
        '{"event": "x", "detail": "Zq3-secret_value_0123456789"}',
        "Traceback ... token=hvs.CAESIJ2token.",
    ]
    assert sorted(values) == leaked(values, texts)


def test_scan_finds_a_value_glued_to_other_characters() -> None:
    """A value with a prefix or suffix stuck to it (`whsec_<v>`, `Bearer-<v>-x`) is a hit."""
    value = "Zq3secretvalue0123456789abcdefghijk"
    assert [value] == leaked({value}, [f"sig whsec_{value}"])
    assert [value] == leaked({value}, [f"Authorization: Bearer-{value}-x"])


def test_scan_ignores_values_that_are_absent() -> None:
    """Text holding only part of a value, or a different value, is not a hit."""
    assert [] == leaked({"abcdefgh12345678"}, ["abcdefgh1234567 and bcdefgh12345678x"])


def test_short_placeholders_are_not_tracked() -> None:
    """Values shorter than 8 characters (test placeholders) are not tracked as issued."""
    record_issued("s1")
    assert "s1" not in ISSUED
