"""The result store schema. Times are UTC seconds since the epoch, the same on SQLite and PostgreSQL."""

from __future__ import annotations

from sqlalchemy import Boolean, Column, Float, Index, Integer, MetaData, String, Table, Text

from common.models import WorkflowState

metadata = MetaData()
# A workflow in these states is active: a second submission of its desired state returns it.
ACTIVE_WORKFLOW = (WorkflowState.PENDING.value, WorkflowState.RUNNING.value)

workflows = Table(
    "converge_workflows",
    metadata,
    Column("id", String(64), primary_key=True),
    Column("name", String(255), nullable=False),
    Column("digest", String(64), nullable=False),
    Column("state", String(16), nullable=False),
    Column("history", Boolean, nullable=False, default=False),
    Column("created_at", Float, nullable=False),
    Column("updated_at", Float, nullable=False),
    Column("finished_at", Float),
    Column("source", Text, nullable=False),
    Index("ix_workflows_active", "history", "state"),
    Index("ix_workflows_digest", "digest"),
    # the console's lists: one history flag, newest first, a page at a time (common.store.console)
    Index("ix_workflows_listing", "history", "created_at"),
)
# At most one active workflow per desired state, whichever process submits it: the store's check-and-insert
# holds within one engine, this holds across engines sharing a store.
Index(
    "ux_workflows_active_digest",
    workflows.c.digest,
    unique=True,
    sqlite_where=workflows.c.state.in_(ACTIVE_WORKFLOW),
    postgresql_where=workflows.c.state.in_(ACTIVE_WORKFLOW),
)

# On a step's column: the step's run changes it (its attempt, state, outcome, or what it waits for), and
# saving a step after status events writes it. The other columns are set when the workflow is planned.
RUN = {"run": True}

steps = Table(
    "converge_steps",
    metadata,
    Column("id", String(96), primary_key=True),
    Column("workflow_id", String(64), nullable=False),
    Column("idx", Integer, nullable=False),
    Column("resource", String(512), nullable=False),
    Column("kind", String(128), nullable=False),
    Column("name", String(384), nullable=False),
    Column("role", String(64), nullable=False),
    Column("scope", String(64)),
    Column("spec", Text, nullable=False),
    Column("depends_on", Text, nullable=False),
    Column("dependents", Text, nullable=False),
    # The steps whose change makes this one run (JSON, a resource's `on_change`); NULL in older stores: none.
    Column("on_change", Text),
    Column("waiting", Integer, nullable=False, info=RUN),
    Column("state", String(16), nullable=False, info=RUN),
    Column("attempt", Integer, nullable=False, info=RUN),
    Column("changed", Boolean, info=RUN),
    Column("agent", String(128), info=RUN),
    Column("progress", Float, info=RUN),
    Column("message", Text, info=RUN),
    Column("error", Text, info=RUN),
    Column("started_at", Float, info=RUN),
    Column("finished_at", Float, info=RUN),
    Column("last_seq", Integer, nullable=False, info=RUN),
    Column("last_report_at", Float, info=RUN),
    # A retry waiting out its backoff: dispatched once this time has passed.
    Column("not_before", Float, info=RUN),
    # The attempt before this one, when the engine gave up on it unheard (lost with its agent): a success it
    # reports late still counts, until this attempt has started.
    Column("lost_attempt", Integer, info=RUN),
    # The fencing epoch of the role's leadership that this attempt runs under (common.lifecycle): 0 for a
    # step pinned to one agent, which no election fences. Set by the attempt's first report.
    Column("epoch", Integer, info=RUN),
    Column("timeout_s", Float),
    Column("retry_attempts", Integer, nullable=False),
    Column("retry_backoff_s", Float, nullable=False),
    Column("credentials", Text, nullable=False),
    Index("ix_steps_workflow_state", "workflow_id", "state"),
    Index("ix_steps_state", "state"),
    # a workflow's steps in plan order, a page at a time (the console's workflow page)
    Index("ix_steps_workflow_idx", "workflow_id", "idx"),
)

# What each step's last finished attempt wrote (workflows.output), apart from the steps: recording status
# events never reads it, and it can be 64 KB a step.
step_outputs = Table(
    "converge_step_outputs",
    metadata,
    Column("step_id", String(96), primary_key=True),
    Column("workflow_id", String(64), nullable=False),
    Column("attempt", Integer, nullable=False),
    Column("output", Text, nullable=False),
    Index("ix_step_outputs_workflow", "workflow_id"),
)

# The columns a step's run changes, in table order.
RUN_COLUMNS = tuple(column.name for column in steps.columns if column.info.get("run"))

# Operator tokens: only a token's SHA-256 is kept, so that a copy of the store grants no access.
tokens = Table(
    "converge_tokens",
    metadata,
    Column("name", String(64), primary_key=True),
    Column("role", String(16), nullable=False),
    Column("digest", String(64), nullable=False, unique=True),
    Column("created_at", Float, nullable=False),
    Column("last_used_at", Float),
)

