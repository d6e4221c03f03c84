"""Extensions: Python files in the agent's extensions folder, loaded after the built-ins, that replace any
step implementation (a kind's `check` or `apply`) or validator by name, in whole or in part.

Each file defines `register(ext)`, called with an `Extension`; docs/extensions.md is the guide. Which files
may load is the execution policy's call (the seed's script execution policy). A file that is refused, does
not import, or registers something unknown changes nothing: the agent keeps the built-ins, says so in its
log, and announces the problem (`converge agents list`).
"""

from __future__ import annotations

import logging
import os
import stat
import sys
import types
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from agents.config import AgentSettings
from workflows.hooks import PARTS, HookedProvider, How, Part
from workflows.registry import Registry

log = logging.getLogger("converge.agent")

Policy = Literal["restricted", "unrestricted"]
State = Literal["loaded", "refused", "failed"]
MODULE_PREFIX = "converge_extensions."


class ExtensionError(Exception):
    """An extension asked for something that cannot be: an unknown kind, part or validator."""


def folder_of(settings: AgentSettings) -> Path:
    """The extensions folder: the setting `extensions_dir`, else `extensions` under `state_dir`."""
    chosen = settings.extensions_dir or settings.state_dir / "extensions"
    return chosen.expanduser()


class Extension:
    """What `register(ext)` receives. Every call is checked at once (an unknown name raises
    ExtensionError naming the known ones), and nothing takes effect until `register` returns."""

    def __init__(self, registry: Registry) -> None:
        self._registry = registry
        self._pending: list[tuple[str, Callable[[], None]]] = []

    @property
    def kinds(self) -> list[str]:
        return self._registry.kinds()

    @property
    def validators(self) -> list[str]:
        return self._registry.validators()

    def replace(self, kind: str, part: str, fn: Callable[..., Any]) -> None:
        """Run `fn` instead of `kind`'s `part`: check(spec, ctx) -> Change, or apply(spec, change, ctx)."""
        self._hook(kind, part, "replace", fn)

    def before(self, kind: str, part: str, fn: Callable[..., Any]) -> None:
        """Run `fn` with the same arguments before `kind`'s `part` (raising StepError fails the step)."""
        self._hook(kind, part, "before", fn)

    def after(self, kind: str, part: str, fn: Callable[..., Any]) -> None:
        """Run `fn` after `kind`'s `part`: after a check with (spec, ctx, change), returning another Change
        to report instead or None; after an apply with (spec, change, ctx)."""
        self._hook(kind, part, "after", fn)

    def builtin(self, kind: str, part: str) -> Callable[..., Any]:
        """What runs as `kind`'s `part` before this file (the built-in, or an earlier file's), to wrap."""
        provider = self._registry.get(self._kind(kind))
        checked = self._part(part)
        if isinstance(provider, HookedProvider):
            return provider.current(checked)
        fn: Callable[..., Any] = getattr(provider, checked)
        return fn

    def validator(self, name: str, fn: Callable[..., Any]) -> None:
        """Use `fn` as validator `name` (for the capability test: fn(expected, actual) -> differences)."""
        self._validator_name(name)
        _callable(fn, f"validator {name}")
        self._pending.append(
            (f"replaces validator {name}", lambda: self._registry.register_validator(name, fn))
        )

    def builtin_validator(self, name: str) -> Callable[..., Any]:
        """Validator `name` as it is before this file, to wrap."""
        return self._registry.validator(self._validator_name(name))

    def _hook(self, kind: str, part: str, how: How, fn: Callable[..., Any]) -> None:
        known, checked = self._kind(kind), self._part(part)
        _callable(fn, f"{known}.{checked}")

        def install() -> None:
            provider = self._registry.get(known)
            if not isinstance(provider, HookedProvider):
                assert provider is not None
                provider = HookedProvider(provider)
                self._registry.register(provider)
            provider.hook(checked, how, fn)

        words = {"replace": "replaces", "before": "runs before", "after": "runs after"}
        self._pending.append((f"{words[how]} {known}.{checked}", install))

    def _kind(self, kind: str) -> str:
        if self._registry.get(kind) is None:
            raise ExtensionError(f"unknown kind {kind!r} (known kinds: {', '.join(self.kinds)})")
        return kind

    def _part(self, part: str) -> Part:
        for known in PARTS:
            if part == known:
                return known
        raise ExtensionError(f"unknown part {part!r} of a kind (known parts: {', '.join(PARTS)})")

    def _validator_name(self, name: str) -> str:
        if name not in self.validators:
            raise ExtensionError(
                f"unknown validator {name!r} (known validators: {', '.join(self.validators)})"
            )
        return name

    def commit(self) -> list[str]:
        """Make every registration take effect; what each one does, for `converge-agent extensions`."""
        for _, install in self._pending:
            install()
        return [what for what, _ in self._pending]


def _callable(fn: object, what: str) -> None:
    if not callable(fn):
        raise ExtensionError(f"{what}: expected a function, got {type(fn).__name__}")


