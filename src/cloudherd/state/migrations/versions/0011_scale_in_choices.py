"""nodes.protected, .standby and .warm: a node kept from scale-in, out of service but kept, in its group's warm pool;
groups.suspended: the group's processes the manager does not run, with why; scaling_groups.choices: an Auto
Scaling group's termination policies and its new instances' protection, in AWS's words; hook_waits: nodes held
by their group's lifecycle hooks

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
        batch.add_column(sa.Column("warm", sa.Boolean(), nullable=False, server_default=sa.false()))
    with op.batch_alter_table("groups") as batch:
        batch.add_column(sa.Column("suspended", sa.JSON(), nullable=True))
    with op.batch_alter_table("scaling_groups") as batch:
        batch.add_column(sa.Column("choices", sa.JSON(), nullable=True))
    op.create_table(
        "hook_waits",
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
        sa.Column("infrastructure_id", sa.String(32), sa.ForeignKey("infrastructures.id", ondelete="CASCADE"),
                  nullable=False),
        sa.Column("node_id", sa.String(32), sa.ForeignKey("nodes.id", ondelete="CASCADE"), nullable=False),
        sa.Column("group_name", sa.String(100), nullable=False),
        sa.Column("hook", sa.String(100), nullable=False),
        sa.Column("transition", sa.String(20), nullable=False),
        sa.Column("token", sa.String(64), nullable=False),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("deadline", sa.DateTime(timezone=True), nullable=False),
        sa.Column("result", sa.String(20), nullable=True),
        sa.Column("completed_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("completed_by", sa.Text(), nullable=True),
    )
    op.create_index("ix_hook_waits_infrastructure_id", "hook_waits", ["infrastructure_id"])
    op.create_index("ix_hook_waits_node_id", "hook_waits", ["node_id"])


def downgrade() -> None:
    op.drop_index("ix_hook_waits_node_id", "hook_waits")
    op.drop_index("ix_hook_waits_infrastructure_id", "hook_waits")
    op.drop_table("hook_waits")
    with op.batch_alter_table("scaling_groups") as batch:
        batch.drop_column("choices")
    with op.batch_alter_table("groups") as batch:
        batch.drop_column("suspended")
    with op.batch_alter_table("nodes") as batch:
        batch.drop_column("warm")
        batch.drop_column("standby")
        batch.drop_column("protected")
