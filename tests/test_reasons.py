"""The one table of reason codes: every code explained, and the docs page equal to it."""

from __future__ import annotations

import re
from pathlib import Path

from rotator.reasons import EXPLANATIONS, OutcomeKind, Reason, explain

DOC = Path(__file__).parent.parent / "docs" / "reasons.md"


def test_every_reason_has_a_sentence() -> None:
    """Each Reason member has a non-empty explanation, and nothing else is in the table."""
    assert set(Reason) == set(EXPLANATIONS)
    assert [] == [code for code, sentence in EXPLANATIONS.items() if not sentence.strip()]


def test_the_docs_page_lists_exactly_the_table() -> None:
    """docs/reasons.md has one row per code with the same sentence, in the enum's order."""
    rows = re.findall(r"^\| `([a-z_]+)` \| (.+) \|$", DOC.read_text(), flags=re.MULTILINE)
    assert [(r.value, EXPLANATIONS[r]) for r in Reason] == rows


def test_the_docs_page_names_every_outcome_kind() -> None:
    """docs/reasons.md names each outcome kind."""
    text = DOC.read_text()
    assert [] == [kind.value for kind in OutcomeKind if f"`{kind.value}`" not in text]


def test_an_unknown_code_is_explained_as_itself() -> None:
    """A code this version does not know (a newer writer's) is shown as it is."""
    assert ("the secret is younger than the policy's maximum age", "brand_new") == (
        explain("fresh"),
        explain("brand_new"),
    )
