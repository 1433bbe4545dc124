"""Monite API client: owns the access token, listing, regenerating and retries.

Everything the rotator says to Monite goes through `MoniteClient`, on an
`httpx.AsyncClient` the caller injects (and closes). This module owns:

- the access token (fetched once, shared by concurrent callers, refreshed
  before it expires and once more when Monite answers 401);
- retries with capped exponential backoff and full jitter for 429 (honouring
  `Retry-After`), 5xx, timeouts, dropped connections and unparseable bodies;
- `regenerate_secret` as one attempt, never retried here: each retry is a new
  regenerate, and only the rotation protocol (`rotator.rotation`) can judge
  whether another may start; every failure says whether it may have applied;
- translating every httpx exception and every HTTP status into the project's
  error tree (`rotator.errors`), with messages that carry an operation, a
  status, a host, Monite's own error text and the `x-request-id` Monite's
  support asks for, and never a secret, a token, a client secret, another
  header or a body.
"""

from __future__ import annotations

import asyncio
import collections
import contextvars
import email.utils
import math
import random
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC
from typing import Any, TypeVar
from urllib.parse import quote, urlsplit, urlunsplit

import httpx
import structlog

from rotator import events
from rotator.clock import Clock, SystemClock, retry_wait
from rotator.config import MoniteSettings
from rotator.errors import (
    MoniteAuthError,
    MoniteError,
    MoniteNotFound,
    MoniteProtocolError,
    MoniteRequestError,
    MoniteUnavailable,
    unreachable_message,
)
from rotator.model import Regenerated, Secret, Subscription
from rotator.ratelimit import RateLimiter

__all__ = ["MoniteClient", "translate_httpx_error"]

log = structlog.get_logger("rotator.monite")

# Inside `check` (start-up, `rotator check`) a retry is not news: the one-line
# error or the "ok" that follows says everything, so retries are logged at debug.
_checking: contextvars.ContextVar[bool] = contextvars.ContextVar("checking", default=False)

T = TypeVar("T")

MAX_PAGE_SIZE = 100  # the schema's maximum for `limit`
TOKEN_REFRESH_MARGIN = 300.0  # refresh when less than this (or 10% of the lifetime) is left
TOKEN_FALLBACK_LIFETIME = 600.0  # used when Monite omits `expires_in`; a 401 covers the rest
MAX_ERROR_TEXT = 300  # characters of Monite's error text kept in a message
# The longest webhook secret accepted from Monite: real ones are tens of characters;
# a response holding more is not the answer this client knows how to read.
MAX_SECRET_BYTES = 4096

# Monite names every response in `x-request-id` ("always provide this ID when reporting
# any issues"). Only an id of this shape is repeated: it is data from the network.
_REQUEST_ID = re.compile(r"[A-Za-z0-9._:-]{1,128}")
# Monite's `error.type` for a request without the x-monite-version header.
MISSING_API_VERSION = "missing_api_version"

# What reading a body Monite sent can raise: bad JSON (or text) is a ValueError;
# JSON nested thousands deep is a RecursionError, in parsing or in walking it.
_UNREADABLE = (ValueError, RecursionError)

# Fields of a subscription this client understands; anything else goes to `extra`.
# `secret` is neither: it must never sit in a plain mapping that outlives the call.
_KNOWN_FIELDS = frozenset({"id", "url", "object_type", "status", "event_types", "secret"})

# Exceptions httpx can raise out of a request, all of them translated at the boundary.
_HTTPX_ERRORS = (
    httpx.HTTPError,
    httpx.InvalidURL,
    httpx.CookieConflict,
    httpx.StreamError,
)


@dataclass(frozen=True, slots=True)
class _Token:
    value: Secret
    expires_at: float  # clock.monotonic() instant
    refresh_at: float  # clock.monotonic() instant


