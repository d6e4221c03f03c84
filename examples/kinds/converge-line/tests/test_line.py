"""The `line` kind's check and apply, run in-process as an agent would (workflows.testing)."""

from __future__ import annotations

from pathlib import Path

import pytest
from converge_line import LineProvider

from workflows.registry import StepError
from workflows.testing import registry_with, run_resource

REGISTRY = registry_with(LineProvider())


def test_a_missing_line_is_appended_and_a_second_run_changes_nothing(tmp_path: Path) -> None:
    target = tmp_path / "hosts.allow"
    target.write_text("sshd: 10.0.0.0/8")  # no newline at the end
    spec = {"path": str(target), "line": "sshd: 192.168.0.0/16"}

    first, ctx = run_resource("line", spec, registry=REGISTRY)
    second, _ = run_resource("line", spec, registry=REGISTRY)

    assert (first.changed, first.change.action) == (True, "update")
    assert first.change.diff == "+sshd: 192.168.0.0/16"
    assert target.read_text() == "sshd: 10.0.0.0/8\nsshd: 192.168.0.0/16\n"
    assert ctx.reports  # it reported progress
    assert (second.changed, second.change.action) == (False, "none")


def test_check_mode_changes_nothing(tmp_path: Path) -> None:
    target = tmp_path / "new.conf"
    outcome, _ = run_resource("line", {"path": str(target), "line": "x"}, mode="check", registry=REGISTRY)
    assert outcome.change.action == "create" and not target.exists()


def test_a_relative_path_is_refused_before_anything_runs() -> None:
    with pytest.raises(StepError, match="invalid spec for line"):
        run_resource("line", {"path": "etc/x", "line": "x"}, registry=REGISTRY)
