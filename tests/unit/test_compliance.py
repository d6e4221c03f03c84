"""engine.compliance and common.durations: what a check found, and the intervals operators write."""

from __future__ import annotations

import pytest

from common import durations
from common.errors import BadInput
from common.models import Change, CheckResult
from engine import compliance


def result(
    resource: str, action: str | None = None, error: str | None = None, agent: str = "a"
) -> CheckResult:
    change = Change(action=action, diff=f"diff of {resource}") if action else None
    return CheckResult(step_id=resource, resource=resource, agent=agent, change=change, error=error)


def test_compliant_when_nothing_would_change() -> None:
    assert compliance.report([result("file/a", "none")], [], 10.0) == ("compliant", [])


def test_a_drift_keeps_the_time_it_was_first_seen() -> None:
    state, first = compliance.report([result("file/a", "update"), result("file/b", "none")], [], 10.0)
    assert state == "drifted"
    assert first == [
        {"resource": "file/a", "agent": "a", "action": "update", "diff": "diff of file/a", "since": 10.0}
    ]
    _, later = compliance.report([result("file/a", "update"), result("file/c", "create")], first, 20.0)
    assert [(e["resource"], e["since"]) for e in later] == [("file/a", 10.0), ("file/c", 20.0)]
    # Fixed, then drifted again: a new drift, from the check that saw it.
    _, fixed = compliance.report([result("file/a", "none")], later, 30.0)
    _, again = compliance.report([result("file/a", "update")], fixed, 40.0)
    assert again[0]["since"] == 40.0


def test_the_same_resource_on_two_agents_drifts_apart() -> None:
    _, first = compliance.report([result("file/a", "update", agent="x")], [], 1.0)
    _, both = compliance.report(
        [result("file/a", "update", agent="x"), result("file/a", "update", agent="y")], first, 2.0
    )
    assert [(e["agent"], e["since"]) for e in both] == [("x", 1.0), ("y", 2.0)]


def test_an_unobservable_resource_is_an_error_unless_another_drifted() -> None:
    assert compliance.report([result("file/a", error="boom")], [], 1.0)[0] == "error"
    state, entries = compliance.report([result("file/a", error="boom"), result("file/b", "update")], [], 1.0)
    assert state == "drifted" and compliance.drifted(entries) == 1


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("90s", 90), ("30m", 1800), ("1h", 3600), ("1h30m", 5400), ("2d", 172800), ("45", 45), ("2.5s", 2.5)],
)
def test_durations(text: str, seconds: float) -> None:
    assert durations.parse(text) == seconds
    assert durations.parse(durations.shown(seconds)) == seconds


@pytest.mark.parametrize("text", ["soon", "1x", "h", "", "-5", "0s", "400d", "1h 30m"])
def test_bad_durations(text: str) -> None:
    with pytest.raises(BadInput):
        durations.parse(text)
