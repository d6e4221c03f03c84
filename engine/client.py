"""The CLI's client of the engine API. Every failure becomes a ConvergeError with the right exit code.

Over HTTPS the client trusts the engine's own CA, given as a file (CONVERGE_CA), as a pinned SHA-256
fingerprint (CONVERGE_CA_FINGERPRINT), or both. With only a fingerprint it fetches the CA certificate from the
engine's open `/v1/ca` without verifying (nothing secret is sent), keeps it only if its fingerprint is the
pinned one, and then verifies the server's certificate against it as usual: whoever answers must hold a
certificate signed by the pinned CA, for the host name in the URL.
"""

from __future__ import annotations

import ssl
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import quote

import httpx
from pydantic import ValidationError

from common.errors import BadInput, ConvergeError, NotFound, Refused, Unreachable
from common.models import AgentView, CheckResult, HistoryCount, StepLog, WorkflowView
from common.settings import redact
from engine.deadletters import DeadLetter
from engine.tls import fingerprint, same_fingerprint
from workflows.sources import DesiredInput, as_input

T = TypeVar("T")


@dataclass(frozen=True)
class Submitted:
    """The engine's answer to a desired state: the workflow, whether it is new, and warnings."""

    workflow: WorkflowView
    created: bool
    warnings: list[str]


