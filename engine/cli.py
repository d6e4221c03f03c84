"""`converge`: the operator's command line. Thin: parse, call one library function, render."""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeVar

import click
from rich.markup import escape
from rich.table import Table

from common import cli as common_cli
from common.errors import BadInput, ConvergeError, NotFound
from common.models import HistoryCount, WorkflowState, WorkflowView
from common.settings import load_settings
from common.store import SqlStore, open_store
from engine import deadletters, recap, render
from engine.client import EngineClient
from engine.deadletters import DeadLetter
from workflows.registry import default_registry
from workflows.sources import DesiredInput, load_input, parse_vars, read_path, read_vars_file

F = TypeVar("F", bound=Callable[..., Any])
WORKFLOW_STATES = [s.value for s in WorkflowState]


# Every Converge error (settings errors included) becomes its message and exit code: no traceback.
handle_errors = common_cli.handle_errors("converge")


def url_option(func: F) -> F:
    # No click envvar: the settings read CONVERGE_URL themselves, so that an error names its source.
    return click.option("--url", default=None, help="The engine API (CONVERGE_URL).")(func)


store_option = click.option(
    "--store-url", default=None, help="SQLAlchemy URL of the store (CONVERGE_STORE_URL)."
)
home_option = click.option(
    "--home", default=None, help="The engine's folder for its certificates (CONVERGE_HOME)."
)
json_option = click.option("--json", "as_json", is_flag=True, help="Print one JSON document.")
timeout_option = click.option(
    "--timeout", "timeout_s", type=float, default=None, help="With --wait: give up after S seconds."
)


def client_for(url: str | None, url_option: str = "--url") -> EngineClient:
    """A client of the engine at `url` (or the settings'); `url_option` is the option that sets it."""
    settings = load_settings(url=url)
    return EngineClient(
        settings.url,
        settings.token,
        ca=settings.ca,
        ca_fingerprint=settings.ca_fingerprint,
        url_option=url_option,
    )


@contextmanager
def opened_store(url: str) -> Iterator[SqlStore]:
    store = open_store(url)
    try:
        yield store
    finally:
        store.close()


def read_desired(
    path: str, limit: tuple[str, ...] = (), var: tuple[str, ...] = (), vars_file: str | None = None
) -> DesiredInput:
    """Read a desired-state file, or a folder of them, and check it here, before anything is sent."""
    variables = {**read_vars_file(vars_file), **parse_vars(var)} if vars_file else parse_vars(var)
    given = DesiredInput(files=read_path(path), limit=list(limit), vars=variables)
    load_input(given, default_registry())
    return given


def vars_options(func: F) -> F:
    func = click.option(
        "--vars-file",
        "vars_file",
        metavar="FILE",
        help="A YAML mapping of variables, over the file's vars: (--var wins over it).",
    )(func)
    return click.option(
        "--var",
        "var",
        multiple=True,
        metavar="NAME=VALUE",
        help="A variable for templates (vars.NAME), over --vars-file and the file's vars:; repeatable.",
    )(func)


def limit_option(func: F) -> F:
    return click.option(
        "--limit",
        "limit",
        multiple=True,
        metavar="KIND/NAME",
        help="Only this resource and what it runs after (depends_on, on_change), transitively; repeatable.",
    )(func)


# `plan --detailed-exitcode`, as Terraform's: 0 when nothing would change, 4 when something would.
NO_CHANGES = 0
CHANGES_PENDING = 4
# -h as well as --help, on every command (subcommands inherit it from the group's context).
CONTEXT_SETTINGS = {"help_option_names": ["-h", "--help"]}


@click.group(context_settings=CONTEXT_SETTINGS)
@click.version_option(package_name="converge", prog_name="converge")
def main() -> None:
    """Converge: declare what your hosts must look like; agents make it so."""


@main.group()
def engine() -> None:
    """The engine service."""


