"""Status events are parsed a batch at a time; one malformed entry does not lose the others."""

from __future__ import annotations

import json

import pytest

from engine.ingest import _parse


def event(seq: int) -> bytes:
    return json.dumps(
        {"workflow_id": "w", "step_id": "w.0", "attempt": 1, "seq": seq, "state": "progress", "agent": "a",
         "at": "2026-11-25T10:00:00+00:00", "progress": 50.0}
    ).encode()  # fmt: skip


def test_a_batch_of_events_is_parsed_in_order() -> None:
    assert [e.seq for e in _parse([event(1), event(2), event(3)])] == [1, 2, 3]


def test_a_malformed_entry_is_dropped_and_the_rest_are_kept(caplog: pytest.LogCaptureFixture) -> None:
    parsed = _parse([event(1), b'{"not": "an event"}', b"", event(4)])

    assert [e.seq for e in parsed] == [1, 4]
    assert "dropping a malformed status entry" in caplog.text
