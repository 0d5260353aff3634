"""ORM objects from rows read on the raw connection, as if the ORM had loaded them.

A lookup every message makes (its project, its author) costs several times more as an
ORM query than as a prebuilt statement. `load_one` runs the statement on the session's
asyncpg connection (`raw.in_transaction`) and hands the row to the session as a loaded
object: its columns committed, no history, in the identity map. As with an ORM query,
an object the session already holds is returned as it stands, not overwritten, and
changes not yet sent are flushed first, as the ORM's autoflush would.
"""

from __future__ import annotations

from typing import Any, TypeVar, cast

from sqlalchemy import Enum as SAEnum
from sqlalchemy import inspect
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import make_transient_to_detached
from sqlalchemy.orm.attributes import set_committed_value

from project_orchestrator.db import raw
from project_orchestrator.db.base import Base

Model = TypeVar("Model", bound=Base)


def columns(model: type[Base]) -> str:
    """The select list that `load_one` expects for `model`: every mapped column."""
    return ", ".join(attr.columns[0].name for attr in inspect(model).column_attrs)


async def load_one(
    session: AsyncSession, model: type[Model], statement: str, *args: Any
) -> Model | None:
    """The one row `statement` selects (its list from `columns(model)`), as `model`."""
    if session.new or session.dirty or session.deleted:
        await session.flush()  # as the ORM's autoflush would: the raw statement sees rows
    connection = await raw.in_transaction(session)
    row = await connection.fetchrow(statement, *args)
    if row is None:
        return None
    mapper = inspect(model)
    identity = mapper.identity_key_from_primary_key(
        tuple(row[column.name] for column in mapper.primary_key)
    )
    held = session.sync_session.identity_map.get(identity)
    if held is not None:
        return cast(Model, held)
    instance = cast(Model, mapper.class_manager.new_instance())
    for attr in mapper.column_attrs:
        column = attr.columns[0]
        value = row[column.name]
        if value is not None and isinstance(column.type, SAEnum) and column.type.enum_class:
            value = column.type.enum_class(value)  # the raw connection gives the label
        set_committed_value(instance, attr.key, value)
    make_transient_to_detached(instance)
    session.add(instance)
    return instance
