"""The project's read-only page: signed links, the access rules over HTTP, and what the
page says at each point of a build (a journey through the real route and worker)."""

from __future__ import annotations

import json
import re
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from asgi_lifespan import LifespanManager

from project_orchestrator.app import create_app
from project_orchestrator.audit import AuditLog
from project_orchestrator.config import Settings
from project_orchestrator.db.engine import Database
from project_orchestrator.db.types import Channel
from project_orchestrator.errors import ConfigurationError
from project_orchestrator.projects.page_links import LinkRefused, PageLinks
from project_orchestrator.projects.service import Actor, create_project, github_identity
from project_orchestrator.vision.models import VisionDocument
from project_orchestrator.vision.render import content_hash
from project_orchestrator.workflow.commands import PAGE_NOT_SET_UP
from tests.conftest import make_settings
from tests.support.journey import Journey, brainstorm_to_vision_gate

BASE = "https://orch.example.test"
SECRET = "page-link-secret-0123456789"
PAGE_SETTINGS = {"public_base_url": BASE, "page_link_secret": SECRET}
LINK = re.compile(re.escape(BASE) + r"/page/[0-9a-f]{32}\.\d+\.[A-Za-z0-9_-]{43}")
NOW = datetime(2026, 12, 4, 10, 15, tzinfo=UTC)


def _links(secret: str = SECRET, ttl: timedelta = timedelta(days=7)) -> PageLinks:
    return PageLinks(BASE, secret.encode(), ttl)


# --- links -------------------------------------------------------------------------------


def test_a_link_opens_its_project_until_it_expires() -> None:
    project = uuid.uuid4()
    links = _links()
    token = links.token(project, NOW)
    assert links.link(project, NOW) == f"{BASE}/page/{token}"
    assert links.open(token, NOW) == project
    expires = datetime.fromtimestamp(int(token.split(".")[1]), UTC)
    # Seven days on, rounded up to the hour.
    assert expires == datetime(2026, 12, 11, 11, 0, tzinfo=UTC)
    assert links.open(token, expires - timedelta(seconds=1)) == project
    with pytest.raises(LinkRefused, match="expired"):
        links.open(token, expires)


def test_the_same_link_for_an_hour() -> None:
    project = uuid.uuid4()
    links = _links()
    assert links.token(project, NOW) == links.token(project, NOW + timedelta(minutes=40))
    assert links.token(project, NOW) != links.token(project, NOW + timedelta(minutes=50))


@pytest.mark.parametrize(
    "alter",
    [
        lambda t: f"{uuid.uuid4().hex}.{t.split('.', 1)[1]}",  # another project
        lambda t: t.replace(t.split(".")[1], str(int(t.split(".")[1]) + 3600)),  # later
        lambda t: t[:-2] + ("AA" if not t.endswith("AA") else "BB"),  # the signature
    ],
    ids=["project", "expiry", "signature"],
)
def test_an_altered_link_opens_nothing(alter: Any) -> None:
    token = _links().token(uuid.uuid4(), NOW)
    with pytest.raises(LinkRefused, match="bad signature"):
        _links().open(alter(token), NOW)


def test_rotating_the_key_revokes_every_link() -> None:
    token = _links().token(uuid.uuid4(), NOW)
    with pytest.raises(LinkRefused, match="bad signature"):
        _links("another-secret-0123456789").open(token, NOW)


@pytest.mark.parametrize(
    "token",
    ["", "abc", "a.b.c", f"{'0' * 32}.x.sig", f"{'z' * 32}.1.sig", f"{'0' * 32}.{'9' * 20}.s"],
)
def test_a_malformed_link_opens_nothing(token: str) -> None:
    with pytest.raises(LinkRefused, match="malformed"):
        _links().open(token, NOW)


def test_pages_need_the_address_and_the_key(tmp_path: Path) -> None:
    assert PageLinks.from_settings(make_settings(tmp_path)) is None
    assert PageLinks.from_settings(make_settings(tmp_path, public_base_url=BASE)) is None
    links = PageLinks.from_settings(make_settings(tmp_path, **PAGE_SETTINGS))
    assert links is not None
    assert links.ttl == timedelta(days=7)
    short = make_settings(tmp_path, page_link_ttl_seconds=3600, **PAGE_SETTINGS)
    assert PageLinks.from_settings(short) == PageLinks(BASE, SECRET.encode(), timedelta(hours=1))
    with pytest.raises(ValueError, match="https://"):
        make_settings(tmp_path, public_base_url="orch.example.test")
    assert SECRET in make_settings(tmp_path, **PAGE_SETTINGS).secret_values()