@engine.command("run")
# No click envvars: the settings read CONVERGE_* themselves, so that an error names its source.
@click.option("--broker-url", default=None, help="Redis (CONVERGE_BROKER_URL).")
@click.option("--store-url", default=None, help="SQLAlchemy URL of the store (CONVERGE_STORE_URL).")
@click.option("--api-bind", default=None, help="host:port to listen on (CONVERGE_API_BIND).")
@home_option
@click.option(
    "--insecure-http",
    is_flag=True,
    default=None,
    help="Serve plain HTTP, on a loopback address only (CONVERGE_INSECURE_HTTP).",
)
@click.option(
    "--no-migrate",
    "no_migrate",
    is_flag=True,
    default=None,
    help="Do not migrate the store at start; refuse one behind this release (CONVERGE_MIGRATE_AT_START).",
)
@click.option(
    "--no-local-agent",
    "no_local_agent",
    is_flag=True,
    default=None,
    help="Do not start the engine's own agent (role engine: imports, catalogs) (CONVERGE_LOCAL_AGENT).",
)
@click.option(
    "--log-format",
    type=click.Choice(["text", "json"]),
    default=None,
    help="Log as text lines or JSON lines (CONVERGE_LOG_FORMAT; default text).",
)
@handle_errors
def engine_run(
    broker_url: str | None,
    store_url: str | None,
    api_bind: str | None,
    home: str | None,
    insecure_http: bool | None,
    no_migrate: bool | None,
    no_local_agent: bool | None,
    log_format: str | None,
) -> None:
    """Run the engine: API (HTTPS with the certificate of `engine init`), dispatcher and status ingester."""
    from engine import service

    settings = load_settings(
        broker_url=broker_url,
        store_url=store_url,
        api_bind=api_bind,
        home=home,
        insecure_http=insecure_http,
        migrate_at_start=False if no_migrate else None,
        local_agent=False if no_local_agent else None,
        log_format=log_format,
    )
    service.run(settings)


@engine.command("migrate")
@click.option("--store-url", default=None, help="SQLAlchemy URL of the store (CONVERGE_STORE_URL).")
@json_option
@handle_errors
def engine_migrate(store_url: str | None, as_json: bool) -> None:
    """Migrate the store to this release's schema (what `engine run` does at start)."""
    settings = load_settings(store_url=store_url)
    with opened_store(settings.store_url) as store:  # opening it migrates it
        result = store.migration
    assert result is not None
    if as_json:
        render.emit_json({"from": result.from_revision, "to": result.to_revision, "applied": result.applied})
    elif result.current:
        click.echo(f"the store is already at revision {result.to_revision}: nothing to migrate")
    else:
        click.echo(
            f"the store migrated from revision {result.from_revision or 'none'} to {result.to_revision} "
            f"({', '.join(result.applied)})"
        )


@engine.command("health")
@url_option
@json_option
@handle_errors
def engine_health(url: str | None, as_json: bool) -> None:
    """Whether the engine answers and its Redis and store work: exit 0 if so, 3 if not (for a service
    manager's health check)."""
    report = client_for(url).health_report()
    ok = bool(report.get("ok"))
    if as_json:
        render.emit_json(report)
    else:
        problems = [
            f"{part}: {report[part].get('error')}"
            for part in ("redis", "store")
            if not report.get(part, {}).get("ok")
        ]
        click.echo("healthy" if ok else "unhealthy: " + "; ".join(problems))
    if not ok:
        sys.exit(3)


@engine.command("ready")
@url_option
@json_option
@handle_errors
def engine_ready(url: str | None, as_json: bool) -> None:
    """Whether the engine can serve now (its store and Redis answer): exit 0 if so, 3 if not, with a
    one-line reason (for a service manager's readiness check)."""
    report = client_for(url).ready_report()
    ready = report.get("ready") is True
    if as_json:
        render.emit_json(report)
    else:
        click.echo("ready" if ready else str(report.get("error") or "not ready"))
    if not ready:
        sys.exit(3)


@engine.command("init")
@click.option("--san", multiple=True, help="Another host name or address for the certificate (repeatable).")
@click.option("--force", is_flag=True, help="Renew the server certificate (the CA and its fingerprint stay).")
@store_option
@home_option
@json_option
@handle_errors
def engine_init(
    san: tuple[str, ...], force: bool, store_url: str | None, home: str | None, as_json: bool
) -> None:
    """Make the CA, the server certificate, the key that signs steps and a first admin token; print the
    CA's fingerprint and where the agents' `engine_key` is."""
    from common.signing import load_or_create_secret
    from engine import auth, eventkeys, tls, vault
    from engine.service import SIGNING_PUBLIC, signing_key

    settings = load_settings(store_url=store_url, home=home)
    files = tls.TlsFiles.under(settings.home)
    fingerprint = tls.init(files, list(san), force=force)
    signing_key(settings.home)
    load_or_create_secret(settings.home / eventkeys.SECRET_FILE)
    vault.load_or_create_key(vault.key_path(settings))
    engine_key = (settings.home / SIGNING_PUBLIC).resolve()
    with opened_store(settings.store_url) as store:
        token = auth.first_token(store)
    if as_json:
        render.emit_json(
            {
                "fingerprint": fingerprint,
                "ca": str(files.ca_cert.resolve()),
                "token": token,
                "engine_key": str(engine_key),
            }
        )
        return
    click.echo(f"CA certificate: {files.ca_cert.resolve()}\nCA fingerprint (SHA-256): {fingerprint}")
    if token:
        click.echo(f"admin token (shown once): {token}\n  export CONVERGE_TOKEN={token}")
    click.echo(f"clients trust the engine with CONVERGE_CA={files.ca_cert.resolve()} or the fingerprint")
    click.echo(
        f"agents run only steps signed by this engine: copy {engine_key} to each agent host and set it"
    )
    click.echo("  converge-agent config set engine_key=PATH")


