"""The agent's `--log-format json`: the JSON formatter goes on the handlers Celery sets up."""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator

import pytest
from celery import signals

from agents import logs
from common.logformat import JsonFormatter


@pytest.fixture
def root_handlers() -> Iterator[None]:
    root = logging.getLogger()
    kept, level = list(root.handlers), root.level
    yield
    root.handlers, root.level = kept, level
    for signal in (signals.after_setup_logger, signals.after_setup_task_logger):
        signal.disconnect(dispatch_uid=logs._UID)
        signal.disconnect(dispatch_uid=logs._UID + "-task")


def test_json_puts_the_json_formatter_on_the_handlers_of_every_logger_celery_sets_up(
    root_handlers: None,
) -> None:
    logs.use("json", "INFO")
    task_logger = logging.getLogger("converge.test.task")
    handler = logging.StreamHandler()
    task_logger.handlers = [handler]
    signals.after_setup_task_logger.send(sender=None, logger=task_logger, loglevel=logging.INFO)
    assert isinstance(handler.formatter, JsonFormatter)
    record = logging.LogRecord("celery.task", logging.INFO, __file__, 1, "hello %s", ("world",), None)
    assert json.loads(handler.format(record))["message"] == "hello world"


def test_text_leaves_celerys_logging_alone(root_handlers: None) -> None:
    logs.use("text", "INFO")
    handler = logging.StreamHandler()
    task_logger = logging.getLogger("converge.test.text")
    task_logger.handlers = [handler]
    signals.after_setup_logger.send(sender=None, logger=task_logger, loglevel=logging.INFO)
    assert not isinstance(handler.formatter, JsonFormatter)