def test_production_refuses_a_guessable_page_key(tmp_path: Path) -> None:
    settings = make_settings(
        tmp_path,
        app_env="production",
        database_url="postgresql+asyncpg://u:p@db:5432/o",
        api_key="k" * 32,
        page_link_secret="short",
    )
    with pytest.raises(ConfigurationError, match="PAGE_LINK_SECRET"):
        settings.check_startable()


# --- over HTTP ---------------------------------------------------------------------------


@asynccontextmanager
async def _app(settings: Settings) -> AsyncIterator[httpx.AsyncClient]:
    app = create_app(settings)
    async with LifespanManager(app) as manager:
        transport = httpx.ASGITransport(app=manager.app, client=("203.0.113.9", 40000))
        async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
            yield client


async def _project_with_vision(db: Database, audit: AuditLog, markdown: str) -> uuid.UUID:
    async with db.session_scope() as session:
        actor = Actor(await github_identity(session, "ada"), Channel.GITHUB)
        project = await create_project(
            session, audit, name="Tiny Bakery", owner=actor, github_repo="acme/bakery"
        )
        session.add(
            VisionDocument(
                project_id=project.id,
                version=1,
                markdown=markdown,
                content_hash=content_hash(markdown),
                created_by_id=actor.identity.id,
            )
        )
        return project.id


def _audit_lines(settings: Settings) -> list[dict[str, Any]]:
    path = settings.audit_log_path
    lines = path.read_text().splitlines() if path.exists() else []
    return [json.loads(line) for line in lines]


async def test_a_good_link_shows_the_page_and_nothing_else_does(
    tmp_path: Path, database_url: str, db: Database
) -> None:
    settings = make_settings(tmp_path, database_url=database_url, **PAGE_SETTINGS)
    project_id = await _project_with_vision(
        db,
        AuditLog(settings.audit_log_path),
        "# Tiny Bakery: Vision\n\n## What it is\n\nOrders for a small bakery.\n",
    )
    links = _links()
    good = links.token(project_id)
    expired = _links(ttl=timedelta(days=-30)).token(project_id)
    deleted = links.token(uuid.uuid4())
    rotated = _links("the-old-secret-0123456789").token(project_id)
    async with _app(settings) as client:
        page = await client.get(f"/page/{good}")
        refused = {
            "missing": await client.get("/page"),
            "malformed": await client.get("/page/not-a-link"),
            "expired": await client.get(f"/page/{expired}"),
            "deleted": await client.get(f"/page/{deleted}"),
            "rotated": await client.get(f"/page/{rotated}"),
            "tampered": await client.get(f"/page/{good[:-1]}{'A' if good[-1] != 'A' else 'B'}"),
        }

    assert page.status_code == 200
    assert page.headers["content-type"].startswith("text/html")
    assert "Tiny Bakery: Vision" in page.text
    assert "Orders for a small bakery." in page.text
    assert page.headers["cache-control"] == "no-store"
    assert page.headers["referrer-policy"] == "no-referrer"
    assert "default-src 'none'" in page.headers["content-security-policy"]
    # Every refusal looks the same: a guesser learns nothing about why.
    assert {r.status_code for r in refused.values()} == {404}
    assert len({r.text for r in refused.values()}) == 1
    assert "/page" in refused["missing"].text
    denied = [e for e in _audit_lines(settings) if e["result"] == "denied"]
    reasons = [e["details"]["reason"] for e in denied]
    assert reasons == [
        "project page link missing",
        "project page link malformed",
        "project page link expired",
        "project page link for a deleted project",
        "project page link bad signature",
        "project page link bad signature",
    ]
    assert {e["action"] for e in denied} == {"unauthorized_access"}
    assert {e["ip_address"] for e in denied} == {"203.0.113.9"}
    # No token, good or bad, is written down.
    log = settings.audit_log_path.read_text()
    assert good.split(".")[2] not in log
    assert expired.split(".")[2] not in log


