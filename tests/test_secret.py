"""`Secret`: its registry of live values, which the redactor relies on."""

from __future__ import annotations

import gc

from rotator.secret import Secret, is_known_secret


def test_a_second_secret_with_the_same_value_does_not_hide_the_first() -> None:
    """While any Secret holding a value lives, the redactor still knows that value."""
    first = Secret("shared-value-abcdef123")
    second = Secret("shared-value-abcdef123")
    del second
    gc.collect()
    assert is_known_secret("shared-value-abcdef123")
    del first
    gc.collect()
    assert not is_known_secret("shared-value-abcdef123")
