"""Embedding the consumer kit in a web app of one's own: a WSGI application.

    VAULT_ADDR=... VAULT_TOKEN=... python -m examples.consumer_app \\
        --port 8080 --hook-key-file /run/secrets/hook-key

`POST /webhooks` answers what `rotator.consumer.verify_request` says (200
verified, 400 malformed, 401 refused, 503 Vault unavailable), and a verified
event it has seen already (during a swap Monite sends each event through two
subscriptions) 200 "duplicate" without handling it again; `POST /rotated`
takes the rotator's signed hook notice and drops the cached secrets it names.
Any WSGI server can run `make_application(...)`; `main` uses wsgiref on
loopback. A complete server with counters and polling is `rotator.consumer.app`.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
from collections.abc import Iterable, Sequence
from http import HTTPStatus
from pathlib import Path
from wsgiref.simple_server import make_server
from wsgiref.types import StartResponse, WSGIApplication, WSGIEnvironment

import hvac

from rotator.consumer import (
    MAX_BODY_BYTES,
    Deduplicator,
    VaultSecretSource,
    Verifier,
    verify_request,
)
from rotator.consumer.app import handle_hook_notice, read_hook_key
from rotator.secret import Secret


def make_application(
    verifier: Verifier, hook_key: Secret | None = None, dedupe: Deduplicator | None = None
) -> WSGIApplication:
    """The WSGI application: deliveries verified with `verifier`, notices with `hook_key`,
    events seen already (by `id`, after verifying) dropped by `dedupe`."""

    def application(environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
        route = (environ["REQUEST_METHOD"], environ.get("PATH_INFO", ""))
        length = environ.get("CONTENT_LENGTH") or "0"
        if route not in (("POST", "/webhooks"), ("POST", "/rotated")):
            status, answer = 404, {"error": "not found"}
        elif not (length.isascii() and length.isdigit()) or int(length) > MAX_BODY_BYTES:
            status, answer = 413, {"error": "malformed"}
        else:  # the raw body, as signed; the kit reads the headers from the environ
            body = environ["wsgi.input"].read(int(length))
            if route[1] == "/webhooks":
                status, answer = verify_request(verifier, environ, body)
                event_id = answer.get("event_id")
                if status == 200 and dedupe is not None and event_id and dedupe.seen(event_id):
                    answer["status"] = "duplicate"  # handled already: 200, do nothing
                # A new verified event is handled here; if that fails, dedupe.forget(event_id)
                # and answer 500, so that Monite's retry is handled.
            else:
                status, answer = handle_hook_notice(verifier.secrets, hook_key, environ, body)
        payload = json.dumps(answer).encode()
        start_response(
            f"{status} {HTTPStatus(status).phrase}",
            [("Content-Type", "application/json"), ("Content-Length", str(len(payload)))],
        )
        return [payload]

    return application


def main(argv: Sequence[str] | None = None) -> int:
    """Serve the application on 127.0.0.1 with wsgiref until interrupted."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--port", type=int, default=8080)
    parser.add_argument("--hook-key-file", type=Path, default=None)
    args = parser.parse_args(argv)
    vault_addr, vault_token = os.environ.get("VAULT_ADDR"), os.environ.get("VAULT_TOKEN")
    if not vault_addr or not vault_token:
        parser.error("set VAULT_ADDR and VAULT_TOKEN")
    client = hvac.Client(url=vault_addr, token=vault_token, timeout=5)
    verifier = Verifier(VaultSecretSource(client, mount="secret", prefix="monite/webhooks"))
    hook_key = read_hook_key(args.hook_key_file) if args.hook_key_file else None
    dedupe = Deduplicator(ttl=3600)  # at least rotation.overlap plus Monite's retries
    application = make_application(verifier, hook_key, dedupe)
    with make_server("127.0.0.1", args.port, application) as server:
        print(f"consumer listening on http://127.0.0.1:{server.server_port}", flush=True)
        with contextlib.suppress(KeyboardInterrupt):
            server.serve_forever()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
