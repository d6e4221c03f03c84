"""`converge-agent`: run an agent on a managed host."""

from __future__ import annotations

import json
import os
import sys
from typing import Any

import click
from rich.console import Console
from rich.table import Table

from agents import cli_extensions, cli_health, config, enroll, logs, worker
from agents import policy as agent_policy
from common import cli as common_cli
from common import names
from common.errors import BadInput
from common.settings import redact
from common.version import converge_version

# Every Converge error (settings errors included) becomes its message and exit code: no traceback.
handle_errors = common_cli.handle_errors("converge-agent")


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(converge_version(), prog_name="converge-agent")
def main() -> None:
    """Converge agent: runs the steps of its roles on this host."""


@main.command("run")
@click.option(
    "--role",
    "roles",
    multiple=True,
    help="A role this agent serves (repeatable; default: `roles` of the file).",
)
@click.option("--id", "agent_id", default=None, help="This agent's id (default: HOSTNAME-ROLE[-ROLE...]).")
@click.option("--throttle", type=int, default=None, help="Most steps run at once (default 20).")
# No click envvar: the settings read CONVERGE_BROKER_URL themselves, so `config show` can say "env".
@click.option(
    "--broker-url",
    default=None,
    help="Redis URL (default: $CONVERGE_BROKER_URL, else the file). A password here shows in `ps` until "
    "the agent moves it to its environment: prefer CONVERGE_BROKER_URL or the configuration file.",
)
@click.option("--loglevel", default=None, help="Log level (INFO, DEBUG...).")
@click.option(
    "--log-format",
    type=click.Choice(["text", "json"]),
    default=None,
    help="Log as text lines or JSON lines (CONVERGE_AGENT_LOG_FORMAT; default text).",
)
@click.option(
    "--task-events/--no-task-events", default=None, help="Send Celery task events for Flower (default: on)."
)
@click.option(
    "--celery-banner",
    is_flag=True,
    help="Print Celery's start-up banner and its warnings (as --loglevel DEBUG does).",
)
@handle_errors
def run_cmd(
    roles: tuple[str, ...],
    agent_id: str | None,
    throttle: int | None,
    broker_url: str | None,
    loglevel: str | None,
    log_format: str | None,
    task_events: bool | None,
    celery_banner: bool,
) -> None:
    """Run the agent: consume the queues of ROLE and of this agent until stopped."""
    options = {"roles": list(roles) or None, "id": agent_id, "throttle": throttle, "broker_url": broker_url}
    options |= {"loglevel": loglevel, "log_format": log_format, "task_events": task_events}
    if broker_url is not None:
        config.load(options)  # a bad URL is refused here, naming --broker-url
        _move_to_environment("--broker-url", config.env_name("broker_url"), broker_url)
    resolved = _load(options)
    configured = settings = resolved.settings
    if not settings.roles:
        raise BadInput("no role: pass --role ROLE, or set one with `converge-agent config set roles=ROLE`")
    for name in [*settings.roles, settings.id]:
        if not names.valid_name(name):
            raise BadInput(
                f"invalid role or id {name!r}: use letters, digits, '.', '_' and '-' (they name queues)"
            )
    logs.use(settings.log_format, settings.loglevel)  # before the enrollment, which may log
    event_key = None  # a trusted agent makes its own
    if enroll.wanted(settings):  # a host the operator does not fully trust: admitted first
        settings, event_key = enroll.admitted(settings)
    # it follows its configuration file and its role policy from now on, resolved again with these options
    worker.run(
        settings,
        event_key,
        banner=celery_banner,
        sources=resolved.sources,
        configured=configured,
        options=options,
    )


@main.group("config")
def config_group() -> None:
    """Show and change the agent configuration file (see CONVERGE_AGENT_CONFIG)."""


