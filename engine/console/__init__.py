"""The operator console: server-rendered pages (Jinja2) served by the engine at `/`, kept live by htmx
polling partial fragments every 2 s. htmx is vendored under static/: nothing comes from a CDN.

Every page reads the store a page at a time (common.store.console); the guard (engine.auth, engine.session)
checks the session cookie, its role and, on a POST, the CSRF defences before a route runs.
"""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from fastapi import FastAPI, Form, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from fastapi.staticfiles import StaticFiles
from jinja2 import Environment, FileSystemLoader, select_autoescape

from common.errors import ConvergeError
from common.models import StepState, WorkflowState
from common.store.console import WorkflowFilter
from engine import scheduler, session
from engine.auth import Authenticator, Refusal, Role
from engine.core import Engine
from engine.fleet import list_agents

HERE = Path(__file__).parent
PAGE_SIZE = 50  # workflows per page
STEPS_PER_PAGE = 200
_templates = Environment(loader=FileSystemLoader(HERE / "templates"), autoescape=select_autoescape())


def render(request: Request, name: str, **values: Any) -> HTMLResponse:
    token = session.cookie_token(request.headers.get("cookie"))
    csrf = session.csrf_of(token) if token else ""
    html = _templates.get_template(name).render(request=request, csrf=csrf, **values)
    return HTMLResponse(html)


def install(api: FastAPI, engine: Engine, authenticator: Authenticator) -> None:
    api.mount(session.STATIC, StaticFiles(directory=HERE / "static"), name="console-static")
    _login_routes(api, authenticator)
    _compliance_routes(api, engine)

    @api.get("/", include_in_schema=False)
    def root() -> Response:
        return RedirectResponse("/console/workflows", status_code=303)

    @api.get("/console/workflows", response_class=HTMLResponse)
    def workflows(request: Request) -> HTMLResponse:
        return render(request, "workflows.html", **_workflow_list(engine, request))

    @api.get("/console/fragments/workflows", response_class=HTMLResponse)
    def workflows_fragment(request: Request) -> HTMLResponse:
        return render(request, "_workflows.html", **_workflow_list(engine, request))

    @api.get("/console/workflows/{workflow_id}", response_class=HTMLResponse)
    def workflow(request: Request, workflow_id: str) -> HTMLResponse:
        return render(request, "workflow.html", **_workflow_page(engine, request, workflow_id))

    @api.get("/console/fragments/workflows/{workflow_id}", response_class=HTMLResponse)
    def workflow_fragment(request: Request, workflow_id: str) -> HTMLResponse:
        return render(request, "_workflow.html", **_workflow_page(engine, request, workflow_id))

    @api.post("/console/workflows/{workflow_id}/{action}", response_class=HTMLResponse)
    def act(request: Request, workflow_id: str, action: str) -> Response:
        if action not in ("cancel", "retry"):
            return HTMLResponse("no such action", status_code=404)
        try:
            (engine.cancel if action == "cancel" else engine.retry)(workflow_id)
        except ConvergeError as exc:
            values = _workflow_page(engine, request, workflow_id)
            return render(request, "_workflow.html", notice=str(exc), **values)
        return render(request, "_workflow.html", **_workflow_page(engine, request, workflow_id))

    @api.get("/console/agents", response_class=HTMLResponse)
    def agents(request: Request) -> HTMLResponse:
        return render(request, "agents.html", agents=_agents(engine))

    @api.get("/console/fragments/agents", response_class=HTMLResponse)
    def agents_fragment(request: Request) -> HTMLResponse:
        return render(request, "_agents.html", agents=_agents(engine))


def _compliance_routes(api: FastAPI, engine: Engine) -> None:
    """Every scheduled desired state with its last compliance report, as the API shows it."""

    @api.get("/console/compliance", response_class=HTMLResponse)
    def compliance(request: Request) -> HTMLResponse:
        return render(request, "compliance.html", schedules=_schedules(engine))

    @api.get("/console/fragments/compliance", response_class=HTMLResponse)
    def compliance_fragment(request: Request) -> HTMLResponse:
        return render(request, "_compliance.html", schedules=_schedules(engine))


