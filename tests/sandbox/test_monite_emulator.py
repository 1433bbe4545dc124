"""The Monite emulator behaves like Monite's schema says, over real HTTP on loopback.

Every response body these tests receive is validated against the official
schema subset in tests/schema/monite-openapi.json, so a client tested against
the emulator is tested against the documented API, not against our guesses.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from email.utils import parsedate_to_datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
import pytest
from jsonschema import Draft202012Validator, FormatChecker  # type: ignore[import-untyped]

from rotator.config import MoniteSettings
from rotator.sandbox import ISSUED
from rotator.sandbox.monite import MoniteEmulator

SCHEMA: dict[str, Any] = json.loads(
    (Path(__file__).resolve().parents[1] / "schema" / "monite-openapi.json").read_text()
)
VERSION = "2024-05-25"
RATE_HEADERS = (
    "RateLimit-Limit",
    "RateLimit-Remaining",
    "RateLimit-Reset",
    "X-RateLimit-Limit-Second",
    "X-RateLimit-Remaining-Second",
)
# Monite's API concept pages: on every response, whatever its status.
MONITE_HEADERS = ("x-monite-version", "x-request-id")
UNKNOWN_ID = "00000000-0000-4000-8000-000000000000"
LIST = "/webhook_subscriptions"
ONE = "/webhook_subscriptions/{webhook_subscription_id}"
_FORMATS = FormatChecker()


def _is_uri(value: object) -> bool:
    # jsonschema only checks "uri" with an optional package; this is enough here.
    if not isinstance(value, str):
        return True
    parts = urlsplit(value)
    return bool(parts.scheme and parts.netloc)


_FORMATS.checks("uri")(_is_uri)


def _responses(path_template: str, method: str) -> dict[str, Any]:
    # A method the path lacks has no operation; its 405 is documented on every
    # operation as ErrorSchemaResponse, which the fallback below applies.
    operation = SCHEMA["paths"][path_template].get(method.lower(), {})
    responses: dict[str, Any] = operation.get("responses", {})
    return responses


def schema_errors(path_template: str, method: str, status: int, body: Any) -> list[str]:
    """Messages of every way `body` breaks the schema's response for this operation/status."""
    documented = _responses(path_template, method).get(str(status))
    if documented is None:
        # 401 (outside /auth/token), 404 and 429 are not in the schema: Monite's error shape.
        schema: dict[str, Any] = {"$ref": "#/components/schemas/ErrorSchemaResponse"}
    else:
        schema = documented["content"]["application/json"]["schema"]
    root = {**schema, "components": SCHEMA["components"]}
    validator = Draft202012Validator(root, format_checker=_FORMATS)
    return sorted(e.message for e in validator.iter_errors(body))


def assert_matches_schema(path_template: str, method: str, status: int, body: Any) -> None:
    """Fail unless `body` is what the schema documents for this operation and status."""
    responses = _responses(path_template, method)
    if str(status) in responses and "content" not in responses[str(status)]:
        assert body is None, "a response the schema documents without content had a body"
        return
    assert [] == schema_errors(path_template, method, status, body)


def check_response(path_template: str, method: str, response: httpx.Response) -> None:
    """Headers every /v1 answer carries, and the body against the schema."""
    for name in (*RATE_HEADERS, *MONITE_HEADERS):
        assert name.lower() in response.headers
    if response.status_code == 204:
        assert b"" == response.content
        assert "content-type" not in response.headers
        assert_matches_schema(path_template, method, 204, None)
        return
    assert "application/json" == response.headers["content-type"]
    assert_matches_schema(path_template, method, response.status_code, response.json())


class Api:
    """Calls the emulator like a client would, and checks every answer against the schema."""

    def __init__(self, http: httpx.AsyncClient, emulator: MoniteEmulator) -> None:
        self.http = http
        self.emulator = emulator
        self._token: str | None = None

    async def token(self) -> str:
        if self._token is None:
            client_id, client_secret = self.emulator.credentials
            response = await self.call(
                "POST",
                "/auth/token",
                token=None,
                json={
                    "grant_type": "client_credentials",
                    "client_id": client_id,
                    "client_secret": client_secret,
                },
            )
            assert 200 == response.status_code
            self._token = str(response.json()["access_token"])
        return self._token

    def forget_token(self) -> None:
        """Fetch a new token on the next call, as a client does after a 401."""
        self._token = None

    async def call(
        self,
        method: str,
        template: str,
        *,
        sub_id: str | None = None,
        suffix: str = "",
        params: dict[str, Any] | None = None,
        json: Any = None,
        content: bytes | None = None,
        token: str | bool | None = True,
        version: str | None = VERSION,
        client_timeout: float = 5.0,
        check: bool = True,
    ) -> httpx.Response:
        """`token=True` uses a fresh-or-cached token; `None` sends no Authorization."""
        path = template
        if sub_id is not None:
            path = template.replace("{webhook_subscription_id}", sub_id)
        headers: dict[str, str] = {}
        if version is not None:
            headers["x-monite-version"] = version
        if token is True:
            token = await self.token()
        if isinstance(token, str):
            headers["authorization"] = f"Bearer {token}"
        response = await self.http.request(
            method,
            self.emulator.base_url + path + suffix,
            params=params,
            json=json,
            content=content,
            headers=headers,
            timeout=client_timeout,
        )
        if check:
            check_response(template + suffix, method, response)
        return response

    async def list_all(self, params: dict[str, Any]) -> list[list[dict[str, Any]]]:
        """Every page of a listing, following next_pagination_token (at most 50 pages)."""
        pages: list[list[dict[str, Any]]] = []
        response = await self.call("GET", LIST, params=params)
        for _ in range(50):
            assert 200 == response.status_code
            body = response.json()
            pages.append(body["data"])
            if body["next_pagination_token"] is None:
                return pages
            response = await self.call(
                "GET", LIST, params={"pagination_token": body["next_pagination_token"]}
            )
        raise AssertionError("listing did not end within 50 pages")


