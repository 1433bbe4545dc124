"""The Monite emulator held to Monite's official Python SDK, sync and async.

Every operation the rotator uses (the client-credentials token, listing with
its pagination, one subscription, regenerate, create, delete, revoke), the rest of the webhook
subscription API and the error answers are driven through `monite.Monite` and
`monite.AsyncMonite` on loopback. The SDK must parse every answer into its
typed models and see the values the emulator holds; an error must raise the
SDK's error class for that status with the body Monite documents; and every
answer carries `x-monite-version` and the `x-request-id` the emulator recorded.

Secrets and tokens are compared by digest, so a failing assert shows none.
"""

from __future__ import annotations

import asyncio
import hashlib
import inspect
import time
import typing
import uuid
from collections.abc import AsyncIterator, Callable, Iterator, Mapping
from datetime import UTC, datetime, timedelta
from typing import Any, cast

import httpx
import pytest
from monite import (
    AccessTokenResponse,
    AsyncMonite,
    BadRequestError,
    ErrorSchemaResponse,
    HttpValidationError,
    MessageResponse,
    Monite,
    NotFoundError,
    TooManyRequestsError,
    UnauthorizedError,
    UnprocessableEntityError,
    WebhookSubscriptionPaginationResource,
    WebhookSubscriptionResource,
    WebhookSubscriptionResourceWithSecret,
)
from monite.core.api_error import ApiError
from monite.types.webhook_object_type import WebhookObjectType
from monite.types.webhook_subscription_status import WebhookSubscriptionStatus

from rotator.sandbox import ISSUED
from rotator.sandbox.monite import MoniteEmulator
from tests.sandbox import SSL_CONTEXT

VERSION = "2024-05-25"
UNKNOWN_ID = "00000000-0000-4000-8000-000000000000"
MAX_PAGES = 20  # bound on any listing walk below
# The SDK types enums as `Literal[...] | Any`; the contract is the Literal part.
OBJECT_TYPES = frozenset(typing.get_args(typing.get_args(WebhookObjectType)[0]))
STATUSES = frozenset(typing.get_args(typing.get_args(WebhookSubscriptionStatus)[0]))
MISSING_VERSION_BODY = {
    "error": {"type": "missing_api_version", "message": "Missing the x-monite-version HTTP header"}
}
NOT_FOUND_BODY = {"error": {"message": "Webhook subscription not found"}}

Call = Callable[[Any], Any]


def digest(value: str) -> str:
    """A secret's fingerprint: equal values compare equal, and an assert shows no secret."""
    return hashlib.sha256(value.encode()).hexdigest()


def as_listed(resource: WebhookSubscriptionResource | WebhookSubscriptionResourceWithSecret) -> Any:
    """The SDK model as the emulator lists it (no secret), after checking its enums strictly."""
    assert (True, True, True) == (
        resource.object_type in OBJECT_TYPES,
        resource.status in STATUSES,
        str(uuid.UUID(resource.id)) == resource.id,
    )
    return resource.model_dump(exclude={"secret"})


def assert_answered(
    monite: MoniteEmulator, headers: Mapping[str, str], route: str, status: int
) -> None:
    """The answer names the API version and the request id the emulator sent for it."""
    assert (VERSION, monite.request_ids(route, status)[-1]) == (
        headers.get("x-monite-version"),
        headers.get("x-request-id"),
    )


