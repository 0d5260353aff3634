"""The outbox: messages leave only after the change they report commits, once, in order."""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import timedelta

import pytest
from github import GithubException
from sqlalchemy import select, text
from sqlalchemy.ext.asyncio import AsyncSession
from telegram import Bot

from project_orchestrator import keys
from project_orchestrator.channels import outbox
from project_orchestrator.channels.delivery import MAX_DELIVERY_ATTEMPTS, OutboxDelivery
from project_orchestrator.channels.github import GitHubPoster, PyGithubComments
from project_orchestrator.channels.models import OutboundMessage, OutboundStatus
from project_orchestrator.channels.staging import stage_comment, stage_message
from project_orchestrator.channels.telegram import TelegramSender
from project_orchestrator.db import leases
from project_orchestrator.db.engine import Database
from project_orchestrator.events.models import EventSource, InboundEvent
from project_orchestrator.events.processor import SourceHandler
from project_orchestrator.queue.worker import Workload
from project_orchestrator.workflow.models import GateKind, GateStatus
from tests.support.fake_github import FakeGitHub
from tests.support.fake_telegram import FakeTelegram
from tests.support.journey import ISSUE, REPO, Journey, brainstorm_to_vision_gate

CHAT = 4242
OTHER_CHAT = 4343


@pytest.fixture
async def sender(telegram: tuple[FakeTelegram, str]) -> AsyncIterator[TelegramSender]:
    bot = Bot("123456:TEST-token", base_url=f"{telegram[1]}/bot")
    await bot.initialize()
    yield TelegramSender(bot)
    await bot.shutdown()


@pytest.fixture
def delivery(db: Database, github: FakeGitHub, sender: TelegramSender) -> OutboxDelivery:
    github.add_issue(REPO, ISSUE)
    comments = PyGithubComments.connect(github.base_url, "ghp-test-token-123456")
    return OutboxDelivery(db, GitHubPoster(comments), sender)


async def _rows(db: Database) -> list[OutboundMessage]:
    async with db.session_scope() as session:
        found = await session.execute(select(OutboundMessage).order_by(OutboundMessage.id))
        return list(found.scalars())


# --- effects follow the transaction -------------------------------------------------------


@dataclass
class FailsOnceBeforeCommit:
    """The real handler decides, then the job fails before its transaction commits."""

    inner: SourceHandler
    github: FakeGitHub
    seen_at_fault: int | None = None

    async def handle(self, session: AsyncSession, event: InboundEvent) -> object:
        outcome = await self.inner.handle(session, event)
        if self.seen_at_fault is None:
            self.seen_at_fault = len(self.github.comments(REPO, ISSUE))
            raise RuntimeError("fault injected between the decision and the commit")
        return outcome


async def test_a_job_that_fails_after_deciding_has_said_nothing_and_its_retry_says_it_once(
    journey: Journey,
) -> None:
    await brainstorm_to_vision_gate(journey)
    before = len(journey.bot_comments())
    fault: list[FailsOnceBeforeCommit] = []

    def inject(workload: Workload) -> None:
        handlers = workload.processor.handlers
        wrapped = FailsOnceBeforeCommit(handlers[EventSource.GITHUB], journey.github)
        handlers[EventSource.GITHUB] = wrapped  # type: ignore[assignment]
        fault.append(wrapped)

    journey.shape_workload = inject
    said_before = len(journey.github.comments(REPO, ISSUE))
    await journey.comment("@orchestrator /approve")

    assert fault
    assert fault[0].seen_at_fault == said_before, (
        "the approval was decided, yet nothing had been said when the job failed"
    )
    approved = [c for c in journey.bot_comments()[before:] if c.startswith("Approved!")]
    assert len(approved) == 1
    assert journey.audit_actions().count("approval_granted") == 1  # the rollback said nothing
    assert [c.split()[1] for c in journey.scar_commands()] == ["prime", "plan-feature-github"]
    async with journey.db.session_scope() as session:
        event = (
            (await session.execute(select(InboundEvent).order_by(InboundEvent.id.desc())))
            .scalars()
            .first()
        )
        assert event is not None
        assert event.attempts == 2
        gates = (
            (
                await session.execute(
                    text("SELECT status FROM approval_gates WHERE kind = :kind"),
                    {"kind": GateKind.VISION.value},
                )
            )
            .scalars()
            .all()
        )
    assert list(gates) == [GateStatus.APPROVED.value]
    assert len(journey.bot_comments()) == len(set(journey.bot_comments())), "nothing twice"


async def test_a_rolled_back_transaction_leaves_nothing_to_send(
    db: Database, delivery: OutboxDelivery, github: FakeGitHub
) -> None:
    with contextlib.suppress(RuntimeError):
        async with db.session_scope() as session:
            await stage_comment(session, REPO, ISSUE, "k:rolled-back", "never said")
            raise RuntimeError("the change failed")
    await delivery.deliver(keys.github_conversation(REPO, ISSUE))
    assert github.comments(REPO, ISSUE) == []
    assert await _rows(db) == []


# --- delivery keeps each channel's promise ----------------------------------------------------


