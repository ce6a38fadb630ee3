"""metric_samples: each group's metrics as the manager samples them, for its scaling policies and for the faces;
schedule_firings: each scheduled action's firings, and the bounds they set; scaling_groups.policies and .schedules:
the Auto Scaling API's policies and scheduled actions

Revision ID: 0010
Revises: 0009
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "metric_samples",
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
        sa.Column("infrastructure_id", sa.String(32), sa.ForeignKey("infrastructures.id", ondelete="CASCADE"),
                  nullable=False),
        sa.Column("group_name", sa.String(100), nullable=False),
        sa.Column("metric", sa.String(100), nullable=False),
        sa.Column("value", sa.Float(), nullable=False),
        sa.Column("nodes", sa.Integer(), nullable=False),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_index("ix_metric_samples_infrastructure_id", "metric_samples", ["infrastructure_id"])
    op.create_table(
        "schedule_firings",
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
        sa.Column("infrastructure_id", sa.String(32), sa.ForeignKey("infrastructures.id", ondelete="CASCADE"),
                  nullable=False),
        sa.Column("group_name", sa.String(100), nullable=False),
        sa.Column("schedule", sa.String(100), nullable=False),
        sa.Column("occurrence", sa.DateTime(timezone=True), nullable=False),
        sa.Column("min", sa.Integer(), nullable=True),
        sa.Column("max", sa.Integer(), nullable=True),
        sa.Column("desired", sa.Integer(), nullable=True),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_index("ix_schedule_firings_infrastructure_id", "schedule_firings", ["infrastructure_id"])
    with op.batch_alter_table("scaling_groups") as batch:
        batch.add_column(sa.Column("policies", sa.JSON(), nullable=True))
        batch.add_column(sa.Column("schedules", sa.JSON(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("scaling_groups") as batch:
        batch.drop_column("schedules")
        batch.drop_column("policies")
    op.drop_index("ix_schedule_firings_infrastructure_id", "schedule_firings")
    op.drop_table("schedule_firings")
    op.drop_index("ix_metric_samples_infrastructure_id", "metric_samples")
    op.drop_table("metric_samples")
