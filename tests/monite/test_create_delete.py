"""create_subscription (one attempt; may a failure have created one) and delete_subscription."""

from __future__ import annotations

import random

import httpx
import pytest

from rotator.config import MoniteSettings
from rotator.errors import (
    MoniteError,
    MoniteProtocolError,
    MoniteRequestError,
    MoniteUnavailable,
)
from rotator.model import Created
from rotator.monite import MoniteClient
from rotator.sandbox.monite import MoniteEmulator
from tests.conftest import remember_output
from tests.monite.helpers import UNKNOWN_ID, FakeClock, Leaks, answering, expect

URL = "https://hooks.example.com/successor"
EVENTS = ("created", "updated")
NOT_REPEATED = "it may have been applied: repeating it may apply it twice"


async def create(client: MoniteClient, **kwargs: float) -> Created:
    return await client.create_subscription(URL, "payable", list(EVENTS), **kwargs)


def keep(leaks: Leaks, *texts: str) -> None:
    """Put texts under both hygiene checks: this module's leak check and the suite's scan."""
    leaks.texts.extend(texts)
    remember_output(*texts)


# -- create -----------------------------------------------------------------------


async def test_create_returns_the_secret_monite_signs_with(
    monite: MoniteEmulator, client: MoniteClient, leaks: Leaks
) -> None:
    """The created subscription carries what was asked, and the secret Monite now signs with."""
    created = await create(client)
    sub = created.subscription
    assert monite.current_secret(sub.id) == created.secret.reveal()
    assert (URL, "payable", EVENTS, "enabled") == (
        sub.url,
        sub.object_type,
        sub.event_types,
        sub.status,
    )
    assert [sub.id] == monite.subscription_ids()
    assert 1 == monite.request_count("create")
    keep(leaks, repr(created), str(created))


async def test_created_subscription_is_listed_and_shown_without_its_secret(
    monite: MoniteEmulator, client: MoniteClient, leaks: Leaks
) -> None:
    """The secret is shown once: the listing and a get name the subscription, never its secret."""
    original = monite.seed(url=URL)
    created = await create(client)
    listed = {sub.id: sub for sub in await client.list_subscriptions()}
    fetched = await client.get_subscription(created.subscription.id)
    assert {original, created.subscription.id} == set(listed)
    assert created.subscription == listed[created.subscription.id] == fetched
    assert ({}, {}) == (dict(listed[created.subscription.id].extra), dict(fetched.extra))
    keep(leaks, repr(listed), repr(fetched))


async def test_created_repr_shows_no_secret(
    monite: MoniteEmulator, client: MoniteClient, leaks: Leaks
) -> None:
    """A Created's repr names the subscription and shows the secret as <secret>."""
    created = await create(client)
    shown = repr(created)
    assert (True, False) == ("secret=<secret>" in shown, created.secret.reveal() in shown)
    keep(leaks, shown)


async def test_create_with_no_event_types_sends_an_empty_list(
    monite: MoniteEmulator, client: MoniteClient
) -> None:
    """An empty event_types (every event of the object type) reaches Monite as []."""
    created = await client.create_subscription(URL, "receivable", [])
    assert [] == monite.subscription(created.subscription.id)["event_types"]


async def test_create_dropped_answer_may_have_created_one(
    monite: MoniteEmulator, client: MoniteClient, clock: FakeClock, leaks: Leaks
) -> None:
    """Created, then the connection closed: one attempt, and an error that forbids a blind retry."""
    monite.faults.drop_after_create = 1
    error = await expect(MoniteUnavailable, create(client), leaks)
    assert (True, False) == (error.may_have_applied, error.retryable)
    assert True is str(error).endswith(f"({NOT_REPEATED})")
    assert (1, 1, []) == (
        len(monite.subscription_ids()),
        monite.request_count("create"),
        clock.sleeps,
    )


@pytest.mark.parametrize(
    ("status", "applied", "retryable"),
    [(500, True, False), (503, True, False), (429, False, True)],
)
async def test_create_is_one_attempt_whatever_the_status(
    monite: MoniteEmulator,
    client: MoniteClient,
    clock: FakeClock,
    leaks: Leaks,
    status: int,
    applied: bool,
    retryable: bool,
) -> None:
    """A create is sent once: a 5xx may have created one (not retryable), a 429 did not."""
    monite.faults.error_rate = 1.0
    monite.faults.error_status = status
    error = await expect(MoniteUnavailable, create(client), leaks)
    assert (status, applied, retryable) == (error.status, error.may_have_applied, error.retryable)
    assert (1, [], []) == (monite.request_count("create"), monite.subscription_ids(), clock.sleeps)


