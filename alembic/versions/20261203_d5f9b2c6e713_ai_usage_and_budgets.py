"""AI usage per model call: what a run and a project cost, priced per model when read;
scar_commands indexed by run, for a run's SCAR time; AI budgets per project and run, and
the requests to raise them.

Revision ID: d5f9b2c6e713
Revises: c3e8a1f5b902
Create Date: 2026-12-03 15:45:00.000000

"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

# revision identifiers, used by Alembic.
revision: str = "d5f9b2c6e713"
down_revision: str | Sequence[str] | None = "c3e8a1f5b902"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "ai_usage",
        sa.Column("id", sa.BigInteger(), sa.Identity(always=False), nullable=False),
        sa.Column("project_id", sa.Uuid(), nullable=False),
        sa.Column("run_id", sa.Uuid(), nullable=True),
        sa.Column("model", sa.String(length=200), nullable=False),
        sa.Column("input_tokens", sa.BigInteger(), server_default="0", nullable=False),
        sa.Column("output_tokens", sa.BigInteger(), server_default="0", nullable=False),
        sa.Column("cache_read_tokens", sa.BigInteger(), server_default="0", nullable=False),
        sa.Column("cache_write_tokens", sa.BigInteger(), server_default="0", nullable=False),
        sa.Column(
            "created_at", sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False
        ),
        sa.CheckConstraint(
            "input_tokens >= 0 AND output_tokens >= 0 AND cache_read_tokens >= 0 "
            "AND cache_write_tokens >= 0",
            name=op.f("ck_ai_usage_tokens_not_negative"),
        ),
        sa.ForeignKeyConstraint(
            ["project_id"],
            ["projects.id"],
            name=op.f("fk_ai_usage_project_id_projects"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["run_id"],
            ["workflow_runs.id"],
            name=op.f("fk_ai_usage_run_id_workflow_runs"),
            ondelete="SET NULL",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_ai_usage")),
    )
    op.create_index("ix_ai_usage_project_id", "ai_usage", ["project_id"])
    op.create_index(
        "ix_ai_usage_run_id", "ai_usage", ["run_id"], postgresql_where=sa.text("run_id IS NOT NULL")
    )
    op.create_index("ix_ai_usage_created_at", "ai_usage", ["created_at"])
    op.create_index("ix_scar_commands_run_id", "scar_commands", ["run_id"])
    op.add_column("projects", sa.Column("ai_token_limit", sa.BigInteger(), nullable=True))
    op.add_column("workflow_runs", sa.Column("ai_token_limit", sa.BigInteger(), nullable=True))
    scope = postgresql.ENUM("project", "run", name="budget_scope", create_type=False)
    scope.create(op.get_bind(), checkfirst=True)
    op.create_table(
        "budget_requests",
        sa.Column("project_id", sa.Uuid(), nullable=False),
        sa.Column("run_id", sa.Uuid(), nullable=True),
        sa.Column("scope", scope, nullable=False),
        sa.Column("limit_tokens", sa.BigInteger(), nullable=False),
        sa.Column("used_tokens", sa.BigInteger(), nullable=False),
        sa.Column("raised_to", sa.BigInteger(), nullable=True),
        sa.Column("decided_by_id", sa.Uuid(), nullable=True),
        sa.Column("decided_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("id", sa.Uuid(), server_default=sa.text("gen_random_uuid()"), nullable=False),
        sa.Column(
            "created_at", sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False
        ),
        sa.Column(
            "updated_at", sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False
        ),
        sa.CheckConstraint("limit_tokens > 0", name=op.f("ck_budget_requests_limit_positive")),
        sa.CheckConstraint(
            "(raised_to IS NULL) = (decided_at IS NULL AND decided_by_id IS NULL)",
            name=op.f("ck_budget_requests_decision_recorded"),
        ),
        sa.ForeignKeyConstraint(
            ["decided_by_id"],
            ["identities.id"],
            name=op.f("fk_budget_requests_decided_by_id_identities"),
            ondelete="SET NULL",
        ),
        sa.ForeignKeyConstraint(
            ["project_id"],
            ["projects.id"],
            name=op.f("fk_budget_requests_project_id_projects"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["run_id"],
            ["workflow_runs.id"],
            name=op.f("fk_budget_requests_run_id_workflow_runs"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_budget_requests")),
    )
    op.create_index(
        "uq_budget_requests_one_open_per_project",
        "budget_requests",
        ["project_id"],
        unique=True,
        postgresql_where=sa.text("raised_to IS NULL"),
    )


def downgrade() -> None:
    op.drop_table("budget_requests")
    op.execute("DROP TYPE budget_scope")
    op.drop_column("workflow_runs", "ai_token_limit")
    op.drop_column("projects", "ai_token_limit")
    op.drop_index("ix_scar_commands_run_id", table_name="scar_commands")
    op.drop_table("ai_usage")
