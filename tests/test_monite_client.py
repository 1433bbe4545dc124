"""MoniteClient over real HTTP against the Monite emulator: paging, tokens, retries, errors."""

from __future__ import annotations

import asyncio
import inspect
import random
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import UTC, datetime, timedelta
from typing import Any, TypeVar

import httpx
import pytest

from rotator.config import MoniteSettings
from rotator.errors import (
    MoniteAuthError,
    MoniteError,
    MoniteNotFound,
    MoniteProtocolError,
    MoniteRequestError,
    MoniteUnavailable,
)
from rotator.model import Secret
from rotator.monite import MoniteClient, _parse_page, _parse_regenerated, translate_httpx_error
from rotator.sandbox import ISSUED
from rotator.sandbox.monite import MoniteEmulator
from tests.conftest import capture_audit

E = TypeVar("E", bound=BaseException)


class FakeClock:
    """Monotonic time that moves only when told to or when code sleeps; sleeps return at once.

    `on_sleep` lets a test change the emulator's faults between attempts.
    """

    def __init__(self, *, real_sleep: bool = False) -> None:
        self.mono = 1000.0
        self.sleeps: list[float] = []
        self.on_sleep: Callable[[], None] | None = None
        self._real_sleep = real_sleep

    def now(self) -> datetime:
        return datetime(2024, 6, 1, tzinfo=UTC) + timedelta(seconds=self.mono - 1000.0)

    def monotonic(self) -> float:
        return self.mono

    async def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.mono += seconds
        if self.on_sleep is not None:
            self.on_sleep()
        if self._real_sleep:
            await asyncio.sleep(seconds)

    def advance(self, seconds: float) -> None:
        self.mono += seconds


class Leaks:
    """Collects every message and repr a test produced; none may contain an issued secret.

    The emulator records every access token, webhook secret and client secret
    it hands out in `rotator.sandbox.ISSUED`.
    """

    def __init__(self, settings: MoniteSettings) -> None:
        self.extra_values: set[str] = {settings.client_secret.reveal()}
        self.texts: list[str] = []

    def watch(self, client: MoniteClient) -> None:
        self.texts.append(repr(client))

    def record(self, exc: BaseException) -> None:
        seen: BaseException | None = exc
        while seen is not None:
            self.texts.append(str(seen))
            self.texts.append(repr(seen))
            seen = seen.__cause__ or seen.__context__

    def leaked(self) -> list[str]:
        values = set(ISSUED) | self.extra_values
        return [v for v in values if v and any(v in text for text in self.texts)]


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def leaks(monite_settings: MoniteSettings) -> Leaks:
    return Leaks(monite_settings)


@pytest.fixture
async def client(
    monite_http: httpx.AsyncClient,
    monite_settings: MoniteSettings,
    clock: FakeClock,
    leaks: Leaks,
) -> AsyncIterator[MoniteClient]:
    client = MoniteClient(monite_http, monite_settings, clock=clock, rng=random.Random(7))
    yield client
    leaks.watch(client)
    await client.aclose()
    assert [] == leaks.leaked()


def make_client(
    http: httpx.AsyncClient, settings: MoniteSettings, clock: FakeClock, **update: Any
) -> MoniteClient:
    return MoniteClient(http, settings.model_copy(update=update), clock=clock, rng=random.Random(7))


async def expect(cls: type[E], awaitable: Awaitable[Any], leaks: Leaks) -> E:
    """Await, require `cls`, and keep its message for the leak check."""
    with pytest.raises(cls) as info:
        await awaitable
    leaks.record(info.value)
    return info.value


UNKNOWN_ID = "00000000-0000-4000-8000-000000000000"


def seed_many(monite: MoniteEmulator, count: int) -> list[str]:
    return [monite.seed(url=f"https://hooks.example.com/{i}") for i in range(count)]


# ------------------------------------------------------------------ listing


