"""server: API tokens, AWS-style launch configurations and scaling groups, jobs

Revision ID: 0007
Revises: 0006
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None

_WHEN = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "api_tokens",
        sa.Column("id", sa.String(32), primary_key=True),
        sa.Column("user_id", sa.String(32), sa.ForeignKey("users.id", ondelete="CASCADE"), nullable=False),
        sa.Column("name", sa.String(200), nullable=False),
        sa.Column("kind", sa.String(10), nullable=False),
        sa.Column("key_id", sa.String(64), nullable=False, unique=True),
        sa.Column("secret_hash", sa.String(64)),
        sa.Column("secret_sealed", sa.Text()),
        sa.Column("created_at", _WHEN, nullable=False),
        sa.Column("last_used_at", _WHEN),
        sa.Column("revoked_at", _WHEN),
    )
    op.create_index("ix_api_tokens_user_id", "api_tokens", ["user_id"])
    op.create_table(
        "launch_configurations",
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
        sa.Column("owner_id", sa.String(32), sa.ForeignKey("users.id", ondelete="CASCADE"), nullable=False),
        sa.Column("name", sa.String(255), nullable=False),
        sa.Column("template", sa.String(255), nullable=False),
        sa.Column("cloud", sa.String(100)),
        sa.Column("image", sa.String(255), nullable=False),
        sa.Column("instance_type", sa.String(255)),
        sa.Column("user_data", sa.Text()),
        sa.Column("settings", sa.JSON(), nullable=False),
        sa.Column("created_at", _WHEN, nullable=False),
        sa.UniqueConstraint("owner_id", "name"),
    )
    op.create_index("ix_launch_configurations_owner_id", "launch_configurations", ["owner_id"])
    op.create_table(
        "scaling_groups",
        sa.Column("id", sa.String(32), primary_key=True),
        sa.Column("owner_id", sa.String(32), sa.ForeignKey("users.id", ondelete="CASCADE"), nullable=False),
        sa.Column("name", sa.String(255), nullable=False),
        sa.Column("infrastructure_id", sa.String(32), sa.ForeignKey("infrastructures.id", ondelete="CASCADE"),
                  nullable=False),
        sa.Column("launch_configuration", sa.String(255), nullable=False),
        sa.Column("min_size", sa.Integer(), nullable=False),
        sa.Column("max_size", sa.Integer(), nullable=False),
        sa.Column("zones", sa.JSON(), nullable=False),
        sa.Column("tags", sa.JSON(), nullable=False),
        sa.Column("status", sa.String(50)),
        sa.Column("created_at", _WHEN, nullable=False),
        sa.UniqueConstraint("owner_id", "name"),
    )
    op.create_index("ix_scaling_groups_owner_id", "scaling_groups", ["owner_id"])
    op.create_table(
        "jobs",
        sa.Column("id", sa.String(32), primary_key=True),
        sa.Column("owner_id", sa.String(32), sa.ForeignKey("users.id", ondelete="CASCADE"), nullable=False),
        sa.Column("infrastructure_id", sa.String(32), sa.ForeignKey("infrastructures.id", ondelete="CASCADE")),
        sa.Column("kind", sa.String(20), nullable=False),
        sa.Column("state", sa.String(20), nullable=False),
        sa.Column("request", sa.JSON(), nullable=False),
        sa.Column("result", sa.JSON(), nullable=False),
        sa.Column("error", sa.Text()),
        sa.Column("created_at", _WHEN, nullable=False),
        sa.Column("ended_at", _WHEN),
    )
    op.create_index("ix_jobs_owner_id", "jobs", ["owner_id"])


def downgrade() -> None:
    for table in ("jobs", "scaling_groups", "launch_configurations", "api_tokens"):
        op.drop_table(table)