class Sdk:
    """One of the SDK's two clients, driven the same way from async tests."""

    def __init__(
        self,
        kind: str,
        base_url: str,
        *,
        token: str | None,
        version: str | None,
        entity_id: str | None,
    ) -> None:
        # A None version makes the SDK drop the header: the only way to send none.
        options: dict[str, Any] = {
            "base_url": base_url,
            "monite_version": cast(str, version),
            "monite_entity_id": entity_id,
            "token": token,
        }
        self._sync_http: httpx.Client | None = None
        self._async_http: httpx.AsyncClient | None = None
        self.client: Monite | AsyncMonite
        if kind == "sync":
            self._sync_http = httpx.Client(timeout=5.0, verify=SSL_CONTEXT)
            self.client = Monite(**options, httpx_client=self._sync_http)
        else:
            self._async_http = httpx.AsyncClient(timeout=5.0, verify=SSL_CONTEXT)
            self.client = AsyncMonite(**options, httpx_client=self._async_http)

    async def run(self, call: Call) -> Any:
        """`call(client)`: in a worker thread for the sync client, awaited for the async one."""
        if isinstance(self.client, Monite):
            return await asyncio.to_thread(call, self.client)
        result = call(self.client)
        assert True is inspect.isawaitable(result)
        return await result

    async def fails(self, error: type[ApiError], call: Call) -> ApiError:
        """Run `call`, require exactly the SDK error class `error`, and return it."""
        with pytest.raises(ApiError) as caught:
            await self.run(call)
        assert error is type(caught.value)
        return caught.value

    async def aclose(self) -> None:
        if self._sync_http is not None:
            self._sync_http.close()
        if self._async_http is not None:
            await self._async_http.aclose()


Connect = Callable[..., Sdk]


