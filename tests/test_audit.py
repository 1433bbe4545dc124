"""The audit log: event names, the rendered JSON lines, and redaction of secrets."""

from __future__ import annotations

import gc
import io
import json
import logging
from collections.abc import Iterator
from datetime import datetime
from typing import Any

import pytest
import structlog
from structlog.testing import capture_logs

from rotator import audit
from rotator.redact import redact_text
from rotator.secret import Secret

# Live Secret objects: the redactor only knows values a Secret still holds.
SECRET = Secret("whsec_Zx81kQ2mP0vLr7TtYb9c")
SECOND = Secret("second+secret/value==")
TOKEN = Secret("hvs.CAESIJ0kVaultTokenValue")


@pytest.fixture(autouse=True)
def _clean_logging() -> Iterator[None]:
    audit.reset_logging()
    yield
    audit.reset_logging()


@pytest.fixture
def stream() -> io.StringIO:
    out = io.StringIO()
    audit.configure_logging(stream=out, level="info")
    return out


def lines(stream: io.StringIO) -> list[dict[str, Any]]:
    return [json.loads(line) for line in stream.getvalue().splitlines()]


def redact(**event: Any) -> dict[str, Any]:
    return dict(audit.redact(None, "info", {"event": "x", **event}))


# --- event names ----------------------------------------------------------------


def test_event_names_are_stable_and_namespaced() -> None:
    """EVENTS holds every constant, each `area.verb`, with the documented spellings."""
    names = {
        name: value
        for name, value in vars(audit).items()
        if name.isupper() and isinstance(value, str) and "." in value and " " not in value
    }
    assert set(names.values()) == audit.EVENTS
    assert "rotation.succeeded" == audit.ROTATION_SUCCEEDED
    assert "check.failed" == audit.CHECK_FAILED
    assert all(len(event.split(".")) == 2 for event in audit.EVENTS)


def test_capture_logs_sees_events_with_bound_context() -> None:
    """Events reach structlog with their fields; capture_logs lists them in order."""
    audit.configure_logging(stream=io.StringIO())
    log = audit.get_logger(run_id="r1")
    with capture_logs() as captured:
        log.info(audit.CYCLE_STARTED, subscriptions=3)
        log.warning(audit.ROTATION_SKIPPED, subscription_id="s1", reason="fresh")
    assert [
        {"event": "cycle.started", "run_id": "r1", "subscriptions": 3, "log_level": "info"},
        {
            "event": "rotation.skipped",
            "run_id": "r1",
            "subscription_id": "s1",
            "reason": "fresh",
            "log_level": "warning",
        },
    ] == captured


def test_capture_logs_with_redact_processor() -> None:
    """The redact processor works inside capture_logs for other modules' tests."""
    with capture_logs(processors=[audit.redact]) as captured:
        structlog.get_logger().info(audit.ROTATION_SUCCEEDED, secret=SECRET, note=SECRET.reveal())
    assert [{"event": "rotation.succeeded", "note": "<redacted>", "log_level": "info"}] == captured


# --- rendered JSON lines -------------------------------------------------------------------


def test_json_lines_carry_timestamp_level_event_and_run_id(stream: io.StringIO) -> None:
    """Each line is one JSON object with an ISO 8601 UTC timestamp, level, event and run_id."""
    structlog.contextvars.bind_contextvars(run_id="run-42")
    log = audit.get_logger()
    log.info(audit.CYCLE_STARTED)
    log.info(audit.ROTATION_SUCCEEDED, subscription_id="s1", vault_version=3)
    first, second = lines(stream)
    assert "cycle.started" == first["event"]
    assert "info" == first["level"]
    assert "run-42" == first["run_id"]
    assert first["timestamp"].endswith("Z")
    assert "UTC" == datetime.fromisoformat(first["timestamp"]).tzname()
    assert {"subscription_id": "s1", "vault_version": 3} == {
        key: second[key] for key in ("subscription_id", "vault_version")
    }


def test_level_filters_debug(stream: io.StringIO) -> None:
    """At level info, debug events are dropped and warnings kept."""
    log = audit.get_logger()
    log.debug("noise")
    log.warning(audit.ROTATION_CONFLICT)
    assert [("rotation.conflict", "warning")] == [(x["event"], x["level"]) for x in lines(stream)]


