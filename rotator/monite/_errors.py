"""Monite's failures as the project's errors: owns the httpx and HTTP-status tables.

Translation yields a `Failure`, the plan of an error rather than the error:
the request loop decides first whether to retry, and only then builds the one
error it raises, with its notes (Monite's request id, how many attempts) in
the message from the start. Messages name an operation, a status, a host and
Monite's own (redacted) error text; never a secret, a header or a body.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import httpx

from rotator.clock import Clock
from rotator.errors import (
    MoniteAuthError,
    MoniteError,
    MoniteNotFound,
    MoniteProtocolError,
    MoniteRequestError,
    MoniteUnavailable,
    unreachable_message,
)
from rotator.monite._response import error_text, error_type, retry_after
from rotator.redact import redact_text

# Exceptions httpx can raise out of a request, all of them translated at the boundary.
HTTPX_ERRORS = (
    httpx.HTTPError,
    httpx.InvalidURL,
    httpx.CookieConflict,
    httpx.StreamError,
)

# Monite's `error.type` for a request without the x-monite-version header.
MISSING_API_VERSION = "missing_api_version"


@dataclass(frozen=True, slots=True)
class Failure:
    """What went wrong with one attempt; `error()` builds the MoniteError to raise."""

    kind: type[MoniteError]
    message: str
    status: int | None = None
    may_have_applied: bool = False
    retry_after: float | None = None  # seconds, from the answer's Retry-After
    retryable_protocol: bool = False  # a MoniteProtocolError that asking again may cure
    repeatable: bool = True  # False: sent twice, the request acts twice (a create)

    @property
    def retryable(self) -> bool:
        """Whether another attempt may succeed, and is safe to send."""
        if self.may_have_applied and not self.repeatable:
            return False
        return self.kind.retryable or self.retryable_protocol

    def error(self, notes: tuple[str, ...] = ()) -> MoniteError:
        """The error, its notes appended to the message: `msg (note; note)`."""
        message = f"{self.message} ({'; '.join(notes)})" if notes else self.message
        if issubclass(self.kind, MoniteUnavailable):
            return self.kind(
                message,
                status=self.status,
                retry_after=self.retry_after,
                may_have_applied=self.may_have_applied,
                retryable=self.retryable,
            )
        if issubclass(self.kind, MoniteProtocolError):
            return self.kind(
                message,
                status=self.status,
                may_have_applied=self.may_have_applied,
                retryable=self.retryable,
            )
        return self.kind(message, status=self.status, may_have_applied=self.may_have_applied)


class Failed(Exception):
    """One attempt failed: what `rotator.retry` judges, before the error is built."""

    def __init__(
        self, failure: Failure, *, request_id: str | None, cause: BaseException | None
    ) -> None:
        super().__init__(failure.message)
        self.failure = failure
        self.request_id = request_id
        self.cause = cause
        self.retryable = failure.retryable
        self.retry_after = failure.retry_after


# ----------------------------------------------------------------- statuses

# First matching row wins: (statuses, error, may Monite have applied it).
# 408: Monite gave up before handling the request; 409: it refused it because of a
# concurrent change; 429: the rate limit. None applied it, and the next attempt may
# succeed. A gateway may answer 5xx after Monite made the change.
_STATUS_TABLE: tuple[tuple[range | frozenset[int], type[MoniteError], bool], ...] = (
    (frozenset({408, 409, 429}), MoniteUnavailable, False),
    (range(500, 1000), MoniteUnavailable, True),
    (frozenset({404}), MoniteNotFound, False),
    (frozenset({401, 403}), MoniteAuthError, False),
    (range(400, 500), MoniteRequestError, False),
)


def for_response(
    operation: str, response: httpx.Response, clock: Clock, credentials: Sequence[str]
) -> Failure:
    """The failure a non-2xx `response` means for `operation`, its text redacted first."""
    # Monite's error text is echoed into our messages; make sure it cannot echo ours.
    text = redact_text(error_text(response), also=credentials)
    return for_status(
        operation,
        response.status_code,
        text,
        retry_after(response, clock),
        error_type=error_type(response),
    )


def for_status(
    operation: str,
    status: int,
    text: str,
    retry_after: float | None,
    *,
    error_type: str | None = None,
) -> Failure:
    """The failure an HTTP `status` means for `operation`; `text` is Monite's own, redacted."""
    special = _special_status(operation, status, text, error_type)
    if special is not None:
        return special
    detail = f": {text}" if text else ""
    for statuses, kind, applied in _STATUS_TABLE:
        if status in statuses:
            return Failure(
                kind,
                f"Monite {operation}: HTTP {status}{detail}",
                status=status,
                may_have_applied=applied,
                retry_after=retry_after if kind is MoniteUnavailable else None,
            )
    return Failure(
        MoniteProtocolError,
        f"Monite {operation}: unexpected HTTP {status}; check monite.base_url",
        status=status,
    )


