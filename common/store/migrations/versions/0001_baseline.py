"""The baseline: the store as the releases before versioned migrations made it (before policies, schedules,
a step's on_change and the console's listing indexes).

Revision ID: 0001
Revises:
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

ACTIVE = ("pending", "running")


def upgrade() -> None:
    op.create_table(
        "converge_workflows",
        sa.Column("id", sa.String(64), primary_key=True),
        sa.Column("name", sa.String(255), nullable=False),
        sa.Column("digest", sa.String(64), nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("history", sa.Boolean, nullable=False),
        sa.Column("created_at", sa.Float, nullable=False),
        sa.Column("updated_at", sa.Float, nullable=False),
        sa.Column("finished_at", sa.Float),
        sa.Column("source", sa.Text, nullable=False),
    )
    op.create_index("ix_workflows_active", "converge_workflows", ["history", "state"])
    op.create_index("ix_workflows_digest", "converge_workflows", ["digest"])
    active = sa.column("state").in_(ACTIVE)
    op.create_index(
        "ux_workflows_active_digest",
        "converge_workflows",
        ["digest"],
        unique=True,
        sqlite_where=active,
        postgresql_where=active,
    )
    op.create_table(
        "converge_steps",
        sa.Column("id", sa.String(96), primary_key=True),
        sa.Column("workflow_id", sa.String(64), nullable=False),
        sa.Column("idx", sa.Integer, nullable=False),
        sa.Column("resource", sa.String(512), nullable=False),
        sa.Column("kind", sa.String(128), nullable=False),
        sa.Column("name", sa.String(384), nullable=False),
        sa.Column("role", sa.String(64), nullable=False),
        sa.Column("scope", sa.String(64)),
        sa.Column("spec", sa.Text, nullable=False),
        sa.Column("depends_on", sa.Text, nullable=False),
        sa.Column("dependents", sa.Text, nullable=False),
        sa.Column("waiting", sa.Integer, nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("attempt", sa.Integer, nullable=False),
        sa.Column("changed", sa.Boolean),
        sa.Column("agent", sa.String(128)),
        sa.Column("progress", sa.Float),
        sa.Column("message", sa.Text),
        sa.Column("error", sa.Text),
        sa.Column("started_at", sa.Float),
        sa.Column("finished_at", sa.Float),
        sa.Column("last_seq", sa.Integer, nullable=False),
        sa.Column("last_report_at", sa.Float),
        sa.Column("not_before", sa.Float),
        sa.Column("lost_attempt", sa.Integer),
        sa.Column("epoch", sa.Integer),
        sa.Column("timeout_s", sa.Float),
        sa.Column("retry_attempts", sa.Integer, nullable=False),
        sa.Column("retry_backoff_s", sa.Float, nullable=False),
        sa.Column("credentials", sa.Text, nullable=False),
    )
    op.create_index("ix_steps_workflow_state", "converge_steps", ["workflow_id", "state"])
    op.create_index("ix_steps_state", "converge_steps", ["state"])
    op.create_table(
        "converge_step_outputs",
        sa.Column("step_id", sa.String(96), primary_key=True),
        sa.Column("workflow_id", sa.String(64), nullable=False),
        sa.Column("attempt", sa.Integer, nullable=False),
        sa.Column("output", sa.Text, nullable=False),
    )
    op.create_index("ix_step_outputs_workflow", "converge_step_outputs", ["workflow_id"])
    op.create_table(
        "converge_tokens",
        sa.Column("name", sa.String(64), primary_key=True),
        sa.Column("role", sa.String(16), nullable=False),
        sa.Column("digest", sa.String(64), nullable=False, unique=True),
        sa.Column("created_at", sa.Float, nullable=False),
        sa.Column("last_used_at", sa.Float),
    )
    op.create_table(
        "converge_enrollments",
        sa.Column("id", sa.String(64), primary_key=True),
        sa.Column("roles", sa.Text, nullable=False),
        sa.Column("public_key", sa.Text, nullable=False),
        sa.Column("capabilities", sa.Text, nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("created_at", sa.Float, nullable=False),
        sa.Column("updated_at", sa.Float, nullable=False),
        sa.Column("last_seen_at", sa.Float, nullable=False),
    )
    op.create_table(
        "converge_credentials",
        sa.Column("name", sa.String(64), primary_key=True),
        sa.Column("ciphertext", sa.Text, nullable=False),
        sa.Column("created_at", sa.Float, nullable=False),
        sa.Column("updated_at", sa.Float, nullable=False),
    )
    op.create_table(
        "converge_credential_audit",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("at", sa.Float, nullable=False),
        sa.Column("name", sa.String(64)),
        sa.Column("agent", sa.String(128), nullable=False),
        sa.Column("step_id", sa.String(96)),
        sa.Column("attempt", sa.Integer),
        sa.Column("epoch", sa.Integer),
        sa.Column("outcome", sa.String(16), nullable=False),
        sa.Column("reason", sa.Text),
    )
    op.create_index("ix_credential_audit_name", "converge_credential_audit", ["name"])


def downgrade() -> None:
    for table in (
        "converge_credential_audit",
        "converge_credentials",
        "converge_enrollments",
        "converge_tokens",
        "converge_step_outputs",
        "converge_steps",
        "converge_workflows",
    ):
        op.drop_table(table)