class MoniteClient:
    """Talks to Monite's partner-level webhook subscription API.

    `requests` counts every HTTP exchange by (operation, status), with status 0
    for a transport failure, for the metrics endpoint. `last_list_skipped` is
    how many listed items the last `list_subscriptions` dropped for having no id.
    """

    def __init__(
        self,
        http: httpx.AsyncClient,
        settings: MoniteSettings,
        *,
        clock: Clock | None = None,
        rng: random.Random | None = None,
        limiter: RateLimiter | None = None,
    ) -> None:
        self._http = http
        self._limiter = limiter
        self._settings = settings
        self._clock = clock or SystemClock()
        self._rng = rng or random.Random()
        self._base = settings.base_url.rstrip("/")
        self._host = _host_of(self._base)
        self._display_url = _without_userinfo(self._base)
        self._timeout_s = settings.timeout.total_seconds()
        self._timeout = httpx.Timeout(self._timeout_s)
        self._token: _Token | None = None
        self._token_lock = asyncio.Lock()
        self.requests: collections.Counter[tuple[str, int]] = collections.Counter()
        self.last_list_skipped = 0

    def __repr__(self) -> str:
        # Deliberately no credentials and no token: reprs end up in logs and tracebacks.
        token = "cached" if self._token is not None else "none"
        return (
            f"MoniteClient(base_url={self._display_url!r}, "
            f"api_version={self._settings.api_version!r}, token={token})"
        )

    # ------------------------------------------------------------------ API

    async def list_subscriptions(self) -> list[Subscription]:
        """Every webhook subscription, following pagination tokens to the end."""
        return await self._list(limit=self._settings.page_size, max_pages=self._settings.max_pages)

    async def get_subscription(self, subscription_id: str) -> Subscription:
        """One subscription by id; MoniteNotFound when Monite does not know it."""
        return await self._call(
            "get",
            "GET",
            f"/webhook_subscriptions/{_path_id(subscription_id)}",
            parse=lambda body: _parse_single(body, "get"),
        )

    @property
    def request_timeout(self) -> float:
        """Seconds one request may take, whole exchange included."""
        return self._timeout_s

    async def regenerate_secret(
        self, subscription_id: str, *, send_by: float | None = None
    ) -> Regenerated:
        """One regenerate attempt, never retried: the new secret's only copy, or a MoniteError.

        The error's `may_have_applied` says whether Monite may have killed the
        old secret anyway. `send_by` is a `clock.monotonic()` instant after
        which the request is not sent (waiting for a token or the rate limiter
        can take long): a MoniteUnavailable that was surely not applied.
        """
        return await self._call(
            "regenerate_secret",
            "POST",
            f"/webhook_subscriptions/{_path_id(subscription_id)}/regenerate_secret",
            parse=_parse_regenerated,
            retries=0,
            send_by=send_by,
        )

    async def check(self) -> None:
        """Prove the credentials work and listing is allowed: a token and one small page."""
        reset = _checking.set(True)
        try:
            await self._get_token()
            await self._list(limit=1, max_pages=1, follow=False)
        finally:
            _checking.reset(reset)

    async def aclose(self) -> None:
        """Revoke the token, best effort. The injected httpx client stays open."""
        token = self._token
        self._token = None
        if token is None:
            return
        try:
            response = await self._http.post(
                f"{self._base}/auth/revoke",
                json={
                    "client_id": self._settings.client_id,
                    "client_secret": self._settings.client_secret.reveal(),
                    "token": token.value.reveal(),
                },
                headers=self._headers(token),
                timeout=self._timeout,
            )
        except (*_HTTPX_ERRORS, OSError):
            # Shutting down: a token Monite could not revoke simply expires.
            self.requests["revoke", 0] += 1
            return
        self.requests["revoke", response.status_code] += 1

    # ---------------------------------------------------------------- listing

    async def _list(self, *, limit: int, max_pages: int, follow: bool = True) -> list[Subscription]:
        limit = max(1, min(MAX_PAGE_SIZE, limit))
        by_id: dict[str, Subscription] = {}
        seen_tokens: set[str] = set()
        skipped = 0
        params: dict[str, str | int] = {"limit": limit}
        pages = 0
        while True:
            pages += 1
            if pages > max_pages:
                raise MoniteProtocolError(
                    f"Monite list: more than {max_pages} pages; raise monite.max_pages "
                    "if there really are that many subscriptions"
                )
            page = await self._call(
                "list", "GET", "/webhook_subscriptions", params=params, parse=_parse_page
            )
            skipped += page.skipped
            for sub in page.items:
                # A subscription seen on an earlier page keeps its first listing.
                by_id.setdefault(sub.id, sub)
            token = page.next_token
            if not follow or token is None:
                break
            if token in seen_tokens:
                raise MoniteProtocolError(
                    f"Monite list: pagination loop, a page token came back after {pages} pages"
                )
            seen_tokens.add(token)
            # With a pagination token Monite ignores every other query parameter.
            params = {"pagination_token": token}
        self.last_list_skipped = skipped
        if skipped:
            log.warning(events.MONITE_LIST_ITEMS_SKIPPED, skipped=skipped, reason="no id")
        return list(by_id.values())

    # ------------------------------------------------------------------ token

    async def _get_token(self) -> _Token:
        token = self._token
        if token is not None and self._clock.monotonic() < token.refresh_at:
            return token
        async with self._token_lock:
            # Another caller may have refreshed it while this one waited.
            token = self._token
            if token is not None and self._clock.monotonic() < token.refresh_at:
                return token
            token = await self._call(
                "token",
                "POST",
                "/auth/token",
                json_body={
                    "grant_type": "client_credentials",
                    "client_id": self._settings.client_id,
                    "client_secret": self._settings.client_secret.reveal(),
                },
                parse=self._parse_token,
                auth=False,
            )
            self._token = token
            return token

    def _parse_token(self, body: Any) -> _Token:
        if not isinstance(body, dict):
            raise MoniteProtocolError("Monite token: the response is not a JSON object")
        value = body.get("access_token")
        if not isinstance(value, str) or not value:
            raise MoniteProtocolError("Monite token: the response has no access_token")
        expires_in = body.get("expires_in")
        lifetime = (
            float(expires_in)
            if isinstance(expires_in, int | float)
            and not isinstance(expires_in, bool)
            and math.isfinite(expires_in)
            and expires_in > 0
            else TOKEN_FALLBACK_LIFETIME
        )
        now = self._clock.monotonic()
        margin = min(TOKEN_REFRESH_MARGIN, 0.1 * lifetime)
        return _Token(Secret(value), expires_at=now + lifetime, refresh_at=now + lifetime - margin)

    def _drop_token(self, used: _Token) -> None:
        # Only the token that was refused: a concurrent caller may already hold a fresh one.
        if self._token is used:
            self._token = None

    # ---------------------------------------------------------- request loop

    def _headers(self, token: _Token | None) -> dict[str, str]:
        headers = {"x-monite-version": self._settings.api_version, "Accept": "application/json"}
        if token is not None:
            headers["Authorization"] = f"Bearer {token.value.reveal()}"
        return headers

    async def _call(
        self,
        operation: str,
        method: str,
        path: str,
        *,
        parse: Callable[[Any], T],
        params: Mapping[str, str | int] | None = None,
        json_body: Mapping[str, Any] | None = None,
        auth: bool = True,
        retries: int | None = None,
        send_by: float | None = None,
    ) -> T:
        """One logical request: re-auth once on 401, retry what may succeed next time."""
        max_retries = self._settings.max_retries if retries is None else retries
        retries = 0
        reauthed = False
        while True:
            try:
                token = await self._get_token() if auth else None
            except MoniteError as exc:
                if not exc.may_have_applied:
                    raise
                # The token request may have reached Monite; this request never did.
                raise MoniteUnavailable(
                    f"Monite {operation}: not sent, the token request failed ({exc})",
                    status=exc.status,
                ) from exc
            sequence = await self._limiter.acquire() if self._limiter is not None else 0
            if send_by is not None and self._clock.monotonic() > send_by:
                raise MoniteUnavailable(
                    f"Monite {operation}: not sent, its send deadline passed while waiting "
                    "for a token or the rate limiter"
                )

            cause: BaseException | None = None
            answer: httpx.Response | None = None
            try:
                response = await self._send(method, path, params, json_body, token)
            except (*_HTTPX_ERRORS, TimeoutError) as exc:
                self.requests[operation, 0] += 1
                error = _translate(
                    exc,
                    operation=operation,
                    host=self._host,
                    clock=self._clock,
                    base_url=self._base,
                )
                cause = exc
            else:
                status = response.status_code
                self.requests[operation, status] += 1
                answer = response
                self._follow_rate_limit(response, sequence)
                if status == 401 and token is not None and not reauthed:
                    # The token expired or was revoked early: one fresh token, one more try.
                    reauthed = True
                    self._drop_token(token)
                    continue
                if 200 <= status < 300:
                    try:
                        body = response.json()
                    except _UNREADABLE:
                        # No `from`: a half-parsed body can hold the new secret.
                        error = MoniteProtocolError(
                            f"Monite {operation}: HTTP {status} with a body that is not "
                            "readable JSON",
                            status=status,
                            may_have_applied=True,
                        )
                        error.retryable = True
                    else:
                        try:
                            return parse(body)
                        except MoniteProtocolError as exc:
                            # A 2xx did whatever it was asked, even if we cannot read it.
                            error = MoniteProtocolError(
                                str(exc), status=status, may_have_applied=True
                            )
                            error.retryable = exc.retryable
                        except RecursionError:
                            # No `from` either: the body may hold the new secret.
                            error = MoniteProtocolError(
                                f"Monite {operation}: HTTP {status} with JSON nested too deeply",
                                status=status,
                                may_have_applied=True,
                            )
                else:
                    error = self._error_for_status(operation, response)

            # Read only on failure: a success never needs it.
            request_id = None if answer is None else self._request_id(answer)
            if not error.retryable or retries >= max_retries:
                notes = [] if request_id is None else [f"request_id={request_id}"]
                if error.retryable and max_retries > 0:
                    notes.append(f"gave up after {retries + 1} attempts")
                if notes:
                    error.args = (f"{error.args[0]} ({'; '.join(notes)})",)
                raise error from cause
            delay = self._backoff(retries, error)
            (log.debug if _checking.get() else log.info)(
                events.MONITE_RETRY,
                operation=operation,
                status=error.status,
                attempt=retries + 1,
                retry_in_seconds=round(delay, 3),
                error=str(error),
                request_id=request_id,
            )
            await self._clock.sleep(delay)
            retries += 1

    async def _send(
        self,
        method: str,
        path: str,
        params: Mapping[str, str | int] | None,
        json_body: Mapping[str, Any] | None,
        token: _Token | None,
    ) -> httpx.Response:
        # httpx times each phase separately; the outer cap makes `timeout` a bound on the
        # whole exchange, which is what the claim deadline arithmetic relies on.
        async with asyncio.timeout(self._timeout_s):
            return await self._http.request(
                method,
                f"{self._base}{path}",
                params=params,
                json=json_body,
                headers=self._headers(token),
                timeout=self._timeout,
            )

    def _follow_rate_limit(self, response: httpx.Response, sequence: int) -> None:
        if self._limiter is None:
            return
        if response.status_code == 429:
            # Everyone waits, not just the caller that hit the limit.
            self._limiter.pause(_retry_after(response, self._clock) or 1.0)
            return
        self._limiter.observe(
            sequence,
            _header_number(response, "RateLimit-Remaining"),
            _header_number(response, "RateLimit-Reset"),
        )

    def _backoff(self, retries: int, error: MoniteError) -> float:
        return retry_wait(retries, getattr(error, "retry_after", None), rng=self._rng)

    def _request_id(self, response: httpx.Response) -> str | None:
        """Monite's `x-request-id` for this response, when it is safe to repeat in a message.

        A value of an unexpected shape, or one that holds a credential or occurs
        in the body (where a new secret may be), is left out.
        """
        value = response.headers.get("x-request-id", "").strip()
        if _REQUEST_ID.fullmatch(value) is None or self._redact(value) != value:
            return None
        try:
            in_body = value in response.text
        except _UNREADABLE:
            in_body = True
        return None if in_body else value

    def _error_for_status(self, operation: str, response: httpx.Response) -> MoniteError:
        status = response.status_code
        text = self._redact(_error_text(response))
        if status == 400 and _error_type(response) == MISSING_API_VERSION:
            # Every request sends the header, so something in between dropped it.
            return MoniteRequestError(
                f"Monite {operation}: HTTP 400: {text or MISSING_API_VERSION}; "
                "check monite.api_version and that no proxy strips the x-monite-version header",
                status=status,
            )
        if operation == "token" and status in (400, 401, 403, 422):
            # A 422 names the offending field (a bad x-monite-version looks like this too);
            # a 400 is how many OAuth servers refuse client credentials: keep Monite's words.
            detail = f": {text}" if status in (400, 422) and text else ""
            return MoniteAuthError(
                f"Monite refused the token request (HTTP {status}{detail}); "
                "check monite.client_id and monite.client_secret",
                status=status,
            )
        if operation in ("list", "token") and status == 404:
            # These paths exist on every Monite: a 404 (often an HTML page) means the
            # request went somewhere else.
            detail = f": {text}" if text else " with a body that is not Monite's JSON"
            return MoniteRequestError(
                f"Monite {operation}: HTTP 404{detail}; check monite.base_url "
                "(for example https://api.sandbox.monite.com/v1)",
                status=status,
            )
        return _error_for_status(operation, status, text, _retry_after(response, self._clock))

    def _redact(self, text: str) -> str:
        # Monite's error text is echoed into our messages; make sure it cannot echo ours.
        for value in (
            self._settings.client_secret.reveal(),
            self._token.value.reveal() if self._token is not None else "",
        ):
            if value:
                text = text.replace(value, "<redacted>")
        return text


