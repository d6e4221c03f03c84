"""The one error path of both command lines: an error becomes `PROG: message` and its exit code.

Exit codes are CLI.md's: 1 failed or refused, 2 bad input, 3 unreachable; 130 on Ctrl-C. Settings errors
are bad input: `load_settings` and the agent's `config.load` raise them as `BadInput`, before anything starts.
Under `--json` the error is also one JSON document on stdout, where the command's document would have been:
`{"error", "exit_code", "problems"}` (`problems`: what a desired-state file had wrong, each with its file,
line and field; empty otherwise).
"""

from __future__ import annotations

import functools
import json
import sys
from collections.abc import Callable
from typing import Any, NoReturn, TypeVar

import click

from common.errors import ConvergeError

F = TypeVar("F", bound=Callable[..., Any])
INTERRUPTED = 130


def fail(prog: str, code: int, message: str) -> NoReturn:
    """Print `PROG: message` on stderr and exit with `code`."""
    click.echo(f"{prog}: {message}", err=True)
    sys.exit(code)


def error_document(exc: ConvergeError) -> dict[str, Any]:
    """An error as `--json` prints it."""
    problems = getattr(exc, "problems", None) or []
    return {
        "error": str(exc),
        "exit_code": exc.exit_code,
        "problems": [p.model_dump() for p in problems],  # workflows.spec.Problem
    }


def handle_errors(prog: str) -> Callable[[F], F]:
    """A decorator for the commands of `prog`: every Converge or settings error becomes a message (and,
    for a command given `--json`, a JSON document on stdout too)."""

    def decorate(func: F) -> F:
        @functools.wraps(func)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            try:
                return func(*args, **kwargs)
            except ConvergeError as exc:
                if kwargs.get("as_json") is True:
                    click.echo(json.dumps(error_document(exc), ensure_ascii=False))
                fail(prog, exc.exit_code, str(exc))
            except KeyboardInterrupt:
                fail(prog, INTERRUPTED, "interrupted")

        return wrapper  # type: ignore[return-value]

    return decorate


def help_command(prog: str) -> click.Command:
    """`PROG help [COMMAND ...]`: the help of PROG or of one of its commands, as `-h` prints it."""

    @click.command("help")
    @click.argument("command", nargs=-1)
    @click.pass_context
    def show_help(ctx: click.Context, command: tuple[str, ...]) -> None:
        """Show the help of converge, or of COMMAND (`help workflows list`)."""
        root = ctx.find_root()
        target: click.Command = root.command
        context = root
        for name in command:
            found = target.get_command(context, name) if isinstance(target, click.Group) else None
            if found is None:
                where = " ".join([prog, *command[: command.index(name)]])
                fail(prog, 2, f"{where} has no command {name!r}: `{where} -h` lists them")
            target = found
            context = click.Context(found, info_name=name, parent=context)
        click.echo(target.get_help(context))

    show_help.help = f"Show the help of {prog}, or of COMMAND (`{prog} help COMMAND ...`)."
    return show_help
