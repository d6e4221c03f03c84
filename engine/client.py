"""The CLI's client of the engine API. Every failure becomes a ConvergeError with the right exit code."""

from __future__ import annotations

from typing import Any

import httpx

from common.errors import BadInput, ConvergeError, NotFound, Refused, Unreachable
from common.models import AgentView, CheckResult, WorkflowView


class EngineClient:
    def __init__(self, url: str, token: str | None = None, timeout_s: float = 60.0) -> None:
        self.url = url.rstrip("/")
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        self.http = httpx.Client(base_url=self.url, headers=headers, timeout=timeout_s)

    def _call(self, method: str, path: str, **kwargs: Any) -> Any:
        try:
            response = self.http.request(method, path, **kwargs)
        except httpx.TransportError as exc:
            raise Unreachable(
                f"cannot reach the engine at {self.url} ({exc.__class__.__name__}); start it with "
                "`converge engine run` or `converge up`, or point CONVERGE_URL / --url at it"
            ) from exc
        if response.status_code < 400:
            return response.json()
        try:
            body = response.json()
        except ValueError:
            body = {"error": response.text}
        message = body.get("error") or body.get("detail") or response.text
        if response.status_code == 422:
            raise BadInput(str(message))
        if response.status_code == 404:
            raise NotFound(str(message))
        if response.status_code == 409:
            raise Refused(str(message))
        if response.status_code in (502, 503, 504):
            raise Unreachable(str(message))
        raise ConvergeError(f"the engine at {self.url} answered {response.status_code}: {message}")

    def health(self) -> bool:
        return bool(self._call("GET", "/v1/health").get("ok"))

    def submit(self, source: str, filename: str) -> tuple[WorkflowView, bool]:
        body = self._call("POST", "/v1/workflows", json={"source": source, "filename": filename})
        return WorkflowView.model_validate(body["workflow"]), bool(body["created"])

    def plan(self, source: str, filename: str) -> list[CheckResult]:
        body = self._call("POST", "/v1/plan", json={"source": source, "filename": filename})
        return [CheckResult.model_validate(c) for c in body["changes"]]

    def workflow(self, workflow_id: str) -> WorkflowView:
        return WorkflowView.model_validate(self._call("GET", f"/v1/workflows/{workflow_id}"))

    def workflows(self, state: str | None = None) -> list[WorkflowView]:
        params = {"state": state} if state else {}
        return [WorkflowView.model_validate(w) for w in self._call("GET", "/v1/workflows", params=params)]

    def cancel(self, workflow_id: str) -> WorkflowView:
        return WorkflowView.model_validate(self._call("POST", f"/v1/workflows/{workflow_id}/cancel"))

    def retry(self, workflow_id: str) -> WorkflowView:
        return WorkflowView.model_validate(self._call("POST", f"/v1/workflows/{workflow_id}/retry"))

    def prune(self, older_than_days: float | None) -> int:
        params = {} if older_than_days is None else {"older_than_days": older_than_days}
        return int(self._call("POST", "/v1/history/prune", params=params)["pruned"])

    def history(self) -> list[WorkflowView]:
        return [WorkflowView.model_validate(w) for w in self._call("GET", "/v1/history")]

    def agents(self) -> list[AgentView]:
        return [AgentView.model_validate(a) for a in self._call("GET", "/v1/agents")]
