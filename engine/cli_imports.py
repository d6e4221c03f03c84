"""`converge sources`, `converge machines` and `converge catalogs`: where the engine finds new machines,
what became of each, and the catalogs they are validated against (engine.imports, through the API)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import click
from rich.markup import escape
from rich.table import Table

from common import durations
from engine import render
from engine.cli import client_for, handle_errors, json_option, url_option
from engine.imports.sources import DEFAULT_EVERY


def _when(at: float | None) -> str:
    return "-" if at is None else datetime.fromtimestamp(at).strftime("%Y-%m-%d %H:%M:%S")


def _table(title: str, columns: tuple[str, ...], rows: list[tuple[Any, ...]]) -> None:
    table = Table(*columns, title=title)
    for row in rows:
        table.add_row(*(escape(str(c)) for c in row))
    render.console.print(table)


@click.group()
def sources() -> None:
    """Import sources: an LDAP directory's import OUs, or an inventory folder. The engine polls each at its
    interval and imports every machine it lists for the first time (`converge machines list`)."""


@sources.command("add")
@click.argument("name")
@click.option("--kind", type=click.Choice(["ldap", "inventory"]), required=True, help="What the source is.")
@click.option("--url", "ldap_url", default=None, help="ldap: the server, ldap://HOST[:PORT] or ldaps://...")
@click.option("--base-dn", "base_dns", multiple=True, help="ldap: an import OU's DN (repeat for several).")
@click.option("--filter", "ldap_filter", default=None, help="ldap: the computer objects' filter.")
@click.option("--bind-dn", default=None, help="ldap: the DN to bind as (none: an anonymous bind).")
@click.option("--bind-credential", default=None, help="ldap: the vault credential holding its password.")
@click.option(
    "--catalog", default=None, help="The catalog its machines join (ldap: unless the object names one)."
)
@click.option(
    "--catalog-attribute", default=None, help="ldap: the computer object's attribute naming its catalog."
)
@click.option(
    "--name-attribute", default=None, help="ldap: the attribute holding the host name (default cn)."
)
@click.option("--path", default=None, help="inventory: the folder, one NAME.yaml or NAME.json per machine.")
@click.option(
    "--every", default=DEFAULT_EVERY, show_default=True, metavar="DURATION", help="How often to poll."
)
@click.option(
    "--engine-url",
    "url",
    default=None,
    help="The engine API (CONVERGE_URL); `--url` is the directory's here, as the operator contract has it.",
)
@json_option
@handle_errors
def sources_add(
    name: str,
    kind: str,
    ldap_url: str | None,
    base_dns: tuple[str, ...],
    ldap_filter: str | None,
    bind_dn: str | None,
    bind_credential: str | None,
    catalog: str | None,
    catalog_attribute: str | None,
    name_attribute: str | None,
    path: str | None,
    every: str,
    as_json: bool,
    url: str | None,
) -> None:
    """Add the import source NAME (or replace the one of that name); it is polled at once. Needs an admin's
    token: the machines it lists are admitted once their capabilities match their catalog."""
    durations.parse(every, what="--every")  # bad input before anything is sent
    given = {
        "url": ldap_url,
        "base_dns": list(base_dns),
        "filter": ldap_filter,
        "bind_dn": bind_dn,
        "bind_credential": bind_credential,
        "catalog": catalog,
        "catalog_attribute": catalog_attribute,
        "name_attribute": name_attribute,
        "path": path,
    }
    body = {"kind": kind, "every": every} | {k: v for k, v in given.items() if v not in (None, [])}
    made, replaced = client_for(url, url_option="--engine-url").add_source(name, body)
    if as_json:
        render.emit_json({"source": made, "replaced": replaced})
        return
    verb = "replaced" if replaced else "added"
    click.echo(
        f"import source {made['name']} ({made['kind']}) {verb}: polled every {made['every']}, first now"
    )
    click.echo("`converge machines list` shows the machines it finds and their imports")


@sources.command("list")
@json_option
@url_option
@handle_errors
def sources_list(as_json: bool, url: str | None) -> None:
    """Every import source: its kind, interval, last poll, and the error of that poll if it failed."""
    found = client_for(url).sources()
    if as_json:
        render.emit_json(found)
        return
    if not found:
        click.echo("no import source: `converge sources add NAME --kind inventory --path DIR` adds one")
        return
    rows = []
    for s in found:
        where = s["config"].get("url") or s["config"].get("path", "")
        rows.append((s["name"], s["kind"], where, s["every"], _when(s["polled_at"]), s["error"] or "ok"))
    _table(f"import sources ({len(found)})", ("NAME", "KIND", "WHERE", "EVERY", "POLLED", "LAST POLL"), rows)


@sources.command("remove")
@click.argument("name")
@url_option
@handle_errors
def sources_remove(name: str, url: str | None) -> None:
    """Stop polling the import source NAME. The machines it listed stay in `converge machines list`."""
    client_for(url).remove_source(name)
    click.echo(f"import source {name} removed; the machines it imported stay imported")


@click.group()
def machines() -> None:
    """The machines the import sources listed, and where each one's import stands."""


