"""The agent's step control, on a fake Redis: the logic only (cancel and timeouts run for real elsewhere)."""

from __future__ import annotations

import signal
import subprocess
import time

import fakeredis

from agents.control import StepControl
from common import names
from common.models import StepMessage

MESSAGE = StepMessage(
    workflow_id="w", step_id="w.0", resource="wait_for/w", kind="wait_for", name="w", role="r", spec={}
)


def test_a_running_step_keeps_its_claim_past_the_claim_ttl() -> None:
    client = fakeredis.FakeRedis()
    key = names.claim_key(MESSAGE.step_id, MESSAGE.attempt)
    client.set(key, "agent-1", px=500)
    control = StepControl(lambda: client, claim_ttl_s=0.5, cut_off=lambda: False)

    control.begin(MESSAGE, timeout_s=60, on_abandon=lambda reason: None)
    try:
        until = time.monotonic() + 1.5  # three times the claim's TTL
        while time.monotonic() < until:
            assert client.exists(key), "the claim expired while the step was running"
            time.sleep(0.05)
    finally:
        control.end()


def test_progress_resets_the_no_progress_clock_and_nothing_stops_a_healthy_step() -> None:
    client = fakeredis.FakeRedis()
    control = StepControl(lambda: client, claim_ttl_s=60, cut_off=lambda: False)

    control.begin(MESSAGE, timeout_s=0.6, on_abandon=lambda reason: None)
    try:
        until = time.monotonic() + 1.5
        while time.monotonic() < until:
            control.touch()
            assert control.reason is None
            time.sleep(0.05)
    finally:
        control.end()
    assert control.reason is None


def test_an_agent_cut_off_from_redis_ends_its_running_step_and_its_processes() -> None:
    client = fakeredis.FakeRedis()
    cut_off = False
    control = StepControl(lambda: client, claim_ttl_s=60, cut_off=lambda: cut_off)
    child = subprocess.Popen(["sleep", "30"], start_new_session=True)
    control.begin(MESSAGE, timeout_s=60, on_abandon=lambda reason: None)
    try:
        control.attach(child.pid)
        cut_off = True
        assert child.wait(timeout=5) == -signal.SIGKILL
        assert control.reason == "cut_off"
    finally:
        control.end()
        if child.poll() is None:
            child.kill()