@pytest.mark.parametrize(
    "token",
    ["%00", "a" * 5000, "\u00e4.1.x", f"{'0' * 32}.1.{'x' * 1000}", "a.b.c.d", "%20"],
)
async def test_odd_links_are_the_same_404(
    tmp_path: Path, database_url: str, db: Database, token: str
) -> None:
    settings = make_settings(tmp_path, database_url=database_url, **PAGE_SETTINGS)
    async with _app(settings) as client:
        response = await client.get(f"/page/{token}")
        missing = await client.get("/page")
    assert response.status_code == 404
    assert response.text == missing.text


async def test_without_pages_set_up_every_link_is_refused(
    tmp_path: Path, database_url: str, db: Database
) -> None:
    settings = make_settings(tmp_path, database_url=database_url)
    project_id = await _project_with_vision(
        db, AuditLog(settings.audit_log_path), "# Tiny Bakery: Vision\n"
    )
    async with _app(settings) as client:
        response = await client.get(f"/page/{_links().token(project_id)}")
    assert response.status_code == 404
    [line] = _audit_lines(settings)[-1:]
    assert line["details"]["reason"] == "project pages are not set up"


async def test_the_visions_words_are_shown_never_run(
    tmp_path: Path, database_url: str, db: Database
) -> None:
    settings = make_settings(tmp_path, database_url=database_url, **PAGE_SETTINGS)
    markdown = (
        "# Tiny Bakery: Vision\n\n<script>alert('x')</script>\n\n"
        "[a link](javascript:alert(1)) and <img src=x onerror=alert(2)>\n"
    )
    project_id = await _project_with_vision(db, AuditLog(settings.audit_log_path), markdown)
    async with _app(settings) as client:
        page = await client.get(f"/page/{_links().token(project_id)}")
    assert page.status_code == 200
    assert "<script>" not in page.text
    assert "&lt;script&gt;alert" in page.text
    assert "<img src=x" not in page.text
    assert 'href="javascript:' not in page.text


# --- in a journey ------------------------------------------------------------------------


@pytest.fixture
def journey_overrides() -> dict[str, Any]:
    return dict(PAGE_SETTINGS)


def _token_in(text: str) -> str:
    found = LINK.search(text)
    assert found is not None, text
    return found.group(0).removeprefix(f"{BASE}/page/")


async def test_the_bot_sends_the_link_and_the_page_follows_the_build(journey: Journey) -> None:
    await brainstorm_to_vision_gate(journey)
    [question] = [c for c in journey.bot_comments() if "is this what you want" in c]
    token = _token_in(question)
    await journey.comment("@orchestrator /page")
    assert _token_in(journey.last_reply()) == token  # the same link within the hour

    async with _app(journey.settings) as client:
        at_vision = (await client.get(f"/page/{token}")).text
        await journey.comment("@orchestrator /approve")  # the vision
        at_plan = (await client.get(f"/page/{token}")).text

    assert "widgets: Vision" in at_vision
    assert "Waiting for your decision" in at_vision
    assert "The vision</strong> for build #1" in at_vision
    assert "not approved yet" in at_vision
    assert "Waited for a decision on the vision" in at_vision
    assert "acme/widgets" in at_vision

    assert "approved" in at_plan
    assert "not approved yet" not in at_plan
    assert "Approved by @ada: the vision" in at_plan
    assert "Prime: SCAR reads the project" in at_plan
    assert "Prime: done" in at_plan
    assert "The plan</strong> for build #1" in at_plan
    assert re.search(r"AI so far: [\d,]+ AI tokens", at_plan)
    # The build's story in the order it happened, whichever clock stamped each step.
    story = [
        "Build #1 started",
        "Vision: agree on what we are building",
        "Waited for a decision on the vision",
        "Approved by @ada: the vision",
        "Vision: done",
        "Prime: SCAR reads the project",
        "Prime: done",
        "Plan: SCAR plans the change",
        "Plan: done",
        "Waited for a decision on the plan",
    ]
    positions = [at_plan.index(step) for step in story]
    assert positions == sorted(positions), [
        s for _, s in sorted(zip(positions, story, strict=True))
    ]


async def test_page_without_pages_set_up_says_so(journey: Journey) -> None:
    journey.settings = journey.settings.model_copy(
        update={"public_base_url": None, "page_link_secret": None}
    )
    await brainstorm_to_vision_gate(journey)
    [question] = [c for c in journey.bot_comments() if "is this what you want" in c]
    assert LINK.search(question) is None
    await journey.comment("@orchestrator /page")
    assert PAGE_NOT_SET_UP in journey.last_reply()