async def test_list_follows_every_page(
    monite: MoniteEmulator,
    monite_http: httpx.AsyncClient,
    monite_settings: MoniteSettings,
    clock: FakeClock,
) -> None:
    """250 subscriptions at 100 a page come back complete in exactly 3 list calls."""
    ids = seed_many(monite, 250)
    client = make_client(monite_http, monite_settings, clock, page_size=100)
    subs = await client.list_subscriptions()
    assert sorted(ids) == sorted(s.id for s in subs)
    assert 3 == monite.request_count("list")
    assert 0 == client.last_list_skipped


async def test_list_keeps_unknown_enum_values_and_extra_fields(
    monite: MoniteEmulator, client: MoniteClient
) -> None:
    """An object_type/status the schema does not know and extra fields survive parsing."""
    sub_id = monite.seed(
        url="https://hooks.example.com/new",
        object_type="hologram",
        status="paused",
        event_types=["hologram.created"],
        extra={"colour": "blue"},
    )
    (sub,) = await client.list_subscriptions()
    assert sub_id == sub.id
    assert "hologram" == sub.object_type
    assert "paused" == sub.status
    assert ("hologram.created",) == sub.event_types
    assert "blue" == sub.extra["colour"]
    assert False is sub.enabled


async def test_list_detects_pagination_loop(
    monite: MoniteEmulator,
    monite_http: httpx.AsyncClient,
    monite_settings: MoniteSettings,
    clock: FakeClock,
    leaks: Leaks,
) -> None:
    """A next_pagination_token seen before stops listing with MoniteProtocolError."""
    seed_many(monite, 30)
    monite.faults.pagination_loop = True
    client = make_client(monite_http, monite_settings, clock, page_size=10)
    error = await expect(MoniteProtocolError, client.list_subscriptions(), leaks)
    assert "pagination loop" in str(error)


async def test_list_keeps_first_of_duplicates_across_pages(
    monite: MoniteEmulator,
    monite_http: httpx.AsyncClient,
    monite_settings: MoniteSettings,
    clock: FakeClock,
) -> None:
    """A subscription listed on two pages is returned once."""
    ids = seed_many(monite, 25)
    monite.faults.duplicate_across_pages = True
    client = make_client(monite_http, monite_settings, clock, page_size=10)
    subs = await client.list_subscriptions()
    assert sorted(ids) == sorted(s.id for s in subs)
    assert len(subs) == len({s.id for s in subs})


async def test_list_stops_at_max_pages(
    monite: MoniteEmulator,
    monite_http: httpx.AsyncClient,
    monite_settings: MoniteSettings,
    clock: FakeClock,
    leaks: Leaks,
) -> None:
    """More pages than monite.max_pages is a MoniteProtocolError, not an endless walk."""
    seed_many(monite, 50)
    client = make_client(monite_http, monite_settings, clock, page_size=10, max_pages=3)
    error = await expect(MoniteProtocolError, client.list_subscriptions(), leaks)
    assert "max_pages" in str(error)
    assert 3 == monite.request_count("list")


async def test_check_reads_one_small_page(monite: MoniteEmulator, client: MoniteClient) -> None:
    """check() costs one token and one list call, however many subscriptions exist."""
    seed_many(monite, 5)
    await client.check()
    assert 1 == monite.request_count("token")
    assert 1 == monite.request_count("list")


# ------------------------------------------------------------------- tokens


async def test_token_is_cached_across_requests(
    monite: MoniteEmulator, client: MoniteClient
) -> None:
    """Many requests share one token fetch."""
    sub_id = monite.seed(url="https://hooks.example.com/a")
    await client.list_subscriptions()
    await client.get_subscription(sub_id)
    await client.regenerate_secret(sub_id)
    await client.list_subscriptions()
    assert 1 == monite.request_count("token")


async def test_token_refreshed_after_401(monite: MoniteEmulator, client: MoniteClient) -> None:
    """A token Monite stopped accepting costs one 401, one new token and then succeeds."""
    monite.seed(url="https://hooks.example.com/a")
    await client.list_subscriptions()
    monite.expire_tokens()
    assert 1 == len(await client.list_subscriptions())
    assert 2 == monite.request_count("token")
    assert 1 == client.requests["list", 401]
    assert 2 == client.requests["list", 200]