@pytest.fixture
def api(monite: MoniteEmulator, monite_http: httpx.AsyncClient) -> Api:
    return Api(monite_http, monite)


@pytest.fixture
def slow_monite() -> Iterator[MoniteEmulator]:
    """An emulator with a tiny rate limit: 1 request/s, burst of 2."""
    emulator = MoniteEmulator(rate_limit=1, burst=2)
    emulator.add_client()
    with emulator:
        yield emulator


def ids(items: list[dict[str, Any]]) -> list[str]:
    return [item["id"] for item in items]


# -- auth --------------------------------------------------------------------


async def test_token_is_issued_for_registered_client(api: Api, monite: MoniteEmulator) -> None:
    """Client credentials get a Bearer token whose expires_in is the configured TTL."""
    client_id, client_secret = monite.credentials
    response = await api.call(
        "POST",
        "/auth/token",
        token=None,
        json={
            "grant_type": "client_credentials",
            "client_id": client_id,
            "client_secret": client_secret,
        },
    )
    body = response.json()
    assert 200 == response.status_code
    assert ("Bearer", 86400) == (body["token_type"], body["expires_in"])
    assert body["access_token"] in ISSUED
    assert 1 == monite.request_count("token")


@pytest.mark.parametrize("wrong", ["client_secret", "client_id"])
async def test_wrong_credentials_are_401(api: Api, monite: MoniteEmulator, wrong: str) -> None:
    """A wrong secret or an unknown client id is refused with 401 in Monite's error shape."""
    client_id, client_secret = monite.credentials
    payload = {"grant_type": "client_credentials", "client_id": client_id}
    payload["client_secret"] = "not-the-secret" if wrong == "client_secret" else client_secret
    if wrong == "client_id":
        payload["client_id"] = UNKNOWN_ID
    response = await api.call("POST", "/auth/token", token=None, json=payload)
    assert 401 == response.status_code
    assert client_secret not in response.text


async def test_entity_user_grant_is_refused(api: Api, monite: MoniteEmulator) -> None:
    """The emulator has no entity users, so an entity_user grant gets 401, never a token."""
    client_id, client_secret = monite.credentials
    response = await api.call(
        "POST",
        "/auth/token",
        token=None,
        json={
            "grant_type": "entity_user",
            "client_id": client_id,
            "client_secret": client_secret,
            "entity_user_id": UNKNOWN_ID,
        },
    )
    assert 401 == response.status_code


async def test_token_body_is_validated_without_echoing_input(
    api: Api, monite: MoniteEmulator
) -> None:
    """A bad token request is a FastAPI-style 422 naming each field, with no input echoed."""
    _, client_secret = monite.credentials
    response = await api.call(
        "POST",
        "/auth/token",
        token=None,
        json={"client_id": "nope", "client_secret": client_secret, "scope": client_secret},
    )
    assert 422 == response.status_code
    detail = response.json()["detail"]
    assert [
        (["body", "client_id"], "uuid_parsing"),
        (["body", "grant_type"], "missing"),
        (["body", "scope"], "extra_forbidden"),
    ] == [(d["loc"], d["type"]) for d in detail]
    assert client_secret not in response.text


@pytest.mark.parametrize(
    ("content", "loc", "kind"),
    [
        (b"", ["body"], "missing"),
        (b"{not json", ["body", 1], "json_invalid"),
        (b"[1, 2]", ["body"], "model_attributes_type"),
    ],
)
async def test_token_body_that_is_not_an_object_is_422(
    api: Api, content: bytes, loc: list[Any], kind: str
) -> None:
    """Empty, non-JSON and non-object bodies are 422s with FastAPI's loc and type."""
    response = await api.call("POST", "/auth/token", token=None, content=content)
    assert 422 == response.status_code
    assert [(loc, kind)] == [(d["loc"], d["type"]) for d in response.json()["detail"]]


@pytest.mark.parametrize(
    ("method", "template", "token", "version"),
    [
        ("GET", LIST, True, None),
        ("GET", LIST, True, ""),
        ("POST", "/auth/token", None, None),
        ("GET", LIST, None, None),
        ("PUT", LIST, True, None),
        ("GET", "/payables", True, None),
    ],
)
async def test_missing_version_header_is_400_missing_api_version(
    api: Api, method: str, template: str, token: bool | None, version: str | None
) -> None:
    """Without x-monite-version (or with an empty one) every /v1 call is Monite's documented 400."""
    response = await api.call(method, template, token=token, version=version, json={}, check=False)
    expected = {
        "error": {
            "type": "missing_api_version",
            "message": "Missing the x-monite-version HTTP header",
        }
    }
    assert (400, expected) == (response.status_code, response.json())
    assert [] == schema_errors(LIST, "GET", 400, response.json())
    assert "2024-05-25" == response.headers["x-monite-version"]


@pytest.mark.parametrize(
    ("method", "template", "token", "params", "status"),
    [
        ("POST", "/auth/token", None, None, 200),
        ("GET", LIST, True, None, 200),
        ("GET", LIST, None, None, 401),
        ("GET", LIST, True, {"limit": 0}, 422),
        ("PUT", LIST, True, None, 405),
        ("GET", "/payables", True, None, 404),
    ],
)
async def test_every_answer_names_its_version_and_a_fresh_request_id(
    api: Api,
    monite: MoniteEmulator,
    method: str,
    template: str,
    token: bool | None,
    params: dict[str, Any] | None,
    status: int,
) -> None:
    """Each answer echoes x-monite-version and carries its own x-request-id, kept by request_ids."""
    answers = []
    for _ in range(2):
        json_body = None
        if template == "/auth/token":
            client_id, client_secret = monite.credentials
            json_body = {
                "grant_type": "client_credentials",
                "client_id": client_id,
                "client_secret": client_secret,
            }
        answers.append(
            await api.call(
                method, template, token=token, params=params, json=json_body, check=False
            )
        )
    assert [status, status] == [a.status_code for a in answers]
    assert [VERSION, VERSION] == [a.headers["x-monite-version"] for a in answers]
    first, second = (a.headers["x-request-id"] for a in answers)
    assert first != second
    assert [first, second] == monite.request_ids(status=status)[-2:]


