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


def test_scan_ignores_absent_values_and_prefixes() -> None:
    """A value that only shares a prefix with a word in the text is not a hit."""
    assert [] == leaked({"abcdefgh12345678"}, ["abcdefgh1234567 and abcdefgh123456789"])


def test_short_placeholders_are_not_tracked() -> None:
    """Values shorter than 8 characters (test placeholders) are not tracked as issued."""
    record_issued("s1")
    assert "s1" not in ISSUED
