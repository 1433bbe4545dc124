"""Vault error translation: hvac and requests exceptions to the project's `VaultError` tree.

Owns the one table that maps every library exception to our error class (and
hvac's exception classes to the HTTP status they stand for), the messages that
name a wrong setting (namespace, mount), and the hygiene of library exceptions
chained as causes: their tracebacks are dropped, and a text or response body
that may quote the request (the token, a secret) is blanked before chaining.
Messages are redacted with `rotator.redact.redact_text`; callers
`raise translate_hvac_error(...) from exc`.
"""

from __future__ import annotations

from collections.abc import Iterable

import hvac.exceptions as hv
import requests.exceptions as rq

from rotator.config import VaultSettings
from rotator.errors import (
    VaultAuthError,
    VaultConfigError,
    VaultConflict,
    VaultError,
    VaultRequestError,
    VaultUnavailable,
    unreachable_message,
)
from rotator.redact import redact_text

MAX_DETAIL = 300  # characters of Vault's error text kept in a message
CAS_MISMATCH = "check-and-set parameter did not match"
# What Vault (and OpenBao) answer, in the namespace given, when it does not exist.
NAMESPACE_NOT_FOUND = "namespace not found"
# What Vault answers for a path no secrets engine is mounted at.
NO_ROUTE = "no handler for route"
BODY_WITHHELD = "response body withheld: the request carried a secret"

# hvac encodes the status only in the exception class: each class, the status it
# stands for (kept so callers and metrics need not parse messages), and our error.
# A bare hvac.VaultError or a class hvac adds later is a VaultRequestError: hvac
# raised it on purpose, so the request itself is suspect.
_HVAC: tuple[tuple[type[hv.VaultError], int | None, type[VaultError]], ...] = (
    (hv.InvalidRequest, 400, VaultRequestError),  # a lost check-and-set: VaultConflict
    (hv.Unauthorized, 401, VaultAuthError),
    (hv.Forbidden, 403, VaultAuthError),
    (hv.InvalidPath, 404, VaultRequestError),
    (hv.UnsupportedOperation, None, VaultRequestError),
    (hv.ParamValidationError, None, VaultRequestError),
    (hv.PreconditionFailed, 412, VaultUnavailable),  # a performance standby not caught up yet
    (hv.RateLimitExceeded, 429, VaultUnavailable),
    (hv.InternalServerError, 500, VaultUnavailable),
    (hv.VaultNotInitialized, 501, VaultUnavailable),
    (hv.BadGateway, 502, VaultUnavailable),
    (hv.VaultDown, 503, VaultUnavailable),  # also what a sealed Vault answers
    # No status (a proxy's 504 is the usual one): trying again, boundedly, is the cautious reading.
    (hv.UnexpectedError, None, VaultUnavailable),
)

# Everything that is not an hvac exception, first match wins (subclasses first).
# Only the transport errors' texts ({detail}) are used: they name host, port and
# URL path. Every other requests text may quote the request it refused
# (InvalidHeader quotes the header value: the token), so a fixed hint stands in.
# Anything unknown (a KeyError from a malformed answer) is reported by class
# only, since its text could quote the response it choked on.
_OTHER: tuple[tuple[type[BaseException], type[VaultError], str], ...] = (
    (rq.Timeout, VaultUnavailable, "{where} timed out ({name})"),
    (
        rq.SSLError,
        VaultUnavailable,
        "{where} failed: TLS error (check vault.ca_cert and the address): {detail}",
    ),
    (rq.ConnectionError, VaultUnavailable, "{where} failed ({name}): {detail}"),
    (
        rq.InvalidHeader,
        VaultRequestError,
        "{where} failed ({name}): a request header holds a value HTTP cannot carry; check "
        "that the Vault token and credentials are one line without spaces or control characters",
    ),
    *(
        (
            cls,
            VaultRequestError,
            "{where} failed ({name}): the request URL is not valid; check vault.address, "
            "vault.mount and vault.path_prefix",
        )
        for cls in (rq.InvalidURL, rq.MissingSchema, rq.InvalidSchema, rq.URLRequired)
    ),
    (
        rq.TooManyRedirects,
        VaultRequestError,
        "{where} failed ({name}): Vault redirected too often; check vault.address",
    ),
    # The answer, not the request (a proxy page, say): trying again may help.
    (rq.JSONDecodeError, VaultUnavailable, "{where} failed ({name}): the answer is not JSON"),
    # Retrying cannot fix a request we cannot send.
    *(
        (cls, VaultRequestError, "{where} failed ({name}): the request could not be sent")
        for cls in (rq.InvalidJSONError, rq.StreamConsumedError, rq.UnrewindableBodyError)
    ),
    (rq.RequestException, VaultUnavailable, "{where} failed ({name})"),
    (OSError, VaultUnavailable, "{where} failed ({name})"),
    (Exception, VaultRequestError, "{where} failed: unexpected {name}"),
)

