"""When the ingester waits for more status events before recording: only while several steps are out."""

from __future__ import annotations

from datetime import UTC, datetime

from common.models import StatusEvent, StepMessage
from engine import batching
from engine.batching import Outstanding, linger


def message(step: str, attempt: int = 1, mode: str = "apply") -> StepMessage:
    return StepMessage.model_validate(
        {
            "workflow_id": "w",
            "step_id": step,
            "resource": f"wait_for/{step}",
            "attempt": attempt,
            "kind": "wait_for",
            "name": step,
            "role": "web",
            "spec": {"seconds": 0},
            "mode": mode,
        }
    )


def ev(step: str, state: str, attempt: int = 1) -> StatusEvent:
    return StatusEvent(
        workflow_id="w", step_id=step, attempt=attempt, seq=1, state=state, agent="a", at=datetime.now(UTC)
    )


def test_a_published_attempt_is_out_until_its_end_is_read() -> None:
    out = Outstanding()
    out.published([message("w.0"), message("w.1"), message("w.2", mode="check")])
    assert len(out) == 2  # a plan's check reports elsewhere
    out.saw([ev("w.0", "started"), ev("w.0", "progress")])
    assert len(out) == 2
    out.saw([ev("w.0", "succeeded"), ev("w.1", "failed")])
    assert len(out) == 0


def test_the_end_of_an_older_attempt_does_not_end_the_new_one() -> None:
    out = Outstanding()
    out.published([message("w.0", attempt=2)])
    out.saw([ev("w.0", "failed", attempt=1)])
    assert len(out) == 1


def test_an_idle_stream_forgets_what_it_tracked() -> None:
    out = Outstanding()
    out.published(message(f"w.{i}") for i in range(10))
    out.idle()
    assert len(out) == 0


def test_tracking_is_bounded() -> None:
    out = Outstanding()
    out.published(message(f"w.{i}") for i in range(batching.TRACKED_MAX))
    out.published([message("w.new")])
    assert len(out) == 1


def test_a_chain_never_waits_and_a_busy_stream_does() -> None:
    # one step out at a time: its start, then its end, read alone or together
    assert not linger(read=1, batch=1000, out=1)
    assert not linger(read=2, batch=1000, out=0)
    # many steps out: their events are coming
    assert linger(read=1, batch=1000, out=20)
    # several events in one read: the stream is busy
    assert linger(read=5, batch=1000, out=0)
    # a full batch, or nothing read: no wait
    assert not linger(read=1000, batch=1000, out=20)
    assert not linger(read=0, batch=1000, out=20)


def test_the_ingester_batches_by_what_the_dispatcher_published() -> None:
    from engine.ingest import Ingester

    shared = Outstanding()  # empty, and so falsy: it must still be the one used
    ingester = Ingester(None, None, lambda result: None, lambda agent: None, outstanding=shared)  # type: ignore[arg-type]
    assert ingester.outstanding is shared
