"""Schemathesis over every operation of `/openapi.json`: no 5xx, answers as documented.

The app runs as `orchestrator serve` runs it: `create_app(settings)` inside its lifespan
(`asgi_lifespan.LifespanManager`) on a real, migrated PostgreSQL, with an API key, both
webhook secrets and IP filtering off. It lives on an event loop of its own in a thread
(`LiveApp`), so the app, its pools and every request share one loop while Hypothesis drives
the synchronous tests. The schema is the one the running app serves at `/openapi.json`
(`schemathesis.openapi.from_dict`: `from_asgi` would start a second lifespan of its own).

Every response is checked with `not_a_server_error`, `status_code_conformance`,
`content_type_conformance` and `response_schema_conformance`. Data seeded first (projects
with runs, phases, pending and decided gates, vision documents, inbound events) gives the
fuzzer real ids besides random ones, and explicit calls walk each documented answer once.
The webhook routes take a raw body the schema cannot describe, so they get strategies of
their own: any JSON or bytes, any headers, mostly right so that requests get past one check
to the next (signature included). Everything is derandomized: the same requests each run.

What the fuzzing found in `src/` was fixed; each finding is kept as a `test_finding_*`
regression test.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import os
import threading
import uuid
from collections import Counter
from collections.abc import AsyncIterator, Callable, Iterator
from concurrent.futures import Future
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
import schemathesis
from asgi_lifespan import LifespanManager
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from requests.structures import CaseInsensitiveDict
from schemathesis import Case, GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.core.failures import FailureGroup
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)
from sqlalchemy import select, text

from project_orchestrator.app import create_app
from project_orchestrator.audit import AuditLog
from project_orchestrator.config import Settings
from project_orchestrator.db.engine import Database, create_database
from project_orchestrator.db.models import metadata
from project_orchestrator.db.types import Channel
from project_orchestrator.events.models import InboundEvent
from project_orchestrator.projects.models import MemberRole, Project, ProjectMember
from project_orchestrator.projects.service import Actor, create_project, github_identity
from project_orchestrator.queue.schema import QUEUE_TABLES
from project_orchestrator.vision.models import VisionDocument
from project_orchestrator.workflow.models import Phase, WorkflowRun
from project_orchestrator.workflow.service import Workflow
from tests.conftest import make_settings

pytestmark = pytest.mark.slow

KEY = "fuzz-api-key-0123456789abcdef"
AUTH = {"Authorization": f"Bearer {KEY}"}
GITHUB_SECRET = "fuzz-github-secret-0123456789"
TELEGRAM_SECRET = "fuzz-telegram-secret_0123456789"
TELEGRAM_HEADER = "X-Telegram-Bot-Api-Secret-Token"
BASE_URL = "http://testserver"
CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_schema_conformance,
]
MAX_EXAMPLES = 50
WEBHOOK_EXAMPLES = 50
TIMEOUT_SECONDS = 30.0


def _settings(tmp_path: Path, database_url: str) -> Settings:
    return make_settings(
        tmp_path,
        app_env="development",
        database_url=database_url,
        api_key=KEY,
        github_webhook_secret=GITHUB_SECRET,
        telegram_webhook_secret=TELEGRAM_SECRET,
        TELEGRAM_MODE="webhook",
        WEBHOOK_IP_FILTERING_ENABLED=False,
        # Far above what a run sends, so the checks behind the limiter are the ones fuzzed.
        default_rate_limit="100000/minute",
        # The test client is a proxy: calls without the key come from addresses of their
        # own (`_stranger`), so the failed-authentication limit does not turn them to 429.
        trusted_proxies="127.0.0.1/32",
    )


def _operations(openapi: dict[str, Any]) -> list[str]:
    methods = {"get", "put", "post", "delete", "patch", "head", "options", "trace"}
    return sorted(
        f"{method.upper()} {path}"
        for path, item in openapi["paths"].items()
        for method in item
        if method in methods
    )


# Read from the app itself, so a new route is fuzzed (and counted) without an edit here.
OPERATIONS = _operations(
    create_app(_settings(Path("unused"), "postgresql://unused@localhost/unused")).openapi()
)


# --- seeding ----------------------------------------------------------------------------


@dataclass
class Seeded:
    """Ids of what the seeding stored, for the fuzzer to aim at."""

    projects: list[uuid.UUID] = field(default_factory=list)
    # (project_id, gate_id) pairs the fuzzer may use.
    pending_gates: list[tuple[uuid.UUID, uuid.UUID]] = field(default_factory=list)
    decided_gates: list[tuple[uuid.UUID, uuid.UUID]] = field(default_factory=list)
    # A pending gate per verb that only the explicit calls decide, so their answers do not
    # depend on what the fuzzing did before.
    reserved: dict[str, tuple[uuid.UUID, uuid.UUID]] = field(default_factory=dict)
    pools: dict[str, list[tuple[uuid.UUID, uuid.UUID]]] = field(
        default_factory=lambda: {"approve": [], "reject": []}
    )
    events: list[int] = field(default_factory=list)


@asynccontextmanager
async def _database(url: str) -> AsyncIterator[Database]:
    db = create_database(url, pool_size=2, max_overflow=0)
    try:
        yield db
    finally:
        await db.dispose()


async def _truncate(url: str) -> None:
    """The session's database is shared: leave it empty, as the `db` fixture does."""
    tables = [t.name for t in reversed(metadata.sorted_tables)] + list(QUEUE_TABLES)
    async with _database(url) as db, db.engine.begin() as conn:
        await conn.execute(text(f"TRUNCATE {', '.join(tables)} RESTART IDENTITY CASCADE"))