async def test_token_refreshed_before_it_expires(
    monite: MoniteEmulator, client: MoniteClient, clock: FakeClock
) -> None:
    """Close to its expiry the token is replaced without waiting for a 401."""
    await client.list_subscriptions()
    token = client._token
    assert token is not None
    clock.advance(token.refresh_at - clock.monotonic() + 1)
    await client.list_subscriptions()
    assert 2 == monite.request_count("token")
    assert 0 == client.requests["list", 401]


async def test_bad_credentials_raise_auth_error(
    monite: MoniteEmulator,
    monite_http: httpx.AsyncClient,
    monite_settings: MoniteSettings,
    clock: FakeClock,
    leaks: Leaks,
) -> None:
    """A refused client secret is MoniteAuthError naming the keys to check, not their values."""
    wrong = Secret("definitely-not-the-secret")
    leaks.extra_values.add(wrong.reveal())
    client = make_client(monite_http, monite_settings, clock, client_secret=wrong)
    error = await expect(MoniteAuthError, client.list_subscriptions(), leaks)
    assert "client_secret" in str(error)
    assert 0 == monite.request_count("list")


# ---------------------------------------------------------------- regenerate


async def test_regenerate_returns_the_current_secret(
    monite: MoniteEmulator, client: MoniteClient, leaks: Leaks
) -> None:
    """The secret returned is the one Monite now signs with."""
    sub_id = monite.seed(url="https://hooks.example.com/a")
    result = await client.regenerate_secret(sub_id)
    assert monite.current_secret(sub_id) == result.secret.reveal()
    assert sub_id == result.subscription.id
    assert 1 == monite.regenerate_count(sub_id)
    assert "secret" not in result.subscription.extra


async def test_regenerate_is_one_attempt_and_a_dropped_answer_may_have_applied(
    monite: MoniteEmulator, client: MoniteClient, clock: FakeClock, leaks: Leaks
) -> None:
    """The adapter never retries a regenerate; a lost answer says it may have been applied."""
    sub_id = monite.seed(url="https://hooks.example.com/a")
    monite.faults.drop_after_regenerate = 1
    error = await expect(MoniteUnavailable, client.regenerate_secret(sub_id), leaks)
    assert error.may_have_applied
    assert 1 == monite.regenerate_count(sub_id)
    assert [] == clock.sleeps


@pytest.mark.parametrize(
    ("status", "applied"), [(429, False), (500, True), (503, True), (400, False)]
)
async def test_regenerate_error_says_whether_it_may_have_applied(
    monite: MoniteEmulator,
    client: MoniteClient,
    leaks: Leaks,
    status: int,
    applied: bool,
) -> None:
    """A 429 or 4xx was refused; a 5xx may come after Monite made the change."""
    sub_id = monite.seed(url="https://hooks.example.com/a")
    monite.faults.error_status = status
    monite.faults.fail_regenerate = 1
    error = await expect(MoniteError, client.regenerate_secret(sub_id), leaks)
    assert (status, applied) == (error.status, error.may_have_applied)
    assert 1 == monite.request_count("regenerate_secret")


async def test_regenerate_not_sent_after_its_send_deadline(
    monite: MoniteEmulator, client: MoniteClient, clock: FakeClock, leaks: Leaks
) -> None:
    """A send deadline already past means nothing is sent, and nothing may have applied."""
    sub_id = monite.seed(url="https://hooks.example.com/a")
    error = await expect(
        MoniteUnavailable, client.regenerate_secret(sub_id, send_by=clock.monotonic() - 1), leaks
    )
    assert not error.may_have_applied
    assert 0 == monite.request_count("regenerate_secret")


async def test_regenerate_unknown_id_is_not_found(
    monite: MoniteEmulator, client: MoniteClient, leaks: Leaks
) -> None:
    """A 404 is MoniteNotFound, with no retry."""
    missing = "00000000-0000-4000-8000-000000000000"
    error = await expect(MoniteNotFound, client.regenerate_secret(missing), leaks)
    assert 404 == error.status
    assert 1 == monite.request_count("regenerate_secret")


