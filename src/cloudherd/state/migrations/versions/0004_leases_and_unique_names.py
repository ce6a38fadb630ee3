"""leases (one mutating operation per infrastructure at a time) and one live infrastructure per name

Revision ID: 0004
Revises: 0003
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None

LIVE = sa.text("state != 'destroyed'")


def upgrade() -> None:
    op.create_table(
        "leases",
        sa.Column("scope", sa.String(length=300), nullable=False),
        sa.Column("owner", sa.String(length=64), nullable=False),
        sa.Column("operation", sa.String(length=50), nullable=False),
        sa.Column("holder", sa.JSON(), nullable=False),
        sa.Column("fence", sa.Integer(), nullable=False),
        sa.Column("acquired_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("scope"),
    )
    _rename_live_duplicates()
    op.create_index("ux_infrastructures_live_name", "infrastructures", ["name"], unique=True,
                    sqlite_where=LIVE, postgresql_where=LIVE)


def _rename_live_duplicates() -> None:
    """Earlier versions could make two live infrastructures of one name (a race of two ``up``); the
    newer ones get a suffix so that the unique index can exist, and an event says so."""
    bind = op.get_bind()
    rows = bind.execute(sa.text(
        "SELECT id, name FROM infrastructures WHERE state != 'destroyed' ORDER BY name, created_at")).all()
    seen: dict[str, int] = {}
    for infra_id, name in rows:
        seen[name] = seen.get(name, 0) + 1
        if seen[name] == 1:
            continue
        new_name = f"{name}-dup{seen[name]}"
        bind.execute(sa.text("UPDATE infrastructures SET name = :n WHERE id = :i"), {"n": new_name, "i": infra_id})
        bind.execute(sa.text("INSERT INTO events (infrastructure_id, kind, message, at) "
                             "VALUES (:i, 'renamed', :m, CURRENT_TIMESTAMP)"),
                     {"i": infra_id, "m": f"renamed from {name} to {new_name}: a live infrastructure of that name "
                                          f"already existed"})


def downgrade() -> None:
    op.drop_index("ux_infrastructures_live_name", table_name="infrastructures")
    op.drop_table("leases")