async def _owner(db: Database) -> Actor:
    async with db.session_scope() as session:
        return Actor(await github_identity(session, "ada"), Channel.GITHUB)


async def _new_project(
    db: Database, workflow: Workflow, name: str, **where: Any
) -> tuple[uuid.UUID, uuid.UUID]:
    """A project owned by ada, its first run waiting at the vision gate: (project, gate)."""
    async with db.session_scope() as session:
        owner = Actor(await github_identity(session, "ada"), Channel.GITHUB)
        project = await create_project(session, workflow.audit, name=name, owner=owner, **where)
        await workflow.start_run(session, project, owner, f"a {name.lower()} shelf")
    gate = await _new_vision(db, workflow, project.id, f"# {name}: Vision\n\nA place for {name}.")
    return project.id, gate


async def _new_vision(
    db: Database, workflow: Workflow, project_id: uuid.UUID, markdown: str
) -> uuid.UUID:
    """A new vision version and the gate asking for it (voiding the previous one)."""
    async with db.session_scope() as session:
        versions = await session.execute(
            select(VisionDocument.id).where(VisionDocument.project_id == project_id)
        )
        document = VisionDocument(
            project_id=project_id,
            version=len(versions.all()) + 1,
            markdown=markdown,
            content_hash=hashlib.sha256(markdown.encode()).hexdigest(),
        )
        session.add(document)
        await session.flush()
        project = await session.get(Project, project_id)
        assert project is not None
        owner = Actor(await github_identity(session, "ada"), Channel.GITHUB)
        return (await workflow.open_vision_gate(session, project, owner, document)).id


async def _seed_projects(db: Database, audit_path: Path, seeded: Seeded) -> None:
    """Widgets and Gadgets (grace approves there too) wait at their vision gate; Gizmos has
    a voided and an approved gate, two visions, and is planning; Doohickeys and Thingamajigs
    are for the explicit calls; eight more wait for the fuzzer's decisions."""
    workflow = Workflow(AuditLog(audit_path))
    widgets = await _new_project(
        db, workflow, "Widgets", github_repo="acme/widgets", github_issue_number=7
    )
    gadgets = await _new_project(db, workflow, "Gadgets", github_repo="acme/gadgets")
    async with db.session_scope() as session:
        grace = await github_identity(session, "grace")
        session.add(
            ProjectMember(project_id=gadgets[0], identity_id=grace.id, role=MemberRole.APPROVER)
        )
    gizmos, voided = await _new_project(db, workflow, "Gizmos", telegram_chat_id=555)
    approved = await _new_vision(db, workflow, gizmos, "# Gizmos\n\nSecond thoughts. " + "x" * 900)
    async with db.session_scope() as session:
        project = await session.get(Project, gizmos)
        assert project is not None
        await workflow.decide(session, project, await _owner(db), approve=True)
    async with db.session_scope() as session:
        run = (
            await session.execute(select(WorkflowRun).where(WorkflowRun.project_id == gizmos))
        ).scalar_one()
        prime = await workflow.latest_attempt(session, run.id, Phase.PRIME)
        assert prime is not None
        await workflow.phase_succeeded(session, run, prime, "p" * 1200)
    seeded.reserved["approve"] = await _new_project(db, workflow, "Doohickeys")
    seeded.reserved["reject"] = await _new_project(db, workflow, "Thingamajigs")
    for verb in ("approve", "reject"):
        seeded.reserved[f"nul {verb}"] = await _new_project(db, workflow, f"nul {verb}")
    # Gates for the fuzzer to decide, four per verb: each takes one decision, then is 409.
    for verb in ("approve", "reject"):
        for n in range(4):
            seeded.pools[verb].append(await _new_project(db, workflow, f"{verb} {n}"))
    seeded.projects += [widgets[0], gadgets[0], gizmos, seeded.reserved["approve"][0]]
    seeded.pending_gates += [widgets, gadgets]
    seeded.decided_gates += [(gizmos, voided), (gizmos, approved)]


