"""node_defs: Occopus node definitions imported with `cloudherd import`

Revision ID: 0006
Revises: 0005
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "node_defs",
        sa.Column("type", sa.String(length=200), nullable=False),
        sa.Column("implementations", sa.JSON(), nullable=False),
        sa.Column("source", sa.Text(), nullable=False),
        sa.Column("imported_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("type"),
    )


def downgrade() -> None:
    op.drop_table("node_defs")
