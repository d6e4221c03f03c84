"""The engine's HTTP API. Thin: each route calls one Engine operation and returns its model.

Every route but `/v1/health`, `/v1/ready` and `/v1/ca` needs a token (engine.auth). There is no CORS
middleware, and the JSON API under `/v1` reads only the `Authorization: Bearer` header, never a cookie: a
browser page on another origin can neither send a token nor read an answer. Only the console's routes (`/`
and `/console/...`, engine.console) accept the session cookie its login page sets, and only with the CSRF
checks of engine.session on a POST. The interactive docs are off, since they would describe the API to
anyone who asks.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import FastAPI, Query
from fastapi.responses import JSONResponse, PlainTextResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from pydantic import BaseModel

from common.errors import BadInput, NotFound
from common.models import AgentView, HistoryCount, StepLog, WorkflowState, WorkflowView
from engine import admission, answers, console, deadletters, metrics, policy, scheduler, vault
from engine.answers import UnicodeText
from engine.auth import Authenticator, Guard
from engine.core import Engine
from engine.fleet import forget, list_agents
from engine.health import StoreWatch
from engine.health import report as health_report
from engine.imports import agent_routes
from engine.imports import routes as import_routes
from engine.ready import report as readiness
from engine.tls import TlsFiles
from workflows.sources import DesiredInput, SourceFile

# An age in days, as `prune` takes it: none is the engine's retention.
Days = Annotated[float | None, Query(ge=0, allow_inf_nan=False)]


class SubmittedFile(BaseModel):
    filename: UnicodeText
    source: UnicodeText


class Submission(BaseModel):
    """One document (`source`, `filename`), or several (`files`: a folder's), `limit` (kind/name), and
    `vars` over the files' own."""

    source: UnicodeText | None = None
    filename: UnicodeText = "<api>"
    files: list[SubmittedFile] = []
    limit: list[UnicodeText] = []
    vars: dict[UnicodeText, Any] = {}

    def desired(self) -> DesiredInput:
        files = [SourceFile(filename=f.filename, source=f.source) for f in self.files]
        if self.source is not None:
            files.insert(0, SourceFile(filename=self.filename, source=self.source))
        if not files:
            raise BadInput("the body holds no desired state: send `source` (and `filename`) or `files`")
        return DesiredInput(files=files, limit=list(self.limit), vars=dict(self.vars))


class DeadLetterIds(BaseModel):
    ids: list[str] = []  # none: every dead letter


def create_api(engine: Engine) -> FastAPI:
    api = FastAPI(title="Converge engine", version="1", docs_url=None, redoc_url=None, openapi_url=None)

    answers.install(api, engine.settings)
    authenticator = Authenticator(engine.store)
    api.add_middleware(Guard, authenticator=authenticator, max_body_bytes=engine.settings.max_body_bytes)

    _health_routes(api, engine)
    vault.install_routes(api, engine, authenticator)
    admission.install_routes(api, engine)
    agent_routes.install_routes(api, engine)
    import_routes.install_routes(api, engine)
    scheduler.install_routes(api, engine)
    policy.install_routes(api, engine.store)
    _workflow_routes(api, engine)
    console.install(api, engine, authenticator)

    @api.post("/v1/plan")
    def plan(body: Submission) -> dict[str, Any]:
        results = engine.plan(body.desired())
        return {"changes": [r.model_dump(mode="json") for r in results]}

    @api.get("/v1/agents")
    def agents() -> list[AgentView]:
        return list_agents(engine.client, engine.store.running_by_agent(), engine.store.enrollments())

    @api.delete("/v1/agents/{agent_id}")
    def forget_agent(agent_id: str) -> dict[str, str]:
        forget(engine.client, agent_id)
        return {"forgotten": agent_id}

    return api


def _workflow_routes(api: FastAPI, engine: Engine) -> None:
    """Workflows and history: submit, read (by id or a unique prefix of one), cancel, retry, prune."""

    @api.post("/v1/workflows", status_code=201)
    def submit(body: Submission) -> dict[str, Any]:
        submitted = engine.apply(body.desired())
        return {
            "workflow": submitted.workflow.model_dump(mode="json"),
            "created": submitted.created,
            "warnings": submitted.warnings,
        }

    @api.get("/v1/workflows")
    def workflows(state: WorkflowState | None = None) -> list[WorkflowView]:
        return engine.workflows(state)

    @api.get("/v1/history")
    def history() -> list[WorkflowView]:
        return engine.store.workflows(history=True)

    @api.get("/v1/history/count")
    def history_count(older_than_days: Days = None) -> HistoryCount:
        """How many workflows history holds, and how many a prune of `older_than_days` would delete."""
        return engine.history_count(older_than_days)

    @api.get("/v1/workflows/{workflow_id}")
    def workflow(workflow_id: str) -> WorkflowView:
        return engine.workflow(workflow_id)

    @api.get("/v1/workflows/{workflow_id}/logs")
    def logs(workflow_id: str) -> list[StepLog]:
        return engine.logs(workflow_id)

    @api.post("/v1/workflows/{workflow_id}/cancel")
    def cancel(workflow_id: str) -> WorkflowView:
        return engine.cancel(workflow_id)

    @api.post("/v1/workflows/{workflow_id}/retry")
    def retry(workflow_id: str) -> WorkflowView:
        return engine.retry(workflow_id)

    @api.post("/v1/history/prune")
    def prune(older_than_days: Days = None, everything: bool = Query(False, alias="all")) -> dict[str, int]:
        """Refused (422) when it would empty history, unless `all=true`: the operator confirmed."""
        return {"pruned": engine.prune(older_than_days, everything=everything)}


def _health_routes(api: FastAPI, engine: Engine) -> None:
    """Whether the engine can work, and the status entries it could not record (the dead letters)."""
    watch = StoreWatch().attach(engine.store)

    @api.get("/v1/health")
    def health() -> dict[str, Any]:
        return health_report(engine.client, watch, engine.duties.describe() if engine.duties else None)

    @api.get("/v1/ready")
    def ready() -> JSONResponse:
        """200 when the store and Redis answer, else 503 saying which does not (engine.ready)."""
        settings = engine.settings
        document = readiness(engine.store, settings.store_url, engine.client, settings.broker_url)
        return JSONResponse(document, status_code=200 if document["ready"] else 503)

    @api.get("/v1/ca", response_class=PlainTextResponse)
    def ca() -> str:
        """The CA certificate (public), for a client that pins its fingerprint and has not the file."""
        path = TlsFiles.under(engine.settings.home).ca_cert
        if not path.is_file():
            raise NotFound("this engine has no CA: it serves plain HTTP (`converge engine init` makes one)")
        return path.read_text(encoding="ascii")

    scraped = metrics.registry(engine.store, engine.client)

    @api.get("/metrics")
    def prometheus() -> Response:
        """The engine's figures for Prometheus (engine.metrics); a viewer token, as every read."""
        return Response(generate_latest(scraped), media_type=CONTENT_TYPE_LATEST)

    @api.get("/v1/dead-letters")
    def dead_letters(limit: int = Query(100, ge=1, le=10_000)) -> dict[str, Any]:
        letters, total = deadletters.listing(engine.client, limit)
        return {"dead_letters": [d.model_dump(mode="json") for d in letters], "total": total}

    @api.post("/v1/dead-letters/retry")
    def retry_dead_letters(body: DeadLetterIds) -> dict[str, list[str]]:
        return {"retried": deadletters.retry(engine.client, body.ids)}

    @api.post("/v1/dead-letters/purge")
    def purge_dead_letters(body: DeadLetterIds) -> dict[str, int]:
        return {"purged": deadletters.purge(engine.client, body.ids)}