def _sign(body: bytes) -> str:
    return "sha256=" + hmac.new(GITHUB_SECRET.encode(), body, hashlib.sha256).hexdigest()


def _github_headers(body: bytes, delivery: str | None = None) -> dict[str, str]:
    return {
        "Content-Type": "application/json",
        "X-GitHub-Event": "issue_comment",
        "X-GitHub-Delivery": delivery or str(uuid.uuid4()),
        "X-Hub-Signature-256": _sign(body),
    }


COMMENT = {
    "action": "created",
    "issue": {"number": 7, "title": "Build me a thing"},
    "comment": {"id": 1001, "body": "@orchestrator /status", "user": {"login": "ada"}},
    "repository": {"full_name": "acme/widgets", "owner": {"login": "acme"}},
    "sender": {"login": "ada"},
}
UPDATE = {"update_id": 1001, "message": {"message_id": 1, "chat": {"id": 555}, "text": "/help"}}


async def _seed_events(client: httpx.AsyncClient, database_url: str, seeded: Seeded) -> None:
    """Inbound events through the real webhook routes; the GitHub one marked failed."""
    body = json.dumps(COMMENT).encode()
    github = await client.post("/webhooks/github", content=body, headers=_github_headers(body))
    assert github.status_code == 202, github.text
    telegram = await client.post(
        "/webhooks/telegram",
        content=json.dumps(UPDATE).encode(),
        headers={"Content-Type": "application/json", TELEGRAM_HEADER: TELEGRAM_SECRET},
    )
    assert telegram.status_code == 200, telegram.text
    async with _database(database_url) as db:
        async with db.engine.begin() as conn:
            await conn.execute(
                text(
                    "UPDATE inbound_events SET status = 'failed', attempts = 6, "
                    "last_error = 'handler failed' WHERE source = 'github'"
                )
            )
        async with db.session_scope() as session:
            ids = await session.execute(select(InboundEvent.id).order_by(InboundEvent.id))
            seeded.events += list(ids.scalars())


# --- the app on a loop of its own -------------------------------------------------------


class LiveApp:
    """`create_app(settings)` inside `LifespanManager`, on an event loop in a thread."""

    def __init__(self, settings: Settings, database_url: str) -> None:
        self.settings = settings
        self.database_url = database_url
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, name="fuzz-app", daemon=True)
        self.client: httpx.AsyncClient | None = None
        self.seeded = Seeded()
        self._stop = asyncio.Event()
        self._serving: Future[None] | None = None

    def start(self) -> None:
        self.thread.start()
        ready: Future[None] = Future()
        self._serving = asyncio.run_coroutine_threadsafe(self._serve(ready), self.loop)
        ready.result(120)

    def stop(self) -> None:
        try:
            self.loop.call_soon_threadsafe(self._stop.set)
            if self._serving is not None:
                self._serving.result(60)
        finally:
            self.loop.call_soon_threadsafe(self.loop.stop)
            self.thread.join(10)
            self.loop.close()

    async def _serve(self, ready: Future[None]) -> None:
        # One task from startup to shutdown: LifespanManager must leave from where it entered.
        try:
            await _truncate(self.database_url)
            async with _database(self.database_url) as db:
                await _seed_projects(db, self.settings.audit_log_path, self.seeded)
            app = create_app(self.settings)
            async with LifespanManager(app, startup_timeout=30, shutdown_timeout=30) as manager:
                transport = httpx.ASGITransport(
                    app=manager.app,
                    client=("127.0.0.1", 40000),
                    # A failure comes back as the 500 a server sends, for the checks to see.
                    raise_app_exceptions=False,
                )
                async with httpx.AsyncClient(transport=transport, base_url=BASE_URL) as client:
                    self.client = client
                    await _seed_events(client, self.database_url, self.seeded)
                    ready.set_result(None)
                    await self._stop.wait()
        except BaseException as exc:
            if not ready.done():
                ready.set_exception(exc)
            raise
        finally:
            await _truncate(self.database_url)

    def request(self, method: str, url: str, **kwargs: Any) -> httpx.Response:
        assert self.client is not None
        sent = asyncio.run_coroutine_threadsafe(
            self.client.request(method, url, **kwargs), self.loop
        )
        return sent.result(TIMEOUT_SECONDS)


