"""nodes.protected and nodes.standby: a node kept from scale-in, a node out of service but kept;
groups.suspended: the group's processes the manager does not run, with why; scaling_groups.choices: an Auto
Scaling group's termination policies and its new instances' protection, in AWS's words

Revision ID: 0011
Revises: 0010
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0011"
down_revision = "0010"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("nodes") as batch:
        batch.add_column(sa.Column("protected", sa.Boolean(), nullable=False, server_default=sa.false()))
        batch.add_column(sa.Column("standby", sa.Boolean(), nullable=False, server_default=sa.false()))
    with op.batch_alter_table("groups") as batch:
        batch.add_column(sa.Column("suspended", sa.JSON(), nullable=True))
    with op.batch_alter_table("scaling_groups") as batch:
        batch.add_column(sa.Column("choices", sa.JSON(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("scaling_groups") as batch:
        batch.drop_column("choices")
    with op.batch_alter_table("groups") as batch:
        batch.drop_column("suspended")
    with op.batch_alter_table("nodes") as batch:
        batch.drop_column("standby")
        batch.drop_column("protected")