# requests exceptions whose text only describes the transport (host, port, URL
# path, the socket or TLS error).
_TRANSPORT_ERRORS = (rq.ConnectionError, rq.Timeout)

# urllib3's names for a connection that was never made (refused, no such host, no
# answer to the connect, TLS handshake): "cannot connect" says so. A connection
# dropped after the request was sent is not one of them and keeps its own text.
_CONNECT_FAILURES = frozenset(
    {"NewConnectionError", "NameResolutionError", "ConnectTimeoutError", "SSLError"}
)


def translate_hvac_error(
    exc: Exception,
    *,
    operation: str,
    path: str,
    secrets: Iterable[str] = (),
    request_carried_secret: bool = False,
) -> VaultError:
    """Map an hvac or requests exception to the project's `VaultError` tree.

    The message names the operation, the Vault path and Vault's own error text,
    never a request body; any string in `secrets` (the token) is redacted
    should it appear anyway, before the text is cut. With
    `request_carried_secret` (a KV write, a login, a token renewal) the answer's
    body is never quoted at all, since a proxy may echo the request in it: the
    message gives the status and says the body was withheld, and the body is
    also dropped from `exc` itself. Callers `raise translate_hvac_error(...) from exc`.
    """
    if isinstance(exc, VaultError):
        return exc
    where = f"Vault {operation} {path}"
    secrets = tuple(secrets)
    if isinstance(exc, hv.VaultError):
        return _from_hvac(exc, where, secrets, request_carried_secret)
    name = type(exc).__name__
    for cls, error, template in _OTHER:
        if isinstance(exc, cls):
            detail = one_line(str(exc), secrets) if isinstance(exc, _TRANSPORT_ERRORS) else ""
            return error(template.format(where=where, name=name, detail=detail))
    raise AssertionError("unreachable: the table ends with Exception")  # pragma: no cover


def _from_hvac(
    exc: hv.VaultError, where: str, secrets: tuple[str, ...], carried_secret: bool
) -> VaultError:
    # The detail still classifies the error (check-and-set lost, sealed);
    # whether it may appear in the message is decided below.
    detail = vault_detail(exc, secrets)
    status, error = next(((s, e) for c, s, e in _HVAC if isinstance(exc, c)), (None, None))
    if carried_secret:
        withhold_body(exc)  # before any return: the body must not survive in the chained cause
        said = f"status {status}" if status is not None else "an unexpected status"
        suffix = f": Vault answered {said}; {BODY_WITHHELD}"
    else:
        suffix = f": {detail}" if detail else ""
    if isinstance(exc, hv.InvalidRequest) and CAS_MISMATCH in detail:
        text = f"{where}: check-and-set lost, the record changed since it was read"
        return VaultConflict(redact_text(text, also=secrets), status=400)
    if isinstance(exc, hv.VaultDown) and "sealed" in detail.lower():
        text = f"{where} failed: Vault is sealed"
        return VaultUnavailable(redact_text(text, also=secrets), status=503)
    message = redact_text(f"{where} failed ({type(exc).__name__}){suffix}", also=secrets)
    return (error or VaultRequestError)(message, status=status)


def vault_detail(exc: hv.VaultError, secrets: Iterable[str] = ()) -> str:
    """Vault's own error text, without hvac's `on METHOD url` suffix, `secrets` redacted.

    Redacted before it is cut: a cut first could split a secret, and the
    piece left would no longer match (nor would the audit log's redactor).
    """
    errors = getattr(exc, "errors", None)
    if isinstance(errors, list) and errors:
        text = ", ".join(str(e) for e in errors)
    elif exc.args and exc.args[0]:
        text = str(exc.args[0])
    else:
        text = ""
    # A proxy in front of Vault may answer with an HTML page: keep one short line.
    return one_line(text, secrets)


def one_line(text: str, secrets: Iterable[str]) -> str:
    """`text` redacted, folded onto one line, redacted again (folding may join a
    secret's pieces), and only then cut to `MAX_DETAIL` characters."""
    secrets = tuple(secrets)
    folded = " ".join(redact_text(text, also=secrets).split())
    return redact_text(folded, also=secrets)[:MAX_DETAIL]


def withhold_body(exc: hv.VaultError) -> None:
    """Forget the response body the library exception `exc` carries (text, JSON, errors, message).

    For answers to requests that carried a secret: a proxy that echoes request
    bodies would otherwise keep the secret in an exception chained to ours.
    """
    exc.errors = None
    exc.text = None
    exc.json = None
    exc.args = (BODY_WITHHELD,)


def text_withheld(exc: BaseException) -> bool:
    """Whether the text of `exc` may quote request data and must never be shown."""
    return isinstance(exc, rq.RequestException) and not isinstance(exc, _TRANSPORT_ERRORS)


