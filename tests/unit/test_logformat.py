import json
import logging

from common.logformat import JsonFormatter, formatter


def _record(msg: str, *args: object, exc: bool = False) -> logging.LogRecord:
    exc_info = None
    if exc:
        try:
            raise ValueError("broken")
        except ValueError:
            import sys

            exc_info = sys.exc_info()
    return logging.LogRecord("converge.engine", logging.WARNING, __file__, 1, msg, args, exc_info)


def test_a_json_line_has_time_level_logger_and_message() -> None:
    line = JsonFormatter().format(_record('step %s of "%s"\nsecond line', 3, "web"))
    assert "\n" not in line
    entry = json.loads(line)
    assert entry["level"] == "WARNING"
    assert entry["logger"] == "converge.engine"
    assert entry["message"] == 'step 3 of "web"\nsecond line'
    assert entry["time"].endswith("+00:00")
    assert "exception" not in entry


def test_a_json_line_carries_the_exception_text() -> None:
    entry = json.loads(JsonFormatter().format(_record("failed", exc=True)))
    assert "ValueError: broken" in entry["exception"]
    assert entry["exception"].startswith("Traceback")


def test_text_is_the_default_and_is_not_json() -> None:
    line = formatter("text").format(_record("hello"))
    assert line.endswith("WARNING converge.engine: hello")
    assert isinstance(formatter("json"), JsonFormatter)