async def test_a_conversation_is_delivered_in_order_whoever_runs_its_jobs(
    db: Database, delivery: OutboxDelivery, telegram: tuple[FakeTelegram, str]
) -> None:
    for number in range(12):
        async with db.session_scope() as session:
            await stage_message(session, CHAT, f"k:{number}", f"message {number}")
            await stage_message(session, OTHER_CHAT, f"k:other:{number}", f"other {number}")
    conversations = [keys.telegram_conversation(CHAT), keys.telegram_conversation(OTHER_CHAT)]
    # Four workers' jobs at once, two per conversation: the lease lets one send at a time.
    await asyncio.gather(*(delivery.deliver(c) for c in conversations * 2))
    fake = telegram[0]
    assert [m["plain"] for m in fake.messages(CHAT)] == [f"message {n}" for n in range(12)]
    assert [m["plain"] for m in fake.messages(OTHER_CHAT)] == [f"other {n}" for n in range(12)]
    assert {r.status for r in await _rows(db)} == {OutboundStatus.SENT}


async def test_a_live_lease_defers_to_its_holder_and_a_dead_ones_lease_expires(
    db: Database, delivery: OutboxDelivery, telegram: tuple[FakeTelegram, str]
) -> None:
    conversation = keys.telegram_conversation(CHAT)
    async with db.session_scope() as session:
        await stage_message(session, CHAT, "k:waiting", "after the holder")
    lease = keys.outbox_lease(conversation)
    async with db.session_scope() as session:
        assert await leases.take(session, lease, "a-live-holder", timedelta(minutes=2))
    await delivery.deliver(conversation)
    assert telegram[0].messages(CHAT) == []  # the holder sends it, not this job
    # The holder's job comes back (its worker died): the lease is still its own.
    await delivery.deliver(conversation, "a-live-holder")
    assert [m["plain"] for m in telegram[0].messages(CHAT)] == ["after the holder"]
    async with db.session_scope() as session:
        await stage_message(session, CHAT, "k:later", "after the dead one")
        # A holder that died for good: its lease runs out, and the next job takes over.
        assert await leases.take(session, lease, "a-dead-holder", timedelta(seconds=-1))
    await delivery.deliver(conversation)
    assert [m["plain"] for m in telegram[0].messages(CHAT)][-1] == "after the dead one"
    async with db.session_scope() as session:
        assert (await session.execute(text("SELECT count(*) FROM work_leases"))).scalar() == 0


async def test_new_text_for_a_progress_message_during_its_delivery_is_not_lost(
    db: Database, delivery: OutboxDelivery, telegram: tuple[FakeTelegram, str]
) -> None:
    conversation = keys.telegram_conversation(CHAT)
    async with db.session_scope() as session:
        await stage_message(session, CHAT, "k:board", "planning", progress=True)
    holder = uuid.uuid4().hex
    mine, taken = await outbox.first_pending(db, conversation, holder, timedelta(minutes=1))
    assert mine
    assert taken is not None
    [sent] = await delivery.telegram.send(CHAT, taken.body)  # type: ignore[union-attr]
    async with db.session_scope() as session:  # the plan is done while that send is out
        await stage_message(session, CHAT, "k:board", "plan ready", progress=True)
    again = await outbox.delivered_then_next(
        db, taken, str(sent.message_id), conversation, holder, timedelta(minutes=1)
    )
    assert again is not None  # the newer text is still to be sent: an edit
    assert again.external_id == str(sent.message_id)
    await outbox.release_lease(db, conversation, holder)
    await delivery.deliver(conversation)
    assert [m["plain"] for m in telegram[0].messages(CHAT)] == ["plan ready"]  # edited
    [row] = await _rows(db)
    assert row.status is OutboundStatus.SENT
    assert row.body == "plan ready"


async def test_github_failing_a_comment_posts_it_once_when_it_recovers(
    db: Database, delivery: OutboxDelivery, github: FakeGitHub
) -> None:
    conversation = keys.github_conversation(REPO, ISSUE)
    async with db.session_scope() as session:
        await stage_comment(session, REPO, ISSUE, "k:first", "first")
        await stage_comment(session, REPO, ISSUE, "k:second", "second")
    github.fail_next(5, status=500)
    for _ in range(5):
        with pytest.raises(GithubException):
            await delivery.deliver(conversation)
        assert github.comments(REPO, ISSUE) == []  # "second" waits behind "first"
    await delivery.deliver(conversation)
    bodies = [c["body"].split("\n\n")[0] for c in github.comments(REPO, ISSUE)]
    assert bodies == ["first", "second"]
    first, second = await _rows(db)
    assert (first.attempts, second.attempts) == (6, 1)


async def test_a_message_that_never_goes_through_is_given_up_and_the_rest_follow(
    db: Database, delivery: OutboxDelivery, github: FakeGitHub
) -> None:
    conversation = keys.github_conversation(REPO, ISSUE)
    async with db.session_scope() as session:
        await stage_comment(session, REPO, ISSUE, "k:doomed", "doomed")
        await stage_comment(session, REPO, ISSUE, "k:next", "next")
    github.fail_next(MAX_DELIVERY_ATTEMPTS, status=500)
    for _ in range(MAX_DELIVERY_ATTEMPTS - 1):
        with pytest.raises(GithubException):
            await delivery.deliver(conversation)
    await delivery.deliver(conversation)  # the last attempt gives it up and goes on
    assert [c["body"].split("\n\n")[0] for c in github.comments(REPO, ISSUE)] == ["next"]
    doomed, sent = await _rows(db)
    assert doomed.status is OutboundStatus.FAILED
    assert doomed.last_error == "GitHub answered 500"
    assert sent.status is OutboundStatus.SENT