@pytest.fixture(scope="module")
def live(tmp_path_factory: pytest.TempPathFactory, database_url: str) -> Iterator[LiveApp]:
    with pytest.MonkeyPatch.context() as env:
        # conftest's `_clean_environment`, for the module: the developer's settings stay out.
        own = {name.lower() for name in Settings.model_fields} | {
            "telegram_mode",
            "webhook_ip_filtering_enabled",
            "anthropic_api_key",
            "anthropic_base_url",
        }
        for name in list(os.environ):
            if name.lower() in own:
                env.delenv(name)
        app = LiveApp(_settings(tmp_path_factory.mktemp("fuzz"), database_url), database_url)
        try:
            app.start()
            yield app
        finally:
            app.stop()


@pytest.fixture(scope="module")
def schema(live: LiveApp) -> schemathesis.BaseSchema:
    served = live.request("GET", "/openapi.json")
    assert served.status_code == 200
    return schemathesis.openapi.from_dict(served.json())


# --- sending and checking ---------------------------------------------------------------


@dataclass(frozen=True)
class Call:
    """A case and the request carrying it. `raw`: the body is ours (the webhooks)."""

    case: Case[Any]
    headers: dict[str, str]
    content: bytes = b""
    raw: bool = False


# Over the module: requests sent per operation, those the fuzzer generated, and answers
# per (operation, status).
SENT: Counter[str] = Counter()
FUZZED: Counter[str] = Counter()
ANSWERS: Counter[tuple[str, int]] = Counter()


def _request_kwargs(call: Call) -> dict[str, Any]:
    case = call.case
    if call.raw:
        return {
            "method": case.method,
            "url": case.formatted_path,
            # Bytes: httpx would encode text as ASCII, and headers travel as Latin-1.
            "headers": {name: value.encode("latin-1") for name, value in call.headers.items()},
            "content": call.content,
        }
    prepared = case.as_transport_kwargs(base_url=BASE_URL, headers=call.headers)
    # Ours over what the case carries: a negative case may have dropped the key.
    headers = CaseInsensitiveDict(prepared["headers"])
    headers.update(call.headers)
    assert "files" not in prepared, "no operation takes a multipart body"
    kwargs: dict[str, Any] = {
        "method": prepared["method"],
        "url": prepared["url"],
        "params": prepared.get("params") or None,
        "headers": dict(headers),
        "cookies": prepared.get("cookies") or None,
    }
    if "json" in prepared:
        kwargs["json"] = prepared["json"]
    elif prepared.get("data") is not None:
        data = prepared["data"]
        kwargs["content"] = data.encode() if isinstance(data, str) else data
    return kwargs


def _describe(response: httpx.Response) -> str:
    """The request as sent, and the answer: what a finding's reproduction needs."""
    sent = response.request
    return (
        f"Request: {sent.method} {sent.url}\n"
        f"Headers: {dict(sent.headers)}\n"
        f"Body: {sent.content!r:.800}\n"
        f"Answer: {response.status_code} {response.headers.get('content-type')} "
        f"{response.text[:800]}"
    )


def check(
    live: LiveApp, call: Call, *, expect: int | None = None, but: str | None = None
) -> httpx.Response:
    """Send the call and run the checks on the answer (and its status, when expected).

    A known finding (FINDINGS) excuses the checks it breaks, for the answers it matches
    only; `but` names one that is not excused (its own test).
    """
    response = live.request(**_request_kwargs(call))
    label = f"{call.case.method} {call.case.path}"
    SENT[label] += 1
    ANSWERS[label, response.status_code] += 1
    excused: set[Any] = set()
    for name, finding in FINDINGS.items():
        if name != but and finding.matches(label, response):
            SEEN[name] += 1
            excused.update(finding.excuses)
    checks = [c for c in CHECKS if c not in excused]
    try:
        if checks:  # none would mean schemathesis' default set
            call.case.validate_response(response, checks=checks)
        assert expect is None or response.status_code == expect, f"expected {expect}"
    except (AssertionError, FailureGroup) as exc:
        raise AssertionError(f"{exc}\n{_describe(response)}") from None
    return response


# --- findings ---------------------------------------------------------------------------


# A finding excuses the checks it breaks, for the answers it matches only, so the fuzz
# tests keep guarding everything else while a fix is pending.


@dataclass(frozen=True)
class Finding:
    """`matches(label, response)`: this answer is the finding; `excuses`: the checks it
    breaks."""

    excuses: tuple[Any, ...]
    matches: Callable[[str, httpx.Response], bool]


INT64 = range(-(2**63), 2**63)
DECISIONS = (
    "POST /api/v1/projects/{project_id}/gates/{gate_id}/approve",
    "POST /api/v1/projects/{project_id}/gates/{gate_id}/reject",
)
EVENT_ROUTES = (
    "GET /api/v1/events",
    "GET /api/v1/events/{event_id}",
    "POST /api/v1/events/{event_id}/replay",
)


