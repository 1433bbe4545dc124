"""Where the Monite emulator's fault knobs act on regenerate, create, delete and answers.

regenerate_secret with its faults: not found, failing, dropping the
connection after applying, and stragglers (held unanswered, applied later by
`release_stragglers`, `straggle_after` or never, on `stop`); create and
delete, each of which can drop the connection after applying; and the rolls
for injected errors and malformed bodies on any API answer.
"""

from __future__ import annotations

from typing import Any, NoReturn

from rotator.sandbox._http import Drop, Response
from rotator.sandbox.monite.faults import Straggler
from rotator.sandbox.monite.pagination import Paginated
from rotator.sandbox.monite.responses import error, header_seconds


class FaultInjection(Paginated):
    """regenerate_secret, stragglers, and the error and malformed-body rolls."""

    def held_stragglers(self) -> int:
        """How many regenerations the straggle fault holds unapplied right now."""
        with self._lock:
            return len(self._stragglers)

    def release_stragglers(self) -> int:
        """Apply every held regeneration now, in arrival order; returns how many applied.

        The subscription is looked up now: one deleted meanwhile gets nothing.
        A client still waiting on a released request sees its connection drop.
        """
        with self._lock:
            return sum(self._settle_locked(held, apply=True) for held in list(self._stragglers))

    def dropped_answers(self) -> list[str]:
        """Ids whose regenerate the drop fault applied and left unanswered, in order."""
        with self._lock:
            return list(self._dropped)

    def _regenerate(self, sub_id: str) -> Response:
        faults = self.faults
        with self._lock:
            sub = self._subs.get(sub_id)
            if sub is None:
                return error(404, "Webhook subscription not found")
            if faults.regenerate_not_found > 0:
                faults.regenerate_not_found -= 1
                return error(404, "Webhook subscription not found")
            if faults.fail_regenerate > 0:
                faults.fail_regenerate -= 1
                return self._fault_error()
            if faults.straggle_regenerate > 0:
                faults.straggle_regenerate -= 1
                if self._stopping.is_set():
                    raise Drop  # stop() already emptied the queue; nothing would wake this
                held = Straggler(sub_id, faults.straggle_after)
                self._stragglers.append(held)
            else:
                held = None
                body = self._rotate_locked(sub)
                drop = faults.drop_after_regenerate > 0
                if drop:
                    faults.drop_after_regenerate -= 1
                    self._dropped.append(sub_id)
        if held is not None:
            self._await_straggler(held)  # never returns: this client gets no answer
        if drop:
            raise Drop
        return Response(200, body)

    def _create(self, body: dict[str, Any]) -> Response:
        """201 with the new subscription and its secret (the only answer that shows it)."""
        faults = self.faults
        with self._lock:
            if faults.fail_create > 0:
                faults.fail_create -= 1
                return self._fault_error()
            created = self._create_locked(
                url=body["url"],
                object_type=body["object_type"],
                event_types=list(body.get("event_types") or []),
                status="enabled",
                extra={},
                created_at=None,
            )
            drop = faults.drop_after_create > 0
            if drop:
                faults.drop_after_create -= 1
            answer = created.resource(with_secret=True)
        if drop:
            raise Drop
        return Response(201, answer)

    def _delete(self, sub_id: str) -> Response:
        """204 with no body, or 404 when Monite does not know the subscription."""
        faults = self.faults
        with self._lock:
            if self._subs.pop(sub_id, None) is None:
                return error(404, "Webhook subscription not found")
            self._version += 1
            drop = faults.drop_after_delete > 0
            if drop:
                faults.drop_after_delete -= 1
        if drop:
            raise Drop
        return Response(204)

    def _await_straggler(self, held: Straggler) -> NoReturn:
        if not held.settled.wait(held.after):
            with self._lock:
                self._settle_locked(held, apply=True)
        # Even if the client is somehow still connected, it must not read
        # success: at Monite this request's answer never came.
        raise Drop

    def _settle_locked(self, held: Straggler, *, apply: bool) -> bool:
        """Take `held` off the queue, applying it if asked; True if a secret changed.

        Release, the straggle_after timeout and stop() may race; only the first settles it.
        """
        if held not in self._stragglers:
            return False
        self._stragglers.remove(held)
        held.settled.set()
        sub = self._subs.get(held.subscription_id)
        if not apply or sub is None:
            return False
        self._rotate_locked(sub)
        return True

    def _roll_error(self) -> bool:
        with self._lock:
            rate = self.faults.error_rate
            return rate > 0 and self._rng.random() < rate

    def _take_malformed(self) -> bool:
        with self._lock:
            if self.faults.malformed_json <= 0:
                return False
            self.faults.malformed_json -= 1
            return True

    def _fault_error(self) -> Response:
        status, retry_after = self.faults.error_status, self.faults.retry_after
        headers: dict[str, str] = {}
        if status in (429, 503):
            headers["Retry-After"] = "1" if retry_after is None else header_seconds(retry_after)
        return error(
            status, "Internal Server Error" if status >= 500 else "Injected error", headers
        )