@dataclass(frozen=True)
class FileReport:
    """One extension file: loaded (and what it overrides), refused by the policy, or failed to load."""

    path: Path
    state: State
    overrides: list[str] = field(default_factory=list)
    problem: str | None = None


@dataclass(frozen=True)
class Loaded:
    folder: Path
    policy: Policy
    files: list[FileReport]
    problem: str | None = None  # the folder itself could not be read

    @property
    def problems(self) -> list[str]:
        """What the agent announces: each file that did not load, and why."""
        found = [f"{f.path}: {f.state}: {f.problem}" for f in self.files if f.problem]
        return [f"{self.folder}: {self.problem}", *found] if self.problem else found


def refusal(uid: int, mode: int, agent_uid: int, policy: Policy) -> str | None:
    """Why the policy refuses a file of this owner and mode, or None when it may load."""
    if not stat.S_ISREG(mode):
        return "not a regular file"
    if policy == "unrestricted":
        return None
    if uid not in (0, agent_uid):
        return f"owned by uid {uid}, neither root nor the agent's user (uid {agent_uid})"
    writable = [who for who, bit in (("group", stat.S_IWGRP), ("others", stat.S_IWOTH)) if mode & bit]
    if writable:
        return (
            f"writable by {' and '.join(writable)} (mode {stat.S_IMODE(mode):04o}): `chmod go-w` it, or set "
            "execution_policy=unrestricted to load it anyway"
        )
    return None


def _link_refusal(uid: int, agent_uid: int) -> str | None:
    if uid in (0, agent_uid):
        return None
    return f"a symbolic link owned by uid {uid}, neither root nor the agent's user (uid {agent_uid})"


def load(registry: Registry, folder: Path, policy: Policy) -> Loaded:
    """Load every `*.py` in `folder` (by name) into `registry`, after what it already holds."""
    try:
        paths = sorted(p for p in folder.iterdir() if p.suffix == ".py" and not p.name.startswith("."))
    except FileNotFoundError:
        return Loaded(folder, policy, [])
    except OSError as exc:
        return Loaded(folder, policy, [], f"cannot read the extensions folder: {exc.strerror}")
    return Loaded(folder, policy, [load_file(registry, path, policy) for path in paths])


def load_file(registry: Registry, path: Path, policy: Policy) -> FileReport:
    """Check `path` against the policy on the very file opened, then import it and call its register."""
    try:
        link = path.lstat()
        with path.open("rb") as f:
            st = os.fstat(f.fileno())
            refused = refusal(st.st_uid, st.st_mode, os.geteuid(), policy)
            if not refused and stat.S_ISLNK(link.st_mode) and policy == "restricted":
                # the link too: another user's link to some root-owned file is not root's extension
                refused = _link_refusal(link.st_uid, os.geteuid())
            if refused:
                return FileReport(path, "refused", problem=f"refused by execution policy {policy}: {refused}")
            source = f.read()
    except OSError as exc:
        return FileReport(path, "failed", problem=f"cannot read it: {exc.strerror}")
    try:
        module = _import(path, source)
        register = getattr(module, "register", None)
        if not callable(register):
            raise ExtensionError("defines no register(ext) function")
        ext = Extension(registry)
        register(ext)
        return FileReport(path, "loaded", overrides=ext.commit())
    except SyntaxError as exc:
        problem = f"syntax error at line {exc.lineno}: {exc.msg}"
    except ExtensionError as exc:
        problem = str(exc)
    except Exception as exc:  # an extension's bug: the agent goes on with the built-ins
        problem = f"raised {type(exc).__name__}: {exc}"
    sys.modules.pop(MODULE_PREFIX + path.stem, None)
    return FileReport(path, "failed", problem=problem)


def _import(path: Path, source: bytes) -> types.ModuleType:
    name = MODULE_PREFIX + path.stem
    module = types.ModuleType(name)
    module.__file__ = str(path)
    code = compile(source, str(path), "exec")
    sys.modules[name] = module  # dataclasses and pickling look their module up here
    exec(code, module.__dict__)
    return module


def load_for(settings: AgentSettings, registry: Registry) -> Loaded:
    return load(registry, folder_of(settings), settings.execution_policy)


def log_report(loaded: Loaded) -> None:
    """The agent's log lines for its extensions: what each file overrides, and each one that did not load."""
    for report in loaded.files:
        if report.state == "loaded":
            log.info("extension %s: %s", report.path, "; ".join(report.overrides) or "registers nothing")
    for problem in loaded.problems:
        log.error("extension %s; the agent goes on with the built-ins", problem)


def agent_registry(settings: AgentSettings) -> tuple[Registry, Loaded]:
    """The registry an agent runs steps with: built-ins, kinds from packages, then its extensions."""
    from workflows.registry import default_registry

    registry = default_registry()
    return registry, load_for(settings, registry)


def announced_problems(registry: Registry, loaded: Loaded) -> list[str]:
    """What `converge agents list` shows for this agent: package kinds and extension files that failed."""
    return [*registry.problems, *loaded.problems]