async def test_version_of_a_past_date_is_echoed(api: Api) -> None:
    """The answer's x-monite-version is the version the request asked for."""
    response = await api.call("GET", LIST, version="2024-01-31")
    assert (200, "2024-01-31") == (response.status_code, response.headers["x-monite-version"])


async def test_rate_limited_and_failed_answers_carry_a_request_id(
    slow_monite: MoniteEmulator, monite_http: httpx.AsyncClient
) -> None:
    """The gateway's 429 and an injected 500 both carry x-monite-version and x-request-id."""
    api = Api(monite_http, slow_monite)
    slow_monite.faults.error_rate = 1.0
    failed = await api.call("GET", LIST)
    limited = await api.call("GET", LIST)
    assert [500, 429] == [failed.status_code, limited.status_code]
    assert slow_monite.request_ids("list") == [
        failed.headers["x-request-id"],
        limited.headers["x-request-id"],
    ]


async def test_version_header_must_be_a_date(api: Api) -> None:
    """x-monite-version is a date in the schema, so other text is a 422."""
    response = await api.call("GET", LIST, version="latest")
    assert 422 == response.status_code
    assert [["header", "x-monite-version"]] == [d["loc"] for d in response.json()["detail"]]


@pytest.mark.parametrize("authorization", [None, "Bearer not-a-token", "Basic abc"])
async def test_missing_or_unknown_bearer_is_401(api: Api, authorization: str | None) -> None:
    """Without a valid Bearer token the API answers 401 and does nothing."""
    headers = {"x-monite-version": VERSION}
    if authorization is not None:
        headers["authorization"] = authorization
    response = await api.http.get(api.emulator.base_url + LIST, headers=headers)
    check_response(LIST, "GET", response)
    assert 401 == response.status_code


async def test_expired_token_is_401_and_a_new_one_works(api: Api, monite: MoniteEmulator) -> None:
    """expire_tokens() makes every issued token fail with 401; a fresh token works again."""
    assert 200 == (await api.call("GET", LIST)).status_code
    monite.expire_tokens()
    assert 401 == (await api.call("GET", LIST)).status_code
    api.forget_token()
    assert 200 == (await api.call("GET", LIST)).status_code


async def test_revoked_token_stops_working(api: Api, monite: MoniteEmulator) -> None:
    """POST /auth/revoke answers MessageResponse and the token is refused from then on."""
    client_id, client_secret = monite.credentials
    token = await api.token()
    response = await api.call(
        "POST",
        "/auth/revoke",
        json={"client_id": client_id, "client_secret": client_secret, "token": token},
    )
    assert 200 == response.status_code
    assert 401 == (await api.call("GET", LIST, token=token)).status_code


async def test_revoke_with_wrong_credentials_is_401(api: Api, monite: MoniteEmulator) -> None:
    """Revocation needs the client's own credentials; the token survives a wrong attempt."""
    client_id, _ = monite.credentials
    token = await api.token()
    response = await api.call(
        "POST",
        "/auth/revoke",
        json={"client_id": client_id, "client_secret": "wrong", "token": token},
    )
    assert 401 == response.status_code
    assert 200 == (await api.call("GET", LIST)).status_code


# -- listing -----------------------------------------------------------------


async def test_pagination_walks_every_page_in_creation_order(
    api: Api, monite: MoniteEmulator
) -> None:
    """limit=3 over 7 subscriptions gives pages of 3, 3, 1 holding every id once, in order."""
    seeded = [monite.seed() for _ in range(7)]
    pages = await api.list_all({"limit": 3})
    assert [3, 3, 1] == [len(p) for p in pages]
    assert seeded == [i for page in pages for i in ids(page)]
    assert 3 == monite.request_count("list")


async def test_default_limit_is_100(api: Api, monite: MoniteEmulator) -> None:
    """Without limit a page holds 100 items, and the 101st is on the next page."""
    for _ in range(101):
        monite.seed()
    pages = await api.list_all({})
    assert [100, 1] == [len(p) for p in pages]


async def test_prev_token_returns_the_previous_page(api: Api, monite: MoniteEmulator) -> None:
    """The first page has no prev token; page 2's prev token leads back to page 1."""
    seeded = [monite.seed() for _ in range(5)]
    first = (await api.call("GET", LIST, params={"limit": 2})).json()
    assert first["prev_pagination_token"] is None
    second = (
        await api.call("GET", LIST, params={"pagination_token": first["next_pagination_token"]})
    ).json()
    assert seeded[2:4] == ids(second["data"])
    back = (
        await api.call("GET", LIST, params={"pagination_token": second["prev_pagination_token"]})
    ).json()
    assert seeded[:2] == ids(back["data"])
    assert back["prev_pagination_token"] is None


async def test_pagination_token_overrides_other_query_params(
    api: Api, monite: MoniteEmulator
) -> None:
    """With pagination_token, limit/order/object_type sent alongside are ignored."""
    payables = [monite.seed(object_type="payable") for _ in range(4)]
    monite.seed(object_type="receivable")
    first = (await api.call("GET", LIST, params={"limit": 2, "object_type": "payable"})).json()
    response = await api.call(
        "GET",
        LIST,
        params={
            "pagination_token": first["next_pagination_token"],
            "limit": 100,
            "order": "desc",
            "object_type": "receivable",
        },
    )
    assert payables[2:] == ids(response.json()["data"])