def _beyond_int64(value: str | None) -> bool:
    try:
        return value is not None and int(value) not in INT64
    except ValueError:
        return False


def _json(content: bytes) -> Any:
    try:
        return json.loads(content)
    except ValueError:
        return None


def _sent_json(response: httpx.Response) -> Any:
    return _json(response.request.content)


def _error_body(response: httpx.Response) -> bool:
    body = _json(response.content)
    return isinstance(body, dict) and set(body) == {"error", "message"}


# Nothing is excused today. The six findings of the first fuzz run (500s for ids and
# offsets past bigint and for NUL in feedback; undocumented 401/404 on /api/v1/events,
# /metrics documented as JSON, FastAPI's 400 for a body that is not UTF-8) were fixed in
# src/ and are guarded by the `test_finding_*` tests below.
FINDINGS: dict[str, Finding] = {}
# Answers each finding excused, over the module.
SEEN: Counter[str] = Counter()


# --- strategies -------------------------------------------------------------------------

# Header values as a server hands them on: printable Latin-1, surrounding blanks removed.
HEADER_TEXT = st.text(
    st.characters(codec="latin-1", min_codepoint=0x20, exclude_characters="\x7f"), max_size=60
).map(str.strip)
# Texts that have broken services before, besides what Hypothesis makes up.
NASTY_TEXT = ["", " \n ", "\x00", "a\x00b", "\u202eevil", "\U0001f4a5" * 8, "x" * 5000, "%s%n"]
JSON_VALUES = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=30),
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=12), inner, max_size=4)
    ),
    max_leaves=12,
)


def _encode(value: Any) -> bytes:
    return json.dumps(value, ensure_ascii=False).encode("utf-8")


def _path_ids(operation: Any, seeded: Seeded) -> list[dict[str, Any]]:
    """Real path parameters for the operation, from what was seeded."""
    names = {parameter.name for parameter in operation.path_parameters}
    if names == {"project_id", "gate_id"}:
        pairs = seeded.pending_gates + seeded.decided_gates
        # A real gate under another real project: the pair, not the ids, is unknown.
        pairs.append((seeded.projects[0], seeded.decided_gates[-1][1]))
        return [{"project_id": str(p), "gate_id": str(g)} for p, g in pairs]
    if names == {"project_id"}:
        return [{"project_id": str(p)} for p in seeded.projects]
    if names == {"event_id"}:
        return [{"event_id": event} for event in seeded.events]
    return []


def _generated(operation: Any, seeded: Seeded) -> st.SearchStrategy[Call]:
    """Schemathesis' own cases, valid and invalid, on random and on real ids."""
    modes = [GenerationMode.POSITIVE]
    if any(True for _ in operation.iter_parameters()) or operation.body:
        modes.append(GenerationMode.NEGATIVE)
    strategies = [operation.as_strategy(mode) for mode in modes]
    ids = _path_ids(operation, seeded)
    if ids:
        strategies.append(
            st.sampled_from(ids).flatmap(lambda given: operation.as_strategy(path_parameters=given))
        )
    return st.one_of(strategies).map(_authorized)


def _authorized(case: Case[Any]) -> Call:
    # Every call carries the key: the fuzzer gets past the authentication to the handlers.
    return Call(case, dict(AUTH))


def _decisions(operation: Any, seeded: Seeded) -> st.SearchStrategy[Call]:
    """Pending gates decided by people who may (ada owns them all, grace approves on
    Gadgets) and who may not, with any feedback."""
    verb = operation.path.rsplit("/", 1)[1]
    feedback = {"feedback": st.sampled_from(NASTY_TEXT) | st.text(max_size=40)}
    body = st.fixed_dictionaries(
        {"decided_by": st.sampled_from(["ada", "Ada", "grace", "mallory"])}
        | (feedback if verb == "reject" else {}),
        optional=feedback if verb == "approve" else {},
    )
    gates = seeded.pools[verb] + seeded.pending_gates
    return (
        st.tuples(st.sampled_from(gates), body)
        .map(
            lambda drawn: operation.Case(
                path_parameters={"project_id": str(drawn[0][0]), "gate_id": str(drawn[0][1])},
                body=drawn[1],
                media_type="application/json",
            )
        )
        .map(_authorized)
    )


def _mostly(draw: st.DrawFn, right: st.SearchStrategy[Any], wrong: st.SearchStrategy[Any]) -> Any:
    """Usually the right value, so requests get past one check to the next; sometimes a
    wrong one; sometimes none (None: leave it out). Right is the simplest choice, the one
    Hypothesis favours and shrinks to, so a failure shows with every other part right."""
    pick = draw(st.integers(0, 7))
    if pick == 7:
        return None
    return draw(wrong) if pick == 6 else draw(right)