class EngineClient:
    def __init__(
        self,
        url: str,
        token: str | None = None,
        timeout_s: float = 60.0,
        *,
        ca: Path | None = None,
        ca_fingerprint: str | None = None,
        url_option: str = "--url",
    ) -> None:
        self.url = url.rstrip("/")
        # The option that sets the engine's address on the command at hand, for the messages that name it.
        self.url_option = url_option
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        verify = trust(self.url, ca, ca_fingerprint) if self.url.startswith("https://") else True
        self.http = httpx.Client(base_url=self.url, headers=headers, timeout=timeout_s, verify=verify)

    def _call(self, method: str, path: str, *, answers: tuple[int, ...] = (), **kwargs: Any) -> Any:
        """The JSON of the answer; an error for a status of 400 or more, unless it is one of `answers`."""
        where = redact(self.url)
        try:
            response = self.http.request(method, path, **kwargs)
        except httpx.TransportError as exc:
            if "CERTIFICATE_VERIFY_FAILED" in str(exc):
                raise Unreachable(
                    f"the engine at {where} presented a certificate this CLI does not trust ({exc}): set "
                    "CONVERGE_CA to the engine's CA file or CONVERGE_CA_FINGERPRINT to the fingerprint "
                    "`converge engine init` printed, and check that the URL's host is one the "
                    "certificate names (`converge engine init --san NAME --force`)"
                ) from exc
            raise Unreachable(
                f"cannot reach the engine at {where} ({exc.__class__.__name__}); start it with "
                f"`converge engine run` or `converge up`, or point CONVERGE_URL / {self.url_option} at it"
            ) from exc
        if response.status_code >= 400 and response.status_code not in answers:
            raise _error(response, where)
        try:
            return response.json()
        except ValueError:
            raise ConvergeError(
                f"{where} answered {response.status_code} with something that is not JSON: is it the "
                f"engine's address? Point CONVERGE_URL / {self.url_option} at the engine"
            ) from None

    def _understood(self, parse: Callable[[], T]) -> T:
        """What `parse` makes of an answer; an answer of another shape is an error that says so."""
        try:
            return parse()
        except (ValidationError, KeyError, TypeError, ValueError, AttributeError) as exc:
            raise ConvergeError(
                f"the engine at {redact(self.url)} answered in a form this CLI does not understand "
                f"({exc.__class__.__name__}): are the CLI and the engine the same version?"
            ) from exc

    def health(self) -> bool:
        body = self._call("GET", "/v1/health")
        return self._understood(lambda: bool(body.get("ok")))

    def health_report(self) -> dict[str, Any]:
        """The document of `GET /v1/health` (no token needed)."""
        body = self._call("GET", "/v1/health")
        return self._understood(lambda: dict(body))

    def ready_report(self) -> dict[str, Any]:
        """The document of `GET /v1/ready` (no token needed), whether the engine is ready (200) or not."""
        body = self._call("GET", "/v1/ready", answers=(503,))
        return self._understood(lambda: dict(body))

    def submit(self, source: str, filename: str) -> tuple[WorkflowView, bool]:
        submitted = self.apply(source, filename)
        return submitted.workflow, submitted.created

    def apply(self, source: str | DesiredInput, filename: str = "<api>") -> Submitted:
        """Submit a desired state: the workflow, whether it is new, and the engine's warnings."""
        body = self._call("POST", "/v1/workflows", json=_body(as_input(source, filename)))
        return self._understood(
            lambda: Submitted(
                WorkflowView.model_validate(body["workflow"]),
                bool(body["created"]),
                [str(w) for w in body.get("warnings", [])],  # an older engine sends none
            )
        )

    def plan(self, source: str | DesiredInput, filename: str = "<api>") -> list[CheckResult]:
        body = self._call("POST", "/v1/plan", json=_body(as_input(source, filename)))
        return self._understood(lambda: [CheckResult.model_validate(c) for c in body["changes"]])

    def workflow(self, workflow_id: str) -> WorkflowView:
        body = self._call("GET", f"/v1/workflows/{_segment(workflow_id)}")
        return self._understood(lambda: WorkflowView.model_validate(body))

    def logs(self, workflow_id: str) -> list[StepLog]:
        body = self._call("GET", f"/v1/workflows/{_segment(workflow_id)}/logs")
        return self._understood(lambda: [StepLog.model_validate(s) for s in body])

    def workflows(self, state: str | None = None) -> list[WorkflowView]:
        params = {"state": state} if state else {}
        body = self._call("GET", "/v1/workflows", params=params)
        return self._understood(lambda: [WorkflowView.model_validate(w) for w in body])

    def cancel(self, workflow_id: str) -> WorkflowView:
        body = self._call("POST", f"/v1/workflows/{_segment(workflow_id)}/cancel")
        return self._understood(lambda: WorkflowView.model_validate(body))

    def retry(self, workflow_id: str) -> WorkflowView:
        body = self._call("POST", f"/v1/workflows/{_segment(workflow_id)}/retry")
        return self._understood(lambda: WorkflowView.model_validate(body))

    def history_count(self, older_than_days: float | None = None) -> HistoryCount:
        """How many workflows history holds, and how many `prune(older_than_days)` would delete."""
        body = self._call("GET", "/v1/history/count", params=_days(older_than_days))
        return self._understood(lambda: HistoryCount.model_validate(body))

    def prune(self, older_than_days: float | None, *, everything: bool = False) -> int:
        """Delete history older than that (None: the engine's retention). The engine refuses (BadInput)
        one that would delete all history unless `everything`: the operator confirmed it."""
        params: dict[str, Any] = _days(older_than_days) | ({"all": "true"} if everything else {})
        body = self._call("POST", "/v1/history/prune", params=params)
        return self._understood(lambda: int(body["pruned"]))

    def history(self) -> list[WorkflowView]:
        body = self._call("GET", "/v1/history")
        return self._understood(lambda: [WorkflowView.model_validate(w) for w in body])

    def agents(self) -> list[AgentView]:
        body = self._call("GET", "/v1/agents")
        return self._understood(lambda: [AgentView.model_validate(a) for a in body])

    def forget_agent(self, agent_id: str) -> None:
        """Remove a gone agent's announcement: Refused while it is alive, NotFound if unknown."""
        self._call("DELETE", f"/v1/agents/{quote(agent_id, safe='')}")

    def decide(self, action: str, agent_id: str) -> Any:
        """The operator's decision on an enrolled agent: admit, deny or revoke; the engine's answer."""
        return self._call("POST", f"/v1/agents/{quote(agent_id, safe='')}/{action}")

    def policies(self, role: str | None = None) -> list[dict[str, Any]]:
        """Every key of every policy (of one role), each {"role", "key", "value", "set_by", "set_at"}."""
        body = self._call("GET", "/v1/policies", params={"role": role} if role else {})
        return self._understood(lambda: [dict(p) for p in body["policies"]])

    def set_policy(self, role: str, values: dict[str, Any]) -> dict[str, Any]:
        """Set keys of a role's policy (an admin's token); the role's whole policy after."""
        body = self._call("PUT", f"/v1/policies/{_segment(role)}", json={"values": values})
        return self._understood(lambda: dict(body["policy"]))

    def unset_policy(self, role: str, keys: list[str]) -> tuple[list[str], dict[str, Any]]:
        """Remove keys of a role's policy (every key when none are given): those removed, and what is left."""
        body = self._call("DELETE", f"/v1/policies/{_segment(role)}", params={"key": keys})
        return self._understood(lambda: ([str(k) for k in body["removed"]], dict(body["policy"])))

    def set_schedule(self, source: str, filename: str, every: str, mode: str) -> tuple[dict[str, Any], bool]:
        """Check a desired state again every `every` (engine.scheduler); the schedule, and whether it
        replaced one of the same name."""
        body = self._call(
            "PUT",
            "/v1/schedules",
            json={"source": source, "filename": filename, "every": every, "mode": mode},
        )
        return self._understood(lambda: (dict(body["schedule"]), bool(body["replaced"])))

    def schedules(self) -> list[dict[str, Any]]:
        """Every schedule with its last compliance report."""
        body = self._call("GET", "/v1/schedules")
        return self._understood(lambda: [dict(s) for s in body["schedules"]])

    def remove_schedule(self, name: str) -> None:
        self._call("DELETE", f"/v1/schedules/{_segment(name)}")

    def add_source(self, name: str, body: dict[str, Any]) -> tuple[dict[str, Any], bool]:
        """Add or replace an import source (an admin's token); the source, and whether it replaced one."""
        answer = self._call("PUT", f"/v1/sources/{_segment(name)}", json=body)
        return self._understood(lambda: (dict(answer["source"]), bool(answer["replaced"])))

    def sources(self) -> list[dict[str, Any]]:
        body = self._call("GET", "/v1/sources")
        return self._understood(lambda: [dict(s) for s in body["sources"]])

    def remove_source(self, name: str) -> None:
        self._call("DELETE", f"/v1/sources/{_segment(name)}")

    def machines(self) -> list[dict[str, Any]]:
        """Every machine an import source listed, with its import's state (engine.imports)."""
        body = self._call("GET", "/v1/machines")
        return self._understood(lambda: [dict(m) for m in body["machines"]])

    def catalogs(self) -> list[dict[str, Any]]:
        body = self._call("GET", "/v1/catalogs")
        return self._understood(lambda: [dict(c) for c in body["catalogs"]])

    def catalog(self, name: str) -> dict[str, Any]:
        body = self._call("GET", f"/v1/catalogs/{_segment(name)}")
        return self._understood(lambda: dict(body["catalog"]))

    def dead_letters(self, limit: int = 100) -> tuple[list[DeadLetter], int]:
        """The oldest `limit` dead letters, and how many there are."""
        body = self._call("GET", "/v1/dead-letters", params={"limit": limit})
        return self._understood(
            lambda: ([DeadLetter.model_validate(d) for d in body["dead_letters"]], int(body["total"]))
        )

    def retry_dead_letters(self, ids: list[str]) -> list[str]:
        """Put dead letters back on the status stream (every one when `ids` is empty)."""
        body = self._call("POST", "/v1/dead-letters/retry", json={"ids": ids})
        return self._understood(lambda: [str(i) for i in body["retried"]])

    def purge_dead_letters(self, ids: list[str]) -> int:
        """Delete dead letters for good (every one when `ids` is empty)."""
        body = self._call("POST", "/v1/dead-letters/purge", json={"ids": ids})
        return self._understood(lambda: int(body["purged"]))