def _special_status(
    operation: str, status: int, text: str, error_type: str | None
) -> Failure | None:
    """Statuses whose cause is a setting: the message names it."""
    if status == 400 and error_type == MISSING_API_VERSION:
        # Every request sends the header, so something in between dropped it.
        return Failure(
            MoniteRequestError,
            f"Monite {operation}: HTTP 400: {text or MISSING_API_VERSION}; "
            "check monite.api_version and that no proxy strips the x-monite-version header",
            status=status,
        )
    if operation == "token" and status in (400, 401, 403, 422):
        # A 422 names the offending field (a bad x-monite-version looks like this too);
        # a 400 is how many OAuth servers refuse client credentials: keep Monite's words.
        detail = f": {text}" if status in (400, 422) and text else ""
        return Failure(
            MoniteAuthError,
            f"Monite refused the token request (HTTP {status}{detail}); "
            "check monite.client_id and monite.client_secret",
            status=status,
        )
    if operation == "delete" and status == 404 and not text:
        # Monite's "not found" names itself; a bare 404 (often an HTML page) came from
        # somewhere else, and must not pass for "already deleted".
        return Failure(
            MoniteRequestError,
            f"Monite {operation}: HTTP 404 with a body that is not Monite's JSON; "
            "check monite.base_url (for example https://api.sandbox.monite.com/v1)",
            status=status,
        )
    if operation in ("list", "token") and status == 404:
        # These paths exist on every Monite: a 404 (often an HTML page) means the
        # request went somewhere else.
        detail = f": {text}" if text else " with a body that is not Monite's JSON"
        return Failure(
            MoniteRequestError,
            f"Monite {operation}: HTTP 404{detail}; check monite.base_url "
            "(for example https://api.sandbox.monite.com/v1)",
            status=status,
        )
    return None


# -------------------------------------------------------------------- httpx


@dataclass(frozen=True, slots=True)
class _Row:
    catches: tuple[type[BaseException], ...]
    kind: type[MoniteError]
    happened: str
    applied: bool | None  # None: when the request may have left (anything but a connect)
    retryable_protocol: bool = False


# First matching row wins, most specific classes first: the families overlap.
_HTTPX_TABLE: tuple[_Row, ...] = (
    _Row((httpx.TimeoutException, TimeoutError), MoniteUnavailable, "timed out", None),
    _Row((httpx.NetworkError,), MoniteUnavailable, "connection failed", None),
    # We built a request HTTP cannot carry: sending it again changes nothing.
    _Row(
        (httpx.LocalProtocolError,),
        MoniteRequestError,
        "the request broke the HTTP protocol",
        False,
    ),
    # Usually the server closed the connection mid-exchange.
    _Row((httpx.ProtocolError,), MoniteUnavailable, "connection dropped", True),
    _Row((httpx.ProxyError,), MoniteUnavailable, "the proxy failed", True),
    _Row(
        (httpx.UnsupportedProtocol, httpx.InvalidURL),
        MoniteRequestError,
        "check monite.base_url (https://...)",
        False,
    ),
    _Row(
        (httpx.DecodingError,),
        MoniteProtocolError,
        "the response body could not be decoded",
        True,
        retryable_protocol=True,
    ),
    _Row(
        (httpx.TooManyRedirects,),
        MoniteProtocolError,
        "too many redirects; check monite.base_url",
        False,
    ),
    _Row(
        (httpx.CookieConflict, httpx.StreamError),
        MoniteProtocolError,
        "the response could not be read",
        True,
    ),
    _Row((httpx.TransportError, httpx.RequestError), MoniteUnavailable, "transport failure", None),
    _Row((BaseException,), MoniteUnavailable, "request failed", None),
)


def for_exception(
    exc: BaseException, *, operation: str, host: str | None, base_url: str, clock: Clock
) -> Failure:
    """The failure an httpx exception (or a timeout) means; raise its error `from exc`.

    The message names the operation, the exception class and the host only:
    httpx messages and requests can carry URLs, headers and bodies. A failure
    to connect is the operator's one line naming monite.base_url, host and port.
    """
    if isinstance(exc, httpx.HTTPStatusError):
        response = exc.response
        return for_status(operation, response.status_code, "", retry_after(response, clock))
    # Only a failure to connect proves the request never left; after that,
    # Monite may have acted on it whatever we saw.
    sent = not isinstance(exc, httpx.ConnectError | httpx.ConnectTimeout | httpx.PoolTimeout)
    if isinstance(exc, httpx.ConnectError | httpx.ConnectTimeout):
        # "monite.base_url: cannot connect to HOST:PORT (connection refused); check ...":
        # built from the exception's types and errno values, never from its text.
        return Failure(
            MoniteUnavailable,
            unreachable_message("monite.base_url", base_url, exc, service="Monite"),
        )
    where = _request_host(exc) or host or "Monite"
    what = f"Monite {operation}: {type(exc).__name__} talking to {where}"
    row = next(row for row in _HTTPX_TABLE if isinstance(exc, row.catches))
    return Failure(
        row.kind,
        f"{what}: {row.happened}",
        may_have_applied=sent if row.applied is None else row.applied,
        retryable_protocol=row.retryable_protocol,
    )


def _request_host(exc: BaseException) -> str | None:
    try:
        # httpx raises RuntimeError from `.request` when the exception carries none.
        request = getattr(exc, "request", None)
    except RuntimeError:
        return None
    if isinstance(request, httpx.Request):
        return request.url.host or None
    return None
