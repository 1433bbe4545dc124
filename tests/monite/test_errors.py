"""MoniteClient errors: httpx exceptions and statuses translated, settings named, no secret."""

from __future__ import annotations

import inspect
import random

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
from rotator.monite import MoniteClient
from rotator.sandbox import ISSUED
from rotator.sandbox.monite import MoniteEmulator
from tests.monite.helpers import (
    FakeClock,
    Leaks,
    answering,
    expect,
    make_client,
)


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


def _raising(exc: Exception, settings: MoniteSettings) -> tuple[httpx.AsyncClient, MoniteSettings]:
    """An httpx client whose requests (but the token's) raise `exc`; settings that never retry."""

    def route(request: httpx.Request) -> httpx.Response:
        raise exc

    return answering(route), settings.model_copy(
        update={"base_url": "https://api.sandbox.monite.com/v1", "max_retries": 0}
    )


async def test_every_httpx_exception_is_translated(
    monite_settings: MoniteSettings, clock: FakeClock
) -> None:
    """Each httpx exception maps to a MoniteError naming the class (or the unreachable host)."""
    classes = _httpx_exception_classes()
    assert len(classes) >= 25
    unreachable = (
        "monite.base_url: cannot connect to api.sandbox.monite.com:443 ({}); "
        "check that Monite is running and the address is right"
    )
    for cls in classes:
        exc = _instance(cls)
        http, settings = _raising(exc, monite_settings)
        async with http:
            client = MoniteClient(http, settings, clock=clock, rng=random.Random(7))
            with pytest.raises(MoniteError) as caught:
                await client.list_subscriptions()
        error = caught.value
        assert type(error) is not MoniteError, cls.__name__
        assert exc is error.__cause__, cls.__name__
        if issubclass(cls, httpx.ConnectError | httpx.ConnectTimeout):
            reason = "timed out" if cls is httpx.ConnectTimeout else "connection failed"
            assert unreachable.format(reason) == str(error), cls.__name__
        else:
            assert cls.__name__ in str(error) or "HTTP 503" in str(error), cls.__name__
        assert "boom" not in str(error), cls.__name__


async def test_httpx_translation_retryability(
    monite_settings: MoniteSettings, clock: FakeClock
) -> None:
    """Transient transport failures are retryable; our own mistakes are not."""
    request = httpx.Request("GET", "https://api.sandbox.monite.com/v1/x")
    status = httpx.HTTPStatusError(
        "s", request=request, response=httpx.Response(404, request=request)
    )
    cases: list[tuple[Exception, type[MoniteError], bool]] = [
        (httpx.ReadTimeout("t", request=request), MoniteUnavailable, True),
        (httpx.ConnectError("c", request=request), MoniteUnavailable, True),
        (httpx.RemoteProtocolError("r", request=request), MoniteUnavailable, True),
        (httpx.LocalProtocolError("l", request=request), MoniteRequestError, False),
        (httpx.UnsupportedProtocol("u", request=request), MoniteRequestError, False),
        (httpx.InvalidURL("i"), MoniteRequestError, False),
        (httpx.TooManyRedirects("m", request=request), MoniteProtocolError, False),
        (httpx.DecodingError("d", request=request), MoniteProtocolError, True),
        (status, MoniteNotFound, False),
    ]
    for exc, expected_cls, retryable in cases:
        http, settings = _raising(exc, monite_settings)
        async with http:
            client = MoniteClient(http, settings, clock=clock, rng=random.Random(7))
            with pytest.raises(MoniteError) as caught:
                await client.get_subscription("a")
        assert (expected_cls, retryable) == (type(caught.value), caught.value.retryable), type(
            exc
        ).__name__


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
    token = client.access_token
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
