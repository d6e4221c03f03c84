"""The agent's client of the engine API: its own token, and the engine's certificate checked against its CA.

An agent calls only the agent routes (`/v1/agent/...`), with the token issued to it (role `agent`). The
client is made per process: the agent's Celery pool forks, and a connection pool must not cross a fork.
"""

from __future__ import annotations

import os
import ssl
from pathlib import Path
from typing import Any

import httpx
from pydantic import BaseModel, ValidationError

from agents.config import AgentSettings
from common.models import Admission, EnrollRequest, StatusRequest
from common.policy import AgentPolicy
from common.settings import redact

TIMEOUT_S = 10.0
# The routes only the engine's own agent may call (the import workflow and catalogs).
ENGINE_ROUTES = "/v1/agent/engine/"


class EngineApiError(Exception):
    """A call to the engine failed; `retryable` when trying again later may work (the engine is unreachable
    or busy), not when the engine refused (401, 403, 404: an operator must act)."""

    def __init__(self, message: str, *, retryable: bool) -> None:
        super().__init__(message)
        self.retryable = retryable


class EngineApi:
    """Calls the engine's agent routes as this agent."""

    def __init__(self, url: str, token: str, ca: Path | None = None, timeout_s: float = TIMEOUT_S) -> None:
        self.url = url.rstrip("/")
        self._token = token
        self._ca = ca
        self._timeout_s = timeout_s
        self._http: httpx.Client | None = None
        self._pid = 0

    @classmethod
    def from_settings(cls, settings: AgentSettings) -> EngineApi | None:
        """The client of `engine_url` with `api_token` (and `engine_ca`); None when either is not set."""
        if not settings.engine_url or not settings.api_token:
            return None
        return cls(settings.engine_url, settings.api_token, settings.engine_ca)

    @property
    def http(self) -> httpx.Client:
        if self._http is None or self._pid != os.getpid():
            self._http = httpx.Client(
                base_url=self.url,
                headers={"Authorization": f"Bearer {self._token}"} if self._token else {},  # none to enroll
                timeout=self._timeout_s,
                verify=self._verify(),
            )
            self._pid = os.getpid()
        return self._http

    def _verify(self) -> ssl.SSLContext | bool:
        if self._ca is None:
            return True  # the system's trust store
        try:
            return ssl.create_default_context(cafile=str(self._ca))
        except (OSError, ssl.SSLError) as exc:
            raise EngineApiError(
                f"cannot use the engine's CA file {self._ca} ({exc}): set engine_ca to the engine's ca.pem",
                retryable=False,
            ) from None

    def credential(self, name: str, step_id: str, attempt: int, epoch: int) -> str:
        """The value of credential `name` for this step attempt (the engine checks this agent runs it)."""
        body = {"name": name, "step_id": step_id, "attempt": attempt, "epoch": epoch}
        answer = self._post("/v1/agent/credentials", body)
        value = answer.get("value") if isinstance(answer, dict) else None
        if not isinstance(value, str):
            raise EngineApiError(f"the engine at {redact(self.url)} sent no value", retryable=False)
        return value

    def policy(self, roles: list[str]) -> AgentPolicy:
        """The policy this agent applies: its roles' policies combined (common.policy.merge), in the order
        it lists them. The engine checks the roles against the agent's admission."""
        answer = self._send("GET", "/v1/agent/policy", params={"role": roles})
        try:
            return AgentPolicy.model_validate(answer)
        except ValidationError:
            raise EngineApiError(
                f"{redact(self.url)} answered /v1/agent/policy with something that is not a policy: are the "
                "agent and the engine the same version?",
                retryable=False,
            ) from None

    def engine_call(self, method: str, path: str, body: dict[str, Any] | None = None) -> Any:
        """A route for the engine's own agent (`/v1/agent/engine/...`); no other path."""
        if not path.startswith(ENGINE_ROUTES):
            raise EngineApiError(f"{path} is not one of the engine's own agent routes", retryable=False)
        return self._send(method, path, json=body)

    def enroll(self, request: EnrollRequest) -> Admission:
        """Ask to be admitted (an open route: the agent has no token yet); the answer is its state."""
        return self._admission("/v1/enroll", request)

    def admission(self, request: StatusRequest) -> Admission:
        """This agent's state, asked with the proof that it holds its key; once admitted, its credentials."""
        return self._admission("/v1/enroll/status", request)

    def _admission(self, path: str, request: BaseModel) -> Admission:
        try:
            return Admission.model_validate(self._post(path, request.model_dump()))
        except ValidationError:
            raise EngineApiError(
                f"{redact(self.url)} answered {path} with something that is not an admission: is engine_url "
                "the engine's address?",
                retryable=False,
            ) from None

    def _post(self, path: str, body: dict[str, Any]) -> Any:
        return self._send("POST", path, json=body)

    def _send(self, method: str, path: str, **kwargs: Any) -> Any:
        where = redact(self.url)
        try:
            response = self.http.request(method, path, **kwargs)
        except httpx.TransportError as exc:
            raise EngineApiError(
                f"cannot reach the engine at {where} ({exc.__class__.__name__}): check engine_url and "
                "engine_ca",
                retryable=True,
            ) from None
        if response.status_code >= 400:
            raise EngineApiError(
                f"the engine at {where} answered {response.status_code}: {_message(response)}",
                retryable=response.status_code >= 500 or response.status_code == 429,
            )
        try:
            return response.json()
        except ValueError:
            raise EngineApiError(
                f"{where} answered with something that is not JSON", retryable=False
            ) from None


def _message(response: httpx.Response) -> str:
    """The `error` of the engine's JSON answer (never a value: errors carry none), else its reason."""
    try:
        body = response.json()
    except ValueError:
        body = None
    if isinstance(body, dict) and isinstance(body.get("error"), str):
        return str(body["error"])[:500]
    return response.reason_phrase or f"status {response.status_code}"