@main.group()
def tokens() -> None:
    """Operator tokens for the engine API, kept in the store (these commands use the store directly)."""


@tokens.command("create")
@click.option("--name", required=True, help="Who or what uses it; shown in logs and `tokens list`.")
@click.option(
    "--role", type=click.Choice(["admin", "operator", "viewer"]), default="operator", show_default=True
)
@store_option
@json_option
@handle_errors
def tokens_create(name: str, role: str, store_url: str | None, as_json: bool) -> None:
    """Create a token and print it: the only time it is shown."""
    from engine import auth

    with opened_store(load_settings(store_url=store_url).store_url) as store:
        token = auth.create(store, name, auth.Role.named(role))
    if as_json:
        render.emit_json({"name": name, "role": role, "token": token})
    else:
        click.echo(f"token {name} ({role}), shown once:\n{token}")


@tokens.command("list")
@store_option
@json_option
@handle_errors
def tokens_list(store_url: str | None, as_json: bool) -> None:
    """Every token's name, role, creation and last use (never the token)."""
    with opened_store(load_settings(store_url=store_url).store_url) as store:
        records = store.tokens()
    rows = [
        {**asdict(r), "created_at": _iso(r.created_at), "last_used_at": _iso(r.last_used_at)} for r in records
    ]
    if as_json:
        render.emit_json(rows)
        return
    table = Table("NAME", "ROLE", "CREATED", "LAST USED", title=f"tokens ({len(rows)})")
    for row in rows:
        table.add_row(escape(row["name"]), row["role"], row["created_at"], row["last_used_at"] or "never")
    render.console.print(table)


def _iso(when: float | None) -> str | None:
    return None if when is None else datetime.fromtimestamp(when, UTC).isoformat()


@tokens.command("revoke")
@click.argument("name")
@store_option
@handle_errors
def tokens_revoke(name: str, store_url: str | None) -> None:
    """Delete a token: the engine refuses it from the next request on."""
    with opened_store(load_settings(store_url=store_url).store_url) as store:
        store.revoke_token(name)
    click.echo(f"revoked token {name}")


@main.command()
@click.argument("file")
@click.option("--wait", is_flag=True, help="Wait until the workflow finishes; exit 0 only if it succeeded.")
@timeout_option
@limit_option
@vars_options
@json_option
@url_option
@handle_errors
def apply(
    file: str,
    wait: bool,
    timeout_s: float | None,
    limit: tuple[str, ...],
    var: tuple[str, ...],
    vars_file: str | None,
    as_json: bool,
    url: str | None,
) -> None:
    """Converge the estate to the desired state in FILE (a file, or a folder of *.yaml and *.yml files)."""
    given = read_desired(file, limit, var, vars_file)
    client = client_for(url)
    submitted = client.apply(given)
    view = submitted.workflow
    if not submitted.created and not as_json:
        render.errors.print(f"the same desired state is already being applied by workflow {view.id}")
    for warning in submitted.warnings:
        render.warn(warning)
    if wait:
        view = render.follow(lambda: client.workflow(view.id), timeout_s, live=not as_json)
    finish(view, as_json, waited=wait, timeout_s=timeout_s, warnings=submitted.warnings)


def finish(
    view: WorkflowView,
    as_json: bool,
    *,
    waited: bool,
    timeout_s: float | None = None,
    warnings: list[str] | None = None,
) -> None:
    """Print a workflow (and, in JSON, the warnings of its apply) and exit with the code of CLI.md."""
    counts = recap.recap(view.steps or [])
    if as_json:
        extra: dict[str, Any] = {} if warnings is None else {"warnings": warnings}
        if waited:
            extra["recap"] = counts
        render.emit_json({"workflow": view.model_dump(mode="json"), **extra})
    elif waited:
        render.workflow_result(view, counts)
    else:
        click.echo(f"workflow {view.id} {view.state}: follow it with `converge workflows show {view.id}`")
    if not waited:
        return
    if view.state == WorkflowState.SUCCEEDED:
        return
    if view.state in (WorkflowState.RUNNING, WorkflowState.PENDING, WorkflowState.CANCELLING):
        render.errors.print(f"workflow {view.id} still {view.state} after {timeout_s:g}s")
    sys.exit(1)


