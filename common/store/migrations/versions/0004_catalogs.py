"""Catalogs: the capability document (or reference machine) an imported machine is validated against.

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


def upgrade() -> None:
    op.create_table(
        "converge_catalogs",
        sa.Column("name", sa.String(255), primary_key=True),
        sa.Column("expected", sa.Text),
        sa.Column("reference", sa.String(255)),
        sa.Column("roles", sa.Text, nullable=False),
        sa.Column("set_at", sa.Float, nullable=False),
    )


def downgrade() -> None:
    op.drop_table("converge_catalogs")
