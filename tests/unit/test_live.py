"""LiveSettings applies a re-resolved configuration to a running agent, or keeps what it runs with."""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from agents import live
from agents.config import AgentSettings, ConfigError, Resolved
from agents.live import LiveSettings
from agents.shared import SharedStepSettings
from common.models import AgentInfo


class FakeElector:
    def __init__(self) -> None:
        self.roles: list[list[str]] = []
        self.leaving: set[str] = set()
        self.on_left: Callable[[str], None] = lambda role: None

    def change_roles(self, roles: list[str]) -> None:
        self.roles.append(roles)


class FakeHub:
    def call_soon(self, action: Callable[[], None]) -> None:
        action()  # the event loop's thread, here the test's


class FakeAutoscaler:
    def __init__(self) -> None:
        self.updates: list[tuple[int | None, int | None]] = []

    def update(self, max: int | None = None, min: int | None = None) -> None:  # Celery's names
        self.updates.append((max, min))


class FakeConsumer:
    def __init__(self) -> None:
        self.controller = type("W", (), {})()
        self.controller.hub = FakeHub()
        self.controller.autoscaler = FakeAutoscaler()
        self.controller.max_concurrency = 20
        self.event_dispatcher = type("D", (), {"groups": {"worker", "task"}})()


def settings(**values: Any) -> AgentSettings:
    return AgentSettings.model_validate({"id": "a-1", "roles": ["web"], **values})


def info(s: AgentSettings) -> AgentInfo:
    now = datetime.now(UTC)
    return AgentInfo(
        id=s.id,
        roles=s.roles,
        host="h",
        pid=1,
        version="0",
        throttle=s.throttle,
        started_at=now,
        last_seen=now,
    )


@pytest.fixture
def agent(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, Any]:
    monkeypatch.setenv("CONVERGE_AGENT_CONFIG", str(tmp_path / "agent.toml"))
    start = settings()
    box: dict[str, Any] = {"next": start}

    def load(options: dict[str, Any], *policy: Any) -> Resolved:
        box["options"], box["policy"] = options, policy
        if isinstance(box["next"], Exception):
            raise box["next"]
        return Resolved(box["next"], {}, tmp_path / "agent.toml", [])

    elector, consumer = FakeElector(), FakeConsumer()
    shared = SharedStepSettings(live.step_settings(start))
    announced = info(start)
    live_settings = LiveSettings(
        start,
        {"id": "a-1"},
        shared=shared,
        info=announced,
        elector=elector,
        load=load,
        watch=False,  # type: ignore[arg-type]
    )
    live_settings.start(consumer)
    box.update(live=live_settings, elector=elector, consumer=consumer, shared=shared, info=announced)
    return box


def test_a_lower_throttle_updates_the_autoscaler_and_the_announcement(agent: dict[str, Any]) -> None:
    agent["next"] = settings(throttle=5)
    change = agent["live"].refresh()
    assert change.throttle == 5
    assert agent["consumer"].controller.autoscaler.updates == [(5, None)]
    assert agent["consumer"].controller.max_concurrency == 5
    assert agent["info"].throttle == 5
    assert agent["options"] == {"id": "a-1"}  # the command line's options, which still win


def test_new_roles_go_to_the_elector_the_announcement_and_the_pool_processes(agent: dict[str, Any]) -> None:
    agent["next"] = settings(roles=["db"])
    agent["live"].refresh()
    assert agent["elector"].roles == [["db"]]
    assert agent["info"].roles == ["db"]
    assert agent["shared"].read().roles == ["db", "web"]  # web's steps still end here until it is given up
    agent["elector"].on_left("web")
    assert agent["shared"].read().roles == ["db"]


def test_task_events_off_removes_the_task_group(agent: dict[str, Any]) -> None:
    agent["next"] = settings(task_events=False)
    agent["live"].refresh()
    assert agent["consumer"].event_dispatcher.groups == {"worker"}


def test_an_invalid_configuration_is_logged_and_the_running_settings_kept(
    agent: dict[str, Any], caplog: pytest.LogCaptureFixture
) -> None:
    agent["next"] = ConfigError("invalid agent setting: throttle: Input should be greater than or equal to 1")
    assert agent["live"].refresh() is None
    assert "keeps running with the settings it had" in caplog.text
    assert agent["live"].settings.throttle == 20


def test_no_role_left_is_refused(agent: dict[str, Any], caplog: pytest.LogCaptureFixture) -> None:
    agent["next"] = settings(roles=[])
    assert agent["live"].refresh() is None
    assert "no role left" in caplog.text


def test_a_key_only_a_restart_takes_up_is_logged_with_its_name_never_a_password(
    agent: dict[str, Any], caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING)
    agent["next"] = settings(broker_url="redis://:secret@10.0.0.1:6379/0")
    change = agent["live"].refresh()
    assert change.restart == ("broker_url",)
    assert "needs a restart: broker_url" in caplog.text
    assert "secret" not in caplog.text


def test_refresh_passes_a_central_policy_on_to_load(agent: dict[str, Any]) -> None:
    agent["live"].refresh({"throttle": 7})
    assert agent["policy"] == ({"throttle": 7},)


def test_the_file_watch_sees_a_replaced_file(tmp_path: Path) -> None:
    path = tmp_path / "agent.toml"
    seen: list[int] = []
    watch = live.FileWatch(path, lambda: seen.append(1), interval_s=0.01)
    watch.start()
    try:
        path.write_text("throttle = 3\n")  # created
        deadline = time.monotonic() + 5
        while not seen and time.monotonic() < deadline:
            time.sleep(0.01)
        assert seen
        replacement = tmp_path / "new.toml"
        replacement.write_text("throttle = 4\n")
        os.replace(replacement, path)  # as `config set` writes it
        while len(seen) < 2 and time.monotonic() < deadline:
            time.sleep(0.01)
        assert len(seen) == 2
    finally:
        watch.stop()
