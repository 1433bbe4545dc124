"""The sender's counters and answers, all frozen: totals, per subscription, per event, per round."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from typing import Any, Literal

Outcome = Literal["delivered", "failed"]


@dataclass(frozen=True)
class DeliveryStats:
    """Totals since the sender was made; `attempts == sent + retried`."""

    rounds: int = 0
    sent: int = 0  # events POSTed at least once (an event fanned out counts once per subscription)
    attempts: int = 0  # POSTs, retries included
    delivered: int = 0  # events a 2xx answer accepted
    retried: int = 0  # POSTs after an event's first
    failed: int = 0  # events given up after every attempt (or with the retry queue full)
    abandoned: int = 0  # events dropped unsettled: subscription gone or disabled, sender stopped
    fanned_out: int = 0  # events sent to more than one subscription (one triple: a swap's overlap)


@dataclass(frozen=True)
class SubscriptionDeliveries:
    """One subscription's counters; `fingerprint`: of the secret that signed its latest POST."""

    sent: int = 0
    delivered: int = 0
    retried: int = 0
    failed: int = 0
    fingerprint: str | None = None


@dataclass(frozen=True)
class DeliveryRecord:
    """How one event ended: its last attempt was signed by the secret with `fingerprint`.

    `error` is the last failure's cause (no URL in it): `HTTP 500`,
    `connection failed`, `timed out`, ...; None for a delivered event.
    """

    event_id: str
    subscription_id: str
    outcome: Outcome
    attempts: int
    fingerprint: str
    error: str | None = None

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class RoundResult:
    """What one round did: events accepted, given up and abandoned, retries, and each outcome.

    Counts are per subscription's event; `fanned_out` counts the round's new events
    that went to more than one subscription (sharing a triple).
    """

    delivered: int
    failed: int
    retried: int = 0
    abandoned: int = 0  # subscription deleted or disabled meanwhile, or the sender stopping
    last_error: str | None = None
    records: tuple[DeliveryRecord, ...] = ()
    fanned_out: int = 0

    def to_json(self) -> dict[str, Any]:
        return {
            "delivered": self.delivered,
            "failed": self.failed,
            "retried": self.retried,
            "abandoned": self.abandoned,
            "fanned_out": self.fanned_out,
            "last_error": self.last_error,
            "records": [record.to_json() for record in self.records],
        }


@dataclass(frozen=True)
class DeliverySnapshot:
    """A frozen copy of every counter: totals, per subscription id, and the newest outcomes."""

    totals: DeliveryStats
    subscriptions: Mapping[str, SubscriptionDeliveries]
    records: tuple[DeliveryRecord, ...]

    def to_json(self) -> dict[str, Any]:
        return {
            "totals": asdict(self.totals),
            "subscriptions": {sid: asdict(c) for sid, c in self.subscriptions.items()},
            "records": [record.to_json() for record in self.records],
        }


@dataclass
class Tally:
    """What a batch of attempts settled, retried and abandoned (a round's, or a loop turn's)."""

    records: list[DeliveryRecord] = field(default_factory=list)
    retried: int = 0
    abandoned: int = 0
    fanned_out: int = 0

    def result(self) -> RoundResult:
        failed = [r for r in self.records if r.outcome == "failed"]
        return RoundResult(
            delivered=len(self.records) - len(failed),
            failed=len(failed),
            retried=self.retried,
            abandoned=self.abandoned,
            last_error=failed[-1].error if failed else None,
            records=tuple(self.records),
            fanned_out=self.fanned_out,
        )
