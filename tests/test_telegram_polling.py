"""TELEGRAM_MODE=polling against the fake Bot API: store first, then confirm the offset."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest
from asgi_lifespan import LifespanManager
from prometheus_client import REGISTRY
from sqlalchemy import text
from telegram import Bot

from project_orchestrator.app import create_app
from project_orchestrator.db.engine import Database
from project_orchestrator.db.raw import create_pool
from project_orchestrator.events.writer import EventWriter, NewEvent, Stored, StoreUnavailable
from project_orchestrator.ingress.telegram import polling
from project_orchestrator.ingress.telegram.bot import ALLOWED_UPDATES, build_bot
from project_orchestrator.ingress.telegram.polling import run_polling
from project_orchestrator.ingress.telegram.updates import EventStore
from tests.conftest import make_settings
from tests.support.fake_http import FakeServer
from tests.support.fake_telegram import FakeTelegram, callback_update, text_update
from tests.support.logs import RecordingLogger

TOKEN = "123456:polling-test-token"


@pytest.fixture
def fast_backoff(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(polling, "FIRST_BACKOFF_SECONDS", 0.05)
    monkeypatch.setattr(polling, "MAX_BACKOFF_SECONDS", 0.2)


@pytest.fixture
def fake() -> Iterator[FakeTelegram]:
    fake = FakeTelegram(token=TOKEN, max_long_poll_seconds=0.3, strict_webhook_url=False)
    with FakeServer(fake.app) as server:
        fake.base_url = server.url  # type: ignore[attr-defined]
        yield fake


@pytest.fixture
async def bot(fake: FakeTelegram, tmp_path: Path) -> AsyncIterator[Bot]:
    settings = make_settings(
        tmp_path,
        telegram_bot_token=TOKEN,
        telegram_api_base_url=fake.base_url,  # type: ignore[attr-defined]
    )
    bot = build_bot(settings)
    yield bot
    await bot.shutdown()


@pytest.fixture
async def writer(database_url: str, db: Database) -> AsyncIterator[EventWriter]:
    pool = await create_pool(database_url)
    writer = EventWriter(pool)
    writer.start()
    yield writer
    await writer.close()
    await pool.close()


@asynccontextmanager
async def polling_loop(
    bot: Bot, writer: EventStore, poll_seconds: int = 1
) -> AsyncIterator[asyncio.Task[None]]:
    stop = asyncio.Event()
    task = asyncio.create_task(run_polling(bot, writer, stop, timeout=poll_seconds))
    try:
        yield task
    finally:
        stop.set()
        await asyncio.wait_for(task, timeout=5)


async def eventually(check: Callable[[], Any], within: float = 10.0) -> None:
    deadline = time.monotonic() + within
    while True:
        result = check()
        if asyncio.iscoroutine(result):
            result = await result
        if result:
            return
        if time.monotonic() > deadline:
            raise AssertionError("condition not reached in time")
        await asyncio.sleep(0.02)


async def counts(db: Database) -> tuple[int, int]:
    async with db.engine.connect() as conn:
        events = (await conn.execute(text("SELECT count(*) FROM inbound_events"))).scalar_one()
        jobs = (await conn.execute(text("SELECT count(*) FROM pgqueuer"))).scalar_one()
    return events, jobs


def offsets(fake: FakeTelegram) -> list[int | None]:
    """The offset of each getUpdates call so far, in order."""
    return [call.params.get("offset") for call in fake.requests if call.method == "getUpdates"]


def duplicates_counted() -> float:
    value = REGISTRY.get_sample_value(
        "webhook_events_total",
        {"source": "telegram", "event": "message", "outcome": "duplicate"},
    )
    return value or 0.0


class GatedWriter:
    """Stores only once the gate opens, so a test can look at the fake in between."""

    def __init__(self, writer: EventWriter) -> None:
        self.writer = writer
        self.gate = asyncio.Event()
        self.waiting = 0

    async def store(self, event: NewEvent) -> Stored:
        self.waiting += 1
        await self.gate.wait()
        return await self.writer.store(event)


class FlakyWriter:
    """The first `failures` stores fail as a database outage would."""

    def __init__(self, writer: EventWriter, failures: int) -> None:
        self.writer = writer
        self.failures = failures
        self.attempts = 0

    async def store(self, event: NewEvent) -> Stored:
        self.attempts += 1
        if self.attempts <= self.failures:
            raise StoreUnavailable("ConnectionRefusedError")
        return await self.writer.store(event)


async def test_updates_are_stored_and_queued_then_confirmed(
    fake: FakeTelegram, bot: Bot, writer: EventWriter, db: Database
) -> None:
    fake.push_update(text_update(1, chat_id=555, user_id=777, text="/status"))
    fake.push_update(callback_update(2, chat_id=555, user_id=777, data="ok", message_id=9))
    async with polling_loop(bot, writer):
        await eventually(lambda: counts(db))
        await eventually(lambda: 3 in offsets(fake))
    assert await counts(db) == (2, 2)
    async with db.engine.connect() as conn:
        rows = (
            await conn.execute(
                text(
                    "SELECT source::text AS source, external_id, event_type, serial_key, "
                    "payload->'message'->>'text' AS text, headers, correlation_id "
                    "FROM inbound_events ORDER BY id"
                )
            )
        ).all()
    assert [(r.source, r.external_id, r.event_type, r.serial_key) for r in rows] == [
        ("telegram", "1", "message", "telegram:555"),
        ("telegram", "2", "callback_query", "telegram:555"),
    ]
    assert rows[0].text == "/status"
    assert rows[0].headers == {}
    assert rows[0].correlation_id
    assert rows[0].correlation_id != rows[1].correlation_id
    first = next(c for c in fake.requests if c.method == "getUpdates")
    assert first.params.get("offset") is None
    assert first.params["allowed_updates"] == ALLOWED_UPDATES
    assert first.params["timeout"] == 1
    # Confirmed on the next call (and on stop): Telegram forgets them.
    assert fake.pending_updates == []


async def test_offset_moves_only_after_the_batch_is_stored(
    fake: FakeTelegram, bot: Bot, writer: EventWriter, db: Database
) -> None:
    gated = GatedWriter(writer)
    fake.push_update(text_update(41, chat_id=555, user_id=777, text="hello"))
    async with polling_loop(bot, gated):
        await eventually(lambda: gated.waiting == 1)
        await asyncio.sleep(0.5)  # time enough for a premature getUpdates to show up
        assert 42 not in offsets(fake)
        assert [u["update_id"] for u in fake.pending_updates] == [41]
        assert await counts(db) == (0, 0)
        gated.gate.set()
        await eventually(lambda: 42 in offsets(fake))
        assert await counts(db) == (1, 1)


async def test_storage_failure_keeps_the_offset_and_stores_once_later(
    fake: FakeTelegram, bot: Bot, writer: EventWriter, db: Database, fast_backoff: None
) -> None:
    flaky = FlakyWriter(writer, failures=3)
    fake.push_update(text_update(1, chat_id=555, user_id=777, text="one"))
    fake.push_update(text_update(2, chat_id=556, user_id=778, text="two"))
    async with polling_loop(bot, flaky):
        await eventually(lambda: 3 in offsets(fake))
    assert flaky.attempts >= 5  # three failures, then both updates
    seen = offsets(fake)
    first_advance = seen.index(3)
    # Until both were stored, every fetch started from the beginning again.
    assert seen[:first_advance] == [None] * first_advance
    assert first_advance >= 3
    assert await counts(db) == (2, 2)


async def test_redelivered_updates_are_stored_once(
    fake: FakeTelegram, bot: Bot, writer: EventWriter, db: Database
) -> None:
    update = text_update(7, chat_id=555, user_id=777, text="again")
    before = duplicates_counted()
    fake.push_update(update)
    async with polling_loop(bot, writer):
        await eventually(lambda: 8 in offsets(fake))
    assert await counts(db) == (1, 1)

    # As after a crash before the offset was confirmed: Telegram sends it again.
    fake.push_update(update)
    calls_before = len(offsets(fake))
    async with polling_loop(bot, writer):
        await eventually(lambda: 8 in offsets(fake)[calls_before:])
    assert await counts(db) == (1, 1)
    assert duplicates_counted() == before + 1


async def test_stop_ends_a_long_poll_at_once(
    tmp_path: Path, writer: EventWriter, db: Database
) -> None:
    fake = FakeTelegram(token=TOKEN, max_long_poll_seconds=2)
    with FakeServer(fake.app) as server:
        bot = build_bot(
            make_settings(tmp_path, telegram_bot_token=TOKEN, telegram_api_base_url=server.url)
        )
        stop = asyncio.Event()
        task = asyncio.create_task(run_polling(bot, writer, stop, timeout=25))
        await eventually(lambda: "getUpdates" in fake.calls)
        started = time.monotonic()
        stop.set()
        await asyncio.wait_for(task, timeout=5)
        assert time.monotonic() - started < 1.0
        await bot.shutdown()


async def test_stop_ends_a_backoff_at_once(
    fake: FakeTelegram,
    bot: Bot,
    writer: EventWriter,
    db: Database,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(polling, "FIRST_BACKOFF_SECONDS", 30.0)
    fake.fail_next(1000, status=502, method="getUpdates")
    stop = asyncio.Event()
    task = asyncio.create_task(run_polling(bot, writer, stop, timeout=1))
    await eventually(lambda: "getUpdates" in fake.calls)
    await asyncio.sleep(0.2)  # now in its 30 s pause
    started = time.monotonic()
    stop.set()
    await asyncio.wait_for(task, timeout=5)
    assert time.monotonic() - started < 1.0
    assert fake.calls.count("getUpdates") == 1


# python-telegram-bot warns about its own RetryAfter (int today, timedelta one day).
@pytest.mark.filterwarnings("ignore::telegram.warnings.PTBDeprecationWarning")
async def test_retry_after_is_respected(
    fake: FakeTelegram, bot: Bot, writer: EventWriter, db: Database
) -> None:
    fake.rate_limit_next(1, retry_after=1, method="getUpdates")
    fake.push_update(text_update(1, chat_id=555, user_id=777, text="hi"))
    started = time.monotonic()
    async with polling_loop(bot, writer):
        await eventually(lambda: 2 in offsets(fake))
    assert time.monotonic() - started >= 0.9
    assert await counts(db) == (1, 1)


async def test_a_webhook_blocks_polling_until_deleted(
    fake: FakeTelegram,
    bot: Bot,
    writer: EventWriter,
    db: Database,
    fast_backoff: None,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    logged = RecordingLogger()
    monkeypatch.setattr(polling, "log", logged)
    await bot.set_webhook("https://bot.example.com/webhooks/telegram")
    fake.push_update(text_update(1, chat_id=555, user_id=777, text="hi"))
    async with polling_loop(bot, writer):
        await eventually(lambda: fake.calls.count("getUpdates") >= 2)
        assert await counts(db) == (0, 0)
        await bot.delete_webhook()
        await eventually(lambda: 2 in offsets(fake))
    assert await counts(db) == (1, 1)
    # The operator is told what to do about it.
    conflicts = [f for _, e, f in logged.records if e == "telegram.polling.conflict"]
    assert conflicts
    assert "orchestrator telegram delete-webhook" in conflicts[0]["hint"]


async def test_the_app_polls_in_polling_mode_and_stops_before_the_database(
    fake: FakeTelegram, tmp_path: Path, database_url: str, db: Database
) -> None:
    settings = make_settings(
        tmp_path,
        database_url=database_url,
        telegram_bot_token=TOKEN,
        telegram_api_base_url=fake.base_url,  # type: ignore[attr-defined]
        TELEGRAM_MODE="polling",
    )
    fake.push_update(text_update(1, chat_id=555, user_id=777, text="hi"))
    app = create_app(settings)
    async with LifespanManager(app) as manager:
        await eventually(lambda: counts(db))
        await eventually(lambda: 2 in offsets(fake))
        transport = httpx.ASGITransport(app=manager.app)
        async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
            assert (await client.get("/health")).status_code == 200
        started = time.monotonic()
    assert time.monotonic() - started < 3.0
    assert await counts(db) == (1, 1)
    assert fake.calls[0] == "getMe"


async def test_webhook_mode_does_not_poll(
    fake: FakeTelegram, tmp_path: Path, database_url: str, db: Database
) -> None:
    settings = make_settings(
        tmp_path,
        database_url=database_url,
        telegram_bot_token=TOKEN,
        telegram_api_base_url=fake.base_url,  # type: ignore[attr-defined]
        TELEGRAM_MODE="webhook",
        telegram_webhook_secret="s3cret-value",
    )
    async with LifespanManager(create_app(settings)):
        await asyncio.sleep(0.3)
    assert fake.calls == []