async def test_list_filters_by_object_type(api: Api, monite: MoniteEmulator) -> None:
    """object_type keeps only subscriptions of that type."""
    monite.seed(object_type="payable")
    receivable = monite.seed(object_type="receivable")
    response = await api.call("GET", LIST, params={"object_type": "receivable"})
    assert [receivable] == ids(response.json()["data"])


async def test_list_sorts_desc_and_by_updated_at(api: Api, monite: MoniteEmulator) -> None:
    """order=desc reverses creation order; sort=updated_at puts the last-changed item last."""
    a, b, c = (monite.seed() for _ in range(3))
    desc = await api.call("GET", LIST, params={"order": "desc"})
    assert [c, b, a] == ids(desc.json()["data"])
    await api.call("POST", ONE, sub_id=a, suffix="/disable")
    by_update = await api.call("GET", LIST, params={"sort": "updated_at"})
    assert [b, c, a] == ids(by_update.json()["data"])


async def test_list_filters_by_created_at(api: Api, monite: MoniteEmulator) -> None:
    """created_at__gt/lt/gte/lte bound the creation time, inclusive only for gte/lte."""
    base = datetime(2024, 1, 1, tzinfo=UTC)
    made = [monite.seed(created_at=base + timedelta(days=n)) for n in range(4)]

    def day(n: int) -> str:
        return (base + timedelta(days=n)).isoformat().replace("+00:00", "Z")

    cases = [
        ({"created_at__gt": day(1)}, made[2:]),
        ({"created_at__gte": day(1)}, made[1:]),
        ({"created_at__lt": day(2)}, made[:2]),
        ({"created_at__lte": day(2), "created_at__gt": day(0)}, made[1:3]),
    ]
    for params, expected in cases:
        response = await api.call("GET", LIST, params=params)
        assert expected == ids(response.json()["data"])


@pytest.mark.parametrize(
    ("params", "loc", "kind"),
    [
        ({"limit": 0}, ["query", "limit"], "greater_than_equal"),
        ({"limit": 101}, ["query", "limit"], "less_than_equal"),
        ({"limit": "ten"}, ["query", "limit"], "int_parsing"),
        ({"order": "up"}, ["query", "order"], "enum"),
        ({"sort": "name"}, ["query", "sort"], "enum"),
        ({"object_type": "spaceship"}, ["query", "object_type"], "enum"),
        ({"created_at__gt": "yesterday"}, ["query", "created_at__gt"], "datetime_parsing"),
        ({"pagination_token": "forged"}, ["query", "pagination_token"], "value_error"),
    ],
)
async def test_bad_list_query_is_422(
    api: Api, params: dict[str, Any], loc: list[str], kind: str
) -> None:
    """Each invalid list parameter is a 422 naming that parameter."""
    response = await api.call("GET", LIST, params=params)
    assert 422 == response.status_code
    assert [(loc, kind)] == [(d["loc"], d["type"]) for d in response.json()["detail"]]


async def test_extra_fields_reach_the_api_output(api: Api, monite: MoniteEmulator) -> None:
    """Fields given to seed(extra=...) appear in listed items, as a future Monite field would."""
    sub_id = monite.seed(extra={"created_by": "someone"})
    item = (await api.call("GET", LIST)).json()["data"][0]
    assert (sub_id, "someone") == (item["id"], item["created_by"])
    assert "secret" not in item


async def test_unknown_object_type_can_be_seeded_and_listed(
    api: Api, monite: MoniteEmulator
) -> None:
    """seed() takes an object_type the schema lacks and lists it as is (only that is off-schema)."""
    monite.seed(object_type="hologram")
    response = await api.call("GET", LIST, check=False)
    body = response.json()
    assert "hologram" == body["data"][0]["object_type"]
    errors = schema_errors(LIST, "GET", 200, body)
    assert 1 == len(errors)
    assert errors[0].startswith("'hologram' is not one of")


# -- single-subscription operations ----------------------------------------------


async def test_create_returns_201_with_secret_and_get_hides_it(
    api: Api, monite: MoniteEmulator
) -> None:
    """Creating answers 201 with the secret; GET returns the same subscription without it."""
    payload = {
        "object_type": "receivable",
        "url": "https://hooks.example.com/r",
        "event_types": ["created"],
    }
    created = await api.call("POST", LIST, json=payload)
    assert 201 == created.status_code
    body = created.json()
    assert monite.current_secret(body["id"]) == body["secret"]
    assert body["secret"] in ISSUED
    fetched = (await api.call("GET", ONE, sub_id=body["id"])).json()
    assert {**payload, "id": body["id"], "status": "enabled"} == fetched


@pytest.mark.parametrize(
    ("payload", "expected"),
    [
        ({"url": "https://x.example"}, [(["body", "object_type"], "missing")]),
        ({"object_type": "payable", "url": "ftp://x.example"}, [(["body", "url"], "url_scheme")]),
        ({"object_type": "payable", "url": ""}, [(["body", "url"], "url_parsing")]),
        (
            {"object_type": "payable", "url": "https://x.example/" + "a" * 2100},
            [(["body", "url"], "url_too_long")],
        ),
        ({"object_type": "bogus", "url": "https://x.example"}, [(["body", "object_type"], "enum")]),
        (
            {"object_type": "payable", "url": "https://x.example", "event_types": "created"},
            [(["body", "event_types"], "list_type")],
        ),
        (
            {"object_type": "payable", "url": "https://x.example", "secret": "mine"},
            [(["body", "secret"], "extra_forbidden")],
        ),
    ],
)
async def test_create_validates_body(
    api: Api, monite: MoniteEmulator, payload: dict[str, Any], expected: list[Any]
) -> None:
    """An invalid create body is a 422 naming the field, and nothing is created."""
    response = await api.call("POST", LIST, json=payload)
    assert 422 == response.status_code
    assert expected == [(d["loc"], d["type"]) for d in response.json()["detail"]]
    assert [] == monite.subscription_ids()


