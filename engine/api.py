"""The engine's HTTP API. Thin: each route calls one Engine operation and returns its model."""

from __future__ import annotations

from typing import Any

import redis
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel

from common.errors import NotFound, Refused, Unreachable
from common.models import AgentView, WorkflowState, WorkflowView
from engine.core import Engine
from engine.fleet import list_agents
from workflows.spec import SpecError


class Submission(BaseModel):
    source: str
    filename: str = "<api>"


def create_api(engine: Engine) -> FastAPI:
    api = FastAPI(title="Converge engine", version="1")

    _error_handlers(api, engine.settings.broker_url)

    @api.get("/v1/health")
    def health() -> dict[str, Any]:
        return {"ok": True}

    @api.post("/v1/workflows", status_code=201)
    def submit(body: Submission) -> dict[str, Any]:
        view, created = engine.submit(body.source, body.filename)
        return {"workflow": view.model_dump(mode="json"), "created": created}

    @api.get("/v1/workflows")
    def workflows(state: WorkflowState | None = None) -> list[WorkflowView]:
        return engine.store.workflows(state=state)

    @api.get("/v1/history")
    def history() -> list[WorkflowView]:
        return engine.store.workflows(history=True)

    @api.get("/v1/workflows/{workflow_id}")
    def workflow(workflow_id: str) -> WorkflowView:
        return engine.workflow(workflow_id)

    @api.post("/v1/workflows/{workflow_id}/cancel")
    def cancel(workflow_id: str) -> WorkflowView:
        return engine.cancel(workflow_id)

    @api.post("/v1/workflows/{workflow_id}/retry")
    def retry(workflow_id: str) -> WorkflowView:
        return engine.retry(workflow_id)

    @api.post("/v1/history/prune")
    def prune(older_than_days: float | None = None) -> dict[str, int]:
        return {"pruned": engine.prune(older_than_days)}

    @api.post("/v1/plan")
    def plan(body: Submission) -> dict[str, Any]:
        results = engine.plan(body.source, body.filename)
        return {"changes": [r.model_dump(mode="json") for r in results]}

    @api.get("/v1/agents")
    def agents() -> list[AgentView]:
        return list_agents(engine.client, engine.store.running_by_agent())

    return api


def _error_handlers(api: FastAPI, broker_url: str) -> None:
    """Converge errors become JSON answers with the status code the client maps back to an exit code."""

    @api.exception_handler(SpecError)
    def bad_input(_: Request, exc: SpecError) -> JSONResponse:
        problems = [p.model_dump() for p in exc.problems]
        return JSONResponse(status_code=422, content={"error": str(exc), "problems": problems})

    @api.exception_handler(NotFound)
    def not_found(_: Request, exc: NotFound) -> JSONResponse:
        return JSONResponse(status_code=404, content={"error": str(exc)})

    @api.exception_handler(Refused)
    def refused(_: Request, exc: Refused) -> JSONResponse:
        return JSONResponse(status_code=409, content={"error": str(exc)})

    @api.exception_handler(Unreachable)
    def unreachable(_: Request, exc: Unreachable) -> JSONResponse:
        return JSONResponse(status_code=503, content={"error": str(exc)})

    @api.exception_handler(redis.RedisError)
    def redis_down(_: Request, exc: redis.RedisError) -> JSONResponse:
        where = broker_url
        return JSONResponse(
            status_code=503, content={"error": f"the engine cannot reach Redis at {where}: {exc}"}
        )
