"""The naive sequential rotator of scenario a, the baseline the product is compared with.

List everything, then for each subscription: read its Vault record, regenerate
its secret, write the record. One request at a time with plain httpx and hvac,
no cache, no concurrency: its throughput is bounded by one round trip per
rotation, which is exactly what the product is meant to beat.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import httpx
import hvac
import hvac.exceptions

from tests.perf.common import Budget
from tests.perf.host import MOUNT, PREFIX

API_VERSION = "2024-05-25"
MAX_ATTEMPTS = 8  # per request; 429s are waited out, anything else fails the run


@dataclass
class NaiveRun:
    listed: int = 0
    rotated: int = 0
    wall: float = 0.0  # list + rotations, the same span as a product cycle
    exposures: list[float] = field(default_factory=list)
    rate_limited: int = 0
    partial: bool = False  # the budget ran out before every subscription was rotated


def _request(
    client: httpx.Client, budget: Budget, method: str, url: str, run: NaiveRun, **kwargs: Any
) -> httpx.Response:
    for _ in range(MAX_ATTEMPTS):
        budget.check("naive rotator")
        response = client.request(method, url, **kwargs)
        if response.status_code != 429:
            response.raise_for_status()
            return response
        run.rate_limited += 1
        wait = float(response.headers.get("Retry-After", "1"))
        time.sleep(min(wait, budget.remaining()))
    raise RuntimeError(f"naive rotator: {method} still rate limited after {MAX_ATTEMPTS} tries")


def run_naive(env: dict[str, str], budget: Budget) -> NaiveRun:
    """One naive pass over every subscription; stops early (partial) near the deadline."""
    base = env["ROTATOR_MONITE__BASE_URL"]
    run = NaiveRun()
    vault = hvac.Client(url=env["VAULT_ADDR"], token=env["VAULT_TOKEN"], timeout=10)
    headers = {"x-monite-version": API_VERSION, "Accept": "application/json"}
    with httpx.Client(timeout=10.0, headers=headers) as http:
        started = time.perf_counter()
        token = _request(
            http,
            budget,
            "POST",
            f"{base}/auth/token",
            run,
            json={
                "grant_type": "client_credentials",
                "client_id": env["ROTATOR_MONITE__CLIENT_ID"],
                "client_secret": env["ROTATOR_MONITE__CLIENT_SECRET"],
            },
        ).json()["access_token"]
        http.headers["Authorization"] = f"Bearer {token}"

        ids: list[str] = []
        params: dict[str, str | int] = {"limit": 100}
        for _ in range(10_000):  # bounded: far more pages than any scenario lists
            page = _request(
                http, budget, "GET", f"{base}/webhook_subscriptions", run, params=params
            )
            body = page.json()
            ids += [item["id"] for item in body["data"]]
            next_token = body.get("next_pagination_token")
            if not next_token:
                break
            params = {"pagination_token": next_token}
        run.listed = len(ids)

        for sid in ids:
            # Keep a margin for the writes in flight: stop, and say the run is partial.
            if budget.remaining() < 2.0:
                run.partial = True
                break
            path = f"{PREFIX}/{sid}"
            try:
                current = vault.secrets.kv.v2.read_secret_version(
                    path=path, mount_point=MOUNT, raise_on_deleted_version=True
                )
                version = int(current["data"]["metadata"]["version"])
                data = dict(current["data"]["data"])
            except hvac.exceptions.InvalidPath:
                version, data = 0, {"subscription_id": sid}
            regenerated = _request(
                http,
                budget,
                "POST",
                f"{base}/webhook_subscriptions/{sid}/regenerate_secret",
                run,
            ).json()
            received = time.perf_counter()
            data["secret"] = regenerated["secret"]
            data["rotated_at"] = datetime.now(UTC).isoformat().replace("+00:00", "Z")
            data["state"] = "active"
            vault.secrets.kv.v2.create_or_update_secret(
                path=path, secret=data, cas=version, mount_point=MOUNT
            )
            run.exposures.append(time.perf_counter() - received)
            run.rotated += 1
        run.wall = time.perf_counter() - started
    vault.adapter.close()
    return run