async def test_patch_changes_given_fields_only(api: Api, monite: MoniteEmulator) -> None:
    """PATCH updates the fields sent, and absent or null fields stay as they were."""
    sub_id = monite.seed(url="https://old.example/h", event_types=["created"])
    response = await api.call(
        "PATCH", ONE, sub_id=sub_id, json={"url": "https://new.example/h", "event_types": None}
    )
    assert 200 == response.status_code
    body = response.json()
    assert ("https://new.example/h", ["created"], "payable") == (
        body["url"],
        body["event_types"],
        body["object_type"],
    )


async def test_patch_rejects_unknown_fields(api: Api, monite: MoniteEmulator) -> None:
    """The update schema forbids extra fields: status cannot be patched in."""
    sub_id = monite.seed()
    response = await api.call("PATCH", ONE, sub_id=sub_id, json={"status": "disabled"})
    assert 422 == response.status_code
    assert "enabled" == monite.subscription(sub_id)["status"]


async def test_delete_is_204_then_404(api: Api, monite: MoniteEmulator) -> None:
    """DELETE answers 204 with no body; the subscription is gone afterwards."""
    sub_id = monite.seed()
    assert 204 == (await api.call("DELETE", ONE, sub_id=sub_id)).status_code
    assert 404 == (await api.call("GET", ONE, sub_id=sub_id)).status_code
    assert [] == monite.subscription_ids()


async def test_get_confirms_a_subscription_is_gone(api: Api, monite: MoniteEmulator) -> None:
    """GET by id answers the subscription, then Monite's not-found 404 once it is deleted."""
    sub_id = monite.seed()
    found = await api.call("GET", ONE, sub_id=sub_id)
    assert (200, monite.subscription(sub_id)) == (found.status_code, found.json())
    monite.remove(sub_id)
    gone = await api.call("GET", ONE, sub_id=sub_id)
    assert (404, {"error": {"message": "Webhook subscription not found"}}) == (
        gone.status_code,
        gone.json(),
    )


async def test_disable_and_enable_flip_status(api: Api, monite: MoniteEmulator) -> None:
    """/disable and /enable set the status and return the subscription."""
    sub_id = monite.seed()
    disabled = await api.call("POST", ONE, sub_id=sub_id, suffix="/disable")
    assert "disabled" == disabled.json()["status"]
    enabled = await api.call("POST", ONE, sub_id=sub_id, suffix="/enable")
    assert "enabled" == enabled.json()["status"]


async def test_regenerate_replaces_the_secret(
    api: Api, monite: MoniteEmulator, monite_http: httpx.AsyncClient
) -> None:
    """regenerate_secret returns a new secret; introspection shows the new one, not the old."""
    sub_id = monite.seed()
    old = monite.current_secret(sub_id)
    url = f"{monite.origin}/_sandbox/webhook_subscriptions/{sub_id}/secret"
    before = await monite_http.get(url)
    assert (200, {"secret": old}) == (before.status_code, before.json())
    response = await api.call("POST", ONE, sub_id=sub_id, suffix="/regenerate_secret")
    assert 200 == response.status_code
    new = response.json()["secret"]
    assert old != new
    assert new == monite.current_secret(sub_id)
    assert 1 == monite.regenerate_count(sub_id)
    assert new in ISSUED
    peek = await monite_http.get(url)
    assert (200, {"secret": new}) == (peek.status_code, peek.json())  # the old one is no longer it


async def test_regenerations_in_parallel_are_all_applied(api: Api, monite: MoniteEmulator) -> None:
    """20 concurrent regenerations are each applied once, with 20 distinct secrets."""
    sub_id = monite.seed()
    await api.token()
    responses = await asyncio.gather(
        *(api.call("POST", ONE, sub_id=sub_id, suffix="/regenerate_secret") for _ in range(20))
    )
    assert 20 == len({r.json()["secret"] for r in responses})
    assert 20 == monite.regenerate_count(sub_id)


@pytest.mark.parametrize(
    ("method", "suffix"),
    [
        ("GET", ""),
        ("PATCH", ""),
        ("DELETE", ""),
        ("POST", "/enable"),
        ("POST", "/disable"),
        ("POST", "/regenerate_secret"),
    ],
)
async def test_ids_must_be_uuids_and_exist(api: Api, method: str, suffix: str) -> None:
    """Every id route answers 422 for a non-UUID id and 404 for an unknown one."""
    body: dict[str, Any] | None = {} if method == "PATCH" else None
    bad = await api.call(method, ONE, sub_id="not-a-uuid", suffix=suffix, json=body)
    assert 422 == bad.status_code
    assert [["path", "webhook_subscription_id"]] == [d["loc"] for d in bad.json()["detail"]]
    missing = await api.call(method, ONE, sub_id=UNKNOWN_ID, suffix=suffix, json=body)
    assert 404 == missing.status_code


async def test_wrong_method_is_405_with_allow(api: Api) -> None:
    """A known path with an unsupported method is 405 ErrorSchemaResponse naming allowed methods."""
    response = await api.call("PUT", LIST)
    assert (405, "GET, POST") == (response.status_code, response.headers["allow"])


async def test_unknown_path_is_404(api: Api, monite_http: httpx.AsyncClient) -> None:
    """A path outside the schema is a 404 in Monite's error shape."""
    response = await monite_http.get(
        api.emulator.base_url + "/payables", headers={"x-monite-version": VERSION}
    )
    assert (404, "application/json") == (response.status_code, response.headers["content-type"])
    assert [] == schema_errors(LIST, "GET", 404, response.json())


# -- rate limit ---------------------------------------------------------------


