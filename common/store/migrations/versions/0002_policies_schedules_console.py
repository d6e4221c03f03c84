"""Role policies, schedules, a step's on_change, and the console's listing indexes.

Revision ID: 0002
Revises: 0001
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "converge_policies",
        sa.Column("role", sa.String(64), primary_key=True),
        sa.Column("key", sa.String(64), primary_key=True),
        sa.Column("value", sa.Text, nullable=False),
        sa.Column("set_by", sa.String(64), nullable=False),
        sa.Column("set_at", sa.Float, nullable=False),
    )
    op.create_table(
        "converge_schedules",
        sa.Column("name", sa.String(255), primary_key=True),
        sa.Column("source", sa.Text, nullable=False),
        sa.Column("filename", sa.String(1024), nullable=False),
        sa.Column("every_s", sa.Float, nullable=False),
        sa.Column("mode", sa.String(16), nullable=False),
        sa.Column("set_by", sa.String(64), nullable=False),
        sa.Column("set_at", sa.Float, nullable=False),
        sa.Column("next_at", sa.Float, nullable=False),
        sa.Column("checked_at", sa.Float),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("report", sa.Text, nullable=False),
        sa.Column("error", sa.Text),
        sa.Column("workflow_id", sa.String(64)),
    )
    op.create_index("ix_schedules_next", "converge_schedules", ["next_at"])
    # nullable: the steps of the workflows already stored have none
    with op.batch_alter_table("converge_steps") as batch:
        batch.add_column(sa.Column("on_change", sa.Text))
    op.create_index("ix_workflows_listing", "converge_workflows", ["history", "created_at"])
    op.create_index("ix_steps_workflow_idx", "converge_steps", ["workflow_id", "idx"])


def downgrade() -> None:
    op.drop_index("ix_steps_workflow_idx", "converge_steps")
    op.drop_index("ix_workflows_listing", "converge_workflows")
    with op.batch_alter_table("converge_steps") as batch:
        batch.drop_column("on_change")
    op.drop_index("ix_schedules_next", "converge_schedules")
    op.drop_table("converge_schedules")
    op.drop_table("converge_policies")
