"""`raw.in_transaction`: the asyncpg connection under a session, inside its transaction."""

from __future__ import annotations

import pytest
from sqlalchemy import text

from project_orchestrator.db import raw
from project_orchestrator.db.engine import Database

LEASES = text("SELECT key FROM work_leases ORDER BY key")
INSERT = "INSERT INTO work_leases (key, holder, expires_at) VALUES ($1, 'h', now())"


class Boom(Exception):
    pass


async def test_a_raw_statement_first_in_a_session_rolls_back_with_it(db: Database) -> None:
    # Before any ORM statement SQLAlchemy has sent no BEGIN: without one this insert
    # would commit on its own, whatever the session does next.
    async def insert_then_fail() -> None:
        async with db.session_scope() as session:
            connection = await raw.in_transaction(session)
            await connection.execute(INSERT, "rolled-back")
            raise Boom

    with pytest.raises(Boom):
        await insert_then_fail()
    async with db.session_scope() as session:
        assert (await session.execute(LEASES)).scalars().all() == []


async def test_raw_and_orm_statements_share_one_transaction(db: Database) -> None:
    async with db.session_scope() as session:
        connection = await raw.in_transaction(session)
        await connection.execute(INSERT, "a")
        await session.execute(text("INSERT INTO work_leases VALUES ('b', 'h', now())"))
        again = await raw.in_transaction(session)
        assert again is connection
        # Each sees the other's uncommitted row: one transaction, one connection.
        assert await again.fetchval("SELECT count(*) FROM work_leases") == 2
    async with db.session_scope() as session:
        assert (await session.execute(LEASES)).scalars().all() == ["a", "b"]


async def test_json_goes_in_as_text_and_comes_back_decoded(db: Database) -> None:
    async with db.session_scope() as session:
        connection = await raw.in_transaction(session)
        value = {"repo": "ada/hello", "number": 7, "nested": [1, None, "ü"]}
        back = await connection.fetchval("SELECT $1::jsonb", raw.json_text(value))
        assert back == value


async def test_after_a_commit_the_next_statement_is_in_the_next_transaction(
    db: Database,
) -> None:
    async with db.sessionmaker() as session:
        connection = await raw.in_transaction(session)
        await connection.execute(INSERT, "committed")
        await session.commit()
        # The connection kept for the first transaction must not be reused as if the
        # second had begun on it: this insert belongs to the second, rolled back.
        connection = await raw.in_transaction(session)
        await connection.execute(INSERT, "rolled-back")
        await session.rollback()
    async with db.session_scope() as session:
        assert (await session.execute(LEASES)).scalars().all() == ["committed"]
