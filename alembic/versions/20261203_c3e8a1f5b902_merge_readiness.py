"""Merge readiness: a `checks` phase in which GitHub's own verdict on the pull request is
read before the merge gate, and the count of fixes SCAR was sent on by itself.

Revision ID: c3e8a1f5b902
Revises: b7d2e4f6a813
Create Date: 2026-12-03 15:00:00.000000

"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

# revision identifiers, used by Alembic.
revision: str = "c3e8a1f5b902"
down_revision: str | Sequence[str] | None = "b7d2e4f6a813"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_OLD_PHASES = "'vision', 'prime', 'plan', 'execute', 'validate', 'merge'"


def upgrade() -> None:
    # A new enum value cannot be used in the transaction that adds it: add it on its own.
    with op.get_context().autocommit_block():
        op.execute("ALTER TYPE workflow_phase ADD VALUE IF NOT EXISTS 'checks' BEFORE 'merge'")
    op.add_column(
        "workflow_runs",
        sa.Column("fix_attempts", sa.Integer(), server_default="0", nullable=False),
    )


def downgrade() -> None:
    op.drop_column("workflow_runs", "fix_attempts")
    # PostgreSQL cannot drop an enum value: rebuild the type without it. A run waiting on
    # GitHub goes back to validating, which leads to the merge gate as before.
    op.execute("DELETE FROM workflow_phases WHERE phase = 'checks'")
    op.execute("UPDATE workflow_runs SET current_phase = 'validate' WHERE current_phase = 'checks'")
    op.execute("ALTER TYPE workflow_phase RENAME TO workflow_phase_with_checks")
    op.execute(f"CREATE TYPE workflow_phase AS ENUM ({_OLD_PHASES})")
    for table, column in (("workflow_runs", "current_phase"), ("workflow_phases", "phase")):
        op.execute(
            f"ALTER TABLE {table} ALTER COLUMN {column} TYPE workflow_phase "
            f"USING {column}::text::workflow_phase"
        )
    op.execute("DROP TYPE workflow_phase_with_checks")