async def test_rate_limit_answers_429_with_retry_after(
    slow_monite: MoniteEmulator, monite_http: httpx.AsyncClient
) -> None:
    """Past the burst the emulator answers 429 with rate headers and Retry-After >= 1 s."""
    api = Api(monite_http, slow_monite)
    first = await api.call("GET", LIST)  # the token took the burst's first slot
    assert ("2", "0") == (first.headers["ratelimit-limit"], first.headers["ratelimit-remaining"])
    limited = await api.call("GET", LIST)
    assert 429 == limited.status_code
    assert 1 <= int(limited.headers["retry-after"])
    assert "0" == limited.headers["x-ratelimit-remaining-second"]
    assert "1" == limited.headers["x-ratelimit-limit-second"]
    assert 3 == slow_monite.request_count()


async def test_rate_limit_reset_is_a_unix_timestamp(
    slow_monite: MoniteEmulator, monite_http: httpx.AsyncClient
) -> None:
    """RateLimit-Reset is the Unix time the quota is full again, as Monite documents it."""
    api = Api(monite_http, slow_monite)
    response = await api.call("GET", LIST)  # the bucket (burst 2, 1/s) is empty: ~2 s to refill
    ahead = int(response.headers["ratelimit-reset"]) - time.time()
    assert 1.0 <= ahead <= 3.0


async def test_rate_limit_refills(
    slow_monite: MoniteEmulator, monite_http: httpx.AsyncClient
) -> None:
    """After Retry-After seconds the bucket has a token again."""
    api = Api(monite_http, slow_monite)
    await api.call("GET", LIST)
    limited = await api.call("GET", LIST)
    await asyncio.sleep(int(limited.headers["retry-after"]))
    assert 200 == (await api.call("GET", LIST)).status_code


# -- faults -----------------------------------------------------------------


async def test_error_rate_fails_api_calls_but_not_tokens(api: Api, monite: MoniteEmulator) -> None:
    """error_rate=1 answers every API call with error_status; /auth/token still works."""
    monite.faults.error_rate = 1.0
    monite.faults.error_status = 503
    await api.token()
    response = await api.call("GET", LIST)
    assert (503, "1") == (response.status_code, response.headers["retry-after"])


async def test_fail_regenerate_is_not_applied(api: Api, monite: MoniteEmulator) -> None:
    """fail_regenerate answers error_status and leaves the secret as it was, once per count."""
    sub_id = monite.seed()
    old = monite.current_secret(sub_id)
    monite.faults.fail_regenerate = 1
    failed = await api.call("POST", ONE, sub_id=sub_id, suffix="/regenerate_secret")
    assert (500, old, 0) == (
        failed.status_code,
        monite.current_secret(sub_id),
        monite.regenerate_count(sub_id),
    )
    ok = await api.call("POST", ONE, sub_id=sub_id, suffix="/regenerate_secret")
    assert (200, 1) == (ok.status_code, monite.regenerate_count(sub_id))


async def test_drop_after_regenerate_applies_then_closes(api: Api, monite: MoniteEmulator) -> None:
    """The ambiguous case: the secret changes, but the client gets no response at all."""
    sub_id = monite.seed()
    old = monite.current_secret(sub_id)
    monite.faults.drop_after_regenerate = 1
    with pytest.raises((httpx.RemoteProtocolError, httpx.ReadError)):
        await api.call("POST", ONE, sub_id=sub_id, suffix="/regenerate_secret")
    assert 1 == monite.regenerate_count(sub_id)
    assert old != monite.current_secret(sub_id)
    ok = await api.call("POST", ONE, sub_id=sub_id, suffix="/regenerate_secret")
    assert (200, 2) == (ok.status_code, monite.regenerate_count(sub_id))
    assert [sub_id] == monite.dropped_answers()


async def test_drop_after_create_creates_then_closes(api: Api, monite: MoniteEmulator) -> None:
    """A create the client never hears of: the subscription exists, with a secret, unanswered."""
    monite.faults.drop_after_create = 1
    payload = {"object_type": "payable", "url": "https://hooks.example.com/next"}
    with pytest.raises((httpx.RemoteProtocolError, httpx.ReadError)):
        await api.call("POST", LIST, json=payload)
    (made,) = monite.subscription_ids()
    assert monite.current_secret(made) in ISSUED
    ok = await api.call("POST", LIST, json=payload)
    assert (201, 2, 0) == (
        ok.status_code,
        len(monite.subscription_ids()),
        monite.faults.drop_after_create,
    )


async def test_drop_after_create_spares_a_refused_body(api: Api, monite: MoniteEmulator) -> None:
    """An invalid create is a 422 as always and does not use up the drop fault."""
    monite.faults.drop_after_create = 1
    response = await api.call("POST", LIST, json={"url": "https://hooks.example.com/next"})
    assert (422, [], 1) == (
        response.status_code,
        monite.subscription_ids(),
        monite.faults.drop_after_create,
    )


async def test_drop_after_delete_deletes_then_closes(api: Api, monite: MoniteEmulator) -> None:
    """A delete the client never hears of: gone, and deleting again is Monite's 404."""
    sub_id = monite.seed()
    monite.faults.drop_after_delete = 1
    with pytest.raises((httpx.RemoteProtocolError, httpx.ReadError)):
        await api.call("DELETE", ONE, sub_id=sub_id)
    again = await api.call("DELETE", ONE, sub_id=sub_id)
    assert (404, {"error": {"message": "Webhook subscription not found"}}, []) == (
        again.status_code,
        again.json(),
        monite.subscription_ids(),
    )
    assert 0 == monite.faults.drop_after_delete


async def test_drop_after_delete_spares_an_unknown_id(api: Api, monite: MoniteEmulator) -> None:
    """A delete of an id Monite does not know is a 404 and leaves the drop fault armed."""
    monite.faults.drop_after_delete = 1
    response = await api.call("DELETE", ONE, sub_id="00000000-0000-4000-8000-000000000000")
    assert (404, 1) == (response.status_code, monite.faults.drop_after_delete)


