"""the manager: attached infrastructures and their last pass, node health, durable scale requests

Revision ID: 0005
Revises: 0004
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("infrastructures") as batch:
        batch.add_column(sa.Column("attached", sa.Boolean(), nullable=False, server_default=sa.false()))
        batch.add_column(sa.Column("last_pass_at", sa.DateTime(timezone=True), nullable=True))
        batch.add_column(sa.Column("last_pass", sa.Text(), nullable=True))
    with op.batch_alter_table("nodes") as batch:
        batch.add_column(sa.Column("ready_at", sa.DateTime(timezone=True), nullable=True))
        batch.add_column(sa.Column("health", sa.String(length=20), nullable=True))
        batch.add_column(sa.Column("failing_since", sa.DateTime(timezone=True), nullable=True))
        batch.add_column(sa.Column("failures", sa.Integer(), nullable=False, server_default="0"))
        batch.add_column(sa.Column("last_check", sa.Text(), nullable=True))
        batch.add_column(sa.Column("last_check_at", sa.DateTime(timezone=True), nullable=True))
    op.create_table(
        "scale_requests",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("infrastructure_id", sa.String(length=32), nullable=False),
        sa.Column("group_name", sa.String(length=100), nullable=False),
        sa.Column("kind", sa.String(length=10), nullable=False),
        sa.Column("amount", sa.Integer(), nullable=False),
        sa.Column("victims", sa.JSON(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("consumed_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("outcome", sa.Text(), nullable=True),
        sa.ForeignKeyConstraint(["infrastructure_id"], ["infrastructures.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_scale_requests_infrastructure_id", "scale_requests", ["infrastructure_id"])


def downgrade() -> None:
    op.drop_index("ix_scale_requests_infrastructure_id", table_name="scale_requests")
    op.drop_table("scale_requests")
    with op.batch_alter_table("nodes") as batch:
        for column in ("last_check_at", "last_check", "failures", "failing_since", "health", "ready_at"):
            batch.drop_column(column)
    with op.batch_alter_table("infrastructures") as batch:
        for column in ("last_pass", "last_pass_at", "attached"):
            batch.drop_column(column)
