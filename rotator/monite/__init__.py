"""Monite's API, as the rotator uses it: the public face of the `rotator.monite` package.

`MoniteClient` owns every exchange with Monite. Inside the package:

- `client`: the operations, and which of them may be retried;
- `_transport`: one logical request: its token, retries (`rotator.retry`) and rate limit;
- `_token`: the OAuth access token, shared, refreshed and dropped;
- `_parse`: the shapes of Monite's successful answers;
- `_response`: headers and error bodies (Retry-After, RateLimit-*, x-request-id);
- `_errors`: httpx exceptions and HTTP statuses mapped to `rotator.errors`.
"""

from rotator.monite._parse import MAX_SECRET_BYTES
from rotator.monite._response import header_number, retry_after
from rotator.monite._token import Token
from rotator.monite.client import MoniteClient

__all__ = ["MAX_SECRET_BYTES", "MoniteClient", "Token", "header_number", "retry_after"]