def test_configure_twice_keeps_one_handler() -> None:
    """A second configure_logging replaces the handler: each line once, in the new stream."""
    first, second = io.StringIO(), io.StringIO()
    audit.configure_logging(stream=first)
    audit.configure_logging(stream=second)
    audit.get_logger().info(audit.CONFIG_LOADED)
    logging.getLogger("hvac").warning("sealed")
    assert "" == first.getvalue()
    assert ["config.loaded", "sealed"] == [x["event"] for x in lines(second)]
    assert 1 == sum(isinstance(h, audit._AuditHandler) for h in logging.getLogger().handlers)


def test_unknown_level_is_a_config_error() -> None:
    """A typo in the level is refused rather than silently defaulted."""
    from rotator.errors import ConfigError

    with pytest.raises(ConfigError, match="verbose"):
        audit.configure_logging(level="verbose", stream=io.StringIO())


def test_stdlib_library_logs_go_through_the_same_pipeline(stream: io.StringIO) -> None:
    """httpx warnings render as JSON lines with level and timestamp, and are redacted."""
    logging.getLogger("httpx").warning("retrying with Authorization: Bearer %s", TOKEN.reveal())
    (line,) = lines(stream)
    assert "warning" == line["level"]
    assert "retrying with Authorization: Bearer <redacted>" == line["event"]
    assert "timestamp" in line


def test_library_loggers_held_at_warning_unless_debug() -> None:
    """httpx INFO is dropped at level info but shown at level debug."""
    out = io.StringIO()
    audit.configure_logging(stream=out, level="info")
    logging.getLogger("httpx").info("HTTP Request: GET /v1/webhook_subscriptions")
    assert "" == out.getvalue()
    audit.configure_logging(stream=out, level="debug")
    logging.getLogger("httpx").info("HTTP Request: GET /v1/webhook_subscriptions")
    assert ["HTTP Request: GET /v1/webhook_subscriptions"] == [x["event"] for x in lines(out)]


def test_exception_traceback_is_rendered_and_redacted(stream: io.StringIO) -> None:
    """A traceback becomes text in `exception`, and a secret in the message is scrubbed."""
    log = audit.get_logger()
    try:
        raise ValueError(f"vault refused {SECRET.reveal()}")
    except ValueError:
        log.exception(audit.ROTATION_FAILED, subscription_id="s1")
    (line,) = lines(stream)
    assert "error" == line["level"]
    assert "ValueError: vault refused <redacted>" in line["exception"]
    assert "Traceback" in line["exception"]
    assert SECRET.reveal() not in stream.getvalue()


def test_stdlib_exception_is_redacted(stream: io.StringIO) -> None:
    """A library's logger.exception has its traceback formatted and scrubbed too."""
    try:
        raise RuntimeError(f"token {TOKEN.reveal()} rejected")
    except RuntimeError:
        logging.getLogger("hvac").exception("request failed")
    (line,) = lines(stream)
    assert "RuntimeError: token <redacted> rejected" in line["exception"]
    assert TOKEN.reveal() not in stream.getvalue()


def test_console_format_is_readable_and_redacted() -> None:
    """The console renderer shows the event and fields, no colour codes, no secret."""
    out = io.StringIO()
    audit.configure_logging(fmt="console", stream=out)
    audit.get_logger().info(audit.ROTATION_SUCCEEDED, subscription_id="s1", note=SECRET.reveal())
    text = out.getvalue()
    assert "rotation.succeeded" in text
    assert "subscription_id=s1" in text
    assert "\x1b[" not in text
    assert SECRET.reveal() not in text


# --- redaction ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    "key",
    [
        "secret",
        "client_secret",
        "token",
        "access_token",
        "refresh_token",
        "password",
        "Authorization",
        "secret_id",
        "jwt",
        "X-Vault-Token",
        "api_key",
        "API-KEY",
        "monite_client_secret",
        "db_password",
    ],
)
def test_secret_named_keys_are_removed(key: str) -> None:
    """Keys whose name looks secret are dropped whatever their value."""
    assert {"event": "x", "subscription_id": "s1"} == redact(
        **{key: "plain-value", "subscription_id": "s1"}
    )


