"""How the agent reports junk it drops from its queues: one bounded line each, counted by reason."""

from __future__ import annotations

import binascii
import json
import logging
import threading

import pytest

from agents import junk


def test_a_long_message_is_cut_and_says_how_long_it_was() -> None:
    text = junk.preview(b"x" * 10_000)

    assert len(text) < junk.PREVIEW_CHARS + 40
    assert text.endswith("(10003 characters)")


def test_a_short_message_is_shown_whole() -> None:
    assert junk.preview(b"not json") == "b'not json'"


def test_the_counter_counts_each_drop_by_reason_and_in_all() -> None:
    counter = junk.JunkCounter()

    assert counter.add("JSONDecodeError") == 1
    assert counter.add("TypeError") == 2
    assert counter.add("TypeError") == 3

    assert counter.total == 3
    assert counter.by_reason() == {"JSONDecodeError": 1, "TypeError": 2}


def test_the_counter_loses_no_drop_across_threads() -> None:
    counter = junk.JunkCounter()

    def count() -> None:
        for _ in range(1000):
            counter.add("TypeError")

    threads = [threading.Thread(target=count) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert counter.total == 8000


def test_a_drop_is_named_after_what_made_the_message_undecodable() -> None:
    try:
        try:
            json.loads("not json")
        except ValueError as exc:
            raise junk.UndecodableMessage("not a kombu envelope") from exc
    except junk.UndecodableMessage as wrapped:
        assert junk.name_of(junk.root_of(wrapped)) == "JSONDecodeError"
    assert junk.name_of(binascii.Error("bad")) == "binascii.Error"
    assert junk.name_of(junk.UndecodableMessage("x")) == "UndecodableMessage"


def test_dropping_logs_one_bounded_line_and_counts_it(caplog: pytest.LogCaptureFixture) -> None:
    counter = junk.JunkCounter()
    caplog.set_level(logging.ERROR, logger="converge.agent")

    junk.drop("converge.role.web", b"[" * 5000, TypeError("list indices must be integers " * 50), counter)

    assert counter.by_reason() == {"TypeError": 1}
    (record,) = caplog.records
    line = record.getMessage()
    assert "\n" not in line
    assert len(line) < 700
    assert "converge.role.web" in line
    assert "1 dropped since the agent started" in line
