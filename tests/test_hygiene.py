"""The suite-wide secret hygiene scan itself: it must be able to fail."""

from __future__ import annotations

from pathlib import Path

import pytest

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


_LEAKING_SUITE = """
from rotator.sandbox import record_issued

def test_prints_a_secret():
    value = "Zq3leakedsecretvalue0123456789"
    record_issued(value)
    print("oops", value)
"""


@pytest.mark.parametrize("workers", [[], ["-n", "2"]], ids=["plain", "xdist"])
def test_a_leak_fails_the_whole_run(pytester: pytest.Pytester, workers: list[str]) -> None:
    """A secret printed by a passing test fails the run, also when xdist workers ran it."""
    root = Path(__file__).parent
    pytester.makeconftest(
        f"import sys\nsys.path.insert(0, {str(root.parent)!r})\n"
        "from tests.conftest import *  # noqa: F403\n"
        "from tests.conftest import pytest_sessionfinish, pytest_testnodedown  # noqa: F401\n"
    )
    pytester.makepyfile(test_leak=_LEAKING_SUITE)
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider", *workers)
    assert pytest.ExitCode.TESTS_FAILED == result.ret
    assert 1 == sum("SECRET HYGIENE" in line for line in result.outlines)
    assert "Zq3leakedsecretvalue0123456789" not in result.stdout.str()
