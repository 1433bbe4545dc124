"""Tests of the emulators in `rotator.sandbox`."""

from __future__ import annotations

import httpx

# httpx loads the whole CA bundle for every client it builds: about 20 ms of
# CPU, more than most tests here spend on everything else. These clients speak
# plain HTTP to loopback, so they share one context, made exactly as httpx makes it.
SSL_CONTEXT = httpx.create_ssl_context()