def _schedules(engine: Engine) -> list[dict[str, Any]]:
    return [scheduler.view(record) for record in engine.store.schedules()]


def _login_routes(api: FastAPI, authenticator: Authenticator) -> None:
    @api.get(session.LOGIN, response_class=HTMLResponse)
    def login_page(request: Request) -> HTMLResponse:
        return render(request, "login.html", error=None)

    @api.post(session.LOGIN, response_class=HTMLResponse)
    def login(request: Request, token: str = Form("")) -> Response:
        headers = {k.lower(): v for k, v in request.headers.items()}
        if not session.same_origin(headers, request.url.scheme):
            return HTMLResponse("the login form must be posted from this engine's own page", status_code=403)
        try:
            authenticator.check("Bearer " + token.strip(), Role.VIEWER)
        except Refusal as refusal:
            page = render(request, "login.html", error=refusal.message)
            page.status_code = refusal.status
            return page
        answer = RedirectResponse("/console/workflows", status_code=303)
        answer.headers["set-cookie"] = session.set_cookie_header(token.strip(), request.url.scheme == "https")
        return answer

    @api.get(session.LOGOUT)
    def logout(request: Request) -> Response:
        answer = RedirectResponse(session.LOGIN, status_code=303)
        answer.headers["set-cookie"] = session.clear_cookie_header(request.url.scheme == "https")
        return answer


def _day(text: str | None) -> float | None:
    if not text:
        return None
    try:
        return datetime.strptime(text, "%Y-%m-%d").replace(tzinfo=UTC).timestamp()
    except ValueError:
        return None


def _workflow_list(engine: Engine, request: Request) -> dict[str, Any]:
    q = request.query_params
    state = WorkflowState(q["state"]) if q.get("state") in set(WorkflowState) else None
    history = q.get("view") == "history"
    until = _day(q.get("until"))
    where = WorkflowFilter(
        history=history,
        state=state,
        name=q.get("name", "")[:255],
        since=_day(q.get("since")),
        until=None if until is None else until + 86400,
    )
    page = max(1, int(q["page"])) if q.get("page", "").isdigit() else 1
    rows, total = engine.store.workflow_page(where, limit=PAGE_SIZE, offset=(page - 1) * PAGE_SIZE)
    return {
        "workflows": rows,
        "total": total,
        "page": page,
        "pages": max(1, -(-total // PAGE_SIZE)),
        "view": "history" if history else "active",
        "filters": dict(q),
        "query": str(request.url.query),
        "states": [s.value for s in WorkflowState],
    }


def _workflow_page(engine: Engine, request: Request, workflow_id: str) -> dict[str, Any]:
    q = request.query_params
    workflow = engine.store.workflow(engine.resolve(workflow_id), steps=False)
    assert workflow is not None
    page = max(1, int(q["page"])) if q.get("page", "").isdigit() else 1
    rows, counts = engine.store.step_page(
        workflow.id, limit=STEPS_PER_PAGE, offset=(page - 1) * STEPS_PER_PAGE
    )
    failed = {s.id for s, _ in rows if s.state in (StepState.FAILED, StepState.TIMED_OUT)}
    outputs = engine.store.outputs_of(workflow.id, sorted(failed))
    total = sum(counts.values())
    done = counts.get(StepState.SUCCEEDED, 0)
    return {
        "workflow": workflow,
        "steps": rows,
        "outputs": outputs,
        "counts": counts,
        "total": total,
        "done": done,
        "page": page,
        "pages": max(1, -(-total // STEPS_PER_PAGE)),
        "can_cancel": workflow.state in (WorkflowState.PENDING, WorkflowState.RUNNING),
        "can_retry": workflow.state in (WorkflowState.FAILED, WorkflowState.ABORTED, WorkflowState.CANCELLED),
        "notice": None,
    }


def _agents(engine: Engine) -> list[Any]:
    return list_agents(engine.client, engine.store.running_by_agent(), engine.store.enrollments())
