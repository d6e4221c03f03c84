"""The dispatcher builds its messages with Celery's two halves of `send_task` (engine.dispatcher): what it
puts on a queue must be the message `send_task` itself would put there, so that agents, Flower and any
Celery tool read it as an ordinary task."""

from __future__ import annotations

import base64
import json
import uuid
from typing import Any

import pytest
import redis

from common import names
from common.celery_app import make_app
from common.localredis import LocalRedis
from common.models import StepMessage
from engine.dispatcher import Dispatcher, _display

# Differs between any two messages: the id kombu makes for each delivery.
_PER_MESSAGE = {"delivery_tag"}


def _sent_by_celery(app: Any, message: StepMessage, kwargs: dict[str, Any], expires_s: float | None) -> None:
    queue = names.role_queue(message.role)
    app.send_task(
        names.STEP_TASK,
        kwargs=kwargs,
        task_id=f"{message.step_id}.{message.attempt}",
        queue=queue,
        exchange="",
        routing_key=queue,
        declare=[],
        expires=expires_s,
        argsrepr=f"({message.resource!r}, 'wf {message.workflow_id[:8]}')",
        kwargsrepr=_display(message),
    )


@pytest.mark.parametrize("expires_s", [None, 300.0])
def test_the_dispatcher_publishes_what_send_task_would(
    redis_server: LocalRedis, expires_s: float | None
) -> None:
    client = redis.Redis.from_url(redis_server.url)
    role = f"publish-{uuid.uuid4().hex[:8]}"  # a queue of its own on the session's Redis
    app = make_app(redis_server.url, visibility_timeout_s=3600)
    message = StepMessage(
        workflow_id="w1", step_id="w1.0", resource="file/a", kind="file", name="a", role=role,
        spec={"path": "/tmp/a", "content": "x"},
    )  # fmt: skip
    Dispatcher(app, client, attempt_ttl_s=60).publish([message], expires_s=expires_s)
    ours = json.loads(client.lpop(names.role_queue(role)) or b"null")
    _sent_by_celery(app, message, _kwargs(ours), expires_s)  # the same signed kwargs, through send_task
    theirs = json.loads(client.lpop(names.role_queue(role)) or b"null")

    assert ours["body"] == theirs["body"]
    assert _headers(ours) == _headers(theirs)
    assert _properties(ours) == _properties(theirs)


def _kwargs(raw: dict[str, Any]) -> dict[str, Any]:
    _, kwargs, _ = json.loads(base64.b64decode(raw["body"]))
    return dict(kwargs)


def _headers(raw: dict[str, Any]) -> dict[str, Any]:
    headers = dict(raw["headers"])
    if headers.get("expires"):  # the time it expires: the two were sent within the same minute
        headers["expires"] = headers["expires"][:16]
    return headers


def _properties(raw: dict[str, Any]) -> dict[str, Any]:
    properties = {k: v for k, v in raw["properties"].items() if k not in _PER_MESSAGE}
    properties.pop("kwargsrepr", None)  # `send_task` leaks these options into the properties: unused
    properties.pop("argsrepr", None)
    return properties
