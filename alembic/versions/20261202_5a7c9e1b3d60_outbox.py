"""Outbox and agent turns: outbound messages are written with the change they report and
delivered after commit, one conversation at a time under a lease; a person's message
waits as a turn the agent answers with nothing held while the model thinks.

Revision ID: 5a7c9e1b3d60
Revises: 9e3f1b7c2d44
Create Date: 2026-12-02 02:20:00.000000

"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

# revision identifiers, used by Alembic.
revision: str = "5a7c9e1b3d60"
down_revision: str | Sequence[str] | None = "9e3f1b7c2d44"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column("outbound_messages", sa.Column("kind", sa.String(length=40), nullable=True))
    op.add_column(
        "outbound_messages", sa.Column("conversation", sa.String(length=300), nullable=True)
    )
    op.add_column(
        "outbound_messages",
        sa.Column("payload", postgresql.JSONB(astext_type=sa.Text()), nullable=True),
    )
    op.add_column(
        "outbound_messages",
        sa.Column("revision", sa.Integer(), server_default="0", nullable=False),
    )
    op.create_index(
        "ix_outbound_messages_pending_conversation",
        "outbound_messages",
        ["conversation", "id"],
        unique=False,
        postgresql_where=sa.text("status = 'pending' AND conversation IS NOT NULL"),
    )
    op.create_table(
        "work_leases",
        sa.Column("key", sa.String(length=300), nullable=False),
        sa.Column("holder", sa.String(length=64), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("key", name=op.f("pk_work_leases")),
    )

    op.create_table(
        "agent_turns",
        sa.Column("id", sa.BigInteger(), sa.Identity(always=False), nullable=False),
        sa.Column("project_id", sa.Uuid(), nullable=False),
        sa.Column("message_id", sa.BigInteger(), nullable=False),
        sa.Column("actor_id", sa.Uuid(), nullable=False),
        sa.Column(
            "channel",
            postgresql.ENUM("telegram", "github", "api", name="channel", create_type=False),
            nullable=False,
        ),
        sa.Column("reply_to", postgresql.JSONB(astext_type=sa.Text()), nullable=False),
        sa.Column("status", sa.String(length=20), server_default="pending", nullable=False),
        sa.Column("attempts", sa.Integer(), server_default="0", nullable=False),
        sa.Column(
            "not_before",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.Column("answered_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column(
            "created_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.Column(
            "updated_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.CheckConstraint("attempts >= 0", name=op.f("ck_agent_turns_attempts_not_negative")),
        sa.ForeignKeyConstraint(
            ["actor_id"],
            ["identities.id"],
            name=op.f("fk_agent_turns_actor_id_identities"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["message_id"],
            ["conversation_messages.id"],
            name=op.f("fk_agent_turns_message_id_conversation_messages"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["project_id"],
            ["projects.id"],
            name=op.f("fk_agent_turns_project_id_projects"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_agent_turns")),
    )
    op.create_index(
        "ix_agent_turns_pending_project",
        "agent_turns",
        ["project_id", "id"],
        unique=False,
        postgresql_where=sa.text("status = 'pending'"),
    )


def downgrade() -> None:
    op.drop_index("ix_agent_turns_pending_project", table_name="agent_turns")
    op.drop_table("agent_turns")
    op.drop_table("work_leases")
    op.drop_index("ix_outbound_messages_pending_conversation", table_name="outbound_messages")
    op.drop_column("outbound_messages", "revision")
    op.drop_column("outbound_messages", "payload")
    op.drop_column("outbound_messages", "conversation")
    op.drop_column("outbound_messages", "kind")
