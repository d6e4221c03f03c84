"""`converge credentials`: the vault, on the engine's host. Like `converge tokens`, these commands use the
store (CONVERGE_STORE_URL) and the vault's key (under CONVERGE_HOME) directly: whoever can read both can
already read every credential. A value is read from a hidden prompt or from stdin, never from the command
line, which any user of the host can read (`ps`).
"""

from __future__ import annotations

import sys
from dataclasses import asdict

import click
from rich.markup import escape
from rich.table import Table

from common.errors import BadInput
from common.settings import load_settings
from engine import render
from engine.cli import _iso as iso
from engine.cli import handle_errors, home_option, json_option, opened_store, store_option


@click.group()
def credentials() -> None:
    """Credentials that steps fetch while they run (encrypted at rest; values are never shown)."""


@credentials.command("set")
@click.argument("name")
@store_option
@home_option
@handle_errors
def credentials_set(name: str, store_url: str | None, home: str | None) -> None:
    """Store NAME's value, read from a hidden prompt (a terminal) or from stdin; replaces any earlier one."""
    from engine import vault

    vault.check_name(name)
    settings = load_settings(store_url=store_url, home=home)
    value = _read_value(name)
    with opened_store(settings.store_url) as store:
        created = vault.put(store, vault.Vault.at(vault.key_path(settings)), name, value)
    click.echo(f"{'stored' if created else 'replaced'} credential {name}")


def _read_value(name: str) -> str:
    """The value from a hidden prompt when stdin is a terminal, else all of stdin less one final newline."""
    if sys.stdin.isatty():
        value: str = click.prompt(f"value of {name}", hide_input=True, confirmation_prompt=True)
    else:
        value = sys.stdin.read().removesuffix("\n").removesuffix("\r")
    if not value:
        raise BadInput(f"the value of credential {name!r} is empty: nothing was stored")
    return value


@credentials.command("list")
@store_option
@json_option
@handle_errors
def credentials_list(store_url: str | None, as_json: bool) -> None:
    """Every credential's name, creation and last change (never a value)."""
    with opened_store(load_settings(store_url=store_url).store_url) as store:
        records = store.credential_records()
    rows = [{**asdict(r), "created_at": iso(r.created_at), "updated_at": iso(r.updated_at)} for r in records]
    if as_json:
        render.emit_json(rows)
        return
    table = Table("NAME", "CREATED", "UPDATED", title=f"credentials ({len(rows)})")
    for row in rows:
        table.add_row(escape(row["name"]), row["created_at"], row["updated_at"])
    render.console.print(table)


@credentials.command("delete")
@click.argument("name")
@store_option
@handle_errors
def credentials_delete(name: str, store_url: str | None) -> None:
    """Delete a credential: steps that list it are refused it from now on."""
    with opened_store(load_settings(store_url=store_url).store_url) as store:
        store.delete_credential(name)
    click.echo(f"deleted credential {name}")


@credentials.command("audit")
@click.option("--name", default=None, help="Only this credential's entries.")
@click.option("--limit", type=click.IntRange(1, 100_000), default=100, show_default=True)
@store_option
@json_option
@handle_errors
def credentials_audit(name: str | None, limit: int, store_url: str | None, as_json: bool) -> None:
    """Every credential handed out or refused, newest first: to which agent, for which step attempt, why."""
    with opened_store(load_settings(store_url=store_url).store_url) as store:
        entries = store.audit_entries(name, limit)
    rows = [{**asdict(e), "at": iso(e.at)} for e in entries]
    if as_json:
        render.emit_json(rows)
        return
    table = Table(
        "AT", "OUTCOME", "CREDENTIAL", "AGENT", "STEP", "ATTEMPT", "EPOCH", "REASON", title="credential audit"
    )
    for row in rows:
        cells = [row[k] for k in ("at", "outcome", "name", "agent", "step_id", "attempt", "epoch", "reason")]
        table.add_row(*(escape("-" if cell is None else str(cell)) for cell in cells))
    render.console.print(table)