# Agents that asked to be admitted (engine.admission): the public key each proves its id with, what it told
# of its host, and the operator's decision. No secret: an admitted agent's credentials are never stored.
enrollments = Table(
    "converge_enrollments",
    metadata,
    Column("id", String(64), primary_key=True),
    Column("roles", Text, nullable=False),
    Column("public_key", Text, nullable=False),
    Column("capabilities", Text, nullable=False),
    Column("state", String(16), nullable=False),
    Column("created_at", Float, nullable=False),
    Column("updated_at", Float, nullable=False),
    Column("last_seen_at", Float, nullable=False),
)

# The vault (engine.vault): each credential's value encrypted with a key that is not in the store, so that a
# copy of the store reveals no secret.
credentials = Table(
    "converge_credentials",
    metadata,
    Column("name", String(64), primary_key=True),
    Column("ciphertext", Text, nullable=False),
    Column("created_at", Float, nullable=False),
    Column("updated_at", Float, nullable=False),
)

# Every credential handed out or refused: who asked, for which step attempt, and why a refusal was one.
credential_audit = Table(
    "converge_credential_audit",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("at", Float, nullable=False),
    Column("name", String(64)),  # None when the request was refused before its body was read
    Column("agent", String(128), nullable=False),
    Column("step_id", String(96)),
    Column("attempt", Integer),
    Column("epoch", Integer),
    Column("outcome", String(16), nullable=False),
    Column("reason", Text),
    Index("ix_credential_audit_name", "name"),
)

# Policies (common.policy): agent settings set centrally for every agent of a role, one row per key; the
# value as JSON, and who set it when.
policies = Table(
    "converge_policies",
    metadata,
    Column("role", String(64), primary_key=True),
    Column("key", String(64), primary_key=True),
    Column("value", Text, nullable=False),
    Column("set_by", String(64), nullable=False),
    Column("set_at", Float, nullable=False),
)

# Schedules (engine.scheduler): a desired state checked again every `every_s` (`converge schedule set`),
# and the report of its last check (engine.compliance): which resources drifted, their diffs, since when.
schedules = Table(
    "converge_schedules",
    metadata,
    Column("name", String(255), primary_key=True),
    Column("source", Text, nullable=False),
    Column("filename", String(1024), nullable=False),
    Column("every_s", Float, nullable=False),
    Column("mode", String(16), nullable=False),
    Column("set_by", String(64), nullable=False),
    Column("set_at", Float, nullable=False),
    Column("next_at", Float, nullable=False),
    Column("checked_at", Float),
    Column("state", String(16), nullable=False),  # pending, compliant, drifted, error
    Column("report", Text, nullable=False),  # JSON: [{resource, agent, action, diff, since}]
    Column("error", Text),
    Column("workflow_id", String(64)),  # the last correction an `enforce` schedule applied
    Index("ix_schedules_next", "next_at"),
)

# Import sources (engine.imports): an LDAP directory or an inventory folder polled every `every_s`
# (`converge sources add`); `config` is the kind's settings as JSON (url, base DNs, filter, credential, path).
import_sources = Table(
    "converge_import_sources",
    metadata,
    Column("name", String(255), primary_key=True),
    Column("kind", String(16), nullable=False),  # ldap, inventory
    Column("config", Text, nullable=False),
    Column("every_s", Float, nullable=False),
    Column("set_by", String(64), nullable=False),
    Column("set_at", Float, nullable=False),
    Column("next_at", Float, nullable=False),
    Column("polled_at", Float),
    Column("error", Text),  # what the last poll could not do, or None
)

# Machines a source listed (`converge machines list`). One row per (source, name), inserted only if absent,
# so two polls or a restarted engine never start two imports of one machine.
machines = Table(
    "converge_machines",
    metadata,
    Column("source", String(255), primary_key=True),
    Column("name", String(255), primary_key=True),  # the host name its agent reports
    Column("catalog", String(255), nullable=False),
    Column("state", String(16), nullable=False),  # discovered, importing, imported, failed, removed
    Column("workflow_id", String(64)),  # its import workflow
    Column("differences", Text, nullable=False),  # JSON: the capability test's differences, last failure
    Column("seen_at", Float, nullable=False),
    Column("changed_at", Float, nullable=False),
)

# Catalogs (resources of kind `catalog`, stored by the engine's own agent): the capability document its
# machines must have (`expected`), or the machine whose document is the master image (`reference`), and the
# roles its machines' agents are admitted with.
catalogs = Table(
    "converge_catalogs",
    metadata,
    Column("name", String(255), primary_key=True),
    Column("expected", Text),  # a capability document, XML or JSON; None with a reference
    Column("reference", String(255)),  # a machine's host name; None with an expected document
    Column("roles", Text, nullable=False),  # JSON list
    Column("set_at", Float, nullable=False),
)