# --------------------------------------------------------------------- errors


def translate_httpx_error(
    exc: httpx.HTTPError | httpx.InvalidURL | httpx.CookieConflict | httpx.StreamError,
    *,
    operation: str = "request",
) -> MoniteError:
    """The project error for an httpx exception; raise it `from exc`.

    The message names the operation, the exception class and the host only:
    httpx messages and requests can carry URLs, headers and bodies. A failure
    to connect is the operator's one line naming monite.base_url, host and port.
    """
    return _translate(exc, operation=operation, host=None, clock=SystemClock(), base_url=None)


def _translate(
    exc: BaseException,
    *,
    operation: str,
    host: str | None,
    clock: Clock,
    base_url: str | None,
) -> MoniteError:
    where = _request_host(exc) or host or "Monite"
    what = f"Monite {operation}: {type(exc).__name__} talking to {where}"
    # Most specific classes first: the families below them overlap.
    if isinstance(exc, httpx.HTTPStatusError):
        response = exc.response
        return _error_for_status(operation, response.status_code, "", _retry_after(response, clock))
    # Only a failure to connect proves the request never left; after that,
    # Monite may have acted on it whatever we saw.
    sent = not isinstance(exc, httpx.ConnectError | httpx.ConnectTimeout | httpx.PoolTimeout)
    url = base_url or _request_url(exc)
    if isinstance(exc, httpx.ConnectError | httpx.ConnectTimeout) and url is not None:
        # "monite.base_url: cannot connect to HOST:PORT (connection refused); check ...":
        # built from the exception's types and errno values, never from its text.
        return MoniteUnavailable(unreachable_message("monite.base_url", url, exc, service="Monite"))
    if isinstance(exc, httpx.TimeoutException | TimeoutError):
        return MoniteUnavailable(f"{what}: timed out", may_have_applied=sent)
    if isinstance(exc, httpx.NetworkError):
        return MoniteUnavailable(f"{what}: connection failed", may_have_applied=sent)
    if isinstance(exc, httpx.LocalProtocolError):
        # We built a request HTTP cannot carry: sending it again changes nothing.
        return MoniteRequestError(f"{what}: the request broke the HTTP protocol")
    if isinstance(exc, httpx.ProtocolError):
        # Usually the server closed the connection mid-exchange.
        return MoniteUnavailable(f"{what}: connection dropped", may_have_applied=True)
    if isinstance(exc, httpx.ProxyError):
        return MoniteUnavailable(f"{what}: the proxy failed", may_have_applied=True)
    if isinstance(exc, httpx.UnsupportedProtocol | httpx.InvalidURL):
        return MoniteRequestError(f"{what}: check monite.base_url (https://...)")
    if isinstance(exc, httpx.DecodingError):
        error = MoniteProtocolError(
            f"{what}: the response body could not be decoded", may_have_applied=True
        )
        error.retryable = True
        return error
    if isinstance(exc, httpx.TooManyRedirects):
        return MoniteProtocolError(f"{what}: too many redirects; check monite.base_url")
    if isinstance(exc, httpx.CookieConflict | httpx.StreamError):
        return MoniteProtocolError(f"{what}: the response could not be read", may_have_applied=True)
    if isinstance(exc, httpx.TransportError | httpx.RequestError):
        return MoniteUnavailable(f"{what}: transport failure", may_have_applied=sent)
    return MoniteUnavailable(f"{what}: request failed", may_have_applied=sent)