def _headers(
    draw: st.DrawFn, plan: dict[str, tuple[st.SearchStrategy[Any], ...]]
) -> dict[str, str]:
    drawn = {name: _mostly(draw, *choices) for name, choices in plan.items()}
    return {name: value for name, value in drawn.items() if value is not None}


def _body(draw: st.DrawFn, objects: st.SearchStrategy[dict[str, Any]]) -> bytes:
    """Mostly a JSON object of the expected shape; else any JSON value, or any bytes."""
    body: bytes = _mostly(draw, objects.map(_encode), JSON_VALUES.map(_encode))
    return draw(st.binary(max_size=80)) if body is None else body


GITHUB_PAYLOADS = st.builds(
    lambda known, extra: {**extra, **known},
    st.fixed_dictionaries(
        {},
        optional={
            "action": st.sampled_from(["created", "opened", "closed"]) | JSON_VALUES,
            "repository": st.fixed_dictionaries(
                {}, optional={"full_name": st.sampled_from(["acme/widgets"]) | JSON_VALUES}
            )
            | JSON_VALUES,
            "issue": JSON_VALUES,
            "comment": st.fixed_dictionaries({}, optional={"body": JSON_VALUES}) | JSON_VALUES,
            "sender": JSON_VALUES,
        },
    ),
    st.dictionaries(st.text(max_size=12), JSON_VALUES, max_size=3),
)
TELEGRAM_UPDATES = st.builds(
    lambda update_id, kind, body: {"update_id": update_id, kind: body},
    st.integers(0, 2**31) | st.integers(2**63 - 2, 2**64 + 2) | st.integers() | JSON_VALUES,
    st.sampled_from(["message", "edited_message", "callback_query", "poll"]) | st.text(max_size=8),
    st.fixed_dictionaries(
        {},
        optional={
            "chat": st.fixed_dictionaries({}, optional={"id": st.integers() | JSON_VALUES}),
            "message": st.fixed_dictionaries({}, optional={"chat": JSON_VALUES}),
            "from": st.fixed_dictionaries({}, optional={"id": JSON_VALUES}),
            "text": JSON_VALUES,
        },
    )
    | JSON_VALUES,
)


@st.composite
def _github_calls(draw: st.DrawFn, operation: Any) -> Call:
    """Deliveries of any shape; each header usually right, so most reach the next check."""
    body = _body(draw, GITHUB_PAYLOADS)
    headers = _headers(
        draw,
        {
            "Content-Type": (
                st.sampled_from(["application/json", "Application/JSON; charset=utf-8"]),
                st.just("text/plain") | HEADER_TEXT,
            ),
            "X-GitHub-Event": (st.sampled_from(["issue_comment", "ping", "push"]), HEADER_TEXT),
            "X-GitHub-Delivery": (st.uuids().map(str), HEADER_TEXT),
            "X-Hub-Signature-256": (
                st.just(_sign(body)),
                st.binary(min_size=32, max_size=32).map(lambda b: "sha256=" + b.hex())
                | HEADER_TEXT,
            ),
        },
    )
    return Call(operation.Case(headers=headers), headers, body, raw=True)


@st.composite
def _telegram_calls(draw: st.DrawFn, operation: Any) -> Call:
    """Updates of any shape (update_id of any type and size); the secret usually right."""
    body = _body(draw, TELEGRAM_UPDATES)
    headers = _headers(
        draw,
        {
            "Content-Type": (st.just("application/json"), HEADER_TEXT),
            TELEGRAM_HEADER: (st.just(TELEGRAM_SECRET), HEADER_TEXT),
        },
    )
    return Call(operation.Case(headers=headers), headers, body, raw=True)


def _strategies(operation: Any, seeded: Seeded) -> list[st.SearchStrategy[Call]]:
    """What to fuzz the operation with: each strategy gets its own run of examples."""
    if operation.label == "POST /webhooks/github":
        return [_github_calls(operation)]
    if operation.label == "POST /webhooks/telegram":
        return [_telegram_calls(operation)]
    if operation.label in DECISIONS:
        return [_generated(operation, seeded), _decisions(operation, seeded)]
    return [_generated(operation, seeded)]


# --- explicit calls: each documented answer once ------------------------------------------


def _raw(operation: Any, body: bytes, headers: dict[str, str]) -> Call:
    return Call(operation.Case(headers=headers), headers, body, raw=True)


