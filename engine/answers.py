"""How every error that reaches the API becomes an answer: a status the CLI maps to an exit code, and JSON
`{"error": message}` saying what is wrong and what to do.

4xx for what the caller can fix, 503 naming Redis or the store when either cannot be used (exit code 3),
and 500 only for the engine's own bugs: their traceback goes to the engine's log, never to the caller.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Annotated, Any

import redis
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from kombu.exceptions import BatchPublishError, OperationalError
from pydantic import AfterValidator
from sqlalchemy.exc import SQLAlchemyError
from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from common.errors import BadInput, ConvergeError, NotFound, Unreachable
from common.settings import Settings, redact
from engine.health import describe, store_is_down
from workflows.spec import SpecError

log = logging.getLogger("converge.engine")


def _unicode(text: str) -> str:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise ValueError(
            f"holds a lone surrogate (U+{ord(text[exc.start]):04X}) at character {exc.start}, which is not "
            "valid Unicode: send UTF-8 text"
        ) from None
    return text


UnicodeText = Annotated[str, AfterValidator(_unicode)]
"""A request's text field: a string that can be encoded as UTF-8 (JSON lets a lone surrogate through)."""


def answer(status: int, message: str, headers: Mapping[str, str] | None = None, **extra: Any) -> JSONResponse:
    """A JSON error answer; the message cannot break the response, whatever text it quotes."""
    safe = message.encode("utf-8", "backslashreplace").decode("utf-8")
    return JSONResponse(status_code=status, content={"error": safe, **extra}, headers=headers)


def install(api: FastAPI, settings: Settings) -> None:
    """Map every exception that can reach `api` to an answer."""
    redis_at = redact(settings.broker_url)
    store_at = redact(settings.store_url)

    @api.exception_handler(SpecError)
    def bad_desired_state(_: Request, exc: SpecError) -> JSONResponse:
        return answer(422, str(exc), problems=[p.model_dump() for p in exc.problems])

    @api.exception_handler(ConvergeError)
    def converge_error(_: Request, exc: ConvergeError) -> JSONResponse:
        return answer(status_of(exc), str(exc))

    @api.exception_handler(HTTPException)
    def http_error(_: Request, exc: HTTPException) -> JSONResponse:
        return answer(exc.status_code, str(exc.detail), headers=exc.headers)

    @api.exception_handler(RequestValidationError)
    def bad_request(_: Request, exc: RequestValidationError) -> JSONResponse:
        return answer(422, f"the request is not valid: {_request_problems(exc)}")

    @api.exception_handler(redis.RedisError)
    @api.exception_handler(OperationalError)
    @api.exception_handler(BatchPublishError)  # kombu's, when Redis goes while a batch is being published
    def redis_down(_: Request, exc: Exception) -> JSONResponse:
        return answer(503, f"the engine cannot reach Redis at {redis_at} ({exc}): try again once it is back")

    @api.exception_handler(SQLAlchemyError)
    def store_error(request: Request, exc: SQLAlchemyError) -> JSONResponse:
        if store_is_down(exc):
            return answer(
                503, f"the engine cannot use its store at {store_at} ({describe(exc)}): try again later"
            )
        return _bug(request, exc)

    api.add_middleware(_LastResort)


def status_of(exc: ConvergeError) -> int:
    """The status the client maps back to the error's exit code: 404 and 422 (2), 503 (3), 409 (1)."""
    if isinstance(exc, NotFound):
        return 404
    if isinstance(exc, BadInput):
        return 422
    if isinstance(exc, Unreachable):
        return 503
    return 409  # Refused, and any other failure: exit code 1


def _request_problems(exc: RequestValidationError) -> str:
    """Each problem as `field: reason`, without echoing the input (it may be what cannot be encoded)."""
    problems = []
    for error in exc.errors():
        field = ".".join(str(part) for part in error.get("loc", ()) if part != "body") or "body"
        problems.append(f"{field}: {str(error.get('msg', 'invalid')).removeprefix('Value error, ')}")
    return "; ".join(problems)


def _bug(request: Request, exc: BaseException) -> JSONResponse:
    log.error("%s %s failed", request.method, request.url.path, exc_info=exc)
    return answer(
        500,
        f"the engine failed on this request with an error of its own ({exc.__class__.__name__}): its log "
        "has the traceback; please report it",
    )


class _LastResort:
    """Any exception no handler took is a bug of the engine: log it, answer 500 in JSON.

    An ASGI middleware rather than an `Exception` handler, which Starlette re-raises after answering (the
    server would log the traceback a second time).
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = False

        async def watched(message: Message) -> None:
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, receive, watched)
        except Exception as exc:
            if started:  # too late for another answer: the server closes the connection
                raise
            await _bug(Request(scope), exc)(scope, receive, send)
