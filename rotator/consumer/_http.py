"""The example consumer's HTTP handler: framing a request body (Content-Length or chunked,
capped), routing it to a `ConsumerApp`, answering JSON."""

from __future__ import annotations

import json
from collections.abc import Mapping
from http.server import BaseHTTPRequestHandler
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from rotator.consumer._server import ConsumerApp

MAX_REQUEST_BYTES = 1024 * 1024
_MAX_CHUNK_LINE = 1024  # a chunk-size line (with extensions) or a trailer line
_MAX_TRAILERS = 32


def handler_for(app: ConsumerApp) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        server_version = "consumer-example"
        sys_version = ""
        timeout = 30  # seconds a client may stall mid-request (a socket timeout)

        def do_POST(self) -> None:
            body = self._read_body()
            if body is None:
                return  # answered already
            # Every value of a header sent several times, comma-joined (as WSGI does).
            names: dict[str, str] = {}
            for key in self.headers:
                names.setdefault(key.lower(), key)
            headers = {key: ", ".join(self.headers.get_all(key) or ()) for key in names.values()}
            if self.path == "/webhooks":
                self._send(*app.handle_delivery(headers, body))
            elif self.path == "/rotated":
                self._send(*app.handle_hook(headers, body))
            else:
                self._send(404, {"error": "not found"})

        def _read_body(self) -> bytes | None:
            """The request body (Content-Length or chunked), or None after answering an error."""
            coding = self.headers.get("Transfer-Encoding")
            length = self.headers.get("Content-Length")
            if coding is not None:
                if length is not None:  # which one frames the body? refuse (no smuggling)
                    self._send(400, {"error": "both Content-Length and Transfer-Encoding"})
                elif coding.strip().lower() != "chunked":
                    self._send(501, {"error": "only Transfer-Encoding: chunked is supported"})
                else:
                    return self._read_chunked()
                return None
            if length is None:
                self._send(411, {"error": "Content-Length or Transfer-Encoding: chunked required"})
                return None
            if not (length.isascii() and length.isdigit()) or int(length) > MAX_REQUEST_BYTES:
                self._send(413, {"error": f"body larger than {MAX_REQUEST_BYTES} bytes"})
                return None
            return self.rfile.read(int(length))

        def _read_chunked(self) -> bytes | None:
            """A chunked body, at most MAX_REQUEST_BYTES; None after answering 400 or 413."""
            body = bytearray()
            while True:  # bounded: every turn reads a chunk, and the total is capped
                line = self.rfile.readline(_MAX_CHUNK_LINE + 1)
                size_text = line.split(b";", 1)[0].strip()
                if (
                    len(line) > _MAX_CHUNK_LINE
                    or not line.endswith(b"\n")
                    or not size_text
                    or any(c not in b"0123456789abcdefABCDEF" for c in size_text)
                ):
                    self._send(400, {"error": "malformed chunked body"})
                    return None
                size = int(size_text, 16)
                if len(body) + size > MAX_REQUEST_BYTES:
                    self._send(413, {"error": f"body larger than {MAX_REQUEST_BYTES} bytes"})
                    return None
                if size == 0:
                    break
                chunk = self.rfile.read(size)
                if len(chunk) != size or self.rfile.readline(3) not in (b"\r\n", b"\n"):
                    self._send(400, {"error": "malformed chunked body"})
                    return None
                body += chunk
            for _ in range(_MAX_TRAILERS + 1):  # trailers, ignored, up to the empty line
                if self.rfile.readline(_MAX_CHUNK_LINE + 1) in (b"\r\n", b"\n", b""):
                    return bytes(body)
            self._send(400, {"error": "malformed chunked body"})
            return None

        def do_GET(self) -> None:
            if self.path == "/stats":
                self._send(*app.handle_stats())
            else:
                self._send(404, {"error": "not found"})

        def _send(self, status: int, answer: Mapping[str, Any]) -> None:
            payload = json.dumps(answer).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)
            self.close_connection = True  # a refused body may be left unread

        def log_message(self, format: str, *args: Any) -> None:
            pass  # quiet: the counters say what happened, and nothing here may echo a body

    return Handler