@pytest.mark.parametrize(
    ("failure", "applied"),
    [
        (httpx.ConnectError, False),
        (httpx.ConnectTimeout, False),
        (httpx.ReadTimeout, True),
        (httpx.RemoteProtocolError, True),
    ],
)
async def test_create_is_safe_to_retry_only_when_it_never_left(
    monite_settings: MoniteSettings,
    clock: FakeClock,
    leaks: Leaks,
    failure: type[httpx.TransportError],
    applied: bool,
) -> None:
    """A create that failed to connect is safe to retry; one lost after sending is not."""

    def fail(request: httpx.Request) -> httpx.Response:
        raise failure("simulated", request=request)

    async with answering(fail) as http:
        client = MoniteClient(http, monite_settings, clock=clock, rng=random.Random(7))
        error = await expect(MoniteUnavailable, create(client), leaks)
    assert (applied, not applied, 1) == (
        error.may_have_applied,
        error.retryable,
        client.requests["create", 0],
    )


async def test_create_not_sent_after_its_send_deadline(
    monite: MoniteEmulator, client: MoniteClient, clock: FakeClock, leaks: Leaks
) -> None:
    """A send deadline already past means nothing is sent: nothing created, safe to retry."""
    error = await expect(MoniteUnavailable, create(client, send_by=clock.monotonic() - 1), leaks)
    assert (False, True) == (error.may_have_applied, error.retryable)
    assert (0, []) == (monite.request_count("create"), monite.subscription_ids())


async def test_create_malformed_answer_created_one_and_is_not_retryable(
    monite: MoniteEmulator, client: MoniteClient, leaks: Leaks
) -> None:
    """A 201 cut short did create a subscription: may have applied, and not retryable."""
    monite.faults.malformed_json = 1
    error = await expect(MoniteProtocolError, create(client), leaks)
    assert (True, False) == (error.may_have_applied, error.retryable)
    assert (1, 1) == (len(monite.subscription_ids()), monite.request_count("create"))


async def test_create_answer_without_secret_names_the_subscription(
    monite_settings: MoniteSettings, clock: FakeClock, leaks: Leaks
) -> None:
    """A create answer missing its secret names the subscription it made, so it can be deleted."""
    answer = {"id": "made-1", "url": URL, "object_type": "payable", "status": "enabled"}
    async with answering(lambda request: httpx.Response(201, json=answer)) as http:
        client = MoniteClient(http, monite_settings, clock=clock, rng=random.Random(7))
        error = await expect(MoniteProtocolError, create(client), leaks)
    assert (
        "Monite create: the response has no secret (subscription made-1 was created) "
        f"({NOT_REPEATED})",
        True,
        False,
        1,
    ) == (str(error), error.may_have_applied, error.retryable, client.requests["create", 201])


@pytest.mark.parametrize(
    ("url", "object_type"), [(URL, "not-a-type"), ("ftp://hooks.example.com", "payable")]
)
async def test_create_refused_body_is_a_request_error(
    monite: MoniteEmulator, client: MoniteClient, leaks: Leaks, url: str, object_type: str
) -> None:
    """Monite's 422 for a bad url or object type is MoniteRequestError; nothing is created."""
    error = await expect(
        MoniteRequestError, client.create_subscription(url, object_type, []), leaks
    )
    assert (422, False, False) == (error.status, error.may_have_applied, error.retryable)
    assert (1, []) == (monite.request_count("create"), monite.subscription_ids())


# -- delete -----------------------------------------------------------------------


async def test_delete_answers_deleted_now(monite: MoniteEmulator, client: MoniteClient) -> None:
    """A 204 deletes: True, and Monite no longer has the subscription."""
    sub_id = monite.seed(url=URL)
    kept = monite.seed(url="https://hooks.example.com/kept")
    assert True is await client.delete_subscription(sub_id)
    assert ([kept], 1) == (monite.subscription_ids(), client.requests["delete", 204])


async def test_delete_of_a_missing_id_is_already_gone(
    monite: MoniteEmulator, client: MoniteClient, clock: FakeClock
) -> None:
    """Monite's 404 means gone already: False, with no retry."""
    assert False is await client.delete_subscription(UNKNOWN_ID)
    assert (1, []) == (monite.request_count("delete"), clock.sleeps)


