"""The pure decision core: which subscriptions to rotate now, and why.

Takes data and `now`, returns decisions; imports no I/O library (checked by
import-linter). Every decision carries a stable reason code.
"""
# STUB: interface fixed, body to be written.

from __future__ import annotations

from collections.abc import Collection, Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Literal

from rotator.model import Record, Subscription

Action = Literal["rotate", "skip"]


@dataclass(frozen=True, slots=True)
class Rule:
    """Overrides the default for matching subscriptions; the first matching rule wins.

    A rule matches when every matcher it sets matches: `object_type` exactly,
    `subscription_id` exactly, `url` as a shell-style glob (fnmatch, case-sensitive).
    """

    object_type: str | None = None
    subscription_id: str | None = None
    url: str | None = None
    max_age: timedelta | None = None
    skip: bool = False

    def matches(self, subscription: Subscription) -> bool:
        raise NotImplementedError


@dataclass(frozen=True, slots=True)
class Policy:
    max_age: timedelta
    unmanaged: Literal["rotate", "skip"] = "rotate"
    include_disabled: bool = False
    rules: tuple[Rule, ...] = ()


@dataclass(frozen=True, slots=True)
class Force:
    """A forced rotation: ignore age for these ids, or for every subscription in scope."""

    ids: frozenset[str] = frozenset()
    all: bool = False


@dataclass(frozen=True, slots=True)
class Decision:
    subscription: Subscription
    record: Record  # version 0 when Vault has no record
    action: Action
    reason: str  # stable code, see REASONS
    age: timedelta | None  # None when the secret age is unknown
    max_age: timedelta  # the effective limit after rules

    @property
    def recovery(self) -> bool:
        return self.reason == "claim_expired"


def decide(
    subscriptions: Iterable[Subscription],
    records: Mapping[str, Record],
    policy: Policy,
    now: datetime,
    force: Force | None = None,
) -> list[Decision]:
    raise NotImplementedError


def orphans(subscriptions: Iterable[Subscription], record_ids: Collection[str]) -> list[str]:
    raise NotImplementedError


def next_claim_expiry(records: Iterable[Record], now: datetime) -> datetime | None:
    raise NotImplementedError
