"""What a change of settings asks of a running agent: live actions, and keys only a restart takes up."""

from __future__ import annotations

import multiprocessing
from pathlib import Path
from typing import Any

import pytest

from agents import reconfigure
from agents.config import KEYS, AgentSettings
from agents.reconfigure import plan
from agents.shared import SharedStepSettings, StepSettings


def settings(**values: Any) -> AgentSettings:
    return AgentSettings.model_validate({"id": "a-1", "roles": ["web"], **values})


def test_no_change_is_an_empty_plan() -> None:
    assert plan(settings(), settings()) == reconfigure.Plan()


def test_a_lower_throttle_is_a_live_resize_and_needs_no_restart() -> None:
    change = plan(settings(), settings(throttle=5))
    assert change.throttle == 5 and change.pool_min is None
    assert change.live == ("throttle",) and change.restart == ()


def test_roles_added_and_removed_are_listed_and_the_steps_read_them_again() -> None:
    change = plan(settings(roles=["web", "db"]), settings(roles=["db", "app"]))
    assert change.roles_added == ("app",)
    assert change.roles_removed == ("web",)
    assert change.step_settings


@pytest.mark.parametrize("key", ["step_timeout_s", "progress_interval_s", "loglevel"])
def test_what_a_step_reads_reaches_the_pool_processes(key: str) -> None:
    value = "DEBUG" if key == "loglevel" else 7.0
    change = plan(settings(), settings(**{key: value}))
    assert change.step_settings and change.live == (key,)


@pytest.mark.parametrize(
    ("key", "value"),
    [
        ("broker_url", "redis://10.0.0.1:6379/0"),
        ("state_dir", Path("/srv/state")),
        ("engine_key", Path("/etc/converge/engine.pub")),
        ("heartbeat_ttl_s", 30.0),
        ("autoscale", False),
        ("pool_keepalive_s", 60.0),
        ("id", "a-2"),
    ],
)
def test_a_setting_the_running_agent_cannot_take_up_needs_a_restart(key: str, value: Any) -> None:
    change = plan(settings(), settings(**{key: value}))
    assert change.restart == (key,)
    assert change.live == ()


def test_every_setting_is_live_needs_a_restart_or_is_not_read_by_run() -> None:
    sets = (reconfigure.LIVE, reconfigure.RESTART, reconfigure.NOT_RUN)
    assert set().union(*sets) == set(KEYS)
    assert sum(len(s) for s in sets) == len(KEYS)


def test_task_events_toggle_live() -> None:
    assert plan(settings(), settings(task_events=False)).task_events is False


def _read_when_told(shared: SharedStepSettings, go: Any, out: Any) -> None:
    go.wait(10)
    values = shared.read()
    out.put((values.roles, values.step_timeout_s))


def test_a_pool_process_forked_before_a_change_reads_the_new_step_settings() -> None:
    shared = SharedStepSettings(StepSettings(roles=["web"]))
    context = multiprocessing.get_context("fork")
    go, out = context.Event(), context.Queue()
    child = context.Process(target=_read_when_told, args=(shared, go, out))
    child.start()
    shared.write(StepSettings(roles=["web", "db"], step_timeout_s=5))  # after the fork
    go.set()
    assert out.get(timeout=10) == (["web", "db"], 5)
    child.join(timeout=10)
    assert child.exitcode == 0


def test_step_settings_too_large_to_share_are_refused() -> None:
    shared = SharedStepSettings(StepSettings())
    with pytest.raises(ValueError, match="more than"):
        shared.write(StepSettings(roles=["r" * 100] * 200))
