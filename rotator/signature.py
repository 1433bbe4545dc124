"""The Monite webhook signing scheme, in one place: sign and verify `Monite-Signature`.

Each delivery carries `Monite-Signature: t=<unix seconds>,v1=<hex HMAC-SHA256>`,
keyed with the subscription's secret (its UTF-8 bytes) over the message
`"{t}.{raw body}"`. A receiver verifies the raw body exactly as it arrived
(before any JSON parsing), compares in constant time, and refuses a timestamp
further than `tolerance` seconds from its own clock, so a captured delivery
cannot be replayed later.

The rotator signs its own hook notices with the same scheme under another
header (`X-Rotator-Signature`, keyed with the hook's key): `sign` returns the
header's value, never its name, and `parse`/`verify` take the header name
their messages should use (`name`, default `Monite-Signature`).

`verify` is `parse`, then `check_timestamp` (the replay window), then
`check_signatures`; the consumer kit calls the three itself, so that a stale
delivery is refused before any secret is read, and every check is made here
only. `check_tolerance` is how a configured tolerance is validated.

Pure: standard library only, no I/O, no clock of its own (`now` is passed
in). Errors never carry the secret, the body or the signature values.
"""

from __future__ import annotations

import hashlib
import hmac
import math
from dataclasses import dataclass
from typing import Literal

HEADER = "Monite-Signature"
HOOK_HEADER = "X-Rotator-Signature"
"""The same scheme on the rotator's hook notices, keyed with the hook's key."""
SCHEME = "v1"
DEFAULT_TOLERANCE = 300.0
"""Seconds a delivery's timestamp may differ from the receiver's clock, either way."""

MAX_HEADER_LENGTH = 4096
"""A longer header is refused unparsed: no legitimate one comes near it."""

_HEX_DIGITS = frozenset("0123456789abcdef")
_DIGEST_HEX_LENGTH = 64

Reason = Literal["malformed", "expired", "mismatch"]


class SignatureError(ValueError):
    """The delivery is not verified. `reason`: malformed, expired or mismatch.

    Only `mismatch` can mean the receiver holds an outdated secret (re-read it
    once and verify again); the other two are the sender's or an attacker's.
    """

    def __init__(self, reason: Reason, message: str) -> None:
        super().__init__(message)
        self.reason: Reason = reason


@dataclass(frozen=True)
class ParsedSignature:
    """A parsed `Monite-Signature` header: its timestamp and its v1 signatures (hex)."""

    timestamp: int
    signatures: tuple[str, ...]


def signed_message(timestamp: int, body: bytes) -> bytes:
    """The bytes the HMAC covers: `"{t}.{raw body}"`."""
    return f"{timestamp}.".encode("ascii") + body


def compute(secret: str, timestamp: int, body: bytes) -> str:
    """The v1 signature (lowercase hex HMAC-SHA256) of `body` sent at `timestamp`."""
    key = secret.encode("utf-8")
    return hmac.new(key, signed_message(timestamp, body), hashlib.sha256).hexdigest()


def sign(secret: str, body: bytes, *, timestamp: int) -> str:
    """The header value `t=<timestamp>,v1=<hex>` for `body` sent at `timestamp` (unix seconds).

    The value of `Monite-Signature`, and of `X-Rotator-Signature` for hook notices.
    """
    if not secret:
        raise ValueError("cannot sign with an empty secret")
    if timestamp < 0:
        raise ValueError("timestamp must be unix seconds, not negative")
    return f"t={timestamp},{SCHEME}={compute(secret, timestamp, body)}"


def parse(header: str, *, name: str = HEADER) -> ParsedSignature:
    """Parse a header value; raises SignatureError("malformed") unless it is usable.

    Parts are comma-separated `key=value` pairs, spaces around them and empty
    parts ignored, keys matched case-insensitively (`T=`, `V1=`, as an
    independent sender may write them): one `t` (unix seconds), one or more
    `v1` (a receiver accepts any that matches), other schemes ignored. The
    same `t` given again counts once (the header sent twice, comma-joined by a
    server); differing ones are malformed. A `v1` that is not 64 hex digits can
    never match and is dropped; a header left with none is malformed. `name`
    is the header's name, for the messages.
    """
    if len(header) > MAX_HEADER_LENGTH:
        raise SignatureError("malformed", f"{name}: longer than {MAX_HEADER_LENGTH} characters")
    timestamps: list[str] = []
    signatures: list[str] = []
    for part in header.split(","):
        if not part.strip():
            continue  # a trailing comma, or two in a row
        key, sep, value = part.strip().partition("=")
        if not sep:
            raise SignatureError("malformed", f"{name}: expected key=value parts")
        key, value = key.strip().lower(), value.strip()
        if key == "t":
            if value not in timestamps:
                timestamps.append(value)
        elif key == SCHEME:
            lowered = value.lower()
            if len(lowered) == _DIGEST_HEX_LENGTH and set(lowered) <= _HEX_DIGITS:
                signatures.append(lowered)
    if len(timestamps) != 1:
        raise SignatureError("malformed", f"{name}: expected exactly one t=<unix seconds>")
    text = timestamps[0]
    if not text.isascii() or not text.isdigit() or len(text) > 12:
        raise SignatureError("malformed", f"{name}: t is not a unix timestamp in seconds")
    if not signatures:
        raise SignatureError("malformed", f"{name}: no v1=<64 hex digits> signature")
    return ParsedSignature(int(text), tuple(signatures))


