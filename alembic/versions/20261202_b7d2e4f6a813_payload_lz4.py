"""Event payloads compressed with lz4 instead of pglz where the server has it.

A GitHub delivery is about 13 KB of JSON, over the size PostgreSQL compresses; pglz took
about as long as the rest of the insert together. lz4 compresses as well at a fraction of
the cost. It applies to rows written from now on; older rows stay readable as they are.
A server built without lz4 keeps pglz (the statement fails there, and is skipped).

Revision ID: b7d2e4f6a813
Revises: 5a7c9e1b3d60
Create Date: 2026-12-02 07:40:00.000000

"""

from collections.abc import Sequence

from alembic import op

# revision identifiers, used by Alembic.
revision: str = "b7d2e4f6a813"
down_revision: str | Sequence[str] | None = "5a7c9e1b3d60"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def _compress_with(method: str) -> None:
    op.execute(
        f"""
        DO $$
        BEGIN
            ALTER TABLE inbound_events ALTER COLUMN payload SET COMPRESSION {method};
        EXCEPTION WHEN feature_not_supported OR invalid_parameter_value THEN
            RAISE NOTICE 'compression {method} is not available here; keeping the default';
        END $$
        """
    )


def upgrade() -> None:
    _compress_with("lz4")


def downgrade() -> None:
    _compress_with("pglz")
