"""SCAR handoff: the folder SCAR keeps a project's code in, the repository a run's gates
cover, and when a command was handed to SCAR.

Revision ID: 9e3f1b7c2d44
Revises: 4d8b2f6a1c93
Create Date: 2026-12-01 23:50:00.000000

"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

# revision identifiers, used by Alembic.
revision: str = "9e3f1b7c2d44"
down_revision: str | Sequence[str] | None = "4d8b2f6a1c93"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column("projects", sa.Column("scar_codebase", sa.String(length=200), nullable=True))
    op.add_column("workflow_runs", sa.Column("github_repo", sa.String(length=200), nullable=True))
    op.add_column("scar_commands", sa.Column("sent_at", sa.DateTime(timezone=True), nullable=True))


def downgrade() -> None:
    op.drop_column("scar_commands", "sent_at")
    op.drop_column("workflow_runs", "github_repo")
    op.drop_column("projects", "scar_codebase")
