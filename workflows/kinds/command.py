"""The `command` kind: a shell command run only when its guard says the host is not yet compliant."""

from __future__ import annotations

import contextlib
import ctypes
import os
import selectors
import signal
import subprocess
import sys
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import IO, Annotated, Self

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    ValidationInfo,
    field_validator,
    model_validator,
)

from common.models import Change
from workflows.context import LISTED_CREDENTIALS, StepContext
from workflows.kinds._common import AbsolutePath
from workflows.kinds.paths import confine
from workflows.output import Output
from workflows.registry import Provider, StepError

TAIL_BYTES = 4096
"""How much of the end of a command's stdout and of its stderr is kept for the error message."""
POLL_S = 0.5
"""The longest the runner blocks before looking at the process again."""
DRAIN_S = 1.0
"""After the command exits, how long to keep reading output a background child may still be writing."""
AGENT_ID_ENV = "CONVERGE_AGENT_ID"
EPOCH_ENV = "CONVERGE_EPOCH"
"""The variable that tells a command which agent runs it (e.g. a `scope: each` step on every agent)."""


def _not_blank(value: str) -> str:
    if not value.strip():
        raise ValueError("must be a non-empty shell command")
    return value


ShellCommand = Annotated[str, AfterValidator(_not_blank)]
HIDDEN = "***"
"""What a credential's value becomes in the output a failed command reports."""


class CredentialRef(BaseModel):
    """`{credential: NAME}`: an environment variable that holds a credential's value, fetched for `run`."""

    model_config = ConfigDict(extra="forbid")

    credential: str = Field(min_length=1)


class CommandSpec(BaseModel):
    """A shell command, and the guard (`creates`, `unless` or both) that says it has already had its effect.

    `env` is added to the agent's environment: a variable maps to a string, or to `{credential: NAME}`,
    a credential the resource lists, fetched from the engine when `run` starts and given to `run` only (not
    to `unless`, which a plan runs too). `cwd` is the directory the command starts in. `cwd` and `creates`
    must lie under the agent's allowed paths; `run` and `unless` are shell commands, which no path rule can
    confine (run the agent as a user that may do only what its role needs).
    """

    model_config = ConfigDict(extra="forbid")

    run: ShellCommand = Field(description="The command, run by `/bin/sh -c` in a process group of its own.")
    creates: AbsolutePath | None = Field(
        default=None, description="A path `run` makes: when it exists, the command does not run."
    )
    unless: ShellCommand | None = Field(
        default=None, description="A command whose success means compliant: then `run` does not run."
    )
    cwd: AbsolutePath | None = Field(default=None, description="The directory the commands start in.")
    env: dict[str, str | CredentialRef] | None = Field(
        default=None,
        description="Variables added to the agent's environment: a string, or `{credential: NAME}` (for "
        "`run` only) naming a credential the resource lists.",
    )

    @field_validator("env")
    @classmethod
    def _credentials_listed(
        cls, env: dict[str, str | CredentialRef] | None, info: ValidationInfo
    ) -> dict[str, str | CredentialRef] | None:
        listed = (info.context or {}).get(LISTED_CREDENTIALS)
        if env is None or listed is None:  # an agent checks a spec alone: the engine checked the list
            return env
        for variable, value in env.items():
            if isinstance(value, CredentialRef) and value.credential not in listed:
                raise ValueError(
                    f"{variable} names credential {value.credential}, which the resource does not list: "
                    f"add it to the resource's `credentials`"
                )
        return env

    @model_validator(mode="after")
    def _needs_a_guard(self) -> Self:
        if self.creates is None and self.unless is None:
            raise ValueError(
                "a command needs `creates` (a path it makes) or `unless` (a command that succeeds when the "
                "host is already compliant): without a guard it runs on every apply and is not idempotent"
            )
        return self


class CommandProvider(Provider[CommandSpec]):
    """Runs `/bin/sh -c run` in its own process group unless `creates` exists or `unless` succeeds."""

    kind = "command"
    spec_model = CommandSpec
    create_words = ("run", "ran")

    def check(self, spec: CommandSpec, ctx: StepContext) -> Change:
        if spec.creates is not None and os.path.exists(confine(spec.creates, ctx)):
            return Change(action="none")
        if spec.unless is not None and _finish(_start(spec.unless, spec, ctx)).code == 0:
            return Change(action="none")
        return Change(action="create", diff=f"run: {spec.run}")

    def apply(self, spec: CommandSpec, change: Change, ctx: StepContext) -> None:
        secrets = {
            variable: ctx.credential(value.credential)
            for variable, value in (spec.env or {}).items()
            if isinstance(value, CredentialRef)
        }
        proc = _start(spec.run, spec, ctx, secrets)
        ctx.attach(proc.pid)
        ctx.progress(None, "running")
        output = Output()
        try:
            result = _finish(proc, output).hiding(secrets.values())
        finally:
            output.close()
            ctx.output(output.hiding(secrets.values(), HIDDEN).document())
        if result.code != 0:
            raise StepError(result.failure())
        if spec.creates is not None and not os.path.exists(spec.creates):
            raise StepError(
                f"the command exited 0 but did not create {spec.creates}: fix `run` or `creates`",
                retryable=False,
            )


