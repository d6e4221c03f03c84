"""What a step sees while it runs: progress reporting, the processes to stop when it is cancelled, and the
credentials its resource lists."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any, Protocol

EVERYWHERE: tuple[Path, ...] = (Path("/"),)
"""Allowed paths that confine nothing: the default of an agent whose operator set none."""

LISTED_CREDENTIALS = "credentials"
"""The key under which the desired-state loader hands a spec model (in pydantic's validation context) the
`credentials` list of its resource: a spec that names a credential checks it is listed."""


class StepContext(Protocol):
    """Handed to a provider's `check` and `apply`."""

    @property
    def step_id(self) -> str: ...

    @property
    def resource(self) -> str:
        """`kind/name` of the resource the step converges (a catalog is named by it)."""
        ...

    @property
    def agent_id(self) -> str:
        """The id of the agent running the step (a `command` sees it as $CONVERGE_AGENT_ID)."""
        ...

    @property
    def epoch(self) -> int:
        """The fencing epoch of the role's leadership this attempt runs under (0 for a step pinned to one
        agent): a provider passes it to a target system that supports fencing, which then refuses writes
        from an older epoch (a `command` sees it as $CONVERGE_EPOCH)."""
        ...

    @property
    def allowed_paths(self) -> Sequence[Path]:
        """The folders the built-in kinds may act under (the agent setting `allowed_paths`); see
        workflows.kinds.paths."""
        ...

    def progress(self, percent: float | None, message: str | None = None) -> None:
        """Report that the step is alive and how far it got (0-100, or None when unknown)."""

    def log(self, message: str) -> None:
        """A line for the agent's log."""

    def attach(self, pgid: int) -> None:
        """A process group this step started: it is killed, children and all, if the step is stopped."""

    def output(self, document: dict[str, Any]) -> None:
        """The step's captured output (workflows.output.Output.document), sent with its final report."""

    def credential(self, name: str) -> str:
        """The value of a credential the resource lists (`credentials: [NAME]`), fetched from the engine's
        vault for this attempt only. Never log it, report it or put it in an error: raises StepError (not
        retryable when the engine refused, retryable when it could not be reached), which holds no value."""
        ...

    def engine_call(self, method: str, path: str, body: dict[str, Any] | None = None) -> Any:
        """A call to the engine's routes for its own agent (`/v1/agent/engine/...`), as this agent: only the
        engine-local agent (role `engine`) is allowed them. Raises StepError (retryable when the engine could
        not be reached); the answer is the route's JSON."""
        ...

    def validator(self, name: str) -> Callable[..., Any]:
        """The validator registered as `name` on this agent, an extension's if one replaced it (the
        capability test: workflows.capabilities.CAPABILITY_TEST)."""
        ...


class StepStopped(Exception):
    """Raised inside a step that was cancelled or timed out; providers let it propagate."""


class NullContext:
    """A context that records progress in memory, with the credentials it is given: for tests and for running
    a provider by hand."""

    def __init__(
        self,
        step_id: str = "local",
        resource: str = "local/local",
        agent_id: str = "local",
        epoch: int = 0,
        allowed_paths: Sequence[Path] = EVERYWHERE,
        credentials: Mapping[str, str] | None = None,
        engine: Callable[[str, str, dict[str, Any] | None], Any] | None = None,
        validators: Mapping[str, Callable[..., Any]] | None = None,
    ) -> None:
        """`engine` answers engine_call (a test's engine); `validators` replace the built-in ones."""
        self._step_id = step_id
        self._resource = resource
        self._credentials = dict(credentials or {})
        self._agent_id = agent_id
        self._epoch = epoch
        self._engine = engine
        self._validators = dict(validators or {})
        self._allowed_paths = tuple(allowed_paths)
        self.reports: list[tuple[float | None, str | None]] = []
        self.lines: list[str] = []
        self.groups: list[int] = []
        self.captured: dict[str, Any] | None = None

    @property
    def step_id(self) -> str:
        return self._step_id

    @property
    def resource(self) -> str:
        return self._resource

    @property
    def agent_id(self) -> str:
        return self._agent_id

    @property
    def epoch(self) -> int:
        return self._epoch

    @property
    def allowed_paths(self) -> Sequence[Path]:
        return self._allowed_paths

    def progress(self, percent: float | None, message: str | None = None) -> None:
        self.reports.append((percent, message))

    def log(self, message: str) -> None:
        self.lines.append(message)

    def attach(self, pgid: int) -> None:
        self.groups.append(pgid)

    def output(self, document: dict[str, Any]) -> None:
        self.captured = document

    def credential(self, name: str) -> str:
        if name not in self._credentials:
            from workflows.registry import StepError  # which imports this module

            raise StepError(f"no credential {name!r} in this context", retryable=False)
        return self._credentials[name]

    def engine_call(self, method: str, path: str, body: dict[str, Any] | None = None) -> Any:
        if self._engine is None:
            from workflows.registry import StepError

            raise StepError(f"no engine in this context for {method} {path}", retryable=False)
        return self._engine(method, path, body)

    def validator(self, name: str) -> Callable[..., Any]:
        if name in self._validators:
            return self._validators[name]
        from workflows.registry import default_registry

        return default_registry(packages=False).validator(name)