def without_tracebacks(exc: BaseException) -> BaseException:
    """Drop the library frames from `exc` and everything chained to it.

    Their locals hold the request headers (the token) and body (the secret); a
    traceback renderer that shows locals must never see them. Types stay, and
    messages too, except those of library exceptions that may quote the request
    (`text_withheld`): they are replaced, so a rendered chain cannot show the
    token. The request object a requests exception carries (with its headers)
    is dropped as well.
    """
    seen: set[int] = set()
    stack: list[BaseException | None] = [exc]
    while stack:
        current = stack.pop()
        if current is None or id(current) in seen:
            continue
        seen.add(id(current))
        current.__traceback__ = None
        if isinstance(current, rq.RequestException):
            current.request = None
            if text_withheld(current):
                current.args = (
                    f"{type(current).__name__} (text withheld: it may quote the request)",
                )
        stack += [current.__cause__, current.__context__]
    return exc


def connect_failure(exc: BaseException) -> BaseException | None:
    """The requests exception behind `exc` (itself or its cause) when no connection was made."""
    for candidate in (exc, exc.__cause__):
        if isinstance(candidate, rq.ConnectionError):
            if isinstance(candidate, rq.SSLError | rq.ConnectTimeout):
                return candidate
            reason = getattr(candidate.args[0] if candidate.args else None, "reason", None)
            if type(reason).__name__ in _CONNECT_FAILURES:
                return candidate
    return None


def namespace_missing(exc: BaseException, settings: VaultSettings) -> bool:
    """Whether `exc` is Vault saying that the configured namespace does not exist."""
    return (
        bool(settings.namespace)
        and isinstance(exc, hv.InvalidPath)
        and NAMESPACE_NOT_FOUND in vault_detail(exc).lower()
    )


def namespace_error(namespace: str | None) -> VaultConfigError:
    """`vault.namespace` names a namespace Vault does not have."""
    return VaultConfigError(
        f'vault.namespace: Vault has no namespace "{namespace}" (it answered "namespace not '
        'found"); set vault.namespace (or VAULT_NAMESPACE) to an existing namespace, or unset '
        "it to use the root namespace",
        status=404,
    )


def no_mount_error(settings: VaultSettings) -> VaultConfigError:
    """No secrets engine is mounted at `vault.mount`."""
    mount = settings.mount.strip("/")
    where = f' in namespace "{settings.namespace}"' if settings.namespace else ""
    return VaultConfigError(
        f'vault.mount: no secrets engine is mounted at "{mount}"{where}; create it '
        f"with `vault secrets enable -path={mount} kv-v2`, or set vault.mount to "
        "an existing KV v2 mount",
        status=404,
    )


def call_error(
    exc: Exception,
    *,
    operation: str,
    path: str,
    settings: VaultSettings,
    secrets: Iterable[str],
    carries_secret: bool,
) -> VaultError:
    """The one error a failed request to Vault becomes, with the setting or fix it points at.

    `translate_hvac_error`, except: a missing namespace or mount names the
    setting, a 403 says what to check for the auth method in use, and a
    connection never made is `unreachable_message`'s one line.
    """
    # Translated first, always: that is what withholds the body of an answer to a
    # request that carried a secret, before `exc` is chained as the cause.
    error = translate_hvac_error(
        exc,
        operation=operation,
        path=path,
        secrets=secrets,
        request_carried_secret=carries_secret,
    )
    unreached = connect_failure(exc)
    if namespace_missing(exc, settings):
        return namespace_error(settings.namespace)
    if isinstance(exc, hv.InvalidPath) and NO_ROUTE in vault_detail(exc):
        # The mount went away (or never was): not "no record", which would
        # make every subscription look unmanaged.
        return no_mount_error(settings)
    if isinstance(exc, hv.Forbidden):
        return VaultAuthError(f"{error}; {_refusal_hint(settings)}", status=error.status)
    if unreached is not None:
        # One line an operator can act on, instead of urllib3's retry text.
        return VaultUnavailable(
            unreachable_message(
                "vault.address",
                settings.address,
                unreached,
                service="Vault",
                tls_setting="vault.ca_cert",
            )
        )
    return error


def _refusal_hint(settings: VaultSettings) -> str:
    if settings.auth_method == "token":
        return (
            "the Vault token is expired or revoked, or its policies do not allow this; "
            "check it with `vault token lookup` and give the daemon a live token"
        )
    return (
        f"the policies of the Vault {settings.auth_method} role do not allow "
        "this; grant them on this path"
    )


def absent(exc: VaultRequestError) -> bool:
    """A 404 that means "nothing stored there", not "no such namespace or mount"."""
    return exc.status == 404 and not isinstance(exc, VaultConfigError)