async def test_malformed_json_after_regenerate_is_applied(api: Api, monite: MoniteEmulator) -> None:
    """A malformed 200 still regenerated the secret, and its body does not hold the secret."""
    sub_id = monite.seed()
    await api.token()
    monite.faults.malformed_json = 1
    response = await api.call("POST", ONE, sub_id=sub_id, suffix="/regenerate_secret", check=False)
    assert (200, "application/json") == (response.status_code, response.headers["content-type"])
    with pytest.raises(json.JSONDecodeError):
        json.loads(response.content)
    assert 1 == monite.regenerate_count(sub_id)
    assert monite.current_secret(sub_id) not in response.text
    assert 200 == (await api.call("GET", LIST)).status_code  # the count ran out


async def test_malformed_json_on_list(api: Api, monite: MoniteEmulator) -> None:
    """malformed_json also breaks listings, and counts down once per response."""
    monite.seed()
    await api.token()
    monite.faults.malformed_json = 2
    for _ in range(2):
        response = await api.call("GET", LIST, check=False)
        with pytest.raises(json.JSONDecodeError):
            json.loads(response.content)
    assert 0 == monite.faults.malformed_json


async def test_pagination_loop_repeats_the_token(api: Api, monite: MoniteEmulator) -> None:
    """With pagination_loop the next token of a page fetched by token is that same token."""
    for _ in range(3):
        monite.seed()
    monite.faults.pagination_loop = True
    first = (await api.call("GET", LIST, params={"limit": 2})).json()
    token = first["next_pagination_token"]
    for _ in range(3):
        page = (await api.call("GET", LIST, params={"pagination_token": token})).json()
        assert token == page["next_pagination_token"]


async def test_pagination_loop_even_when_all_fits_one_page(
    api: Api, monite: MoniteEmulator
) -> None:
    """With pagination_loop a single page still offers a next token, so a naive client loops."""
    monite.seed()
    monite.faults.pagination_loop = True
    first = (await api.call("GET", LIST)).json()
    assert first["next_pagination_token"] is not None


async def test_duplicate_across_pages(api: Api, monite: MoniteEmulator) -> None:
    """With duplicate_across_pages a page's last item opens the next page; nothing is lost."""
    seeded = [monite.seed() for _ in range(5)]
    monite.faults.duplicate_across_pages = True
    pages = await api.list_all({"limit": 2})
    assert [seeded[1], seeded[1]] == [pages[0][-1]["id"], pages[1][0]["id"]]
    assert seeded == list(dict.fromkeys(i for page in pages for i in ids(page)))


async def _until(condition: Callable[[], bool], within: float = 2.0) -> None:
    """Wait (briefly polling) until `condition()` holds; fail after `within` seconds."""
    deadline = time.monotonic() + within
    while not condition():
        assert time.monotonic() < deadline, "condition not met in time"
        await asyncio.sleep(0.01)


async def test_regenerate_not_found_is_404_without_applying(
    api: Api, monite: MoniteEmulator
) -> None:
    """regenerate_not_found answers Monite's missing-subscription 404 and leaves the secret."""
    sub_id = monite.seed()
    old = monite.current_secret(sub_id)
    monite.faults.regenerate_not_found = 1
    missing = await api.call("POST", ONE, sub_id=sub_id, suffix="/regenerate_secret")
    assert (404, {"error": {"message": "Webhook subscription not found"}}) == (
        missing.status_code,
        missing.json(),
    )
    assert (old, 0) == (monite.current_secret(sub_id), monite.regenerate_count(sub_id))
    ok = await api.call("POST", ONE, sub_id=sub_id, suffix="/regenerate_secret")
    assert (200, 1) == (ok.status_code, monite.regenerate_count(sub_id))


@pytest.mark.parametrize(("retry_after", "header"), [(None, "1"), (7.0, "7"), (0.25, "0.25")])
async def test_retry_after_of_injected_errors(
    api: Api, monite: MoniteEmulator, retry_after: float | None, header: str
) -> None:
    """Injected 429s carry Retry-After from faults.retry_after: whole seconds as an integer."""
    await api.token()
    monite.faults.error_rate = 1.0
    monite.faults.error_status = 429
    monite.faults.retry_after = retry_after
    response = await api.call("GET", LIST)
    assert (429, header) == (response.status_code, response.headers["retry-after"])


async def test_straggler_times_out_then_applies_on_release(
    api: Api, monite: MoniteEmulator
) -> None:
    """A held regeneration times the client out and changes the secret only at release."""
    sub_id = monite.seed()
    old = monite.current_secret(sub_id)
    await api.token()
    monite.faults.straggle_regenerate = 1
    with pytest.raises(httpx.ReadTimeout):
        await api.call("POST", ONE, sub_id=sub_id, suffix="/regenerate_secret", client_timeout=0.2)
    assert (1, old, 0) == (
        monite.held_stragglers(),
        monite.current_secret(sub_id),
        monite.regenerate_count(sub_id),
    )
    assert 1 == monite.release_stragglers()
    new = monite.current_secret(sub_id)
    assert (0, 1, True, True) == (
        monite.held_stragglers(),
        monite.regenerate_count(sub_id),
        old != new,
        new in ISSUED,
    )


async def test_released_straggler_drops_a_waiting_client(api: Api, monite: MoniteEmulator) -> None:
    """A client still waiting when its straggler is released gets a dropped connection."""
    sub_id = monite.seed()
    await api.token()
    monite.faults.straggle_regenerate = 1
    waiting = asyncio.create_task(api.call("POST", ONE, sub_id=sub_id, suffix="/regenerate_secret"))
    await _until(lambda: 1 == monite.held_stragglers())
    assert 1 == monite.release_stragglers()
    with pytest.raises((httpx.RemoteProtocolError, httpx.ReadError)):
        await waiting
    assert 1 == monite.regenerate_count(sub_id)