async def test_get_unknown_id_is_not_found(
    monite: MoniteEmulator, client: MoniteClient, leaks: Leaks
) -> None:
    """get_subscription of an id Monite does not know is MoniteNotFound, with no retry."""
    error = await expect(
        MoniteNotFound, client.get_subscription("00000000-0000-4000-8000-000000000001"), leaks
    )
    assert 404 == error.status
    assert 1 == monite.request_count("get")


# ------------------------------------------------------------------ retries


async def test_429_waits_for_retry_after(
    monite_credentials: tuple[str, str],
    monite_http: httpx.AsyncClient,
    monite_settings: MoniteSettings,
) -> None:
    """Past the gateway's rate limit, the 429 is retried after exactly its Retry-After."""
    clock = FakeClock(real_sleep=True)
    with MoniteEmulator(rate_limit=2, burst=3) as limited:
        limited.add_client(*monite_credentials)
        limited.seed(url="https://hooks.example.com/a")
        client = make_client(monite_http, monite_settings, clock, base_url=limited.base_url)
        for _ in range(3):
            assert 1 == len(await client.list_subscriptions())
        assert 1 == client.requests["list", 429]
        assert 3 == client.requests["list", 200]
        assert [1.0] == clock.sleeps
        await client.aclose()


async def test_503_carries_its_retry_after_to_the_caller(
    monite: MoniteEmulator, client: MoniteClient, clock: FakeClock, leaks: Leaks
) -> None:
    """A regenerate's 503 is not retried here; its Retry-After reaches the protocol's retry."""
    sub_id = monite.seed(url="https://hooks.example.com/a")
    monite.faults.error_status = 503
    monite.faults.retry_after = 7
    monite.faults.fail_regenerate = 1
    error = await expect(MoniteUnavailable, client.regenerate_secret(sub_id), leaks)
    assert (503, 7.0, True) == (error.status, error.retry_after, error.may_have_applied)
    assert [] == clock.sleeps


async def test_retries_exhausted_raise_unavailable(
    monite: MoniteEmulator, client: MoniteClient, clock: FakeClock, leaks: Leaks
) -> None:
    """A Monite that keeps failing costs 1 + max_retries attempts, then MoniteUnavailable."""
    monite.faults.error_rate = 1.0
    monite.faults.error_status = 502
    error = await expect(MoniteUnavailable, client.list_subscriptions(), leaks)
    assert 502 == error.status
    assert 4 == client.requests["list", 502]
    assert 4 == monite.request_count("list")
    assert 3 == len(clock.sleeps)
    assert "4 attempts" in str(error)


async def test_hang_times_out_and_retries(
    monite: MoniteEmulator, client: MoniteClient, clock: FakeClock
) -> None:
    """A request Monite never answers times out after monite.timeout and is retried."""
    monite.seed(url="https://hooks.example.com/a")
    monite.faults.hang = 30.0
    clock.on_sleep = lambda: setattr(monite.faults, "hang", 0.0)
    assert 1 == len(await client.list_subscriptions())
    assert 1 == client.requests["list", 0]
    assert 1 == client.requests["list", 200]
    assert 1 == len(clock.sleeps)


async def test_malformed_json_is_retried(
    monite: MoniteEmulator, client: MoniteClient, clock: FakeClock
) -> None:
    """A 200 whose body is not JSON is retried like a transient failure."""
    monite.seed(url="https://hooks.example.com/a")
    monite.faults.malformed_json = 1
    assert 1 == len(await client.list_subscriptions())
    assert 2 == client.requests["list", 200]
    assert 1 == len(clock.sleeps)


async def test_malformed_regenerate_answer_may_have_applied(
    monite: MoniteEmulator, client: MoniteClient, clock: FakeClock
) -> None:
    """A regenerate answer cut short was applied: a retryable error that may have applied."""
    sub_id = monite.seed(url="https://hooks.example.com/a")
    monite.faults.malformed_json = 1
    with pytest.raises(MoniteProtocolError) as caught:
        await client.regenerate_secret(sub_id)
    assert (True, True) == (caught.value.retryable, caught.value.may_have_applied)
    assert 1 == monite.regenerate_count(sub_id)


