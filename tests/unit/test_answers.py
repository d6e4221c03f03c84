"""Every exception that reaches the API becomes a status and JSON `{"error": message}`: 4xx for the caller,
503 naming Redis or the store, 500 only for the engine's own bugs, whose traceback goes to its log."""

from __future__ import annotations

import asyncio
import logging

import httpx
import pytest
import redis
import sqlalchemy.exc
from fastapi import FastAPI
from kombu.exceptions import OperationalError
from pydantic import BaseModel

from common.errors import BadInput, ConvergeError, NotFound, Refused, Unreachable
from common.settings import load_settings
from engine import answers
from engine.answers import UnicodeText

SECRET = "s3cret"


class Body(BaseModel):
    source: UnicodeText


def raising(exc: BaseException) -> FastAPI:
    api = FastAPI()
    settings = load_settings(
        broker_url=f"redis://:{SECRET}@redis.example:6379/0",
        store_url=f"postgresql+psycopg://converge:{SECRET}@db.example/converge",
    )
    answers.install(api, settings)

    @api.get("/fails")
    def fails() -> None:
        raise exc

    @api.post("/body")
    def body(_: Body) -> dict[str, bool]:
        return {"ok": True}

    return api


def call(api: FastAPI, method: str, path: str, body: bytes | None = None) -> httpx.Response:
    """One request to the app in process, through its whole middleware stack, as a server would."""

    async def send() -> httpx.Response:
        transport = httpx.ASGITransport(app=api, raise_app_exceptions=False)
        async with httpx.AsyncClient(transport=transport, base_url="http://engine") as client:
            headers = {"content-type": "application/json"}
            return await client.request(method, path, content=body, headers=headers)

    return asyncio.run(send())


def get(exc: BaseException) -> tuple[int, str]:
    answer = call(raising(exc), "GET", "/fails")
    error: str = answer.json()["error"]
    assert SECRET not in answer.text
    return answer.status_code, error


@pytest.mark.parametrize(
    ("exc", "status"),
    [
        (BadInput("bad"), 422),
        (NotFound("no such workflow"), 404),
        (Refused("already finished"), 409),
        (Unreachable("store down"), 503),
        (ConvergeError("failed"), 409),
    ],
)
def test_converge_errors_answer_the_status_their_exit_code_maps_from(exc: ConvergeError, status: int) -> None:
    assert get(exc) == (status, str(exc))


@pytest.mark.parametrize("exc", [redis.ConnectionError("Connection refused"), OperationalError("refused")])
def test_redis_errors_answer_503_naming_redis_without_its_password(exc: Exception) -> None:
    status, error = get(exc)
    assert status == 503
    assert error.startswith("the engine cannot reach Redis at redis://:***@redis.example:6379/0")


def test_a_store_that_cannot_be_used_answers_503_naming_the_store() -> None:
    down = sqlalchemy.exc.OperationalError("SELECT 1", {}, Exception("could not connect to server"))
    status, error = get(down)
    assert status == 503
    assert "cannot use its store at postgresql+psycopg://converge:***@db.example/converge" in error


def test_a_bug_answers_500_in_json_and_logs_its_traceback(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.ERROR, logger="converge.engine"):
        status, error = get(KeyError("missing"))

    assert status == 500
    assert "KeyError" in error and "log" in error
    (record,) = [r for r in caplog.records if r.name == "converge.engine"]
    assert record.exc_info is not None and "GET /fails" in record.getMessage()


def test_a_statement_the_store_refuses_is_a_bug_not_an_outage() -> None:
    refused = sqlalchemy.exc.IntegrityError("INSERT", {}, Exception("UNIQUE constraint failed"))
    assert get(refused)[0] == 500


@pytest.mark.parametrize(
    "body",
    [b'{"source": "\\ud800"}', b'{"source": "a\\udfffb"}', b'{"source": 3}', b"{not json", b'"\xff"'],
)
def test_a_request_body_that_cannot_be_taken_answers_422_with_a_message(body: bytes) -> None:
    answer = call(raising(RuntimeError()), "POST", "/body", body)
    assert 400 <= answer.status_code < 500, answer.text
    assert answer.json()["error"]


def test_an_unknown_path_answers_404_in_the_same_form() -> None:
    answer = call(raising(RuntimeError()), "GET", "/v9/nothing")
    assert (answer.status_code, answer.json()) == (404, {"error": "Not Found"})


def test_a_lone_surrogate_is_named_with_where_it_is() -> None:
    answer = call(raising(RuntimeError()), "POST", "/body", b'{"source": "ab\\ud800"}')
    assert answer.status_code == 422
    assert answer.json()["error"] == (
        "the request is not valid: source: holds a lone surrogate (U+D800) at character 2, which is not valid "
        "Unicode: send UTF-8 text"
    )
