"""`on_change`: a resource that runs only when one it follows changed something; the engine decides."""

from __future__ import annotations

import json

import pytest

from common import lifecycle
from common.models import Change, CheckResult, StepState
from engine.checks import follow_triggers
from workflows.plan import plan
from workflows.registry import default_registry
from workflows.spec import DesiredState, SpecError, load_text

SOURCE = """apiVersion: converge/v1
kind: DesiredState
metadata: {name: estate}
resources:
  - {kind: file, name: proxy-conf, role: web, spec: {path: /etc/p, content: x}}
  - {kind: file, name: tls, role: web, spec: {path: /etc/t, content: x}}
  - kind: command
    name: reload
    role: web
    on_change: [file/proxy-conf, file/tls]
    spec: {run: "true", unless: "false"}
"""


def desired(text: str = SOURCE) -> DesiredState:
    return load_text(text, "estate.yaml", default_registry())


def test_a_step_runs_when_one_of_its_triggers_changed() -> None:
    found = {"w.0": ("file/proxy-conf", False), "w.1": ("file/tls", True)}

    assert lifecycle.on_change_verdict(["w.0", "w.1"], found) is None


def test_a_step_is_skipped_naming_its_triggers_when_none_changed() -> None:
    found = {"w.0": ("file/proxy-conf@web-1", False), "w.1": ("file/proxy-conf@web-2", None)}

    assert lifecycle.on_change_verdict(["w.0", "w.1"], found) == "skipped: none of file/proxy-conf changed"


def test_a_step_whose_triggers_made_no_step_is_skipped() -> None:
    assert lifecycle.on_change_verdict([], {}) == (
        "skipped: what it follows (on_change) made no step in this workflow"
    )


def test_on_change_orders_the_step_after_its_triggers() -> None:
    steps = plan(desired(), "w").steps

    assert steps[2].depends_on == ["w.0", "w.1"]
    assert steps[2].on_change == ["w.0", "w.1"]
    assert steps[0].on_change is None
    assert steps[0].dependents == ["w.2"]


def test_an_on_change_that_names_no_resource_is_refused_with_its_line() -> None:
    text = SOURCE.replace("[file/proxy-conf, file/tls]", "[file/proxy-conf, file/ghost]")

    with pytest.raises(SpecError) as raised:
        desired(text)

    (problem,) = raised.value.problems
    assert (problem.line, problem.field) == (10, "resources[2].on_change[1]")
    assert "file/ghost" in problem.message


def test_an_on_change_cycle_is_refused() -> None:
    text = SOURCE.replace(
        "spec: {path: /etc/t, content: x}}", "on_change: [command/reload], spec: {path: /etc/t, content: x}}"
    )

    with pytest.raises(SpecError, match="dependency cycle"):
        desired(text)


def test_a_resource_cannot_follow_itself() -> None:
    with pytest.raises(SpecError, match="is this resource"):
        desired(SOURCE.replace("[file/proxy-conf, file/tls]", "[command/reload]"))


def check(step_id: str, resource: str, action: str) -> CheckResult:
    return CheckResult(step_id=step_id, resource=resource, agent="a", change=Change(action=action))  # type: ignore[arg-type]


def test_plan_says_a_step_would_run_because_of_the_change_it_follows() -> None:
    workflow = plan(desired(), "w")
    results = [check("w.0", "file/proxy-conf", "update"), check("w.1", "file/tls", "none")]
    results.append(check("w.2", "command/reload", "create"))

    shown = follow_triggers(workflow, results)

    assert shown[2].note == "would run: file/proxy-conf would change"
    assert shown[2].change is not None and shown[2].change.action == "create"


def test_plan_says_a_step_would_be_skipped_when_its_triggers_comply() -> None:
    workflow = plan(desired(), "w")
    results = [check("w.0", "file/proxy-conf", "none"), check("w.1", "file/tls", "none")]
    results.append(check("w.2", "command/reload", "create"))

    shown = follow_triggers(workflow, results)

    assert shown[2].note == "would be skipped: none of file/proxy-conf, file/tls would change"
    assert shown[2].change is not None and shown[2].change.action == "none"


def row(state: StepState, depends_on: list[str], on_change: list[str] | None = None) -> lifecycle.Row:
    return {
        "state": state,
        "depends_on": json.dumps(depends_on),
        "on_change": None if on_change is None else json.dumps(on_change),
    }


def test_a_retry_keeps_what_succeeded_and_what_was_skipped_because_nothing_changed() -> None:
    rows = {
        "w.0": row(StepState.SUCCEEDED, []),
        "w.1": row(StepState.SKIPPED, ["w.0"], ["w.0"]),
        "w.2": row(StepState.SKIPPED, ["w.1"], ["w.1"]),  # followed a skipped step
        "w.3": row(StepState.FAILED, []),
        "w.4": row(StepState.SKIPPED, ["w.3"], ["w.3"]),  # skipped because w.3 failed: runs again
    }

    assert lifecycle.kept_on_retry(rows) == {"w.0", "w.1", "w.2"}