@dataclass(frozen=True)
class _Result:
    code: int
    stdout: str
    stderr: str

    def failure(self) -> str:
        """What went wrong, with the end of stderr (or of stdout when stderr is empty)."""
        if self.code < 0:
            head = f"command killed by signal {_signal_name(-self.code)}"
        else:
            head = f"command exited with code {self.code}"
        tail = self.stderr or self.stdout
        return f"{head}: {tail}" if tail else head

    def hiding(self, values: Iterable[str]) -> _Result:
        """The result with each of `values` (credentials) replaced in its output: the output may become a
        step's error, which the engine stores and shows."""
        stdout, stderr = self.stdout, self.stderr
        for value in values:
            stdout, stderr = stdout.replace(value, HIDDEN), stderr.replace(value, HIDDEN)
        return _Result(self.code, stdout, stderr)


class _Tail:
    """The last `limit` bytes written to a stream: a chatty command cannot fill the agent's memory."""

    def __init__(self, limit: int = TAIL_BYTES) -> None:
        self._buf = bytearray()
        self._limit = limit
        self._truncated = False

    def add(self, chunk: bytes) -> None:
        self._buf += chunk
        if len(self._buf) > self._limit:
            del self._buf[: -self._limit]
            self._truncated = True

    def text(self) -> str:
        text = self._buf.decode("utf-8", "replace").strip()
        return "..." + text if self._truncated and text else text


_PR_SET_PDEATHSIG = 1
_prctl = getattr(ctypes.CDLL(None), "prctl", None) if sys.platform == "linux" else None


def _die_with_parent() -> None:
    """In the command's shell, before it runs: be killed if the process that started it dies.

    The command runs in a session of its own (so that a cancel kills its whole group); without this, a
    pool process killed mid-step (the OOM killer, the agent killed) would leave its shell running beside
    the step's next attempt. The agent's journal ends what is left of the group (background children).
    """
    if _prctl is not None:
        _prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)


def _start(
    command: str, spec: CommandSpec, ctx: StepContext, secrets: Mapping[str, str] | None = None
) -> subprocess.Popen[bytes]:
    """Start `command` under /bin/sh in a new session, so that it and its children can be killed as one.

    Its environment is the agent's, then `env`'s strings and `secrets` (the values of `env`'s credentials,
    for `run` only), then CONVERGE_AGENT_ID (the id of the agent running it) and CONVERGE_EPOCH (the fencing
    epoch it runs under, see StepContext.epoch).
    """
    cwd = None if spec.cwd is None else confine(spec.cwd, ctx)
    if cwd is not None and not os.path.isdir(cwd):
        raise StepError(
            f"cwd {spec.cwd} is not a directory: add a `directory` resource for it and a `depends_on` on it",
            retryable=False,
        )
    plain = {variable: value for variable, value in (spec.env or {}).items() if isinstance(value, str)}
    env = {**os.environ, **plain, **(secrets or {}), AGENT_ID_ENV: ctx.agent_id, EPOCH_ENV: str(ctx.epoch)}
    try:
        return subprocess.Popen(
            ["/bin/sh", "-c", command],
            cwd=cwd,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            start_new_session=True,
            preexec_fn=_die_with_parent,
        )
    except (OSError, ValueError) as exc:
        raise StepError(f"cannot start /bin/sh -c {command!r}: {exc}", retryable=False) from exc


class _Sink:
    """Where one stream's chunks go: its tail (for the error message) and the step's output, if kept."""

    def __init__(self, tail: _Tail, output: Output | None, stream: str) -> None:
        self.tail, self.output, self.stream = tail, output, stream

    def add(self, chunk: bytes) -> None:
        self.tail.add(chunk)
        if self.output is not None:
            self.output.add(self.stream, chunk)


def _finish(proc: subprocess.Popen[bytes], output: Output | None = None) -> _Result:
    """Wait for `proc` and keep the tails of its output (and all of it, bounded, in `output`); kill its
    process group if waiting is cut short."""
    out, err = _Tail(), _Tail()
    sinks = {proc.stdout: _Sink(out, output, "out"), proc.stderr: _Sink(err, output, "err")}
    try:
        code = _pump(proc, sinks)
    finally:
        _stop(proc)
    return _Result(code, out.text(), err.text())


def _pump(proc: subprocess.Popen[bytes], sinks: dict[IO[bytes] | None, _Sink]) -> int:
    with selectors.DefaultSelector() as sel:
        for stream, sink in sinks.items():
            if stream is not None:
                sel.register(stream, selectors.EVENT_READ, sink)
        while True:
            code = proc.poll()
            if code is not None:
                _drain(sel)
                return code
            # Each pass blocks at most POLL_S: the place to look for a cancellation request.
            if sel.get_map():
                _read_ready(sel, POLL_S)
            else:
                with contextlib.suppress(subprocess.TimeoutExpired):
                    proc.wait(timeout=POLL_S)


def _read_ready(sel: selectors.BaseSelector, timeout: float) -> bool:
    """Read what the streams have ready within `timeout`; a stream at its end is dropped. False if idle."""
    events = sel.select(timeout)
    for key, _ in events:
        chunk = os.read(key.fd, 65536)
        if chunk:
            key.data.add(chunk)
        else:
            sel.unregister(key.fileobj)
    return bool(events)


def _drain(sel: selectors.BaseSelector) -> None:
    """Read the output left in the pipes without waiting on a background child that keeps them open."""
    deadline = time.monotonic() + DRAIN_S
    while sel.get_map() and time.monotonic() < deadline:
        if not _read_ready(sel, 0.05):
            return


def _stop(proc: subprocess.Popen[bytes]) -> None:
    """Kill the command's process group if it is still running, then release its pipes."""
    if proc.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
    for stream in (proc.stdout, proc.stderr):
        if stream is not None:
            stream.close()


def _signal_name(number: int) -> str:
    try:
        return signal.Signals(number).name
    except ValueError:
        return str(number)
