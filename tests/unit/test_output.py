"""A step's bounded, interleaved output (workflows.output): pure."""

from __future__ import annotations

from workflows.output import MAX_LINE_BYTES, Output, tail


def test_lines_of_both_streams_keep_their_order_and_a_partial_line_waits_for_its_end() -> None:
    output = Output()
    output.add("out", b"one\ntw", at=1.0)
    output.add("err", b"oops\n", at=2.0)
    output.add("out", b"o\n", at=3.0)
    output.add("err", b"no newline", at=4.0)
    output.close(at=5.0)

    assert output.document() == {
        "lines": [[1.0, "out", "one"], [2.0, "err", "oops"], [3.0, "out", "two"], [5.0, "err", "no newline"]],
        "cut_bytes": 0,
    }
    assert tail(output.document(), 2) == ["two", "[err] no newline"]


def test_only_the_last_bytes_are_kept_and_what_was_cut_is_counted() -> None:
    output = Output(limit=100)
    for i in range(50):
        output.add("out", f"line {i:03}\n".encode(), at=float(i))  # 9 bytes each

    kept = output.document()["lines"]
    assert [text for _, _, text in kept] == [f"line {i:03}" for i in range(39, 50)]
    assert output.document()["cut_bytes"] == 39 * 9
    assert output.size == 11 * 9 <= 100


def test_a_line_without_end_is_kept_in_pieces() -> None:
    output = Output()
    output.add("out", b"x" * (MAX_LINE_BYTES * 2 + 5), at=1.0)
    output.close(at=2.0)

    assert [len(text) for _, _, text in output.document()["lines"]] == [MAX_LINE_BYTES, MAX_LINE_BYTES, 5]


def test_credential_values_are_hidden() -> None:
    output = Output()
    output.add("out", b"password is hunter2, again hunter2\n", at=1.0)

    hidden = output.hiding(["hunter2", ""], "***").document()

    assert hidden["lines"] == [[1.0, "out", "password is ***, again ***"]]