@pytest.fixture(params=["sync", "async"])
def kind(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
async def connect(kind: str) -> AsyncIterator[Connect]:
    """Builds SDK clients of this test's kind; all are closed afterwards."""
    made: list[Sdk] = []

    def make(
        base_url: str,
        *,
        token: str | None = None,
        version: str | None = VERSION,
        entity_id: str | None = None,
    ) -> Sdk:
        sdk = Sdk(kind, base_url, token=token, version=version, entity_id=entity_id)
        made.append(sdk)
        return sdk

    yield make
    for sdk in made:
        await sdk.aclose()


async def token_for(emulator: MoniteEmulator, connect: Connect) -> str:
    """A partner access token from `emulator`, fetched through the SDK."""
    client_id, client_secret = emulator.credentials
    answer = await connect(emulator.base_url).run(
        lambda c: c.access_tokens.create(
            client_id=client_id, client_secret=client_secret, grant_type="client_credentials"
        )
    )
    return str(answer.access_token)


@pytest.fixture
async def sdk(monite: MoniteEmulator, connect: Connect) -> Sdk:
    """An SDK client holding a valid token for `monite`."""
    return connect(monite.base_url, token=await token_for(monite, connect))


@pytest.fixture
def limited() -> Iterator[MoniteEmulator]:
    """An emulator whose gateway allows one request a second with no burst to spare."""
    emulator = MoniteEmulator(rate_limit=1, burst=1)
    emulator.add_client()
    with emulator:
        yield emulator


def seed_many(monite: MoniteEmulator, count: int) -> list[str]:
    return [monite.seed(url=f"https://hooks.example.com/{i}") for i in range(count)]


# -- the operations the rotator uses ---------------------------------------------


async def test_token_is_an_access_token_response(monite: MoniteEmulator, connect: Connect) -> None:
    """access_tokens.create parses the client-credentials answer: a Bearer token for a day."""
    client_id, client_secret = monite.credentials
    raw = await connect(monite.base_url).run(
        lambda c: c.access_tokens.with_raw_response.create(
            client_id=client_id, client_secret=client_secret, grant_type="client_credentials"
        )
    )
    assert AccessTokenResponse is type(raw.data)
    assert ("Bearer", monite.token_ttl, True) == (
        raw.data.token_type,
        raw.data.expires_in,
        raw.data.access_token in ISSUED,
    )
    assert_answered(monite, raw.headers, "token", 200)


async def test_list_walks_every_page_as_the_product_does(monite: MoniteEmulator, sdk: Sdk) -> None:
    """limit, then pagination_token alone, until next_pagination_token is null: every item once."""
    ids = seed_many(monite, 5)
    pages: list[list[Any]] = []
    raw = await sdk.run(lambda c: c.webhook_subscriptions.with_raw_response.get(limit=2))
    for _ in range(MAX_PAGES):
        page = raw.data
        assert WebhookSubscriptionPaginationResource is type(page)
        assert_answered(monite, raw.headers, "list", 200)
        pages.append([as_listed(item) for item in page.data])
        token = page.next_pagination_token
        if token is None:
            break
        raw = await sdk.run(
            lambda c, token=token: c.webhook_subscriptions.with_raw_response.get(
                pagination_token=token
            )
        )
    assert [2, 2, 1] == [len(p) for p in pages]
    assert [monite.subscription(i) for i in ids] == [item for p in pages for item in p]


async def test_prev_pagination_token_returns_the_previous_page(
    monite: MoniteEmulator, sdk: Sdk
) -> None:
    """The second page's prev_pagination_token brings back the first page."""
    ids = seed_many(monite, 4)
    first = await sdk.run(lambda c: c.webhook_subscriptions.get(limit=2))
    second = await sdk.run(
        lambda c: c.webhook_subscriptions.get(pagination_token=first.next_pagination_token)
    )
    back = await sdk.run(
        lambda c: c.webhook_subscriptions.get(pagination_token=second.prev_pagination_token)
    )
    assert (None, ids[:2], ids[2:], ids[:2]) == (
        first.prev_pagination_token,
        [s.id for s in first.data],
        [s.id for s in second.data],
        [s.id for s in back.data],
    )


async def test_list_filters_sort_and_order_as_the_sdk_sends_them(
    monite: MoniteEmulator, sdk: Sdk
) -> None:
    """object_type, created_at__gte (the SDK writes UTC as ...Z), sort and order all apply."""
    start = datetime(2024, 1, 1, tzinfo=UTC)
    made = [
        monite.seed(object_type=kind, created_at=start + timedelta(hours=i))
        for i, kind in enumerate(["payable", "receivable", "payable", "payable"])
    ]
    page = await sdk.run(
        lambda c: c.webhook_subscriptions.get(
            object_type="payable",
            created_at_gte=start + timedelta(hours=1),
            sort="created_at",
            order="desc",
        )
    )
    assert [made[3], made[2]] == [s.id for s in page.data]


async def test_get_by_id_matches_the_emulator(monite: MoniteEmulator, sdk: Sdk) -> None:
    """get_by_id parses one subscription, fields Monite may add tomorrow kept as extras."""
    sub_id = monite.seed(
        url="https://hooks.example.com/a", status="disabled", extra={"created_by": "partner"}
    )
    raw = await sdk.run(lambda c: c.webhook_subscriptions.with_raw_response.get_by_id(sub_id))
    assert WebhookSubscriptionResource is type(raw.data)
    assert monite.subscription(sub_id) == as_listed(raw.data)
    assert {"created_by": "partner"} == raw.data.model_extra
    assert_answered(monite, raw.headers, "get", 200)


async def test_regenerate_returns_the_new_secret(monite: MoniteEmulator, sdk: Sdk) -> None:
    """regenerate_secret_by_id parses the subscription with the secret Monite now signs with."""
    sub_id = monite.seed(url="https://hooks.example.com/a")
    old = digest(monite.current_secret(sub_id))
    raw = await sdk.run(
        lambda c: c.webhook_subscriptions.with_raw_response.regenerate_secret_by_id(sub_id)
    )
    assert WebhookSubscriptionResourceWithSecret is type(raw.data)
    assert (digest(monite.current_secret(sub_id)), 1) == (
        digest(raw.data.secret),
        monite.regenerate_count(sub_id),
    )
    assert old != digest(raw.data.secret)
    assert monite.subscription(sub_id) == as_listed(raw.data)
    assert_answered(monite, raw.headers, "regenerate_secret", 200)


async def test_create_answers_201_with_the_secret_shown_once(
    monite: MoniteEmulator, sdk: Sdk
) -> None:
    """create parses the 201 with the new secret; get_by_id shows that subscription without it."""
    raw = await sdk.run(
        lambda c: c.webhook_subscriptions.with_raw_response.create(
            object_type="payable", url="https://hooks.example.com/next", event_types=["created"]
        )
    )
    created = raw.data
    assert WebhookSubscriptionResourceWithSecret is type(created)
    assert_answered(monite, raw.headers, "create", 201)
    assert digest(monite.current_secret(created.id)) == digest(created.secret)
    assert (True, [created.id]) == (created.secret in ISSUED, monite.subscription_ids())
    fetched = await sdk.run(lambda c: c.webhook_subscriptions.get_by_id(created.id))
    assert (WebhookSubscriptionResource, {}) == (type(fetched), fetched.model_extra)
    assert as_listed(created) == as_listed(fetched) == monite.subscription(created.id)
    assert {
        "url": "https://hooks.example.com/next",
        "object_type": "payable",
        "event_types": ["created"],
        "status": "enabled",
    } == {k: v for k, v in as_listed(fetched).items() if k != "id"}


async def test_create_without_event_types_subscribes_to_all(
    monite: MoniteEmulator, sdk: Sdk
) -> None:
    """The SDK leaves event_types out when not given; the subscription has an empty list."""
    created = await sdk.run(
        lambda c: c.webhook_subscriptions.create(
            object_type="receivable", url="https://hooks.example.com/all"
        )
    )
    assert [] == created.event_types == monite.subscription(created.id)["event_types"]


async def test_delete_answers_204_and_a_second_delete_is_not_found(
    monite: MoniteEmulator, sdk: Sdk
) -> None:
    """delete_by_id parses the bodiless 204; deleting again raises NotFoundError."""
    sub_id = monite.seed(url="https://hooks.example.com/old")
    raw = await sdk.run(lambda c: c.webhook_subscriptions.with_raw_response.delete_by_id(sub_id))
    assert (None, None, []) == (
        raw.data,
        raw.headers.get("content-type"),
        monite.subscription_ids(),
    )
    assert_answered(monite, raw.headers, "delete", 204)
    error = await sdk.fails(NotFoundError, lambda c: c.webhook_subscriptions.delete_by_id(sub_id))
    assert NOT_FOUND_BODY == ErrorSchemaResponse.model_validate(error.body).model_dump()
    assert_answered(monite, error.headers or {}, "delete", 404)


@pytest.mark.parametrize("fault", ["drop_after_create", "drop_after_delete"])
async def test_dropped_create_or_delete_is_applied_without_an_answer(
    monite: MoniteEmulator, sdk: Sdk, fault: str
) -> None:
    """The drop faults apply the change, then close the connection: the SDK gets no answer."""
    sub_id = monite.seed(url="https://hooks.example.com/old")
    setattr(monite.faults, fault, 1)
    call: Call
    if fault == "drop_after_create":
        call = lambda c: c.webhook_subscriptions.create(  # noqa: E731
            object_type="payable", url="https://hooks.example.com/next"
        )
    else:
        call = lambda c: c.webhook_subscriptions.delete_by_id(sub_id)  # noqa: E731
    with pytest.raises((httpx.RemoteProtocolError, httpx.ReadError)):
        await sdk.run(call)
    ids = monite.subscription_ids()
    expected = (2, True) if fault == "drop_after_create" else (0, False)
    assert expected == (len(ids), sub_id in ids)
    assert 0 == getattr(monite.faults, fault)


async def test_revoke_answers_a_message_and_the_token_stops_working(
    monite: MoniteEmulator, connect: Connect
) -> None:
    """access_tokens.revoke parses MessageResponse, and the revoked token then gets a 401."""
    token = await token_for(monite, connect)
    client_id, client_secret = monite.credentials
    # The schema puts /auth/revoke behind HTTPBearer: the token proves itself.
    raw = await connect(monite.base_url, token=token).run(
        lambda c: c.access_tokens.with_raw_response.revoke(
            client_id=client_id, client_secret=client_secret, token=token
        )
    )
    assert (MessageResponse, "Token revoked") == (type(raw.data), raw.data.message)
    assert_answered(monite, raw.headers, "revoke", 200)
    error = await connect(monite.base_url, token=token).fails(
        UnauthorizedError, lambda c: c.webhook_subscriptions.get()
    )
    assert {"error": {"message": "Access token has been revoked"}} == error.body


async def test_create_update_disable_enable_delete(monite: MoniteEmulator, sdk: Sdk) -> None:
    """The rest of the subscription API parses into the SDK's models and changes the emulator."""
    created = await sdk.run(
        lambda c: c.webhook_subscriptions.create(
            object_type="receivable", url="https://hooks.example.com/new", event_types=["created"]
        )
    )
    assert WebhookSubscriptionResourceWithSecret is type(created)
    assert digest(monite.current_secret(created.id)) == digest(created.secret)
    updated = await sdk.run(
        lambda c: c.webhook_subscriptions.update_by_id(
            created.id, url="https://hooks.example.com/moved"
        )
    )
    disabled = await sdk.run(lambda c: c.webhook_subscriptions.disable_by_id(created.id))
    assert ("https://hooks.example.com/moved", "disabled") == (updated.url, disabled.status)
    enabled = await sdk.run(lambda c: c.webhook_subscriptions.enable_by_id(created.id))
    assert monite.subscription(created.id) == as_listed(enabled)
    assert None is await sdk.run(lambda c: c.webhook_subscriptions.delete_by_id(created.id))
    error = await sdk.fails(NotFoundError, lambda c: c.webhook_subscriptions.get_by_id(created.id))
    assert NOT_FOUND_BODY == error.body


async def test_entity_id_is_returned_back(monite: MoniteEmulator, connect: Connect) -> None:
    """An x-monite-entity-id the SDK sends comes back on the answer, as Monite documents."""
    entity_id = "11111111-1111-4111-8111-111111111111"
    client_id, client_secret = monite.credentials
    raw = await connect(monite.base_url, entity_id=entity_id).run(
        lambda c: c.access_tokens.with_raw_response.create(
            client_id=client_id, client_secret=client_secret, grant_type="client_credentials"
        )
    )
    assert entity_id == raw.headers.get("x-monite-entity-id")


# -- errors ------------------------------------------------------------------------


async def test_bad_client_credentials_are_401(monite: MoniteEmulator, connect: Connect) -> None:
    """A wrong client secret is the schema's 401 ErrorSchemaResponse (the SDK's plain ApiError)."""
    client_id, _ = monite.credentials
    error = await connect(monite.base_url).fails(
        ApiError,
        lambda c: c.access_tokens.create(
            client_id=client_id, client_secret="not-the-secret", grant_type="client_credentials"
        ),
    )
    assert (401, {"error": {"message": "Wrong client credentials"}}) == (
        error.status_code,
        ErrorSchemaResponse.model_validate(error.body).model_dump(),
    )
    assert_answered(monite, error.headers or {}, "token", 401)


OPERATIONS: dict[str, tuple[str, Callable[[str], Call]]] = {
    "list": ("list", lambda sub_id: lambda c: c.webhook_subscriptions.get(limit=1)),
    "get": ("get", lambda sub_id: lambda c: c.webhook_subscriptions.get_by_id(sub_id)),
    "regenerate": (
        "regenerate_secret",
        lambda sub_id: lambda c: c.webhook_subscriptions.regenerate_secret_by_id(sub_id),
    ),
    "create": (
        "create",
        lambda sub_id: (
            lambda c: c.webhook_subscriptions.create(
                object_type="payable", url="https://hooks.example.com/next"
            )
        ),
    ),
    "delete": ("delete", lambda sub_id: lambda c: c.webhook_subscriptions.delete_by_id(sub_id)),
}


@pytest.mark.parametrize("operation", list(OPERATIONS))
async def test_expired_token_is_unauthorized_error(
    monite: MoniteEmulator, sdk: Sdk, operation: str
) -> None:
    """With an expired token every operation raises UnauthorizedError with Monite's error body."""
    route, call = OPERATIONS[operation]
    sub_id = monite.seed()
    monite.expire_tokens()
    error = await sdk.fails(UnauthorizedError, call(sub_id))
    assert {"error": {"message": "Access token has expired"}} == error.body
    assert (0, [sub_id]) == (monite.regenerate_count(sub_id), monite.subscription_ids())
    assert_answered(monite, error.headers or {}, route, 401)


@pytest.mark.parametrize("operation", ["get", "regenerate", "delete"])
async def test_unknown_subscription_is_not_found_error(
    monite: MoniteEmulator, sdk: Sdk, operation: str
) -> None:
    """An id Monite does not know raises NotFoundError with "Webhook subscription not found"."""
    route, call = OPERATIONS[operation]
    error = await sdk.fails(NotFoundError, call(UNKNOWN_ID))
    assert NOT_FOUND_BODY == ErrorSchemaResponse.model_validate(error.body).model_dump()
    assert_answered(monite, error.headers or {}, route, 404)


VALIDATION_CASES: dict[str, tuple[str, Call, list[tuple[list[str], str]]]] = {
    "get-not-a-uuid": (
        "get",
        lambda c: c.webhook_subscriptions.get_by_id("not-a-uuid"),
        [(["path", "webhook_subscription_id"], "uuid_parsing")],
    ),
    "list-limit-0": (
        "list",
        lambda c: c.webhook_subscriptions.get(limit=0),
        [(["query", "limit"], "greater_than_equal")],
    ),
    "list-limit-101": (
        "list",
        lambda c: c.webhook_subscriptions.get(limit=101),
        [(["query", "limit"], "less_than_equal")],
    ),
    "regenerate-not-a-uuid": (
        "regenerate_secret",
        lambda c: c.webhook_subscriptions.regenerate_secret_by_id("not-a-uuid"),
        [(["path", "webhook_subscription_id"], "uuid_parsing")],
    ),
    "delete-not-a-uuid": (
        "delete",
        lambda c: c.webhook_subscriptions.delete_by_id("not-a-uuid"),
        [(["path", "webhook_subscription_id"], "uuid_parsing")],
    ),
    "create-empty-url": (
        "create",
        lambda c: c.webhook_subscriptions.create(object_type="payable", url=""),
        [(["body", "url"], "url_parsing")],
    ),
    "create-unknown-object-type": (
        "create",
        lambda c: c.webhook_subscriptions.create(
            object_type="not_a_type", url="https://hooks.example.com/next"
        ),
        [(["body", "object_type"], "enum")],
    ),
    "create-extra-field": (
        "create",
        lambda c: c.webhook_subscriptions.create(
            object_type="payable",
            url="https://hooks.example.com/next",
            request_options={"additional_body_parameters": {"secret": "mine"}},
        ),
        [(["body", "secret"], "extra_forbidden")],
    ),
}


@pytest.mark.parametrize("case", list(VALIDATION_CASES))
async def test_invalid_request_is_unprocessable_entity_error(
    monite: MoniteEmulator, sdk: Sdk, case: str
) -> None:
    """A request the schema forbids raises UnprocessableEntityError with HTTPValidationError."""
    route, call, expected = VALIDATION_CASES[case]
    error = await sdk.fails(UnprocessableEntityError, call)
    detail = HttpValidationError.model_validate(error.body).detail or []
    assert expected == [(list(map(str, d.loc)), d.type) for d in detail]
    assert_answered(monite, error.headers or {}, route, 422)
    assert [] == monite.subscription_ids()


async def test_invalid_token_request_is_unprocessable_entity_error(
    monite: MoniteEmulator, connect: Connect
) -> None:
    """A token request whose client_id is not a UUID is a 422 naming body.client_id."""
    error = await connect(monite.base_url).fails(
        UnprocessableEntityError,
        lambda c: c.access_tokens.create(
            client_id="not-a-uuid", client_secret="whatever", grant_type="client_credentials"
        ),
    )
    detail = HttpValidationError.model_validate(error.body).detail or []
    assert [(["body", "client_id"], "uuid_parsing")] == [
        (list(map(str, d.loc)), d.type) for d in detail
    ]


MISSING_VERSION_CASES: dict[str, tuple[str, type[ApiError], Call]] = {
    # The SDK maps a 400 to BadRequestError on /auth/token only; elsewhere it is ApiError.
    "token": (
        "token",
        BadRequestError,
        lambda c: c.access_tokens.create(
            client_id=UNKNOWN_ID, client_secret="whatever", grant_type="client_credentials"
        ),
    ),
    "list": ("list", ApiError, lambda c: c.webhook_subscriptions.get()),
    "regenerate": (
        "regenerate_secret",
        ApiError,
        lambda c: c.webhook_subscriptions.regenerate_secret_by_id(UNKNOWN_ID),
    ),
}


@pytest.mark.parametrize("case", list(MISSING_VERSION_CASES))
async def test_missing_version_is_400_missing_api_version(
    monite: MoniteEmulator, connect: Connect, case: str
) -> None:
    """Without x-monite-version Monite answers 400 {"error": {"type": "missing_api_version"}}."""
    route, error_class, call = MISSING_VERSION_CASES[case]
    token = await token_for(monite, connect)
    error = await connect(monite.base_url, token=token, version=None).fails(error_class, call)
    assert (400, MISSING_VERSION_BODY) == (
        error.status_code,
        ErrorSchemaResponse.model_validate(error.body).model_dump(),
    )
    assert_answered(monite, error.headers or {}, route, 400)


@pytest.mark.parametrize("operation", ["token", "list"])
async def test_rate_limited_call_is_too_many_requests_error(
    limited: MoniteEmulator, connect: Connect, operation: str
) -> None:
    """Past the quota the SDK raises TooManyRequestsError; Retry-After is seconds, Reset a time."""
    token = await token_for(limited, connect)  # takes the quota's only request
    client_id, client_secret = limited.credentials
    call: Call
    if operation == "token":
        call = lambda c: c.access_tokens.create(  # noqa: E731
            client_id=client_id, client_secret=client_secret, grant_type="client_credentials"
        )
    else:
        call = lambda c: c.webhook_subscriptions.get()  # noqa: E731
    before = time.time()
    error = await connect(limited.base_url, token=token).fails(TooManyRequestsError, call)
    headers = error.headers or {}
    assert {"error": {"message": "Too Many Requests"}} == error.body
    assert "1" == headers.get("retry-after")
    reset = int(headers.get("ratelimit-reset", "0"))
    assert (True, "0") == (before < reset <= before + 3, headers.get("ratelimit-remaining"))
    assert_answered(limited, headers, "token" if operation == "token" else "list", 429)


async def test_sdk_retry_waits_for_retry_after_and_succeeds(
    limited: MoniteEmulator, connect: Connect
) -> None:
    """With max_retries the SDK reads Retry-After as seconds, waits it out and gets the page."""
    token = await token_for(limited, connect)
    started = time.monotonic()
    page = await connect(limited.base_url, token=token).run(
        # The SDK counts attempts from 2 (`retries: int = 2`): 3 allows exactly one retry.
        lambda c: c.webhook_subscriptions.get(request_options={"max_retries": 3})
    )
    elapsed = time.monotonic() - started
    assert ([], 1, 1) == (
        page.data,
        len(limited.request_ids("list", 429)),
        len(limited.request_ids("list", 200)),
    )
    assert 0.9 <= elapsed < 5.0


SERVER_ERROR_CASES = [
    (500, "list"),
    (502, "get"),
    (503, "regenerate"),
    (500, "create"),
    (503, "delete"),
]


@pytest.mark.parametrize(("status", "operation"), SERVER_ERROR_CASES)
async def test_server_error_is_api_error_with_monite_body(
    monite: MoniteEmulator, sdk: Sdk, status: int, operation: str
) -> None:
    """A 5xx raises the SDK's ApiError with the schema's ErrorSchemaResponse body."""
    route, call = OPERATIONS[operation]
    sub_id = monite.seed()
    monite.faults.error_status = status
    monite.faults.error_rate = 1.0
    error = await sdk.fails(ApiError, call(sub_id))
    assert (status, {"error": {"message": "Internal Server Error"}}) == (
        error.status_code,
        ErrorSchemaResponse.model_validate(error.body).model_dump(),
    )
    headers = error.headers or {}
    assert ("1" if status == 503 else None) == headers.get("retry-after")
    assert (0, [sub_id]) == (monite.regenerate_count(sub_id), monite.subscription_ids())
    assert_answered(monite, headers, route, status)