@main.command()
@click.argument("file")
@click.option(
    "--detailed-exitcode",
    is_flag=True,
    help=f"Exit {NO_CHANGES} when nothing would change and {CHANGES_PENDING} when something would (for CI).",
)
@limit_option
@vars_options
@json_option
@url_option
@handle_errors
def plan(
    file: str,
    detailed_exitcode: bool,
    limit: tuple[str, ...],
    var: tuple[str, ...],
    vars_file: str | None,
    as_json: bool,
    url: str | None,
) -> None:
    """Show what applying FILE (or a folder's files) would change, as the agents see it; changes nothing."""
    given = read_desired(file, limit, var, vars_file)
    results = client_for(url).plan(given)
    if as_json:
        changes = []
        for r in results:
            change: dict[str, Any] = {"resource": r.resource, "agent": r.agent}
            if r.change is not None:
                change.update(action=r.change.action, diff=r.change.diff)
            if r.error is not None:
                change.update(action=None, diff=None, error=r.error)
            if r.note is not None:
                change.update(note=r.note)
            changes.append(change)
        render.emit_json({"changes": changes})
    else:
        render.plan_report(results)
    if any(r.error for r in results):
        sys.exit(1)
    if detailed_exitcode and any(r.change and r.change.action != "none" for r in results):
        sys.exit(CHANGES_PENDING)


@main.group()
def workflows() -> None:
    """Look at workflows."""


@workflows.command("list")
@click.option("--state", type=click.Choice(WORKFLOW_STATES), default=None, help="Only workflows in STATE.")
@json_option
@url_option
@handle_errors
def workflows_list(state: str | None, as_json: bool, url: str | None) -> None:
    """Active workflows, and failed, aborted and cancelled ones until their retention; with --state, those
    in STATE (succeeded ones come from history)."""
    client = client_for(url)
    views = client.workflows(state)
    if as_json:
        render.emit_json([v.model_dump(mode="json", exclude={"steps"}) for v in views])
        return
    if views:
        render.workflows_table(views, "workflows" if state is None else f"{state} workflows")
    else:
        click.echo("no workflows" if state is None else f"no {state} workflows")
    if state is None:  # an empty list right after a successful apply must not look like a lost workflow
        count = client.history_count().history
        click.echo(f"succeeded workflows are in `converge workflows history` ({count} there)")


@workflows.command("show")
@click.argument("workflow_id")
@json_option
@url_option
@handle_errors
def workflows_show(workflow_id: str, as_json: bool, url: str | None) -> None:
    """One workflow and its steps, and the last lines each failed step's command wrote."""
    client = client_for(url)
    view = client.workflow(workflow_id)
    logs = client.logs(view.id)
    if as_json:
        outputs = {log.id: log.output for log in logs}
        document = view.model_dump(mode="json")
        for step in document["steps"] or []:
            output = outputs.get(step["id"])
            step["output"] = None if output is None else output.model_dump(mode="json")
        render.emit_json(document)
    else:
        render.workflow_detail(view)
        render.failed_output(view, logs)


@workflows.command("logs")
@click.argument("workflow_id")
@click.argument("step", required=False, metavar="[KIND/NAME]")
@json_option
@url_option
@handle_errors
def workflows_logs(workflow_id: str, step: str | None, as_json: bool, url: str | None) -> None:
    """What each step's command wrote, stdout and stderr interleaved with their times (the last 64 KB of
    each step's last finished attempt); only STEP's with KIND/NAME."""
    logs = client_for(url).logs(workflow_id)
    if step is not None:
        chosen = [log for log in logs if log.resource == step]
        if not chosen:
            names = ", ".join(log.resource for log in logs[:20])
            raise NotFound(f"workflow {workflow_id} has no step {step}: its steps are {names}")
        logs = chosen
    if as_json:
        render.emit_json([log.model_dump(mode="json") for log in logs])
    else:
        render.step_logs(logs)