def _error_for_status(
    operation: str, status: int, text: str, retry_after: float | None
) -> MoniteError:
    detail = f": {text}" if text else ""
    message = f"Monite {operation}: HTTP {status}{detail}"
    if status == 429:
        return MoniteUnavailable(message, status=status, retry_after=retry_after)
    if status in (408, 409):
        # 408: Monite gave up before handling the request; 409: it refused it because
        # of a concurrent change. Neither applied it, and the next attempt may succeed.
        return MoniteUnavailable(message, status=status, retry_after=retry_after)
    if status >= 500:
        # A gateway may answer 5xx after Monite made the change.
        return MoniteUnavailable(
            message, status=status, retry_after=retry_after, may_have_applied=True
        )
    if status == 404:
        return MoniteNotFound(message, status=status)
    if status in (401, 403):
        return MoniteAuthError(message, status=status)
    if 400 <= status < 500:
        return MoniteRequestError(message, status=status)
    return MoniteProtocolError(
        f"Monite {operation}: unexpected HTTP {status}; check monite.base_url", status=status
    )


def _error_text(response: httpx.Response) -> str:
    """Monite's own explanation: `error.message`, or the 422 `detail` (never its `input`)."""
    try:
        body = response.json()
    except _UNREADABLE:
        return ""
    try:
        return _explanation(body)
    except RecursionError:
        return ""