@machines.command("list")
@json_option
@url_option
@handle_errors
def machines_list(as_json: bool, url: str | None) -> None:
    """Every machine: its source, catalog and state (discovered, importing, imported, failed, or removed
    from its source), with the differences from its catalog when its import failed."""
    found = client_for(url).machines()
    if as_json:
        render.emit_json(found)
        return
    if not found:
        click.echo("no machine yet: `converge sources add` names where the engine finds them")
        return
    rows = [
        (m["name"], m["source"], m["catalog"], m["state"], m["workflow_id"] or "-", _when(m["changed_at"]))
        for m in found
    ]
    _table(f"machines ({len(found)})", ("MACHINE", "SOURCE", "CATALOG", "STATE", "WORKFLOW", "CHANGED"), rows)
    for m in found:
        if m["differences"]:
            click.echo(f"{m['name']} differs from catalog {m['catalog']}:")
            for difference in m["differences"]:
                click.echo(f"  - {difference}")


@click.group()
def catalogs() -> None:
    """Catalogs: the capability document the machines of each must have, and the roles of their agents.
    A catalog is a resource of kind `catalog` in a desired state (`converge apply` it)."""


@catalogs.command("list")
@json_option
@url_option
@handle_errors
def catalogs_list(as_json: bool, url: str | None) -> None:
    """Every catalog: what its machines are validated against, their roles, and the machines imported."""
    found = client_for(url).catalogs()
    if as_json:
        render.emit_json(found)
        return
    if not found:
        click.echo("no catalog: apply a desired state with a resource of kind `catalog`")
        return
    rows = [
        (c["name"], _against(c), ", ".join(c["roles"]), len(c["machines"]), _when(c["set_at"])) for c in found
    ]
    _table(f"catalogs ({len(found)})", ("NAME", "VALIDATED AGAINST", "ROLES", "MACHINES", "SET"), rows)


@catalogs.command("show")
@click.argument("name")
@json_option
@url_option
@handle_errors
def catalogs_show(name: str, as_json: bool, url: str | None) -> None:
    """The catalog NAME: its expected capability document (or reference machine), roles and machines."""
    found = client_for(url).catalog(name)
    if as_json:
        render.emit_json(found)
        return
    click.echo(f"catalog {found['name']}: {_against(found)}")
    click.echo(f"roles: {', '.join(found['roles'])}")
    click.echo(f"machines imported: {', '.join(found['machines']) or 'none yet'}")
    if found["expected"]:
        click.echo("expected capability document:")
        click.echo(found["expected"])


def _against(catalog: dict[str, Any]) -> str:
    if catalog["reference"]:
        return f"the document of reference machine {catalog['reference']}"
    return "an expected capability document"