def _body(given: DesiredInput) -> dict[str, Any]:
    """The request body of a desired state: one file as `source` and `filename` (which every engine
    takes), several as `files`; `limit` only when given."""
    body: dict[str, Any]
    if len(given.files) == 1:
        body = {"source": given.files[0].source, "filename": given.files[0].filename}
    else:
        body = {"files": [f.model_dump() for f in given.files]}
    if given.limit:
        body["limit"] = given.limit
    if given.vars:
        body["vars"] = given.vars
    return body


def _segment(value: str) -> str:
    """`value` as one segment of a path: a `/` or `?` in what the operator typed stays part of it."""
    return quote(value, safe="")


def _days(older_than_days: float | None) -> dict[str, float]:
    return {} if older_than_days is None else {"older_than_days": older_than_days}


def trust(url: str, ca: Path | None, pinned: str | None) -> ssl.SSLContext | bool:
    """What to verify the engine's certificate with: its CA (from the file, or fetched and pinned), else
    the system's trust store. Raises Unreachable when the CA is not the pinned one."""
    if ca is not None:
        try:
            pem = ca.read_bytes()
        except OSError as exc:
            raise BadInput(f"cannot read the CA file {ca} (CONVERGE_CA): {exc.strerror}") from None
        source = f"the CA file {ca}"
    elif pinned:
        pem, source = _fetch_ca(url), f"the engine at {redact(url)}"
    else:
        return True
    try:
        found = fingerprint(pem)
    except ValueError:
        raise BadInput(
            f"{source} holds no PEM certificate: point CONVERGE_CA at the engine's ca.pem"
        ) from None
    if pinned and not same_fingerprint(found, pinned):
        raise Unreachable(
            f"{source} has the CA fingerprint {found}, not the {pinned} of CONVERGE_CA_FINGERPRINT: check "
            "the fingerprint that `converge engine init` printed on the engine's host; if it is right, "
            "something other than the engine is answering at this address"
        )
    return ssl.create_default_context(cadata=pem.decode("ascii"))