async def test_connection_refused_is_unavailable(
    monite_http: httpx.AsyncClient,
    monite_settings: MoniteSettings,
    clock: FakeClock,
    leaks: Leaks,
) -> None:
    """Nothing listening: every attempt fails, then one line naming monite.base_url and the port."""
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    client = make_client(
        monite_http, monite_settings, clock, base_url=f"http://127.0.0.1:{port}/v1"
    )
    error = await expect(MoniteUnavailable, client.list_subscriptions(), leaks)
    assert (
        f"monite.base_url: cannot connect to 127.0.0.1:{port} (connection refused); check that "
        "Monite is running and the address is right (gave up after 4 attempts)",
        False,
    ) == (str(error), error.may_have_applied)
    assert isinstance(error.__cause__, httpx.ConnectError)
    assert 4 == client.requests["token", 0]


# ------------------------------------------------------- errors and secrecy


def _instance(cls: type[Exception]) -> Exception:
    request = httpx.Request("GET", "https://api.sandbox.monite.com/v1/webhook_subscriptions")
    params = inspect.signature(cls.__init__).parameters
    if "response" in params:
        return cls("boom", request=request, response=httpx.Response(503, request=request))  # type: ignore[call-arg]
    if "request" in params:
        return cls("boom", request=request)  # type: ignore[call-arg]
    if "message" in params:
        return cls("boom")
    return cls()


def _httpx_exception_classes() -> list[type[Exception]]:
    found = []
    for name in httpx.__all__:
        obj = getattr(httpx, name)
        if inspect.isclass(obj) and issubclass(obj, Exception):
            found.append(obj)
    return found


def test_every_httpx_exception_is_translated() -> None:
    """Each httpx exception maps to a MoniteError naming the class (or the unreachable host)."""
    classes = _httpx_exception_classes()
    assert len(classes) >= 25
    unreachable = (
        "monite.base_url: cannot connect to api.sandbox.monite.com:443 ({}); "
        "check that Monite is running and the address is right"
    )
    for cls in classes:
        error = translate_httpx_error(_instance(cls), operation="list")  # type: ignore[arg-type]
        assert isinstance(error, MoniteError), cls.__name__
        assert type(error) is not MoniteError, cls.__name__
        if issubclass(cls, httpx.ConnectError | httpx.ConnectTimeout):
            reason = "timed out" if cls is httpx.ConnectTimeout else "connection failed"
            assert unreachable.format(reason) == str(error), cls.__name__
        else:
            assert cls.__name__ in str(error) or "HTTP 503" in str(error), cls.__name__
        assert "boom" not in str(error), cls.__name__


def test_httpx_translation_retryability() -> None:
    """Transient transport failures are retryable; our own mistakes are not."""
    request = httpx.Request("GET", "https://api.sandbox.monite.com/v1/x")
    cases: list[tuple[Exception, type[MoniteError], bool]] = [
        (httpx.ReadTimeout("t", request=request), MoniteUnavailable, True),
        (httpx.ConnectError("c", request=request), MoniteUnavailable, True),
        (httpx.RemoteProtocolError("r", request=request), MoniteUnavailable, True),
        (httpx.LocalProtocolError("l", request=request), MoniteRequestError, False),
        (httpx.UnsupportedProtocol("u", request=request), MoniteRequestError, False),
        (httpx.InvalidURL("i"), MoniteRequestError, False),
        (httpx.TooManyRedirects("m", request=request), MoniteProtocolError, False),
        (httpx.DecodingError("d", request=request), MoniteProtocolError, True),
    ]
    for exc, expected_cls, retryable in cases:
        error = translate_httpx_error(exc)  # type: ignore[arg-type]
        assert expected_cls is type(error), type(exc).__name__
        assert retryable is error.retryable, type(exc).__name__
    status = httpx.HTTPStatusError(
        "s", request=request, response=httpx.Response(404, request=request)
    )
    assert MoniteNotFound is type(translate_httpx_error(status))


