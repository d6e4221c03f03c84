"""`converge policy`: agent settings set for every agent of a role, through the API (an admin's token to
change them). Values are checked here before anything is sent (common.policy), and again by the engine."""

from __future__ import annotations

import json
from typing import Any

import click
from rich.markup import escape
from rich.table import Table

from common import policy as rules
from engine import render
from engine.cli import client_for, handle_errors, json_option, url_option

role_option = click.option("--role", required=True, help="The role whose agents the policy is for.")


@click.group()
def policy() -> None:
    """Agent settings for every agent of a role (the seed's group policy): they win over each agent's
    configuration file; the agent's environment and command line still win over them."""


@policy.command("set")
@role_option
@click.argument("pairs", nargs=-1, required=True, metavar="KEY=VALUE...")
@json_option
@url_option
@handle_errors
def policy_set(role: str, pairs: tuple[str, ...], as_json: bool, url: str | None) -> None:
    """Set KEYs of ROLE's policy (all are checked before anything is sent); every agent of the role
    fetches it within one heartbeat interval."""
    rules.check_role(role)
    values = rules.parse_pairs(pairs)
    after = client_for(url).set_policy(role, values)
    if as_json:
        render.emit_json({"role": role, "policy": after})
        return
    for key, value in values.items():
        click.echo(f"{role}: {key}={_shown(value)}")
    click.echo(
        f"every agent of role {role} fetches it within one heartbeat interval; its environment and "
        "command line still win over a policy"
    )


@policy.command("show")
@click.option("--role", default=None, help="Only this role's policy.")
@json_option
@url_option
@handle_errors
def policy_show(role: str | None, as_json: bool, url: str | None) -> None:
    """Every policy: each key of each role, its value, and who set it when."""
    if role is not None:
        rules.check_role(role)
    records = client_for(url).policies(role)
    if as_json:
        render.emit_json(records)
        return
    if not records:
        where = f"role {role} has" if role else "no role has"
        click.echo(f"{where} no policy: `converge policy set --role ROLE KEY=VALUE` sets one")
        return
    table = Table("ROLE", "KEY", "VALUE", "SET BY", "SET AT", title=f"policies ({len(records)} keys)")
    for r in records:
        cells = (r["role"], r["key"], _shown(r["value"]), r["set_by"], r["set_at"])
        table.add_row(*(escape(str(c)) for c in cells))
    render.console.print(table)


@policy.command("unset")
@role_option
@click.argument("keys", nargs=-1, metavar="[KEY]...")
@json_option
@url_option
@handle_errors
def policy_unset(role: str, keys: tuple[str, ...], as_json: bool, url: str | None) -> None:
    """Remove KEYs from ROLE's policy (every key when none is given): its agents go back to their own."""
    rules.check_role(role)
    for key in keys:
        rules.check_key(key)
    removed, left = client_for(url).unset_policy(role, list(keys))
    if as_json:
        render.emit_json({"role": role, "removed": removed, "policy": left})
        return
    if not removed:
        click.echo(f"nothing to unset: role {role}'s policy holds none of that")
    for key in removed:
        click.echo(f"{role}: {key} unset")


def _shown(value: Any) -> str:
    return ",".join(map(str, value)) if isinstance(value, list) else json.dumps(value).strip('"')
