"""Shared fixtures: a real PostgreSQL migrated by Alembic, settings, the app."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import httpx
import pytest
from asgi_lifespan import LifespanManager
from sqlalchemy import text

from project_orchestrator.config import Settings
from project_orchestrator.db.engine import Database, create_database
from project_orchestrator.db.migrations import upgrade_to_head
from project_orchestrator.db.models import metadata
from project_orchestrator.projects.page_links import configure_page_links
from project_orchestrator.queue.schema import QUEUE_TABLES
from tests.support import postgres
from tests.support.fake_anthropic import FakeAnthropic
from tests.support.fake_github import FakeGitHub
from tests.support.fake_http import FakeServer
from tests.support.fake_scar import FakeScar
from tests.support.fake_telegram import FakeTelegram

if TYPE_CHECKING:
    from tests.support.journey import Journey

# Every variable the service reads; the developer's own environment must not leak in.
_OWN_VARIABLES = set(Settings.model_fields) | {
    "TELEGRAM_MODE",
    "WEBHOOK_IP_FILTERING_ENABLED",
}


@pytest.fixture(autouse=True)
def _clean_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in list(os.environ):
        if name.lower() in {v.lower() for v in _OWN_VARIABLES}:
            monkeypatch.delenv(name)
    for name in ("ANTHROPIC_API_KEY", "ANTHROPIC_BASE_URL"):
        monkeypatch.delenv(name, raising=False)
    # Set by whichever app or worker a test built last; a test starts with none.
    configure_page_links(None)


@pytest.fixture(scope="session")
def pg_server_url() -> str:
    return postgres.admin_url()


@pytest.fixture(scope="session")
def database_url(pg_server_url: str) -> Iterator[str]:
    """One database for the session, migrated to head by Alembic."""
    url = postgres.create_database(pg_server_url)
    upgrade_to_head(url)
    yield url
    postgres.drop_database(pg_server_url, url)


@pytest.fixture
async def db(database_url: str) -> AsyncIterator[Database]:
    """The migrated database, emptied after each test so tests stay independent."""
    database = create_database(database_url, pool_size=5, max_overflow=5)
    yield database
    tables = [t.name for t in reversed(metadata.sorted_tables)] + list(QUEUE_TABLES)
    if tables:
        async with database.engine.begin() as conn:
            await conn.execute(text(f"TRUNCATE {', '.join(tables)} RESTART IDENTITY CASCADE"))
    await database.dispose()


def make_settings(tmp_path: Path, **overrides: Any) -> Settings:
    values: dict[str, Any] = {
        "audit_log_path": tmp_path / "audit.log",
        "data_dir": tmp_path / "data",
    }
    values.update(overrides)
    return Settings(_env_file=None, **values)


@pytest.fixture
def settings(tmp_path: Path, database_url: str) -> Settings:
    return make_settings(tmp_path, database_url=database_url)


@pytest.fixture
async def client(settings: Settings, db: Database) -> AsyncIterator[httpx.AsyncClient]:
    from project_orchestrator.app import create_app

    app = create_app(settings)
    async with LifespanManager(app) as manager:
        transport = httpx.ASGITransport(app=manager.app)
        async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as c:
            yield c


@pytest.fixture
def github() -> Iterator[FakeGitHub]:
    """A fake GitHub REST API on a local port; PyGithub reaches it through GITHUB_API_URL."""
    fake = FakeGitHub()
    fake.add_issue("acme/widgets", 7)
    with FakeServer(fake.app) as server:
        fake.base_url = server.url  # where tests point PyGithub
        yield fake


@pytest.fixture
def anthropic() -> Iterator[tuple[FakeAnthropic, str]]:
    """A fake Anthropic Messages API and its base URL (for ANTHROPIC_BASE_URL)."""
    fake = FakeAnthropic()
    with FakeServer(fake.app) as server:
        yield fake, server.url


@pytest.fixture
def scar() -> Iterator[tuple[FakeScar, str]]:
    """A fake of SCAR's HTTP adapter and its base URL (for SCAR_BASE_URL)."""
    fake = FakeScar()
    with FakeServer(fake.app) as server:
        yield fake, server.url


@pytest.fixture
def telegram() -> Iterator[tuple[FakeTelegram, str]]:
    """A fake Bot API and its base URL (for TELEGRAM_API_BASE_URL)."""
    fake = FakeTelegram()
    with FakeServer(fake.app) as server:
        yield fake, server.url


@pytest.fixture
def private_postgres() -> Iterator[postgres.RestartablePostgres]:
    """A migrated PostgreSQL of the test's own, which it may stop and start."""
    server = postgres.RestartablePostgres()
    upgrade_to_head(server.url)
    yield server
    server.close()


@pytest.fixture
def journey_scar(scar: tuple[FakeScar, str]) -> tuple[FakeScar, str]:
    """The SCAR a journey talks to; a test module overrides it for another kind."""
    return scar


@pytest.fixture
def journey_overrides() -> dict[str, Any]:
    """Settings a test module's journeys change (none by default)."""
    return {}


@pytest.fixture
async def journey(
    tmp_path: Path,
    database_url: str,
    db: Database,
    github: FakeGitHub,
    anthropic: tuple[FakeAnthropic, str],
    journey_scar: tuple[FakeScar, str],
    journey_overrides: dict[str, Any],
) -> Journey:
    """A person's journey through the real route and worker (tests/support/journey.py)."""
    # Imported here: tests.support.journey itself imports this module's make_settings.
    from tests.support.journey import Journey, journey_settings

    fake_scar, scar_url = journey_scar
    settings = journey_settings(
        tmp_path, database_url, github, anthropic[1], scar_url, **journey_overrides
    )
    return Journey(tmp_path, database_url, db, settings, github, anthropic[0], fake_scar)
