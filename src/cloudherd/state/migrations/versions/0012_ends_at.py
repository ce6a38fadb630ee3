"""infrastructures.ends_at: when the infrastructure's time-to-live runs out (``ttl:``, ``up --ttl``) and the
manager brings it down; infrastructures.busy_at: when a pass last found it in use (autostop, autodown)

Revision ID: 0012
Revises: 0011
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0012"
down_revision = "0011"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("infrastructures") as batch:
        batch.add_column(sa.Column("ends_at", sa.DateTime(timezone=True), nullable=True))
        batch.add_column(sa.Column("busy_at", sa.DateTime(timezone=True), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("infrastructures") as batch:
        batch.drop_column("busy_at")
        batch.drop_column("ends_at")