@workflows.command("cancel")
@click.argument("workflow_id")
@click.option("--wait", is_flag=True, help="Wait until every running step is confirmed stopped.")
@timeout_option
@json_option
@url_option
@handle_errors
def workflows_cancel(
    workflow_id: str, wait: bool, timeout_s: float | None, as_json: bool, url: str | None
) -> None:
    """Cancel a workflow: queued steps never start, running steps are stopped (exit 0 once cancelled)."""
    client = client_for(url)
    view = client.cancel(workflow_id)
    workflow_id = view.id  # the whole id, if a prefix of it was given
    if wait:
        view = render.follow(lambda: client.workflow(workflow_id), timeout_s, live=False)
    if as_json:
        render.emit_json({"workflow": view.model_dump(mode="json")})
    else:
        click.echo(f"workflow {view.id} {view.state}")
    if wait and view.state != WorkflowState.CANCELLED:
        render.errors.print(f"workflow {view.id} ended {view.state}, not cancelled")
        sys.exit(1)


@workflows.command("retry")
@click.argument("workflow_id")
@click.option("--wait", is_flag=True, help="Wait until the workflow finishes; exit 0 only if it succeeded.")
@timeout_option
@json_option
@url_option
@handle_errors
def workflows_retry(
    workflow_id: str, wait: bool, timeout_s: float | None, as_json: bool, url: str | None
) -> None:
    """Run a failed, aborted or cancelled workflow again: only what is not yet compliant changes."""
    client = client_for(url)
    view = client.retry(workflow_id)
    workflow_id = view.id  # the whole id, if a prefix of it was given
    if wait:
        view = render.follow(lambda: client.workflow(workflow_id), timeout_s, live=not as_json)
    finish(view, as_json, waited=wait, timeout_s=timeout_s)


@workflows.command("prune")
@click.option(
    "--older-than-days",
    type=click.FloatRange(min=0),
    default=None,
    help="Default: the engine's retention (30).",
)
@click.option("--yes", "-y", is_flag=True, help="Do not ask before deleting all of history.")
@json_option
@url_option
@handle_errors
def workflows_prune(older_than_days: float | None, yes: bool, as_json: bool, url: str | None) -> None:
    """Delete succeeded workflows from history once they are older than the retention; asks first when
    that would be all of them (without a terminal to ask on: pass --yes)."""
    client = client_for(url)
    everything = yes or confirm_all(client.history_count(older_than_days))
    pruned = client.prune(older_than_days, everything=everything)
    if as_json:
        render.emit_json({"pruned": pruned})
    else:
        click.echo(f"pruned {pruned} workflows from history")


def confirm_all(count: HistoryCount) -> bool:
    """Whether the operator confirmed a prune that would empty history; False when it would not.

    Asks on the terminal; with none (a script, stdin closed), refuses as bad input: a script says --yes.
    """
    if not count.prunable or count.prunable < count.history:
        return False
    if not can_ask():
        raise BadInput(
            f"this would delete all {count.prunable} workflows from history, and there is no terminal to "
            "ask on: pass --yes to delete them"
        )
    if not click.confirm(f"delete all {count.prunable} workflows from history?", default=False, err=True):
        raise ConvergeError("nothing was pruned")
    return True


def can_ask() -> bool:
    """Whether a question can be put to the operator: stdin is a terminal."""
    return sys.stdin is not None and sys.stdin.isatty()


@workflows.command("history")
@json_option
@url_option
@handle_errors
def workflows_history(as_json: bool, url: str | None) -> None:
    """Succeeded workflows."""
    views = client_for(url).history()
    if as_json:
        render.emit_json([v.model_dump(mode="json", exclude={"steps"}) for v in views])
    else:
        render.workflows_table(views, "history")


@main.group()
def agents() -> None:
    """Look at agents."""


@agents.command("list")
@json_option
@url_option
@handle_errors
def agents_list(as_json: bool, url: str | None) -> None:
    """Every agent that announced itself, and whether it is alive."""
    views = client_for(url).agents()
    if as_json:
        render.emit_json([v.model_dump(mode="json", include=_AGENT_FIELDS) for v in views])
    else:
        render.agents_table(views)


_AGENT_FIELDS = {"id", "roles", "state", "leader_of", "last_seen", "running", "host", "pid", "version"}
_AGENT_FIELDS |= {"throttle", "step_timeout_s", "epochs", "admission", "extension_problems"}


