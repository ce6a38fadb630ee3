"""nodes.market: what a node's machine was bought as (spot, on-demand; None: before markets, on-demand);
groups.market: where a spot group buys now, when it fell back ({"on": "on-demand", "since": …, "reason": …})

Revision ID: 0013
Revises: 0012
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0013"
down_revision = "0012"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("nodes") as batch:
        batch.add_column(sa.Column("market", sa.String(20), nullable=True))
    with op.batch_alter_table("groups") as batch:
        batch.add_column(sa.Column("market", sa.JSON(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("groups") as batch:
        batch.drop_column("market")
    with op.batch_alter_table("nodes") as batch:
        batch.drop_column("market")