def _error_type(response: httpx.Response) -> str | None:
    """Monite's `error.type` (some errors carry one, like `missing_api_version`), if any."""
    try:
        body = response.json()
    except _UNREADABLE:
        return None
    if not isinstance(body, dict):
        return None
    error = body.get("error")
    kind = error.get("type") if isinstance(error, dict) else None
    return kind if isinstance(kind, str) else None


def _explanation(body: Any) -> str:
    if not isinstance(body, dict):
        return ""
    error = body.get("error")
    if isinstance(error, dict) and isinstance(error.get("message"), str):
        return _clip(error["message"])
    details = body.get("detail")
    if isinstance(details, list):
        parts = []
        for item in details:
            if not isinstance(item, dict):
                continue
            msg = item.get("msg")
            loc = item.get("loc")
            where = ".".join(str(p) for p in loc) if isinstance(loc, list) else ""
            if isinstance(msg, str):
                parts.append(f"{where}: {msg}" if where else msg)
        return _clip("; ".join(parts))
    if isinstance(details, str):
        return _clip(details)
    return ""


def _clip(text: str) -> str:
    text = " ".join(text.split())
    return text if len(text) <= MAX_ERROR_TEXT else text[: MAX_ERROR_TEXT - 3] + "..."


def _retry_after(response: httpx.Response, clock: Clock) -> float | None:
    """`Retry-After` in seconds (delta or HTTP date), or None when absent or unreadable."""
    raw = response.headers.get("Retry-After")
    if raw is None:
        return None
    raw = raw.strip()
    try:
        seconds = float(raw)
    except ValueError:
        try:
            when = email.utils.parsedate_to_datetime(raw)
        except (TypeError, ValueError, IndexError):
            return None
        if when.tzinfo is None:  # "-0000" means UTC with no zone information
            when = when.replace(tzinfo=UTC)
        seconds = (when - clock.now()).total_seconds()
    if not math.isfinite(seconds):
        return None
    return max(0.0, seconds)


