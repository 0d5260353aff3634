"""Column types shared by the models: native PostgreSQL enums from Python StrEnums."""

from __future__ import annotations

import enum
from typing import Any

from sqlalchemy import Enum as SAEnum


class Channel(enum.StrEnum):
    """Where a person spoke or decided: shared by messages, gates and identities."""

    TELEGRAM = "telegram"
    GITHUB = "github"
    API = "api"


def pg_enum(enum_class: type[enum.StrEnum], name: str) -> SAEnum:
    """A native PostgreSQL enum storing the members' values (not their names)."""

    def values(members: Any) -> list[str]:
        return [member.value for member in members]

    return SAEnum(
        enum_class,
        name=name,
        native_enum=True,
        create_constraint=False,
        validate_strings=True,
        values_callable=values,
    )