async def test_no_secret_in_repr_or_errors(
    monite: MoniteEmulator,
    monite_http: httpx.AsyncClient,
    monite_settings: MoniteSettings,
    clock: FakeClock,
    leaks: Leaks,
) -> None:
    """The client's repr and the errors of failing calls never show a token or any secret."""
    sub_id = monite.seed(url="https://hooks.example.com/a")
    client = make_client(monite_http, monite_settings, clock)
    result = await client.regenerate_secret(sub_id)
    token = client._token
    assert token is not None
    # The check below is only meaningful if it knows every value that must not leak.
    assert {token.value.reveal(), result.secret.reveal()} <= ISSUED
    assert monite_settings.client_secret.reveal() in leaks.extra_values
    leaks.watch(client)
    assert "<secret>" == repr(result.secret)
    monite.expire_tokens()
    monite.faults.error_status = 500
    monite.faults.fail_regenerate = 10
    await expect(MoniteUnavailable, client.regenerate_secret(sub_id), leaks)
    monite.faults.drop_after_regenerate = 10
    monite.faults.fail_regenerate = 0
    await expect(MoniteUnavailable, client.regenerate_secret(sub_id), leaks)
    await expect(MoniteRequestError, client.get_subscription("not-a-uuid"), leaks)
    leaks.watch(client)
    await client.aclose()
    assert 1 == client.requests["revoke", 200]
    leaks.watch(client)
    assert [] == leaks.leaked()


async def test_concurrent_callers_share_one_token_fetch(
    monite: MoniteEmulator, client: MoniteClient
) -> None:
    """Ten calls started together fetch one token between them."""
    monite.seed(url="https://hooks.example.com/a")
    results = await asyncio.gather(*(client.list_subscriptions() for _ in range(10)))
    assert [1] * 10 == [len(r) for r in results]
    assert 1 == monite.request_count("token")


async def test_validation_error_names_field_not_input(
    monite: MoniteEmulator, client: MoniteClient, leaks: Leaks
) -> None:
    """A 422 is MoniteRequestError quoting Monite's loc and msg, never the rejected input."""
    error = await expect(MoniteRequestError, client.get_subscription("not-a-uuid"), leaks)
    assert 422 == error.status
    assert "path.webhook_subscription_id" in str(error)
    assert "not-a-uuid" not in str(error)
    assert 1 == monite.request_count("get")


async def test_bad_api_version_is_named(
    monite: MoniteEmulator,
    monite_http: httpx.AsyncClient,
    monite_settings: MoniteSettings,
    clock: FakeClock,
    leaks: Leaks,
) -> None:
    """Every request carries x-monite-version; a malformed one is refused and named."""
    client = make_client(monite_http, monite_settings, clock, api_version="yesterday")
    error = await expect(MoniteAuthError, client.check(), leaks)
    assert 422 == error.status
    assert "header.x-monite-version" in str(error)


async def test_missing_version_header_names_the_api_version_setting(
    monite: MoniteEmulator,
    monite_http: httpx.AsyncClient,
    monite_settings: MoniteSettings,
    clock: FakeClock,
    leaks: Leaks,
) -> None:
    """Monite's 400 missing_api_version is a MoniteRequestError naming monite.api_version."""
    client = make_client(monite_http, monite_settings, clock, api_version="")
    error = await expect(MoniteRequestError, client.check(), leaks)
    request_id = monite.request_ids("token", 400)[-1]
    assert (
        400,
        "Monite token: HTTP 400: Missing the x-monite-version HTTP header; check "
        "monite.api_version and that no proxy strips the x-monite-version header "
        f"(request_id={request_id})",
    ) == (error.status, str(error))
    assert 1 == monite.request_count("token")


async def test_failed_calls_name_monites_request_id(
    monite: MoniteEmulator, client: MoniteClient, leaks: Leaks
) -> None:
    """A refused call's message carries the x-request-id Monite sent with the refusal."""
    error = await expect(MoniteNotFound, client.regenerate_secret(UNKNOWN_ID), leaks)
    request_id = monite.request_ids("regenerate_secret", 404)[-1]
    assert (
        f"Monite regenerate_secret: HTTP 404: Webhook subscription not found "
        f"(request_id={request_id})"
    ) == str(error)