def _explicit(operation: Any, seeded: Seeded) -> list[tuple[Call, int]]:
    """(call, expected status) pairs, sent before the fuzzing."""
    label = operation.label

    def api(status: int, **parts: Any) -> tuple[Call, int]:
        if "body" in parts:
            parts.setdefault("media_type", "application/json")
        return Call(operation.Case(**parts), dict(AUTH)), status

    if label == "GET /api/v1/projects":
        return [api(200), api(200, query={"limit": 1, "offset": 1}), api(422, query={"limit": 0})]
    if label == "GET /api/v1/projects/{project_id}":
        return [api(200, path_parameters={"project_id": str(p)}) for p in seeded.projects] + [
            api(404, path_parameters={"project_id": str(uuid.uuid4())}),
            api(422, path_parameters={"project_id": "not-a-uuid"}),
        ]
    if label in DECISIONS:
        widgets = seeded.pending_gates[0][0]
        gizmos, approved_gate = seeded.decided_gates[-1]
        project, gate = seeded.reserved[operation.path.rsplit("/", 1)[1]]
        mine = {"project_id": project, "gate_id": gate}
        stranger = {"decided_by": "mallory", "feedback": "no"}
        ada = {"decided_by": "ada", "feedback": "Blue."}
        return [
            api(403, path_parameters=mine, body=stranger),
            api(422, path_parameters=mine, body={"decided_by": "not a login", "feedback": "x"}),
            api(404, path_parameters={"project_id": widgets, "gate_id": approved_gate}, body=ada),
            api(404, path_parameters={"project_id": uuid.uuid4(), "gate_id": gate}, body=ada),
            api(200, path_parameters=mine, body=ada),
            api(409, path_parameters=mine, body=ada),
            api(409, path_parameters={"project_id": gizmos, "gate_id": approved_gate}, body=ada),
        ]
    if label == "GET /api/v1/events":
        return [api(200), api(200, query={"failed": True, "limit": 1})]
    if label == "GET /api/v1/events/{event_id}":
        return [api(200, path_parameters={"event_id": e}) for e in seeded.events] + [
            api(404, path_parameters={"event_id": 999_999}),
        ]
    if label == "POST /api/v1/events/{event_id}/replay":
        return [
            api(202, path_parameters={"event_id": seeded.events[0]}),
            api(404, path_parameters={"event_id": 999_999}),
        ]
    if label == "POST /webhooks/github":
        body = json.dumps(COMMENT).encode()
        signed = _github_headers(body, delivery="fuzz-explicit-1")
        not_object = b"[1, 2]"
        return [
            (_raw(operation, body, signed), 202),
            (_raw(operation, body, signed), 200),
            (_raw(operation, not_object, _github_headers(not_object)), 400),
            (_raw(operation, body, {**signed, "X-Hub-Signature-256": "sha256=00"}), 403),
            (_raw(operation, body, {**signed, "Content-Type": "text/plain"}), 415),
            (_raw(operation, body, {"Content-Type": "application/json"}), 400),
        ]
    if label == "POST /webhooks/telegram":
        update = json.dumps({**UPDATE, "update_id": 2002}).encode()
        good = {"Content-Type": "application/json", TELEGRAM_HEADER: TELEGRAM_SECRET}
        return [
            (_raw(operation, update, good), 200),
            (_raw(operation, update, good), 200),
            (_raw(operation, b'{"message": {}}', good), 400),
            (_raw(operation, update, {**good, TELEGRAM_HEADER: "wrong"}), 403),
            (_raw(operation, update, {"Content-Type": "application/json"}), 403),
        ]
    return [api(200)]


# --- the tests ----------------------------------------------------------------------------


