"""The one redaction function: no secret's text survives in a message, a log line or a probe.

Every `Secret` the process holds registers its value (`rotator.model`), so
`redact_text` finds any of them wherever it sits in a text, glued to other
characters (`key=<secret>.`, `<a>/<b>`) or not. Values that are not (yet)
`Secret`s, such as a login's answer, are passed as `also` and are caught in the
forms a message may show them: as they are, as `repr()` escapes them, trimmed,
and as their whitespace-separated pieces (messages are folded onto one line).
"""

from __future__ import annotations

import bisect
import re
from collections.abc import Iterable
from typing import Final

from rotator.secret import is_known_secret

REDACTED: Final = "<redacted>"

# Token-like runs: where a secret's text would sit inside a longer message. A
# run is cut into pieces at the separators, and spans of whole pieces are
# looked up, so `key=<secret>.` and `<a>/<b>` are caught too.
_MIN_SECRET_LEN: Final = 8
_TOKEN_RUN: Final = re.compile(r"[A-Za-z0-9_\-.~+/=]{8,}")  # keep {8,} in step with _MIN_SECRET_LEN
_SEPARATOR: Final = re.compile(r"[\-.~+/=]")
# Bounds that keep the cost linear in the text however many separators a run
# has (a long path or base64 blob): a span is at most this long and crosses at
# most this many separators. Monite secrets are far shorter than either bound.
_MAX_SECRET_LEN: Final = 512
_MAX_ENDS_PER_START: Final = 16
# Pieces of an `also` value shorter than this are common words, not worth hiding.
_MIN_PIECE: Final = 8


def redact_text(text: str, also: Iterable[str] = ()) -> str:
    """`text` with every live Secret's value, and each of `also`, replaced by `<redacted>`.

    Linear in the text for the live Secrets: only token-like runs are looked
    up, one dictionary probe per candidate, never one scan per known secret. A
    secret shorter than 8 characters, or containing characters outside the
    token class, is only caught when it is the whole string.
    """
    for value in also:
        for form in _forms(value):
            text = text.replace(form, REDACTED)
    if is_known_secret(text):
        return REDACTED
    if len(text) < _MIN_SECRET_LEN:
        return text
    return _TOKEN_RUN.sub(lambda match: _redact_run(match.group()), text)


def _forms(value: str) -> list[str]:
    """The texts `value` may show up as, longest first (so no tail of it is left)."""
    found = {value, value.encode("unicode_escape").decode("ascii"), value.strip()}
    found.update(part for part in value.split() if len(part) >= _MIN_PIECE)
    return sorted((f for f in found if f), key=len, reverse=True)


def _redact_run(run: str) -> str:
    """One token-like run with every span of whole pieces that is a live secret replaced."""
    if is_known_secret(run):
        return REDACTED
    cuts = [match.start() for match in _SEPARATOR.finditer(run)]
    if not cuts:
        return run
    starts = [0, *(cut + 1 for cut in cuts)]
    ends = [*cuts, len(run)]
    pieces: list[str] = []
    done = 0  # run[:done] is already in `pieces`
    for start in starts:
        if start < done:
            continue
        first = bisect.bisect_left(ends, start + _MIN_SECRET_LEN)
        window = ends[first : first + _MAX_ENDS_PER_START]
        # Longest first: a secret that merely starts with another must not leak its tail.
        for end in reversed(window):
            if end - start <= _MAX_SECRET_LEN and is_known_secret(run[start:end]):
                pieces += (run[done:start], REDACTED)
                done = end
                break
    pieces.append(run[done:])
    return "".join(pieces)
