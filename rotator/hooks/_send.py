"""One delivery attempt: POST to a URL, or run a command with the notice on stdin.

An attempt that fails raises `Undelivered` (retried by the dispatcher); what it
returns are the audit fields of the success. A command's output is cut to
`OUTPUT_LIMIT` bytes and passed through `redact_text` before anyone sees it.
The command gets a bare environment: the daemon's holds Vault and Monite
credentials, which are no business of a hook. It sees only `CHILD_ENV`:
PATH, HOME, LANG, LC_ALL, TZ, and KUBERNETES_SERVICE_HOST and
KUBERNETES_SERVICE_PORT (not secrets: where an in-cluster client such as
kubectl finds the API server), plus ROTATOR_SIGNATURE when the hook has a key.
A command runs in a session of its own: a timeout or a cancellation kills its
process group, and no attempt ends before its command is reaped (bounded by
`REAP_LIMIT`), so a hook leaves no zombie behind.
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
from rotator.clock import Clock
from rotator.redact import redact_text
from rotator.retry import retry_after_seconds
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
# How long a killed command may take to be reaped: a SIGKILL ends a process in
# milliseconds, unless it is stuck in the kernel (a hung NFS read, say).
REAP_LIMIT: Final = 2.0


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


async def post(
    client: httpx.AsyncClient,
    url: str,
    body: bytes,
    signature: str | None,
    limit: float,
    clock: Clock,
) -> dict[str, Any]:
    """POST `body`; a 2xx answer delivers it. The answer's body is never read.

    A failure's `Retry-After` (seconds or an HTTP-date, read on `clock`) rides on
    the `Undelivered` for the dispatcher's retry."""
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
        retry_after = retry_after_seconds(response.headers.get("Retry-After"), clock)
        raise Undelivered(f"HTTP {status}", retry_after=retry_after)
    return {"status": status}


def _captured(data: bytearray) -> str:
    text = bytes(data[:OUTPUT_LIMIT]).decode("utf-8", errors="replace").strip()
    if len(data) > OUTPUT_LIMIT:
        text += " …(truncated)"
    return redact_text(text)


def _output(command: _Command) -> dict[str, str]:
    found = {"stdout": _captured(command.stdout), "stderr": _captured(command.stderr)}
    return {name: text for name, text in found.items() if text}


def _settle(future: asyncio.Future[None]) -> None:
    if not future.done():
        future.set_result(None)


class _Command(asyncio.SubprocessProtocol):
    """Keeps the first bytes of a command's stdout and stderr; says when it was reaped
    (`exited`) and when its output has ended too (`finished`)."""

    def __init__(self) -> None:
        loop = asyncio.get_running_loop()
        self.stdout, self.stderr = bytearray(), bytearray()
        # Set once the child watcher has waited for the process: it is then no zombie.
        self.exited: asyncio.Future[None] = loop.create_future()
        self.finished: asyncio.Future[None] = loop.create_future()

    def pipe_data_received(self, fd: int, data: bytes) -> None:
        into = self.stdout if fd == 1 else self.stderr
        # Read to the end (a writer never blocks on a full pipe), keeping the first bytes.
        if len(into) <= OUTPUT_LIMIT:
            into += data[: OUTPUT_LIMIT + 1 - len(into)]

    def process_exited(self) -> None:
        _settle(self.exited)

    def connection_lost(self, exc: Exception | None) -> None:
        # The transport calls this once the process has exited and every pipe is closed.
        _settle(self.finished)


async def _stop(transport: asyncio.SubprocessTransport, command: _Command) -> None:
    """Kill the command and whatever it started, and wait (at most `REAP_LIMIT`) until
    it is reaped; the transport is closed whatever happens."""
    try:
        # Its own session (see `run`): the group's id is its pid.
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(transport.get_pid(), signal.SIGKILL)
        # A descendant that left the group (setsid) may hold the pipes open for as long
        # as it lives; waiting for their end (as `Process.wait()` does) could last forever.
        for fd in (0, 1, 2):
            pipe = transport.get_pipe_transport(fd)
            if pipe is not None:
                pipe.close()
        # Bounded: only a process stuck in the kernel outlives SIGKILL for long, and
        # the child watcher still reaps it when it dies.
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(REAP_LIMIT):
                await asyncio.shield(command.exited)
    finally:
        # After the exit is known this releases the pipes only; it kills only a process
        # that outlived REAP_LIMIT.
        transport.close()


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
    """Run `argv` (no shell) with `body` on stdin; exit status 0 delivers it.

    Every command is reaped before this returns or raises: on success, on a
    non-zero exit, at the timeout and when cancelled (the timeout and a
    cancellation kill it first, and wait at most `REAP_LIMIT` more).
    """
    loop = asyncio.get_running_loop()
    try:
        transport, command = await loop.subprocess_exec(
            _Command,
            *argv,
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
            env=child_environment(environ, signature),
            start_new_session=True,  # its own process group: a timeout kills all of it
        )
    except OSError as exc:
        raise Undelivered(f"cannot start {argv[0]}: {exc.strerror or type(exc).__name__}") from None
    try:
        stdin = transport.get_pipe_transport(0)
        if isinstance(stdin, asyncio.WriteTransport):
            # Buffered, then closed once written. A command that does not read its
            # stdin is no failure (the broken pipe is ignored): its exit status says.
            stdin.write(body)
            stdin.close()
        async with asyncio.timeout(limit):
            await asyncio.shield(command.finished)
    except TimeoutError:
        await _stop(transport, command)
        raise Undelivered(f"timed out after {limit:g}s; killed", output=_output(command)) from None
    except BaseException:  # cancelled (a shutdown): leave no child behind, not even a zombie
        await _stop(transport, command)
        raise
    code = transport.get_returncode()
    transport.close()
    if code != 0:
        reason = (
            f"killed by signal {-code}" if code is not None and code < 0 else f"exit status {code}"
        )
        raise Undelivered(reason, output=_output(command))
    return {"exit_status": 0, **_output(command)}
