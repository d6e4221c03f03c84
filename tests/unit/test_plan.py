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


FLEET = """
apiVersion: converge/v1
kind: DesiredState
metadata: {name: fleet}
resources:
  - {kind: directory, name: etc, role: web, scope: each, spec: {path: /srv/etc}}
  - {kind: file, name: motd, role: web, scope: each, depends_on: [directory/etc], spec: {path: /srv/etc/m, content: x}}
  - {kind: wait_for, name: gate, role: db, spec: {seconds: 1}}
  - {kind: file, name: conf, role: web, scope: each, depends_on: [wait_for/gate], spec: {path: /srv/c, content: x}}
  - {kind: command, name: check, role: db, depends_on: [file/motd], spec: {run: "true", unless: "true"}}
  - {kind: file, name: dbconf, role: db, scope: each, depends_on: [file/motd], spec: {path: /srv/d, content: x}}
"""
WEB = {"web": ["web-2", "web-1"], "db": ["db-1"]}


def fleet() -> DesiredState:
    return load_text(FLEET, "fleet.yaml", default_registry())


def test_an_each_resource_becomes_one_step_per_live_agent_of_its_role_pinned_to_it() -> None:
    steps = plan(fleet(), "wf", WEB).steps

    motd = [s for s in steps if s.name == "motd"]
    assert [(s.id, s.resource, s.scope, s.role) for s in motd] == [
        ("wf.1.web-1", "file/motd@web-1", "web-1", "web"),
        ("wf.1.web-2", "file/motd@web-2", "web-2", "web"),
    ]
    assert [s.index for s in steps] == list(range(len(steps)))
    assert len({s.id for s in steps}) == len(steps) == 9


def test_a_dependency_between_each_resources_of_one_role_holds_per_agent() -> None:
    by_resource = {s.resource: s for s in plan(fleet(), "wf", WEB).steps}

    assert by_resource["file/motd@web-2"].depends_on == ["wf.0.web-2"]
    assert by_resource["directory/etc@web-2"].dependents == ["wf.1.web-2"]


def test_any_other_dependency_on_an_each_resource_waits_for_all_its_steps() -> None:
    by_resource = {s.resource: s for s in plan(fleet(), "wf", WEB).steps}

    assert by_resource["command/check"].depends_on == ["wf.1.web-1", "wf.1.web-2"]
    assert by_resource["file/dbconf@db-1"].depends_on == ["wf.1.web-1", "wf.1.web-2"]
    assert by_resource["file/conf@web-1"].depends_on == by_resource["file/conf@web-2"].depends_on == ["wf.2"]


def test_an_each_resource_without_a_live_agent_of_its_role_makes_no_step_and_says_so() -> None:
    workflow = plan(fleet(), "wf", {"db": ["db-1"]})

    assert [s.resource for s in workflow.steps] == ["wait_for/gate", "command/check", "file/dbconf@db-1"]
    assert workflow.steps[1].depends_on == []
    assert list(workflow.unplaced) == ["directory/etc", "file/motd", "file/conf"]
    assert workflow.warnings[0].startswith("directory/etc: `scope: each` found no live agent of role 'web'")
    assert plan(fleet(), "wf").unplaced.keys() == {"directory/etc", "file/motd", "file/conf", "file/dbconf"}


def test_an_agent_that_joins_changes_the_digest_of_a_desired_state_with_each_resources() -> None:
    joined = {**WEB, "web": ["web-1", "web-2", "web-3"]}

    assert digest(fleet(), WEB) == digest(fleet(), {"db": ["db-1"], "web": ["web-1", "web-2"]})
    assert digest(fleet(), WEB) != digest(fleet(), joined)
    assert plan(fleet(), "a", WEB).digest == plan(fleet(), "b", WEB).digest


def test_agents_do_not_change_the_digest_of_a_desired_state_without_each_resources() -> None:
    assert digest(desired(), WEB) == digest(desired()) == plan(desired(), "wf", WEB).digest
