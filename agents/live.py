"""Live configuration: a running agent takes up `converge-agent config set` without a restart.

A thread of the worker's main process watches the configuration file (its inode, size and modification
time, once a second: no dependency, and an editor's save or `config set`'s atomic replace both show).
On a change `LiveSettings.refresh` resolves the settings again from every source, with the same command-
line options (which still win), and applies what `agents.reconfigure.plan` says: the pool's size, the
roles, what steps read, the log level, task events. A key only a restart takes up is logged as such; an
invalid file is logged and the running settings are kept.

`refresh(policy)` is also the hook for settings set centrally (per role, on the engine): whoever fetches
them calls it with them, and they are passed on to `agents.config.load` as its `policy` layer.
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

from agents import config
from agents.config import AgentSettings, ConfigError, Resolved
from agents.elector import Elector
from agents.reconfigure import Plan, plan
from agents.shared import SharedStepSettings, StepSettings
from common import names
from common.models import AgentInfo
from common.settings import redact

log = logging.getLogger("converge.agent")

WATCH_INTERVAL_S = 1.0
# Celery's two lines per task, hidden unless the agent logs at DEBUG (agents.worker)
TASK_LINE_LOGGERS = ("celery.worker.strategy", "celery.app.trace")


def apply_loglevel(level: str) -> None:
    """The main process's log level, and Celery's per-task lines shown only at DEBUG."""
    logging.getLogger().setLevel(level.upper())
    quiet = logging.NOTSET if level.upper() == "DEBUG" else logging.WARNING
    for name in TASK_LINE_LOGGERS:
        logging.getLogger(name).setLevel(quiet)


def step_settings(settings: AgentSettings, roles: list[str] | None = None) -> StepSettings:
    return StepSettings(
        roles=sorted(roles if roles is not None else settings.roles),
        step_timeout_s=settings.step_timeout_s,
        progress_interval_s=settings.progress_interval_s,
        loglevel=settings.loglevel,
    )


class FileWatch:
    """A thread that calls `on_change` when the file at `path` is created, replaced, changed or removed."""

    def __init__(
        self, path: Path, on_change: Callable[[], None], interval_s: float = WATCH_INTERVAL_S
    ) -> None:
        self.path = path
        self.on_change = on_change
        self.interval_s = interval_s
        self._seen = self.signature()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="converge-config-watch", daemon=True)

    def signature(self) -> tuple[int, int, int] | None:
        try:
            st = os.stat(self.path)
        except OSError:
            return None
        return st.st_ino, st.st_size, st.st_mtime_ns

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread.ident is not None:
            self._thread.join(timeout=5)

    def _loop(self) -> None:
        while not self._stop.wait(self.interval_s):
            now = self.signature()
            if now != self._seen:
                self._seen = now
                try:
                    self.on_change()
                except Exception:  # a bug here must not end the watch: the next change is tried again
                    log.exception("could not apply the changed configuration file %s", self.path)


class LiveSettings:
    """The running agent's settings, kept up to date with their sources and applied without a restart.

    `configured` is what `agents.config.load(options)` gave at start (before an admission put the agent's
    own broker credentials in): changes are measured against it, so that the admission is no change.
    """

    def __init__(
        self,
        configured: AgentSettings,
        options: dict[str, Any],
        *,
        shared: SharedStepSettings,
        info: AgentInfo,
        elector: Elector,
        load: Callable[..., Resolved] = config.load,
        watch: bool = True,
    ) -> None:
        self.settings = configured
        self.options = dict(options)
        self.shared = shared
        self.info = info
        self.elector = elector
        self.load = load
        # The role policy in force (agents.policy): kept for when the file changes, since it is resolved
        # with the file each time.
        self.policy: dict[str, Any] = {}
        self.watch = watch  # False: only `refresh` applies changes, when called
        self._consumer: Any = None
        self._lock = threading.Lock()
        self._watch = FileWatch(config.config_path(), self._file_changed)
        elector.on_left = lambda role: self.shared.write(step_settings(self.settings, self._step_roles()))

    def start(self, consumer: Any) -> None:
        """Watch the file from now on; `consumer` is Celery's (the sender of `worker_ready`)."""
        self._consumer = consumer
        if self.watch:
            self._watch.start()

    def stop(self) -> None:
        self._watch.stop()

    def refresh(self, policy: dict[str, Any] | None = None) -> Plan | None:
        """Resolve the settings again and apply what changed; None if they could not be resolved (the
        running ones are kept). `policy`: the settings now set centrally for this agent's roles (None:
        the same as before), passed to `agents.config.load` as its policy layer (between the file and the
        environment)."""
        with self._lock:
            if policy is not None:
                self.policy = dict(policy)
            try:
                resolved = self.load(self.options, self.policy) if self.policy else self.load(self.options)
                new = resolved.settings
                self._check(new)
            except ConfigError as exc:
                log.error("%s; the agent keeps running with the settings it had", exc)
                return None
            old, self.settings = self.settings, new
            change = plan(old, new)
            if change.changed:
                self._apply(change, old, new)
            return change

    def _file_changed(self) -> None:
        self.refresh()

    def _check(self, new: AgentSettings) -> None:
        if not new.roles:
            raise ConfigError("no role left in the configuration (roles)")
        bad = [role for role in new.roles if not names.valid_name(role)]
        if bad:
            raise ConfigError(f"invalid role {bad[0]!r}: use letters, digits, '.', '_' and '-'")

    def _step_roles(self) -> list[str]:
        # a removed role's steps that still run, or wait to, stay this agent's until it gives the role up
        return sorted(set(self.settings.roles) | self.elector.leaving)

    def _apply(self, change: Plan, old: AgentSettings, new: AgentSettings) -> None:
        for key in change.live:
            log.warning(
                "configuration: %s %s -> %s", key, _shown(getattr(old, key)), _shown(getattr(new, key))
            )
        for key in change.restart:
            log.warning(
                "configuration: needs a restart: %s (it runs with %s until then; configured now: %s)",
                key,
                _shown(getattr(old, key), key),
                _shown(getattr(new, key), key),
            )
        if change.loglevel is not None:
            apply_loglevel(change.loglevel)
        if change.step_settings:
            roles = sorted(set(new.roles) | set(change.roles_removed) | self.elector.leaving)
            self.shared.write(step_settings(new, roles))
        if change.roles_added or change.roles_removed:
            self.elector.change_roles(new.roles)
        self.info.roles, self.info.throttle = list(new.roles), new.throttle
        self.info.step_timeout_s = new.step_timeout_s
        if change.throttle is not None or change.pool_min is not None or change.task_events is not None:
            self._on_worker(lambda: self._resize_and_events(change))

    def _on_worker(self, action: Callable[[], None]) -> None:
        """Run `action` on the worker's event loop: Celery's consumer and pool are not thread-safe."""
        hub = getattr(getattr(self._consumer, "controller", None), "hub", None)
        if hub is None:
            log.warning(
                "the worker is not running yet: the pool's size and task events apply after a restart"
            )
            return
        hub.call_soon(action)

    def _resize_and_events(self, change: Plan) -> None:
        consumer = self._consumer
        if change.throttle is not None or change.pool_min is not None:
            resize(consumer, change.throttle, change.pool_min)
        if change.task_events is not None:
            groups = consumer.event_dispatcher.groups
            (groups.add if change.task_events else groups.discard)("task")


def resize(consumer: Any, throttle: int | None, pool_min: int | None) -> None:
    """The pool's limits, on the worker's event loop: with the autoscaler its maximum (the throttle, the
    prefetch count following) and minimum; a fixed pool grows or shrinks to the throttle."""
    worker = consumer.controller
    if worker.autoscaler is not None:
        worker.autoscaler.update(max=throttle, min=pool_min)
        if throttle is not None:
            worker.max_concurrency = throttle  # what the consumer reserves up to (agents.consumer)
        return
    if throttle is None:
        return
    diff = throttle - consumer.pool.num_processes
    if diff > 0:
        consumer.pool.grow(diff)
    elif diff < 0:
        try:
            consumer.pool.shrink(-diff)
        except ValueError:
            log.warning(
                "the pool's busy processes end as their steps do; no more than %d steps start", throttle
            )
    consumer._update_prefetch_count(diff)  # as Celery's own `pool_grow` control command does


def _shown(value: Any, key: str = "") -> str:
    if key in config.SECRETS and value:
        return "***"
    if key.endswith("_url") and isinstance(value, str):
        return redact(value)
    return ", ".join(map(str, value)) if isinstance(value, list) else str(value)