@pytest.mark.parametrize(("status", "wait"), [(503, 1.0), (429, 3.0), (500, None)])
async def test_delete_is_retried_on_transient_errors(
    monite: MoniteEmulator,
    client: MoniteClient,
    clock: FakeClock,
    status: int,
    wait: float | None,
) -> None:
    """A 5xx or 429 is retried (after its Retry-After when it sends one), then the delete lands."""
    sub_id = monite.seed(url=URL)
    monite.faults.error_rate = 1.0
    monite.faults.error_status = status
    monite.faults.retry_after = 3.0 if status == 429 else None
    clock.on_sleep = lambda: setattr(monite.faults, "error_rate", 0.0)
    assert True is await client.delete_subscription(sub_id)
    assert ([], 1, 1) == (
        monite.subscription_ids(),
        client.requests["delete", status],
        client.requests["delete", 204],
    )
    assert 1 == len(clock.sleeps)
    if wait is not None:
        assert [wait] == clock.sleeps


async def test_delete_dropped_answer_is_retried_and_reads_as_gone(
    monite: MoniteEmulator, client: MoniteClient, clock: FakeClock
) -> None:
    """Deleted, then the connection closed: the retry's 404 says it is gone already."""
    sub_id = monite.seed(url=URL)
    monite.faults.drop_after_delete = 1
    assert False is await client.delete_subscription(sub_id)
    assert ([], 2, 1) == (
        monite.subscription_ids(),
        monite.request_count("delete"),
        len(clock.sleeps),
    )


async def test_delete_that_keeps_failing_raises_unavailable(
    monite: MoniteEmulator, client: MoniteClient, leaks: Leaks
) -> None:
    """A Monite that keeps failing costs 1 + max_retries deletes, then a retryable error."""
    sub_id = monite.seed(url=URL)
    monite.faults.error_rate = 1.0
    monite.faults.error_status = 502
    error = await expect(MoniteUnavailable, client.delete_subscription(sub_id), leaks)
    assert (502, True, 4) == (error.status, error.retryable, monite.request_count("delete"))
    assert [sub_id] == monite.subscription_ids()


async def test_delete_not_sent_after_its_send_deadline(
    monite: MoniteEmulator, client: MoniteClient, clock: FakeClock, leaks: Leaks
) -> None:
    """A send deadline already past means no delete is sent."""
    sub_id = monite.seed(url=URL)
    await expect(
        MoniteUnavailable, client.delete_subscription(sub_id, send_by=clock.monotonic() - 1), leaks
    )
    assert (0, [sub_id]) == (monite.request_count("delete"), monite.subscription_ids())


async def test_delete_bare_404_is_not_taken_for_already_gone(
    monite_settings: MoniteSettings, clock: FakeClock, leaks: Leaks
) -> None:
    """A 404 that is not Monite's JSON (a wrong base_url) is an error naming the setting."""
    page = httpx.Response(404, text="<html>Not Found</html>", headers={"content-type": "text/html"})
    async with answering(lambda request: page) as http:
        client = MoniteClient(http, monite_settings, clock=clock, rng=random.Random(7))
        error = await expect(MoniteRequestError, client.delete_subscription(UNKNOWN_ID), leaks)
    assert (
        "Monite delete: HTTP 404 with a body that is not Monite's JSON; check monite.base_url "
        "(for example https://api.sandbox.monite.com/v1)"
    ) == str(error)


async def test_delete_of_an_id_that_is_no_uuid_is_a_request_error(
    monite: MoniteEmulator, client: MoniteClient, leaks: Leaks
) -> None:
    """Monite's 422 for a malformed id is MoniteRequestError, not "already gone"."""
    error = await expect(MoniteError, client.delete_subscription("not-a-uuid"), leaks)
    assert (MoniteRequestError, 422) == (type(error), error.status)


async def test_204_to_a_create_may_have_created_one(
    monite_settings: MoniteSettings, clock: FakeClock, leaks: Leaks
) -> None:
    """A 204 where a subscription was expected is a 2xx: it may have applied, not retryable."""
    async with answering(lambda request: httpx.Response(204)) as http:
        client = MoniteClient(http, monite_settings, clock=clock, rng=random.Random(7))
        error = await expect(MoniteProtocolError, create(client), leaks)
    assert (
        f"Monite create: the response is not a subscription ({NOT_REPEATED})",
        True,
        False,
    ) == (str(error), error.may_have_applied, error.retryable)
