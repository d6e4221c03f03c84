"""The agent's outbox and journal on a real SQLite file, with a fake Redis: the logic of keeping and sending
reports, and of finding lost attempts (real processes and a real Redis: tests/chaos)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import fakeredis
import pytest

from agents.courier import Courier
from agents.outbox import Outbox, process_start
from agents.reporter import Reporter
from common import names
from common.models import AGENT_SEQ, StepMessage

MESSAGE = StepMessage(
    workflow_id="w", step_id="w.0", resource="command/c", kind="command", name="c", role="r", spec={}
)


@pytest.fixture
def server(monkeypatch: pytest.MonkeyPatch) -> fakeredis.FakeServer:
    """A fake Redis that every client of the agent talks to."""
    fake = fakeredis.FakeServer()
    monkeypatch.setattr("redis.Redis.from_url", lambda *a, **k: fakeredis.FakeRedis(server=fake))
    return fake


def courier(outbox: Outbox, server: fakeredis.FakeServer) -> Courier:
    return Courier(Reporter("redis://127.0.0.1:1/0", "a1", outbox, b"k" * 32))


def stream(server: fakeredis.FakeServer) -> list[dict[str, object]]:
    entries = fakeredis.FakeRedis(server=server).xrange(names.STATUS_STREAM)
    return [json.loads(fields[b"e"]) for _, fields in entries]


def test_a_final_report_that_cannot_be_sent_is_kept_and_the_courier_sends_it_later(
    tmp_path: Path, server: fakeredis.FakeServer
) -> None:
    outbox = Outbox(tmp_path / "outbox.db", run_id="run-1")
    reporter = Reporter("redis://127.0.0.1:1/0", "a1", outbox, b"k" * 32)
    server.connected = False

    reporter.final(MESSAGE, 2, "succeeded", changed=True)

    assert [p.step_id for p in outbox.pending()] == ["w.0"]
    server.connected = True
    assert courier(outbox, server).send(older_than_s=0) == 1
    assert [(e["state"], e["seq"], e["changed"]) for e in stream(server)] == [("succeeded", 2, True)]
    assert outbox.pending() == []


def test_a_sent_report_leaves_nothing_behind_and_ends_the_attempt_in_the_journal(
    tmp_path: Path, server: fakeredis.FakeServer
) -> None:
    outbox = Outbox(tmp_path / "outbox.db", run_id="run-1")
    reporter = Reporter("redis://127.0.0.1:1/0", "a1", outbox, b"k" * 32)
    outbox.begin(MESSAGE)
    assert [r.message.step_id for r in outbox.running()] == ["w.0"]

    reporter.final(MESSAGE, 2, "failed", error="exit 1")

    assert outbox.running() == [] and outbox.pending() == []
    assert [e["state"] for e in stream(server)] == ["failed"]


def test_an_attempt_whose_process_died_is_reported_lost_and_its_process_group_is_ended(
    tmp_path: Path, server: fakeredis.FakeServer
) -> None:
    path = tmp_path / "outbox.db"
    outbox = Outbox(path, run_id="run-1")
    group = subprocess.Popen(["sleep", "60"], start_new_session=True)
    # a "pool process" that journals the attempt and its process group, then dies without a report
    code = (
        "import sys; from agents.outbox import Outbox; from tests.unit.test_outbox import MESSAGE; "
        f"o = Outbox(sys.argv[1], 'run-1'); o.begin(MESSAGE); o.attach(MESSAGE, {group.pid})"
    )
    subprocess.run([sys.executable, "-c", code, str(path)], check=True, cwd=Path(__file__).parents[2])

    courier(outbox, server).run_once()

    assert group.wait(timeout=5) == -signal.SIGKILL
    events = stream(server)
    assert [(e["state"], e["seq"], e["lost"], e["retryable"]) for e in events] == [
        ("failed", AGENT_SEQ, True, True)
    ]
    assert "pool process" in str(events[0]["error"]) and "died" in str(events[0]["error"])
    assert outbox.running() == []


def test_attempts_left_by_an_earlier_run_of_the_agent_are_reported_lost(
    tmp_path: Path, server: fakeredis.FakeServer
) -> None:
    path = tmp_path / "outbox.db"
    Outbox(path, run_id="run-1").begin(MESSAGE)  # this very process: alive, but of the earlier run

    courier(Outbox(path, run_id="run-2"), server).run_once()

    assert "the agent restarted" in str(stream(server)[0]["error"])


def test_a_running_attempt_of_this_run_is_left_alone(tmp_path: Path, server: fakeredis.FakeServer) -> None:
    outbox = Outbox(tmp_path / "outbox.db", run_id="run-1")
    outbox.begin(MESSAGE)

    courier(outbox, server).run_once()

    assert stream(server) == [] and len(outbox.running()) == 1


def test_a_process_is_named_by_its_pid_and_start_time() -> None:
    assert process_start(os.getpid()) == process_start(os.getpid()) is not None
    child = subprocess.Popen(["true"])
    child.wait()
    assert process_start(child.pid) is None


def test_a_shorter_record_over_a_longer_one_reads_back_as_written(tmp_path: Path) -> None:
    outbox = Outbox(tmp_path / "outbox.db", run_id="run-1")
    long = MESSAGE.model_copy(update={"spec": {"run": "x" * 500}})
    outbox.begin(long)
    outbox.forget(long)
    outbox.begin(MESSAGE)

    assert [r.message for r in outbox.running()] == [MESSAGE]


def test_the_slot_of_a_pool_process_that_ended_between_steps_is_removed(tmp_path: Path) -> None:
    path = tmp_path / "outbox.db"
    code = (
        "import sys; from agents.outbox import Outbox; from tests.unit.test_outbox import MESSAGE; "
        "o = Outbox(sys.argv[1], 'run-1'); o.begin(MESSAGE); o.forget(MESSAGE)"
    )
    subprocess.run([sys.executable, "-c", code, str(path)], check=True, cwd=Path(__file__).parents[2])
    outbox = Outbox(path, run_id="run-1")
    assert len(list(outbox.slots.iterdir())) == 1

    assert outbox.running() == []
    assert list(outbox.slots.iterdir()) == []


def test_a_process_that_died_after_keeping_its_report_is_not_reported_lost(
    tmp_path: Path, server: fakeredis.FakeServer
) -> None:
    path = tmp_path / "outbox.db"
    # the report is kept (Redis was away) and the process dies before it clears its slot
    code = (
        "import sys, os; from agents.outbox import Outbox; from tests.unit.test_outbox import MESSAGE; "
        "o = Outbox(sys.argv[1], 'run-1'); o.begin(MESSAGE); "
        "o.put(MESSAGE.step_id, MESSAGE.attempt, "
        '\'{"step_id": "w.0", "attempt": 1, "seq": 2, "state": "succeeded"}\'); os._exit(9)'
    )
    subprocess.run([sys.executable, "-c", code, str(path)], check=False, cwd=Path(__file__).parents[2])
    outbox = Outbox(path, run_id="run-1")

    courier(outbox, server).run_once()
    courier(outbox, server).send(older_than_s=0)

    assert [e["state"] for e in stream(server)] == ["succeeded"]
    assert outbox.running() == []


def test_a_process_forked_while_a_thread_holds_the_outbox_lock_can_use_the_outbox(tmp_path: Path) -> None:
    """The autoscaler forks pool processes while the main process's courier may be inside a transaction:
    a child that inherited the lock held hung at its first step (a burst whose step never started)."""
    import multiprocessing
    import threading

    outbox = Outbox(tmp_path / "outbox.db", run_id="run-1")
    held, release = threading.Event(), threading.Event()

    def courier() -> None:
        with outbox._lock:
            held.set()
            release.wait(30)

    thread = threading.Thread(target=courier)
    thread.start()
    assert held.wait(10)
    try:
        child = multiprocessing.get_context("fork").Process(target=outbox.put, args=("s1", 1, "{}"))
        child.start()
        child.join(20)
        hung = child.is_alive()
        if hung:
            child.kill()
            child.join()
    finally:
        release.set()
        thread.join()
    assert not hung and child.exitcode == 0