@config_group.command("show")
@click.option("--json", "as_json", is_flag=True, help="One JSON document on stdout.")
@handle_errors
def config_show(as_json: bool) -> None:
    """Every setting with its value and where it came from (default, file, policy, env, option)."""
    resolved = _load()
    values = resolved.settings.model_dump(mode="json")
    if as_json:
        settings = {
            key: {"value": _secret_free(key, values[key]), "source": resolved.sources[key]}
            for key in config.KEYS
        }
        click.echo(json.dumps({"settings": settings, "file": str(resolved.file)}, indent=2))
        return
    table = Table(title=f"agent configuration ({resolved.file})")
    for column in ("key", "value", "source"):
        table.add_column(column)
    for key in config.KEYS:
        table.add_row(key, _show(key, values[key]), resolved.sources[key])
    Console().print(table)


@config_group.command("set")
@click.argument("pairs", nargs=-1, required=True, metavar="KEY=VALUE...")
@handle_errors
def config_set(pairs: tuple[str, ...]) -> None:
    """Write settings to the agent configuration file (all are validated before anything is written)."""
    changes = config.set_values(pairs)
    overridden = config.env_values()
    for change in changes:
        old = "unset" if change.old is None else _show(change.key, change.old)
        click.echo(f"{change.key}: {old} -> {_show(change.key, change.new)}")
        if change.key in overridden:
            env = config.env_name(change.key)
            shown = _show(change.key, overridden[change.key])
            click.echo(f"  note: {env}={shown} overrides it while set in the environment")
    click.echo(f"wrote {config.config_path()}")


@config_group.command("reset")
@click.argument("keys", nargs=-1, metavar="[KEY]...")
@handle_errors
def config_reset(keys: tuple[str, ...]) -> None:
    """Remove KEYs from the agent configuration file (every key when none is given)."""
    removed = config.reset_keys(keys)
    if not removed:
        click.echo(f"nothing to reset in {config.config_path()}")
    for key in removed:
        click.echo(f"{key}: reset to its default")


def _load(options: dict[str, Any] | None = None) -> config.Resolved:
    """The settings, with the policy the agent last received from the engine (its state folder's)."""
    resolved = agent_policy.resolve(options)
    for key in resolved.ignored:
        click.echo(f"converge-agent: warning: {resolved.file}: {key!r} is not a setting, ignored", err=True)
    if resolved.policy_problem:
        click.echo(f"converge-agent: warning: {resolved.policy_problem}", err=True)
    return resolved


def _move_to_environment(option: str, env: str, value: str) -> None:
    """Run this command again with `option`'s value in the variable `env` instead of the command line.

    Any user of the host can read a command line (`ps`), and the agent's Celery processes inherit it; only
    the agent's own user and root can read its environment. Nothing to do when `option` is not in this
    process's arguments (the command was called from Python).
    """
    argv = _without(option, sys.orig_argv)
    if argv == sys.orig_argv:
        return
    sys.stdout.flush()
    sys.stderr.flush()
    os.execve(sys.executable, argv, {**os.environ, env: value})


def _without(option: str, argv: list[str]) -> list[str]:
    """`argv` less `option VALUE` and `option=VALUE`."""
    kept: list[str] = []
    skip = False
    for arg in argv:
        if not skip and arg != option and not arg.startswith(option + "="):
            kept.append(arg)
        skip = not skip and arg == option
    return kept


def _secret_free(key: str, value: Any) -> Any:
    """`value` as it may be shown: a URL without its password, a secret (the agent's token) as `***`."""
    if key in config.SECRETS and value:
        return "***"
    return redact(value) if key.endswith("_url") and isinstance(value, str) else value


def _show(key: str, value: Any) -> str:
    value = _secret_free(key, value)
    return ", ".join(map(str, value)) if isinstance(value, list) else str(value)


main.add_command(common_cli.help_command("converge-agent"))
main.add_command(cli_extensions.extensions_cmd)
main.add_command(cli_extensions.capabilities_cmd)
main.add_command(cli_health.health_cmd)
