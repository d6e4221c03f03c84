"""`converge agents admit | deny | revoke ID`: the operator's decision on an enrolled agent, through the API
(an admin's token). `converge agents list` shows who waits (state `pending`)."""

from __future__ import annotations

import click

from engine import render
from engine.cli import client_for, handle_errors, json_option, url_option

_DONE = {
    "admit": "admitted agent {id}: it gets its credentials when it next asks (within seconds)",
    "deny": "denied agent {id}: it stops waiting and exits",
    "revoke": "revoked agent {id}: its Redis user and its token are deleted, its running steps run again",
}


def _decide(action: str, agent_id: str, as_json: bool, url: str | None) -> None:
    answer = client_for(url).decide(action, agent_id)
    if as_json:
        render.emit_json(answer)
    else:
        click.echo(_DONE[action].format(id=agent_id))


def _command(action: str, help_text: str) -> click.Command:
    @click.command(action, help=help_text)
    @click.argument("agent_id", metavar="ID")
    @json_option
    @url_option
    @handle_errors
    def command(agent_id: str, as_json: bool, url: str | None) -> None:
        _decide(action, agent_id, as_json, url)

    return command


admit = _command(
    "admit", "Admit an enrolled agent: it gets its own Redis user and API token, and runs steps."
)
deny = _command("deny", "Turn away an agent that waits for admission: it exits with code 1.")
revoke = _command(
    "revoke",
    "Take back an agent's admission: its Redis user and token are deleted at once, its running steps run "
    "again on another agent of their role.",
)


def attach(group: click.Group) -> None:
    """Add the commands to the `agents` group."""
    for command in (admit, deny, revoke):
        group.add_command(command)
