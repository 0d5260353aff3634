"""Brainstorm notes: what the person said about their idea, topic by topic.

Revision ID: 2b495745a08f
Revises: ca4b24c430aa
Create Date: 2026-11-23 10:33:02.295007

"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

# revision identifiers, used by Alembic.
revision: str = "2b495745a08f"
down_revision: str | Sequence[str] | None = "ca4b24c430aa"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    """Upgrade schema."""
    # create_table creates the note_topic enum type along with the table.
    op.create_table(
        "brainstorm_notes",
        sa.Column("id", sa.BigInteger(), sa.Identity(always=False), nullable=False),
        sa.Column("project_id", sa.Uuid(), nullable=False),
        sa.Column(
            "topic",
            sa.Enum(
                "what",
                "who",
                "problem",
                "solution",
                "feature",
                "journey",
                "success",
                "out_of_scope",
                name="note_topic",
            ),
            nullable=False,
        ),
        sa.Column("text", sa.Text(), nullable=False),
        sa.Column("author_id", sa.Uuid(), nullable=True),
        sa.Column(
            "created_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.Column("retracted_at", sa.DateTime(timezone=True), nullable=True),
        sa.CheckConstraint(
            "retracted_at IS NULL OR topic IN ('feature', 'success', 'out_of_scope')",
            name=op.f("ck_brainstorm_notes_retract_only_list_topics"),
        ),
        sa.CheckConstraint(
            "text ~ '[^[:space:]]'", name=op.f("ck_brainstorm_notes_text_not_blank")
        ),
        sa.CheckConstraint(
            "char_length(text) <= 2000", name=op.f("ck_brainstorm_notes_text_not_too_long")
        ),
        sa.ForeignKeyConstraint(
            ["author_id"],
            ["identities.id"],
            name=op.f("fk_brainstorm_notes_author_id_identities"),
            ondelete="SET NULL",
        ),
        sa.ForeignKeyConstraint(
            ["project_id"],
            ["projects.id"],
            name=op.f("fk_brainstorm_notes_project_id_projects"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_brainstorm_notes")),
    )
    op.create_index(
        "ix_brainstorm_notes_project_id_id", "brainstorm_notes", ["project_id", "id"], unique=False
    )


def downgrade() -> None:
    """Downgrade schema."""
    op.drop_index("ix_brainstorm_notes_project_id_id", table_name="brainstorm_notes")
    op.drop_table("brainstorm_notes")
    # Dropping the table leaves its enum type behind.
    op.execute("DROP TYPE IF EXISTS note_topic")