def test_safe_keys_are_kept() -> None:
    """secret_fingerprint and other descriptive keys survive."""
    event = {
        "secret_fingerprint": "abc123def456",
        "token_type": "Bearer",
        "expires_in": 86400,
        "next_pagination_token": "cursor-1",
    }
    assert {"event": "x", **event} == redact(**event)


def test_nested_secret_keys_and_values_are_redacted() -> None:
    """Secret-named keys and secret values are handled inside nested dicts and lists."""
    event = redact(
        request={
            "headers": {"Authorization": "Bearer abc", "x-monite-version": "2024-05-25"},
            "body": [{"client_secret": "cs"}, ("ok", SECRET.reveal())],
        }
    )
    assert {
        "event": "x",
        "request": {
            "headers": {"x-monite-version": "2024-05-25"},
            "body": [{}, ["ok", "<redacted>"]],
        },
    } == event


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (SECRET.reveal(), "<redacted>"),
        (f"new secret is {SECRET.reveal()}.", "new secret is <redacted>."),
        (f"url?s={SECOND.reveal()}&x=1", "url?s=<redacted>&x=1"),
        (f"'{SECRET.reveal()}'", "'<redacted>'"),
        (f"{SECRET.reveal()}/{SECOND.reveal()}", "<redacted>/<redacted>"),
        (f"x-vault-token:{TOKEN.reveal()}", "x-vault-token:<redacted>"),
        (
            "nothing to see here, just_a_long_identifier",
            "nothing to see here, just_a_long_identifier",
        ),
        ("", ""),
    ],
    ids=["whole", "sentence", "query", "quoted", "two-joined", "header", "clean", "empty"],
)
def test_known_secret_text_is_replaced_in_strings(text: str, expected: str) -> None:
    """The value of a live Secret is replaced wherever it sits inside a string."""
    assert {"event": "x", "message": expected} == redact(message=text)


def test_secret_in_event_message_is_replaced() -> None:
    """Even the event text itself is scrubbed."""
    assert {"event": "got <redacted>"} == audit.redact(
        None, "info", {"event": f"got {SECRET.reveal()}"}
    )


def test_secret_objects_render_as_placeholder() -> None:
    """A Secret passed as a value, even under a neutral key or nested, renders as <secret>."""
    assert {"event": "x", "value": "<secret>", "items": ["<secret>"]} == redact(
        value=SECRET, items=[SECOND]
    )


def test_other_objects_are_stringified_and_scrubbed() -> None:
    """An exception object as a value is rendered through str and scrubbed."""
    assert {"event": "x", "error": "bad <redacted>"} == redact(
        error=RuntimeError(f"bad {SECRET.reveal()}")
    )


def test_dropped_secret_is_no_longer_known() -> None:
    """Once the last Secret holding a value is collected, redact_text leaves that value alone."""
    value = "ephemeral-secret-value-7Qx2"
    held = Secret(value)
    assert "got <redacted>" == redact_text(f"got {value}")
    del held
    gc.collect()
    assert f"got {value}" == redact_text(f"got {value}")


def test_scrub_redacts_a_secret_at_the_end_of_large_text() -> None:
    """200 kB of token-like text with many separators is scrubbed exactly: only the secret goes."""
    head = "a1b2-c3d4/" * 20_000
    blob = head + SECRET.reveal() + "/tail"
    assert head + "<redacted>/tail" == redact_text(blob)


def test_fingerprint_matches_secret() -> None:
    """fingerprint delegates to Secret.fingerprint: 12 hex chars."""
    assert SECRET.fingerprint() == audit.fingerprint(SECRET)
    assert 12 == len(audit.fingerprint(SECRET))


def test_reset_logging_removes_handlers_and_config() -> None:
    """reset_logging leaves no handler of ours and structlog back at its defaults."""
    audit.configure_logging(stream=io.StringIO())
    audit.reset_logging()
    assert not any(isinstance(h, audit._AuditHandler) for h in logging.getLogger().handlers)
    assert not structlog.is_configured()
    assert logging.NOTSET == logging.getLogger("httpx").level