def _header_number(response: httpx.Response, name: str) -> int | None:
    """An integer rate-limit header, or None when absent or not a number."""
    try:
        value = float(response.headers[name])
    except (KeyError, ValueError):
        return None
    # A header is data from the network: inf, nan or 1e999 must not raise here.
    return int(value) if math.isfinite(value) else None


def _request_url(exc: BaseException) -> str | None:
    """The URL of the request `exc` carries, if any (only its host and port get shown)."""
    try:
        request = getattr(exc, "request", None)
    except RuntimeError:
        return None
    return str(request.url) if isinstance(request, httpx.Request) else None


def _request_host(exc: BaseException) -> str | None:
    try:
        # httpx raises RuntimeError from `.request` when the exception carries none.
        request = getattr(exc, "request", None)
    except RuntimeError:
        return None
    if isinstance(request, httpx.Request):
        return request.url.host or None
    return None


def _host_of(url: str) -> str | None:
    try:
        return httpx.URL(url).host or None
    except httpx.InvalidURL:
        return None


def _without_userinfo(url: str) -> str:
    parts = urlsplit(url)
    if "@" not in parts.netloc:
        return url
    return urlunsplit(parts._replace(netloc=parts.netloc.rpartition("@")[2]))


def _path_id(subscription_id: str) -> str:
    # Ids come from the command line too; never let one change the path.
    return quote(subscription_id, safe="")