@pytest.mark.parametrize("label", OPERATIONS)
def test_fuzz_operation(label: str, live: LiveApp, schema: schemathesis.BaseSchema) -> None:
    method, path = label.split(" ", 1)
    operation = schema[path][method]
    for call, status in _explicit(operation, live.seeded):
        check(live, call, expect=status)
    examples = WEBHOOK_EXAMPLES if path.startswith("/webhooks/") else MAX_EXAMPLES
    for strategy in _strategies(operation, live.seeded):
        _fuzz(live, strategy, examples)
    # Without parameters or body, every case is the same one: Hypothesis stops at it.
    varied = path.startswith("/webhooks/") or any(True for _ in operation.iter_parameters())
    least = len(_explicit(operation, live.seeded)) + (examples // 2 if varied else 1)
    assert SENT[label] >= least, f"only {SENT[label]} requests reached {label}"


def _fuzz(live: LiveApp, strategy: st.SearchStrategy[Call], examples: int) -> None:
    @settings(
        max_examples=examples,
        derandomize=True,  # the same cases on every run, in the same order
        database=None,
        deadline=None,
        suppress_health_check=list(HealthCheck),
    )
    @given(call=strategy)
    def fuzz(call: Call) -> None:
        FUZZED[f"{call.case.method} {call.case.path}"] += 1
        check(live, call)

    fuzz()


STRANGERS = iter(range(1, 1_000_000))


def _stranger() -> dict[str, str]:
    """A new address for a call without the key (one address would soon be rate-limited)."""
    n = next(STRANGERS)
    return {"X-Forwarded-For": f"198.18.{n // 250}.{n % 250 + 1}"}


def test_every_api_route_refuses_a_missing_or_wrong_key(
    live: LiveApp, schema: schemathesis.BaseSchema
) -> None:
    paths = live.request("GET", "/openapi.json").json()["paths"]
    secured = [
        (method, path)
        for method, path in (label.split(" ", 1) for label in OPERATIONS)
        if paths[path][method.lower()].get("security")
    ]
    assert len(secured) >= 7, "the API declares its bearer scheme"
    for method, path in secured:
        operation = schema[path][method]
        case = next(iter(_explicit(operation, live.seeded)))[0].case
        for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": KEY}):
            check(live, Call(case, {**headers, **_stranger()}), expect=401)


# --- what the fuzzing once found, kept as regression tests (all fixed in src/) -----------

BIG = 2**63


def _finding_call(operation: Any, **parts: Any) -> Call:
    if "body" in parts:
        parts.setdefault("media_type", "application/json")
    return _authorized(operation.Case(**parts))


def test_finding_offset_beyond_int64(live: LiveApp, schema: schemathesis.BaseSchema) -> None:
    operation = schema["/api/v1/projects"]["GET"]
    check(live, _finding_call(operation, query={"offset": BIG}), but="offset_beyond_int64")


def test_finding_event_id_beyond_int64(live: LiveApp, schema: schemathesis.BaseSchema) -> None:
    name = "event_id_beyond_int64"
    for path, method in (
        ("/api/v1/events/{event_id}", "GET"),
        ("/api/v1/events/{event_id}/replay", "POST"),
    ):
        operation = schema[path][method]
        for event_id in (BIG, -BIG - 1):
            check(live, _finding_call(operation, path_parameters={"event_id": event_id}), but=name)


def test_finding_nul_in_feedback(live: LiveApp, schema: schemathesis.BaseSchema) -> None:
    for verb in ("approve", "reject"):
        operation = schema["/api/v1/projects/{project_id}/gates/{gate_id}/" + verb]["POST"]
        project, gate = live.seeded.reserved[f"nul {verb}"]
        call = _finding_call(
            operation,
            path_parameters={"project_id": project, "gate_id": gate},
            body={"decided_by": "ada", "feedback": "a\x00b"},
        )
        check(live, call, but="nul_in_feedback")


def test_finding_events_401_404_undocumented(
    live: LiveApp, schema: schemathesis.BaseSchema
) -> None:
    name = "events_401_404_undocumented"
    for label in EVENT_ROUTES:
        method, path = label.split(" ", 1)
        operation = schema[path][method]
        unknown = {"event_id": 999_999} if "{" in path else {}
        check(
            live, Call(operation.Case(path_parameters=unknown), _stranger()), expect=401, but=name
        )
        if unknown:
            check(live, _finding_call(operation, path_parameters=unknown), expect=404, but=name)


def test_finding_metrics_content_type(live: LiveApp, schema: schemathesis.BaseSchema) -> None:
    operation = schema["/metrics"]["GET"]
    check(live, _finding_call(operation), expect=200, but="metrics_content_type")


def test_finding_undecodable_body_400(live: LiveApp, schema: schemathesis.BaseSchema) -> None:
    operation = schema["/api/v1/projects/{project_id}/gates/{gate_id}/approve"]["POST"]
    project, gate = live.seeded.reserved["approve"]
    headers = {**AUTH, "Content-Type": "application/json"}
    call = Call(
        operation.Case(path_parameters={"project_id": str(project), "gate_id": str(gate)}),
        headers,
        b"\x80",
        raw=True,
    )
    check(live, call, but="undecodable_body_400")


def test_every_documented_operation_was_fuzzed(
    live: LiveApp, request: pytest.FixtureRequest
) -> None:
    served = _operations(live.request("GET", "/openapi.json").json())
    assert served == OPERATIONS
    fuzz_items = [i for i in request.session.items if i.name.startswith("test_fuzz_operation[")]
    if len(fuzz_items) < len(OPERATIONS):
        pytest.skip("only part of the fuzzing was selected")
    fuzzed = sorted(label for label, sent in FUZZED.items() if sent)
    assert fuzzed == served
    assert len(fuzzed) == len(served)
    # Every handler was reached and answered successfully at least once, not only refusals.
    succeeded = sorted({label for (label, status), _ in ANSWERS.items() if status < 300})
    assert succeeded == served
    print("findings excused while fuzzing:", dict(SEEN))
