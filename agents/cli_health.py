"""`converge-agent health`: whether the agent on this host is alive (`--alive`) and ready, for a service
manager (systemd's ExecStartPost or watchdog, a Kubernetes exec probe). It reads the health file the agent's
heartbeat writes (agents.healthfile) and never talks to Redis or the engine itself: a probe must be cheap,
and must say what the agent sees, not what the probe sees."""

from __future__ import annotations

import json
import sys
import time

import click

from agents import config, healthfile
from agents.health import judge
from common import cli as common_cli

handle_errors = common_cli.handle_errors("converge-agent")
NOT_OK = 3  # CLI.md: the agent (like the engine, Redis or the store) cannot be reached


@click.command("health")
@click.option("--alive", is_flag=True, help="Liveness only: its process runs, its heartbeat beats.")
@click.option("--id", "agent_id", default=None, help="The agent to check (default: as `run` resolves it).")
@click.option("--role", "roles", multiple=True, help="Its roles, when its id comes from them (repeatable).")
@click.option("--json", "as_json", is_flag=True, help="One JSON document on stdout.")
@handle_errors
def health_cmd(alive: bool, agent_id: str | None, roles: tuple[str, ...], as_json: bool) -> None:
    """Exit 0 when the agent is alive and ready (its last heartbeat reached Redis, it is admitted); with
    --alive, when it is alive. Else exit 3 with a one-line reason."""
    resolved = config.load({"id": agent_id, "roles": list(roles) or None})
    settings = resolved.settings
    named = resolved.sources["id"] != "default" or resolved.sources["roles"] != "default"
    path = healthfile.locate(settings, named)
    try:
        record = healthfile.read(path)
    except healthfile.NoHealthFile:
        state_dir = settings.state_dir.expanduser()
        reason = f"no agent has run in {state_dir}: start it with `converge-agent run`"
        if named:
            reason = f"agent {settings.id} has not run in {state_dir}: start it with `converge-agent run`"
        _answer(False, reason, as_json, {"file": str(path), "agent": None})
        return
    verdict = judge(record, time.time(), healthfile.pid_alive(record), alive_only=alive)
    _answer(verdict.ok, verdict.reason, as_json, {"file": str(path), "agent": record.model_dump(mode="json")})


def _answer(ok: bool, reason: str, as_json: bool, extra: dict[str, object]) -> None:
    if as_json:
        click.echo(json.dumps({"ok": ok, "reason": reason, **extra}, indent=2))
    else:
        click.echo(reason)
    if not ok:
        sys.exit(NOT_OK)
