"""confined: a spec that came over the network keeps the server's clouds it may use (spec/confine.py)

Revision ID: 0009
Revises: 0008
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("infrastructures") as batch:
        batch.add_column(sa.Column("confined", sa.JSON(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("infrastructures") as batch:
        batch.drop_column("confined")
