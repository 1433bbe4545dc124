"""MoniteClient listing against the Monite emulator: pages, duplicates, loops, skipped items."""

from __future__ import annotations

import random
from typing import Any

import httpx
import pytest

from rotator.config import MoniteSettings
from rotator.errors import (
    MoniteProtocolError,
)
from rotator.monite import MoniteClient
from rotator.sandbox.monite import MoniteEmulator
from tests.conftest import capture_audit
from tests.monite.helpers import (
    FakeClock,
    Leaks,
    answering,
    expect,
    make_client,
    seed_many,
)


async def test_list_follows_every_page(
    monite: MoniteEmulator,
    monite_http: httpx.AsyncClient,
    monite_settings: MoniteSettings,
    clock: FakeClock,
) -> None:
    """250 subscriptions at 100 a page come back complete in exactly 3 list calls."""
    ids = seed_many(monite, 250)
    client = make_client(monite_http, monite_settings, clock, page_size=100)
    with capture_audit() as logs:
        subs = await client.list_subscriptions()
    assert sorted(ids) == sorted(s.id for s in subs)
    assert 3 == monite.request_count("list")
    assert [] == [e for e in logs if e["event"] == "monite.list_items_skipped"]


async def test_list_keeps_unknown_enum_values_and_extra_fields(
    monite: MoniteEmulator, client: MoniteClient
) -> None:
    """An object_type/status the schema does not know and extra fields survive parsing."""
    sub_id = monite.seed(
        url="https://hooks.example.com/new",
        object_type="hologram",
        status="paused",
        event_types=["hologram.created"],
        extra={"colour": "blue"},
    )
    (sub,) = await client.list_subscriptions()
    assert sub_id == sub.id
    assert "hologram" == sub.object_type
    assert "paused" == sub.status
    assert ("hologram.created",) == sub.event_types
    assert "blue" == sub.extra["colour"]
    assert False is sub.enabled


async def test_list_detects_pagination_loop(
    monite: MoniteEmulator,
    monite_http: httpx.AsyncClient,
    monite_settings: MoniteSettings,
    clock: FakeClock,
    leaks: Leaks,
) -> None:
    """A next_pagination_token seen before stops listing with MoniteProtocolError."""
    seed_many(monite, 30)
    monite.faults.pagination_loop = True
    client = make_client(monite_http, monite_settings, clock, page_size=10)
    error = await expect(MoniteProtocolError, client.list_subscriptions(), leaks)
    assert "pagination loop" in str(error)


async def test_list_keeps_first_of_duplicates_across_pages(
    monite: MoniteEmulator,
    monite_http: httpx.AsyncClient,
    monite_settings: MoniteSettings,
    clock: FakeClock,
) -> None:
    """A subscription listed on two pages is returned once."""
    ids = seed_many(monite, 25)
    monite.faults.duplicate_across_pages = True
    client = make_client(monite_http, monite_settings, clock, page_size=10)
    subs = await client.list_subscriptions()
    assert sorted(ids) == sorted(s.id for s in subs)
    assert len(subs) == len({s.id for s in subs})


async def test_list_stops_at_max_pages(
    monite: MoniteEmulator,
    monite_http: httpx.AsyncClient,
    monite_settings: MoniteSettings,
    clock: FakeClock,
    leaks: Leaks,
) -> None:
    """More pages than monite.max_pages is a MoniteProtocolError, not an endless walk."""
    seed_many(monite, 50)
    client = make_client(monite_http, monite_settings, clock, page_size=10, max_pages=3)
    error = await expect(MoniteProtocolError, client.list_subscriptions(), leaks)
    assert "max_pages" in str(error)
    assert 3 == monite.request_count("list")


async def test_listed_items_without_id_are_skipped_and_a_page_without_data_is_refused(
    monite_settings: MoniteSettings, clock: FakeClock
) -> None:
    """Listed items with no usable id are logged as skipped and dropped; no data is refused."""
    page: dict[str, Any] = {
        "data": [
            {"id": "a", "url": "https://x", "object_type": "payable", "status": "enabled"},
            {"url": "https://no-id"},
            {"id": 7},
            "not an object",
        ],
        "next_pagination_token": None,
    }
    bodies: list[Any] = [page, [], {"data": None}, {"next_pagination_token": "x"}]
    settings = monite_settings.model_copy(update={"max_retries": 0})
    async with answering(lambda request: httpx.Response(200, json=bodies.pop(0))) as http:
        client = MoniteClient(http, settings, clock=clock, rng=random.Random(7))
        with capture_audit() as logs:
            subs = await client.list_subscriptions()
        refused = []
        for _ in range(3):
            with pytest.raises(MoniteProtocolError) as caught:
                await client.list_subscriptions()
            refused.append((caught.value.may_have_applied, caught.value.retryable))
    assert ["a"] == [s.id for s in subs]
    skipped = [e for e in logs if e["event"] == "monite.list_items_skipped"]
    assert [(3, "no id")] == [(e["skipped"], e["reason"]) for e in skipped]
    assert [(True, False)] * 3 == refused


async def test_check_reads_one_small_page(monite: MoniteEmulator, client: MoniteClient) -> None:
    """check() costs one token and one list call, however many subscriptions exist."""
    seed_many(monite, 5)
    await client.check()
    assert 1 == monite.request_count("token")
    assert 1 == monite.request_count("list")
