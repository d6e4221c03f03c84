"""The planner: one step per resource, edges from depends_on, independent steps ready together."""

from __future__ import annotations

from workflows.plan import digest, plan, ready
from workflows.registry import default_registry
from workflows.spec import DesiredState, load_text

SOURCE = """
apiVersion: converge/v1
kind: DesiredState
metadata: {name: estate}
retry: {attempts: 5, backoff_s: 1}
resources:
  - {kind: directory, name: www, role: web, spec: {path: /srv/www}}
  - {kind: file, name: index, role: web, depends_on: [directory/www], spec: {path: /srv/www/i, content: x}}
  - {kind: file, name: robots, role: web, depends_on: [directory/www], spec: {path: /srv/www/r, content: x}}
  - kind: command
    name: reload
    role: web
    scope: web-01
    timeout_s: 30
    retry: {attempts: 1}
    depends_on: [file/index, file/robots]
    spec: {run: "true", unless: "true"}
  - {kind: wait_for, name: pause, role: db, spec: {seconds: 1}}
"""


def desired() -> DesiredState:
    return load_text(SOURCE, "estate.yaml", default_registry())


def test_each_resource_becomes_one_step_with_edges_from_depends_on() -> None:
    workflow = plan(desired(), "wf")

    assert [s.id for s in workflow.steps] == ["wf.0", "wf.1", "wf.2", "wf.3", "wf.4"]
    assert [s.resource for s in workflow.steps] == [
        "directory/www", "file/index", "file/robots", "command/reload", "wait_for/pause"
    ]  # fmt: skip
    by_id = {s.id: s for s in workflow.steps}
    assert by_id["wf.3"].depends_on == ["wf.1", "wf.2"]
    assert by_id["wf.0"].dependents == ["wf.1", "wf.2"]
    assert (by_id["wf.3"].scope, by_id["wf.3"].timeout_s) == ("web-01", 30)


def test_steps_without_pending_dependencies_are_ready_together() -> None:
    steps = plan(desired(), "wf").steps

    assert [s.id for s in ready(steps, set())] == ["wf.0", "wf.4"]
    assert [s.id for s in ready(steps, {"wf.0", "wf.4"})] == ["wf.1", "wf.2"]
    assert [s.id for s in ready(steps, {"wf.0", "wf.4", "wf.1"})] == ["wf.2"]
    assert [s.id for s in ready(steps, {"wf.0", "wf.1", "wf.2", "wf.4"})] == ["wf.3"]


def test_the_file_retry_policy_applies_to_resources_without_their_own() -> None:
    steps = plan(desired(), "wf").steps

    assert [(s.retry_attempts, s.retry_backoff_s) for s in steps] == [(5, 1.0)] * 3 + [(1, 2.0), (5, 1.0)]


def test_equal_desired_states_have_equal_digests_and_a_change_changes_it() -> None:
    registry = default_registry()
    same = load_text(SOURCE.replace("{name: estate}", "{ name: estate }"), "other.yaml", registry)
    changed = load_text(SOURCE.replace("seconds: 1", "seconds: 2"), "estate.yaml", registry)

    assert digest(desired()) == digest(same)
    assert digest(desired()) != digest(changed)