async def test_straggler_applies_by_itself_after_straggle_after(
    api: Api, monite: MoniteEmulator
) -> None:
    """With straggle_after set, a held regeneration applies on its own that much later."""
    sub_id = monite.seed()
    await api.token()
    monite.faults.straggle_regenerate = 1
    monite.faults.straggle_after = 0.3
    with pytest.raises(httpx.ReadTimeout):
        await api.call("POST", ONE, sub_id=sub_id, suffix="/regenerate_secret", client_timeout=0.1)
    assert 0 == monite.regenerate_count(sub_id)
    await _until(lambda: 1 == monite.regenerate_count(sub_id))
    assert (0, 0) == (monite.held_stragglers(), monite.release_stragglers())


async def test_straggler_for_a_deleted_subscription_applies_nothing(
    api: Api, monite: MoniteEmulator
) -> None:
    """The subscription is looked up at release: one deleted meanwhile gets no new secret."""
    doomed, kept = monite.seed(), monite.seed()
    await api.token()
    monite.faults.straggle_regenerate = 2
    for sub_id in (doomed, kept):
        with pytest.raises(httpx.ReadTimeout):
            await api.call(
                "POST", ONE, sub_id=sub_id, suffix="/regenerate_secret", client_timeout=0.1
            )
    monite.remove(doomed)
    assert (2, 1) == (monite.held_stragglers(), monite.release_stragglers())
    assert (0, 1) == (monite.regenerate_count(doomed), monite.regenerate_count(kept))


async def test_straggle_validates_before_holding(api: Api, monite: MoniteEmulator) -> None:
    """An unknown id is answered 404 at once and does not use up the straggle count."""
    monite.faults.straggle_regenerate = 1
    missing = await api.call("POST", ONE, sub_id=UNKNOWN_ID, suffix="/regenerate_secret")
    assert (404, 0, 1) == (
        missing.status_code,
        monite.held_stragglers(),
        monite.faults.straggle_regenerate,
    )


async def test_stop_drops_held_stragglers_unapplied(api: Api, monite: MoniteEmulator) -> None:
    """stop() returns promptly while a request is held, and the held change never applies."""
    sub_id = monite.seed()
    old = monite.current_secret(sub_id)
    await api.token()
    monite.faults.straggle_regenerate = 1
    waiting = asyncio.create_task(api.call("POST", ONE, sub_id=sub_id, suffix="/regenerate_secret"))
    await _until(lambda: 1 == monite.held_stragglers())
    started = time.monotonic()
    await asyncio.to_thread(monite.stop)
    assert time.monotonic() - started < 1.0
    with pytest.raises(httpx.TransportError):
        await waiting
    assert (0, 0, old) == (
        monite.held_stragglers(),
        monite.release_stragglers(),
        monite.current_secret(sub_id),
    )


async def test_hang_outlasts_a_short_client_timeout(api: Api, monite: MoniteEmulator) -> None:
    """hang parks an API request past the client's timeout: httpx raises ReadTimeout."""
    await api.token()
    monite.faults.hang = 5.0
    started = time.monotonic()
    with pytest.raises(httpx.ReadTimeout):
        await api.call("GET", LIST, client_timeout=0.2)
    assert time.monotonic() - started < 2.0


async def test_latency_delays_every_request(api: Api, monite: MoniteEmulator) -> None:
    """latency adds its seconds to each /v1 request."""
    await api.token()
    monite.faults.latency = 0.2
    started = time.monotonic()
    await api.call("GET", LIST)
    assert 0.2 <= time.monotonic() - started


# -- plumbing -----------------------------------------------------------------


async def test_json_content_type_is_exact(api: Api, monite: MoniteEmulator) -> None:
    """Success, 401, 404, 405 and 422 answers all say exactly application/json."""
    statuses = []
    for method, path, token in [
        ("GET", LIST, True),
        ("GET", LIST, None),
        ("GET", LIST.replace("s", "x"), True),
        ("PUT", LIST, True),
        ("GET", LIST + "?limit=0", True),
    ]:
        headers = {"x-monite-version": VERSION}
        if token:
            headers["authorization"] = f"Bearer {await api.token()}"
        response = await api.http.request(method, monite.base_url + path, headers=headers)
        statuses.append((response.status_code, response.headers["content-type"]))
    assert [
        (200, "application/json"),
        (401, "application/json"),
        (404, "application/json"),
        (405, "application/json"),
        (422, "application/json"),
    ] == statuses


async def test_date_header_is_real_time_and_single(api: Api) -> None:
    """Every answer carries exactly one Date, in RFC 7231 form, close to real time."""
    response = await api.call("GET", LIST)
    (date,) = response.headers.get_list("date")
    assert date.endswith(" GMT")
    assert abs(time.time() - parsedate_to_datetime(date).timestamp()) < 5


async def test_client_secret_is_recorded_as_issued(monite: MoniteEmulator) -> None:
    """Registered client secrets join ISSUED, so log hygiene checks look for them too."""
    _, client_secret = monite.add_client()
    assert client_secret in ISSUED


async def test_stop_closes_kept_alive_connections(
    monite: MoniteEmulator, monite_http: httpx.AsyncClient
) -> None:
    """After stop() a pooled keep-alive connection gets no answer either."""
    api = Api(monite_http, monite)
    await api.call("GET", LIST)
    monite.stop()
    with pytest.raises(httpx.TransportError):
        await api.call("GET", LIST)


def test_fixture_settings_point_at_the_emulator(
    monite: MoniteEmulator, monite_settings: MoniteSettings, monite_credentials: tuple[str, str]
) -> None:
    """monite_settings carries the emulator's URL and the registered client's credentials."""
    assert (monite.base_url, monite_credentials) == (
        monite_settings.base_url,
        (monite_settings.client_id, monite_settings.client_secret.reveal()),
    )
    assert monite.base_url.startswith("http://127.0.0.1:")
