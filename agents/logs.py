"""How the agent writes its log: text lines (Celery's own format), or JSON lines (`--log-format json`,
setting `log_format`) with common.logformat's formatter.

The agent is a Celery worker, and Celery sets its logging up itself: it empties the root logger's handlers
and those of `celery.task` (whose records do not propagate), then puts its own on them. Its
`after_setup_logger` and `after_setup_task_logger` signals come right after, with each logger: the JSON
formatter goes on their handlers there. What the agent logs before Celery starts (its enrollment, its
extensions) goes through a JSON handler of its own, so that every line on stderr is JSON.
"""

from __future__ import annotations

import logging
from typing import Any

from celery import signals

from common import logformat

_UID = "converge-agent-log-format"


def use(log_format: str, level: str) -> None:
    """Log in `log_format` from now on, through Celery's set-up too; text changes nothing."""
    if log_format != "json":
        return
    logformat.configure(level, "json")
    signals.after_setup_logger.connect(_json_handlers, weak=False, dispatch_uid=_UID)
    signals.after_setup_task_logger.connect(_json_handlers, weak=False, dispatch_uid=_UID + "-task")


def _json_handlers(logger: logging.Logger | None = None, **_: Any) -> None:
    for handler in logger.handlers if logger is not None else ():
        handler.setFormatter(logformat.JsonFormatter())