def _fetch_ca(url: str) -> bytes:
    """The CA certificate the server at `url` offers, unverified: the caller checks its fingerprint."""
    try:
        response = httpx.get(f"{url}/v1/ca", verify=False, timeout=10)  # checked against the pin
    except httpx.TransportError as exc:
        raise Unreachable(
            f"cannot reach the engine at {redact(url)} ({exc.__class__.__name__}): start it, or point "
            "CONVERGE_URL / --url at it"
        ) from exc
    if response.status_code != 200:
        raise Unreachable(
            f"the engine at {redact(url)} offers no CA certificate ({response.status_code}): set CONVERGE_CA "
            "to its ca.pem instead"
        )
    return response.content


def _error(response: httpx.Response, where: str) -> ConvergeError:
    """The error an answer of 400 or more stands for, with the exit code of CLI.md."""
    status, message = response.status_code, _message(response)
    if status in (400, 422):
        return BadInput(message)
    if status == 404:
        return NotFound(message)
    if status == 409:
        return Refused(message)
    if status in (502, 503, 504):
        return Unreachable(message)
    if status in (401, 403):
        return ConvergeError(
            f"the engine at {where} refused this request ({status}): {message}; check CONVERGE_TOKEN"
        )
    return ConvergeError(f"the engine at {where} answered {status}: {message}")


def _message(response: httpx.Response) -> str:
    """The `error` (or FastAPI's `detail`) of a JSON answer, else the start of its text, else its reason."""
    try:
        body = response.json()
    except ValueError:
        body = None
    if isinstance(body, dict) and (body.get("error") or body.get("detail")):
        return str(body.get("error") or body.get("detail"))
    text = response.text.strip()
    return text[:300] if text else response.reason_phrase or f"status {response.status_code}"