async def test_retries_log_each_request_id_and_the_error_names_the_last(
    monite: MoniteEmulator, client: MoniteClient, leaks: Leaks
) -> None:
    """Every monite.retry event holds its answer's request_id; the final error the last one."""
    monite.faults.error_rate = 1.0
    monite.faults.error_status = 502
    with capture_audit() as logs:
        error = await expect(MoniteUnavailable, client.list_subscriptions(), leaks)
    ids = monite.request_ids("list", 502)
    retries = [e for e in logs if e["event"] == "monite.retry"]
    assert ids[:3] == [e["request_id"] for e in retries]
    assert str(error).endswith(f"(request_id={ids[3]}; gave up after 4 attempts)")


def _answering(handler: Callable[[httpx.Request], httpx.Response]) -> httpx.AsyncClient:
    """An httpx client whose Monite is `handler` behind a working token endpoint."""

    def route(request: httpx.Request) -> httpx.Response:
        if request.url.path.endswith("/auth/token"):
            return httpx.Response(
                200, json={"access_token": "tok-abc", "expires_in": 86400, "token_type": "Bearer"}
            )
        return handler(request)

    return httpx.AsyncClient(transport=httpx.MockTransport(route))


@pytest.mark.parametrize(
    ("request_id", "shown"),
    [
        ("req-7f3c.01:a_B", "req-7f3c.01:a_B"),
        ("", None),
        ("two words", None),
        ("x" * 129, None),
        ("client-secret-value", None),
        ("tok-abc", None),
        ("echoed-in-body", None),
    ],
)
async def test_request_id_is_shown_only_when_safe(
    monite_settings: MoniteSettings, clock: FakeClock, request_id: str, shown: str | None
) -> None:
    """An x-request-id of an odd shape, holding a credential or echoed by the body is left out."""

    def refuse(request: httpx.Request) -> httpx.Response:
        return httpx.Response(
            404,
            json={"error": {"message": "gone", "echo": "echoed-in-body"}},
            headers={"x-request-id": request_id},
        )

    settings = monite_settings.model_copy(
        update={"client_secret": Secret("client-secret-value"), "max_retries": 0}
    )
    async with _answering(refuse) as http:
        client = MoniteClient(http, settings, clock=clock, rng=random.Random(7))
        with pytest.raises(MoniteNotFound) as caught:
            await client.get_subscription(UNKNOWN_ID)
    suffix = "" if shown is None else f" (request_id={shown})"
    assert f"Monite get: HTTP 404: gone{suffix}" == str(caught.value)


async def test_aclose_revokes_token_and_keeps_http_client_open(
    monite: MoniteEmulator, monite_http: httpx.AsyncClient, client: MoniteClient
) -> None:
    """aclose() revokes the token at Monite and leaves the injected httpx client usable."""
    await client.check()
    await client.aclose()
    assert 1 == monite.request_count("revoke")
    assert False is monite_http.is_closed
    assert "token=none" in repr(client)


def test_page_parsing_skips_items_without_id() -> None:
    """Listed items with no usable id are counted and dropped; a page without data is refused."""
    page = _parse_page(
        {
            "data": [
                {"id": "a", "url": "https://x", "object_type": "payable", "status": "enabled"},
                {"url": "https://no-id"},
                {"id": 7},
                "not an object",
            ],
            "next_pagination_token": None,
        }
    )
    assert ["a"] == [s.id for s in page.items]
    assert 3 == page.skipped
    assert None is page.next_token
    bodies: list[Any] = [[], {"data": None}, {"next_pagination_token": "x"}]
    for body in bodies:
        with pytest.raises(MoniteProtocolError):
            _parse_page(body)


def test_regenerate_answer_without_secret_is_retryable() -> None:
    """A regenerate answer missing its secret is a protocol error the client may retry."""
    with pytest.raises(MoniteProtocolError) as info:
        _parse_regenerated({"id": "a", "url": "https://x", "secret": ""})
    assert info.value.retryable, info.value