def check_tolerance(tolerance: float, *, setting: str = "tolerance") -> float:
    """`tolerance` as float seconds, or ValueError naming `setting` and the fix.

    Checked where a tolerance is configured, not per delivery: NaN compares
    false with every drift, so a NaN tolerance must never reach a check.
    """
    try:
        seconds = float(tolerance)
    except (TypeError, ValueError):
        seconds = math.nan
    if not math.isfinite(seconds) or seconds < 0:
        # Only a number is shown: a wrong value of another type could be anything.
        shown = repr(tolerance) if isinstance(tolerance, int | float) else type(tolerance).__name__
        raise ValueError(
            f"{setting} must be a finite number of seconds, at least 0 (got {shown}); "
            f"give e.g. {DEFAULT_TOLERANCE:g}, the default"
        )
    return seconds


def check_timestamp(timestamp: int, *, now: float, tolerance: float, name: str = HEADER) -> None:
    """Raise SignatureError("expired") unless `timestamp` is within `tolerance` seconds of `now`.

    The one replay check of the scheme: `verify` makes it, and the consumer kit
    makes it before it reads any secret. `tolerance` is one `check_tolerance`
    accepted; `name` is the header's name, for the message.
    """
    drift = abs(now - timestamp)
    if not drift <= tolerance:  # written so that a NaN anywhere refuses
        raise SignatureError(
            "expired",
            f"{name}: timestamp is {drift:.0f}s from this host's clock "
            f"(tolerance {tolerance:g}s); a replayed delivery, or a clock that is off",
        )


def check_signatures(
    parsed: ParsedSignature, body: bytes, secret: str, *, name: str = HEADER
) -> None:
    """Raise SignatureError("mismatch") unless one of `parsed`'s signatures signs `body`.

    Every v1 signature is compared in constant time. The timestamp is not
    checked here (`check_timestamp` is); `name` is the header's name.
    """
    if not secret:
        # Anyone can sign with an empty key: a missing secret must never verify.
        raise ValueError("cannot verify with an empty secret")
    expected = compute(secret, parsed.timestamp, body)
    matched = False
    for candidate in parsed.signatures:  # no early exit: every candidate costs the same
        matched |= hmac.compare_digest(expected, candidate)
    if not matched:
        raise SignatureError("mismatch", f"{name}: no signature matches this secret and body")


def verify(
    header: str | None,
    body: bytes,
    secret: str,
    *,
    now: float,
    tolerance: float = DEFAULT_TOLERANCE,
    name: str = HEADER,
) -> int:
    """Check a delivery; returns its timestamp, or raises SignatureError.

    `header` is the `Monite-Signature` value (None when it was missing),
    `body` the raw request body, `secret` the subscription's signing secret,
    `now` the receiver's unix time, `name` the header's name (for messages).
    The timestamp is checked before the signature (`check_timestamp`, then
    `check_signatures`); a bad `tolerance` or an empty `secret` is a ValueError.
    """
    tolerance = check_tolerance(tolerance)
    if not secret:
        raise ValueError("cannot verify with an empty secret")
    if header is None:
        raise SignatureError("malformed", f"{name}: header missing")
    parsed = parse(header, name=name)
    check_timestamp(parsed.timestamp, now=now, tolerance=tolerance, name=name)
    check_signatures(parsed, body, secret, name=name)
    return parsed.timestamp


def is_valid(
    header: str | None,
    body: bytes,
    secret: str,
    *,
    now: float,
    tolerance: float = DEFAULT_TOLERANCE,
    name: str = HEADER,
) -> bool:
    """`verify` as a yes/no answer."""
    try:
        verify(header, body, secret, now=now, tolerance=tolerance, name=name)
    except SignatureError:
        return False
    return True
