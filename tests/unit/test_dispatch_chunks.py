"""The dispatcher reads what it publishes a chunk at a time: a small first chunk, then full ones."""

from __future__ import annotations

from collections.abc import Iterator

from engine.dispatcher import chunks


def test_a_small_first_chunk_then_full_ones() -> None:
    sizes = [len(c) for c in chunks(iter(range(25)), 3, 10)]
    assert sizes == [3, 10, 10, 2]


def test_nothing_gives_no_chunk() -> None:
    assert list(chunks(iter([]), 3, 10)) == []


def test_the_items_are_read_only_as_chunks_are_asked_for() -> None:
    read: list[int] = []

    def items() -> Iterator[int]:
        for i in range(100):
            read.append(i)
            yield i

    it = chunks(items(), 2, 10)
    assert next(it) == [0, 1] and len(read) == 2  # the first chunk goes out before the rest is made
    assert next(it) == list(range(2, 12)) and len(read) == 12
