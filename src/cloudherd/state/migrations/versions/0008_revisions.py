"""revisions: each release of an infrastructure (spec and scripts) for history and rollback; nodes.release, .shape

Revision ID: 0008
Revises: 0007
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None

_WHEN = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "revisions",
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
        sa.Column("infrastructure_id", sa.String(32), sa.ForeignKey("infrastructures.id", ondelete="CASCADE"),
                  nullable=False),
        sa.Column("number", sa.Integer(), nullable=False),
        sa.Column("digest", sa.String(64), nullable=False),
        sa.Column("spec_text", sa.Text(), nullable=False),
        sa.Column("spec_path", sa.Text(), nullable=False),
        sa.Column("bundle", sa.JSON(), nullable=False),
        sa.Column("author", sa.String(200), nullable=False),
        sa.Column("origin", sa.String(100), nullable=False),
        sa.Column("state", sa.String(20), nullable=False),
        sa.Column("reason", sa.Text()),
        sa.Column("created_at", _WHEN, nullable=False),
        sa.Column("ended_at", _WHEN),
        sa.UniqueConstraint("infrastructure_id", "number"),
    )
    op.create_index("ix_revisions_infrastructure_id", "revisions", ["infrastructure_id"])
    with op.batch_alter_table("nodes") as batch:
        batch.add_column(sa.Column("release", sa.String(64)))
        batch.add_column(sa.Column("shape", sa.String(64)))


def downgrade() -> None:
    with op.batch_alter_table("nodes") as batch:
        batch.drop_column("shape")
        batch.drop_column("release")
    op.drop_index("ix_revisions_infrastructure_id", table_name="revisions")
    op.drop_table("revisions")