# -------------------------------------------------------------------- parsing


@dataclass(frozen=True, slots=True)
class _Page:
    items: list[Subscription]
    next_token: str | None
    skipped: int


def _parse_page(body: Any) -> _Page:
    if not isinstance(body, dict):
        raise MoniteProtocolError("Monite list: the response is not a JSON object")
    data = body.get("data")
    if not isinstance(data, list):
        raise MoniteProtocolError("Monite list: the response has no `data` list")
    items: list[Subscription] = []
    skipped = 0
    for raw in data:
        sub = _subscription(raw)
        if sub is None:
            skipped += 1
        else:
            items.append(sub)
    token = body.get("next_pagination_token")
    if token is not None and not isinstance(token, str):
        # Ending the listing here would hide every later page's subscriptions.
        raise MoniteProtocolError(
            f"Monite list: next_pagination_token is a {_json_type(token)}, not a string"
        )
    return _Page(items, token or None, skipped)


def _parse_single(body: Any, operation: str) -> Subscription:
    sub = _subscription(body)
    if sub is None:
        raise MoniteProtocolError(f"Monite {operation}: the response is not a subscription")
    return sub


def _parse_regenerated(body: Any) -> Regenerated:
    sub = _parse_single(body, "regenerate_secret")
    secret = body.get("secret")
    problem = None
    if not isinstance(secret, str) or not secret:
        problem = "the response has no secret"
        if secret is not None and not isinstance(secret, str):
            problem = f"the response's secret is a {_json_type(secret)}, not a string"
    elif len(secret.encode("utf-8", "surrogatepass")) > MAX_SECRET_BYTES:
        # The size only: never a part of the value.
        problem = f"the response's secret is longer than {MAX_SECRET_BYTES} bytes"
    if problem is not None:
        error = MoniteProtocolError(f"Monite regenerate_secret: {problem}")
        # Only the last regenerate counts, so asking again is safe and may succeed.
        error.retryable = True
        raise error
    return Regenerated(subscription=sub, secret=Secret(secret))


def _json_type(value: object) -> str:
    """The JSON name of a parsed value's type, for messages that must not echo the value."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int | float):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "array"
    return "object"


def _subscription(raw: Any) -> Subscription | None:
    """A subscription from one JSON item, or None when it has no usable id.

    Unknown enum values stay as strings and unknown fields go to `extra`, so a
    field Monite adds tomorrow does not stop today's rotator.
    """
    if not isinstance(raw, dict):
        return None
    sub_id = raw.get("id")
    if not isinstance(sub_id, str) or not sub_id:
        return None
    events = raw.get("event_types")
    return Subscription(
        id=sub_id,
        url=_str(raw.get("url")),
        object_type=_str(raw.get("object_type")),
        status=_str(raw.get("status")),
        event_types=tuple(str(e) for e in events) if isinstance(events, list) else (),
        extra={k: v for k, v in raw.items() if k not in _KNOWN_FIELDS},
    )


def _str(value: object) -> str:
    return value if isinstance(value, str) else ""
