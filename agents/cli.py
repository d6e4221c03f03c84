"""`converge-agent`: run an agent on a managed host."""

from __future__ import annotations

import sys

import click
from pydantic import ValidationError

from agents import worker
from agents.config import AgentSettings
from common import names
from common.errors import ConvergeError


@click.group()
@click.version_option(worker.converge_version(), prog_name="converge-agent")
def main() -> None:
    """Converge agent: runs the steps of its roles on this host."""


@main.command("run")
@click.option("--role", "roles", multiple=True, required=True, help="A role this agent serves (repeatable).")
@click.option("--id", "agent_id", default=None, help="This agent's id (default: the host name).")
@click.option("--throttle", type=int, default=None, help="Most steps run at once (default 20).")
@click.option("--broker-url", default=None, envvar="CONVERGE_BROKER_URL", help="Redis URL.")
@click.option("--loglevel", default=None, help="Log level (INFO, DEBUG...).")
@click.option(
    "--task-events/--no-task-events", default=None, help="Send Celery task events for Flower (default: on)."
)
def run_cmd(
    roles: tuple[str, ...],
    agent_id: str | None,
    throttle: int | None,
    broker_url: str | None,
    loglevel: str | None,
    task_events: bool | None,
) -> None:
    """Run the agent: consume the queues of ROLE and of this agent until stopped."""
    overrides = {"roles": list(roles), "id": agent_id, "throttle": throttle, "broker_url": broker_url}
    overrides |= {"loglevel": loglevel, "task_events": task_events}
    try:
        settings = AgentSettings.model_validate({k: v for k, v in overrides.items() if v is not None})
    except ValidationError as exc:
        _fail(2, "invalid agent setting: " + "; ".join(f"{e['loc'][0]}: {e['msg']}" for e in exc.errors()))
    for name in [*settings.roles, settings.id]:
        if not names.valid_name(name):
            _fail(2, f"invalid role or id {name!r}: use letters, digits, '.', '_' and '-' (they name queues)")
    try:
        worker.run(settings)
    except ConvergeError as exc:
        _fail(exc.exit_code, str(exc))


def _fail(code: int, message: str) -> None:
    click.echo(f"converge-agent: {message}", err=True)
    sys.exit(code)
