"""Run a system tool (apt-get, useradd...) as the `command` kind runs a shell: in a session of its own that
a cancelled step kills whole, with its output kept for the step and the end of it for the error."""

from __future__ import annotations

import os
import subprocess
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from workflows.context import StepContext
from workflows.kinds.command import _die_with_parent, _finish
from workflows.output import Output
from workflows.registry import StepError


@dataclass(frozen=True)
class Ran:
    """A finished tool: its exit code and the ends of its stdout and stderr."""

    argv: tuple[str, ...]
    code: int
    stdout: str
    stderr: str

    def failure(self) -> str:
        """`TOOL exited with code N: <end of stderr, or of stdout>`."""
        tail = self.stderr or self.stdout
        if self.code < 0:
            head = f"{self.argv[0]} killed by signal {-self.code}"
        else:
            head = f"{self.argv[0]} exited with code {self.code}"
        return f"{head}: {tail}" if tail else head


def run_tool(
    argv: Sequence[str],
    ctx: StepContext | None = None,
    *,
    env: Mapping[str, str] | None = None,
    output: Output | None = None,
) -> Ran:
    """Run `argv` (no shell) with the agent's environment plus `env`, and wait for it.

    With `ctx` its process group is attached to the step, so that a cancel or a timeout kills it; with
    `output` everything it writes is kept there (bounded) for the step's report.
    """
    try:
        proc = subprocess.Popen(
            list(argv),
            env={**os.environ, **(env or {})},
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            start_new_session=True,
            preexec_fn=_die_with_parent,
        )
    except OSError as exc:
        raise StepError(
            f"cannot run {argv[0]}: {exc.strerror or exc} (is it installed on the agent's host?)",
            retryable=False,
        ) from exc
    if ctx is not None:
        ctx.attach(proc.pid)
    result = _finish(proc, output)
    return Ran(tuple(argv), result.code, result.stdout, result.stderr)
