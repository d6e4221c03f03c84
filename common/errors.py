"""The errors an operator can see. Each one says what went wrong and what to do next."""

from __future__ import annotations


class ConvergeError(Exception):
    """Base of every Converge error; `exit_code` is the CLI's exit code for it (see CLI.md)."""

    exit_code = 1


class BadInput(ConvergeError):
    """The operator's input is wrong; nothing was sent."""

    exit_code = 2


class Unreachable(ConvergeError):
    """The engine, Redis or the store cannot be reached."""

    exit_code = 3


class Refused(ConvergeError):
    """The operation is not allowed in the current state (cancel of a finished workflow...)."""

    exit_code = 1


class NotFound(ConvergeError):
    """No such workflow, step or agent."""

    exit_code = 2
