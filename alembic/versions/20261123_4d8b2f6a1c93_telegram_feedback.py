"""Telegram chats remember a Reject tap waiting for its feedback.

Revision ID: 4d8b2f6a1c93
Revises: 7c1e5a9d3f20
Create Date: 2026-11-23 11:10:00.000000

"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

# revision identifiers, used by Alembic.
revision: str = "4d8b2f6a1c93"
down_revision: str | Sequence[str] | None = "7c1e5a9d3f20"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column(
        "telegram_chats", sa.Column("awaiting_feedback_gate_id", sa.Uuid(), nullable=True)
    )
    op.add_column(
        "telegram_chats", sa.Column("awaiting_feedback_user_id", sa.BigInteger(), nullable=True)
    )
    op.create_foreign_key(
        op.f("fk_telegram_chats_awaiting_feedback_gate_id_approval_gates"),
        "telegram_chats",
        "approval_gates",
        ["awaiting_feedback_gate_id"],
        ["id"],
        ondelete="SET NULL",
    )


def downgrade() -> None:
    op.drop_constraint(
        op.f("fk_telegram_chats_awaiting_feedback_gate_id_approval_gates"),
        "telegram_chats",
        type_="foreignkey",
    )
    op.drop_column("telegram_chats", "awaiting_feedback_user_id")
    op.drop_column("telegram_chats", "awaiting_feedback_gate_id")
