"""One delivery attempt: POST to a URL, or run a command with the notice on stdin.

An attempt that fails raises `Undelivered` (retried by the dispatcher); what it
returns are the audit fields of the success. A command's output is cut to
`OUTPUT_LIMIT` bytes and passed through `redact_text` before anyone sees it.
The command gets a bare environment: the daemon's holds Vault and Monite
credentials, which are no business of a hook. It sees only `CHILD_ENV`:
PATH, HOME, LANG, LC_ALL, TZ, and KUBERNETES_SERVICE_HOST and
KUBERNETES_SERVICE_PORT (not secrets: where an in-cluster client such as
kubectl finds the API server), plus ROTATOR_SIGNATURE when the hook has a key.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
from collections.abc import Mapping
from typing import Any, Final

import httpx

from rotator import __version__
from rotator.redact import redact_text
from rotator.signature import HOOK_HEADER

SIGNATURE_HEADER: Final = HOOK_HEADER
# The same value a command hook gets in its environment, when it has a key.
SIGNATURE_ENV: Final = "ROTATOR_SIGNATURE"
OUTPUT_LIMIT: Final = 2048  # bytes kept of a command's stdout and of its stderr
# The only variables of the daemon's environment a command hook sees.
CHILD_ENV: Final = (
    "PATH",
    "HOME",
    "LANG",
    "LC_ALL",
    "TZ",
    "KUBERNETES_SERVICE_HOST",
    "KUBERNETES_SERVICE_PORT",
)
_DEFAULT_PATH: Final = "/usr/local/bin:/usr/bin:/bin"


class Undelivered(Exception):
    """One attempt failed; `reason` says how (never the secret, a URL's query or a body)."""

    def __init__(
        self,
        reason: str,
        *,
        output: Mapping[str, Any] | None = None,
        retry_after: float | None = None,
    ) -> None:
        super().__init__(reason)
        self.reason = reason
        self.output: dict[str, Any] = dict(output or {})
        self.retry_after = retry_after


def _retry_after(response: httpx.Response) -> float | None:
    value = response.headers.get("Retry-After", "")
    return float(value) if value.isascii() and value.isdigit() else None


async def post(
    client: httpx.AsyncClient, url: str, body: bytes, signature: str | None, limit: float
) -> dict[str, Any]:
    """POST `body`; a 2xx answer delivers it. The answer's body is never read."""
    headers = {
        "Content-Type": "application/json",
        "User-Agent": f"monite-secret-rotator/{__version__}",
    }
    if signature is not None:
        headers[SIGNATURE_HEADER] = signature
    try:
        # httpx times each phase; the outer cap makes `limit` a bound on the whole.
        async with (
            asyncio.timeout(limit),
            client.stream(
                "POST", url, content=body, headers=headers, timeout=httpx.Timeout(limit)
            ) as response,
        ):
            status = response.status_code
    except TimeoutError:
        raise Undelivered(f"timed out after {limit:g}s") from None
    except httpx.HTTPError as exc:
        # An httpx message may quote the URL, and a URL may hold a token.
        text = redact_text(" ".join(str(exc).split()), also=(url,)) or "no answer"
        raise Undelivered(f"{type(exc).__name__}: {text}") from None
    if not 200 <= status < 300:
        raise Undelivered(f"HTTP {status}", retry_after=_retry_after(response))
    return {"status": status}


def _captured(data: bytearray) -> str:
    text = bytes(data[:OUTPUT_LIMIT]).decode("utf-8", errors="replace").strip()
    if len(data) > OUTPUT_LIMIT:
        text += " …(truncated)"
    return redact_text(text)


def _output(stdout: bytearray, stderr: bytearray) -> dict[str, str]:
    found = {"stdout": _captured(stdout), "stderr": _captured(stderr)}
    return {name: text for name, text in found.items() if text}


async def _collect(stream: asyncio.StreamReader | None, into: bytearray) -> None:
    """Read to the end, keeping only the first bytes (the timeout bounds the loop)."""
    if stream is None:
        return
    while chunk := await stream.read(64 * 1024):
        if len(into) <= OUTPUT_LIMIT:
            into += chunk[: OUTPUT_LIMIT + 1 - len(into)]


async def _feed(stdin: asyncio.StreamWriter | None, body: bytes) -> None:
    if stdin is None:
        return
    # A command that does not read its stdin is no failure: its exit status says.
    with contextlib.suppress(BrokenPipeError, ConnectionResetError):
        stdin.write(body)
        await stdin.drain()
    stdin.close()


def _kill(process: asyncio.subprocess.Process) -> None:
    """Kill the command and whatever it started (its own session, see `run`)."""
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(process.pid, signal.SIGKILL)
    with contextlib.suppress(ProcessLookupError):
        process.kill()


def child_environment(environ: Mapping[str, str], signature: str | None) -> dict[str, str]:
    env = {name: environ[name] for name in CHILD_ENV if name in environ}
    env.setdefault("PATH", _DEFAULT_PATH)
    if signature is not None:
        env[SIGNATURE_ENV] = signature
    return env


async def run(
    argv: tuple[str, ...],
    body: bytes,
    signature: str | None,
    limit: float,
    environ: Mapping[str, str],
) -> dict[str, Any]:
    """Run `argv` (no shell) with `body` on stdin; exit status 0 delivers it."""
    try:
        process = await asyncio.create_subprocess_exec(
            *argv,
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
            env=child_environment(environ, signature),
            start_new_session=True,  # its own process group: a timeout kills all of it
        )
    except OSError as exc:
        raise Undelivered(f"cannot start {argv[0]}: {exc.strerror or type(exc).__name__}") from None
    stdout, stderr = bytearray(), bytearray()
    try:
        async with asyncio.timeout(limit):
            await asyncio.gather(
                _feed(process.stdin, body),
                _collect(process.stdout, stdout),
                _collect(process.stderr, stderr),
            )
            code = await process.wait()
    except TimeoutError:
        _kill(process)
        await process.wait()
        raise Undelivered(
            f"timed out after {limit:g}s; killed", output=_output(stdout, stderr)
        ) from None
    except BaseException:  # cancelled (a shutdown): leave no child behind
        _kill(process)
        raise
    if code != 0:
        reason = f"killed by signal {-code}" if code < 0 else f"exit status {code}"
        raise Undelivered(reason, output=_output(stdout, stderr))
    return {"exit_status": 0, **_output(stdout, stderr)}