@agents.command("forget")
@click.argument("agent_id", metavar="ID")
@json_option
@url_option
@handle_errors
def agents_forget(agent_id: str, as_json: bool, url: str | None) -> None:
    """Drop an agent that is gone for good from the list (refused while it is alive)."""
    client_for(url).forget_agent(agent_id)
    if as_json:
        render.emit_json({"forgotten": agent_id})
    else:
        click.echo(f"forgot agent {agent_id}")


@main.group("dead-letters", invoke_without_command=True)
@click.option("--limit", type=click.IntRange(1, 10_000), default=100, help="Show at most N, oldest first.")
@json_option
@url_option
@click.pass_context
@handle_errors
def dead_letters(ctx: click.Context, limit: int, as_json: bool, url: str | None) -> None:
    """Status events the engine could not record: list them (the default), retry or purge them."""
    ctx.obj = url
    if ctx.invoked_subcommand is not None:
        return
    letters, total = client_for(url).dead_letters(limit)
    if as_json:
        render.emit_json([d.model_dump(mode="json") for d in letters])
    else:
        _dead_letters_table(letters, total)


@dead_letters.command("retry")
@click.argument("ids", nargs=-1)
@json_option
@url_option
@click.pass_obj
@handle_errors
def dead_letters_retry(parent_url: str | None, ids: tuple[str, ...], as_json: bool, url: str | None) -> None:
    """Put dead letters back on the status stream as they were (every one without IDS)."""
    deadletters.check_ids(list(ids))
    retried = client_for(url or parent_url).retry_dead_letters(list(ids))
    if as_json:
        render.emit_json({"retried": retried})
    else:
        click.echo(f"put {len(retried)} dead letters back on the status stream")


@dead_letters.command("purge")
@click.argument("ids", nargs=-1)
@json_option
@url_option
@click.pass_obj
@handle_errors
def dead_letters_purge(parent_url: str | None, ids: tuple[str, ...], as_json: bool, url: str | None) -> None:
    """Delete dead letters for good (every one without IDS)."""
    deadletters.check_ids(list(ids))
    purged = client_for(url or parent_url).purge_dead_letters(list(ids))
    if as_json:
        render.emit_json({"purged": purged})
    else:
        click.echo(f"purged {purged} dead letters")


def _dead_letters_table(letters: list[DeadLetter], total: int) -> None:
    if not letters:
        click.echo("no dead letters: every status event was recorded")
        return
    table = Table(
        "ID", "WHEN", "FAILURES", "EVENT", "ERROR", title=f"dead letters ({len(letters)} of {total})"
    )
    for d in letters:
        when = d.at.astimezone().strftime("%Y-%m-%d %H:%M:%S") if d.at else "-"
        if d.event is not None:
            what = f"{d.event.get('step_id')} {d.event.get('state')} (attempt {d.event.get('attempt')})"
        else:
            what = repr(d.raw)[:60]
        table.add_row(d.id, when, str(d.failures), escape(what), escape(d.error[:120]))
    render.console.print(table)
    click.echo("put them back with `converge dead-letters retry [ID ...]`, or drop them with `... purge`")


@main.command()
@click.argument("file", required=False)
@click.option(
    "--home", default=".converge", type=click.Path(file_okay=False), help="Where state and logs go."
)
@click.option("--once", is_flag=True, help="Exit when it converges, with the exit code of `apply --wait`.")
@click.option("--timeout", "timeout_s", type=float, default=600.0, help="Give up converging after S seconds.")
@click.option(
    "--json",
    "as_json",
    is_flag=True,
    help="No live display: once converged, print one JSON document (the workflow, its recap, the addresses).",
)
@handle_errors
def up(file: str | None, home: str, once: bool, timeout_s: float, as_json: bool) -> None:
    """The whole system on this machine: Redis, the store, the engine, one agent per role; then apply FILE."""
    from engine import up as embedded

    sys.exit(embedded.up(file, Path(home), once=once, timeout_s=timeout_s, as_json=as_json))


def _add_commands() -> None:
    """The command groups kept in modules of their own, which build on this one's options and decorators:
    imported here, once this module is complete."""
    from engine.cli_credentials import credentials
    from engine.cli_imports import catalogs, machines, sources
    from engine.cli_policy import policy
    from engine.cli_schedule import compliance, schedule

    main.add_command(credentials)
    main.add_command(policy)
    main.add_command(schedule)
    main.add_command(compliance)
    main.add_command(sources)
    main.add_command(machines)
    main.add_command(catalogs)
    main.add_command(common_cli.help_command("converge"))


_add_commands()

from engine.cli_admission import attach as attach_admission  # noqa: E402 -- it builds on this module too

attach_admission(agents)
