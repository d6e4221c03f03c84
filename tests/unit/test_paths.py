"""The built-in kinds act only under the agent's allowed paths: `..` and symlinks out of them are refused,
with a message naming the setting, and no retry; paths under them work as before."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError

from agents.config import AgentSettings
from workflows.context import NullContext
from workflows.execute import Outcome, execute
from workflows.registry import StepError, default_registry
from workflows.spec import SpecError, load_text


def run(kind: str, spec: dict[str, Any], allowed: list[Path]) -> Outcome:
    return execute(default_registry(), kind, spec, "apply", NullContext(allowed_paths=allowed))


@pytest.fixture
def allowed(tmp_path: Path) -> Path:
    root = tmp_path / "allowed"
    root.mkdir()
    return root


@pytest.fixture
def outside(tmp_path: Path) -> Path:
    root = tmp_path / "outside"
    root.mkdir()
    return root


@pytest.mark.parametrize("kind", ["file", "directory"])
def test_a_path_that_climbs_out_with_dot_dot_is_refused_as_a_bad_spec(kind: str, allowed: Path) -> None:
    spec: dict[str, Any] = {"path": f"{allowed}/x/../../outside/victim"}
    if kind == "file":
        spec["content"] = "owned\n"

    with pytest.raises(StepError) as caught:
        run(kind, spec, [allowed])

    assert not caught.value.retryable and "`..`" in str(caught.value)
    assert not (allowed.parent / "outside" / "victim").exists()


def test_a_file_outside_the_allowed_paths_is_refused_naming_the_setting(allowed: Path, outside: Path) -> None:
    with pytest.raises(StepError) as caught:
        run("file", {"path": str(outside / "f"), "content": "x"}, [allowed])

    assert not caught.value.retryable and "allowed_paths" in str(caught.value)
    assert not (outside / "f").exists()


def test_a_file_written_through_a_symlink_out_of_the_allowed_paths_is_refused(
    allowed: Path, outside: Path
) -> None:
    (outside / "passwd").write_text("root:x:0:0\n")
    (allowed / "link").symlink_to(outside / "passwd")

    with pytest.raises(StepError) as caught:
        run("file", {"path": str(allowed / "link"), "content": "owned\n"}, [allowed])

    message = str(caught.value)
    assert not caught.value.retryable and "symlink" in message and "allowed_paths" in message
    assert (outside / "passwd").read_text() == "root:x:0:0\n"


def test_a_file_under_a_symlinked_folder_that_leads_out_is_refused(allowed: Path, outside: Path) -> None:
    (allowed / "etc").symlink_to(outside, target_is_directory=True)

    with pytest.raises(StepError) as caught:
        run("file", {"path": str(allowed / "etc" / "new"), "content": "owned\n"}, [allowed])

    assert "symlink" in str(caught.value) and not (outside / "new").exists()


def test_a_directory_made_through_a_symlink_out_of_the_allowed_paths_is_refused(
    allowed: Path, outside: Path
) -> None:
    (allowed / "escape").symlink_to(outside, target_is_directory=True)

    with pytest.raises(StepError) as caught:
        run("directory", {"path": str(allowed / "escape" / "made")}, [allowed])

    assert not caught.value.retryable and "allowed_paths" in str(caught.value)
    assert not (outside / "made").exists()


def test_a_directory_outside_the_allowed_paths_is_refused(allowed: Path, outside: Path) -> None:
    with pytest.raises(StepError):
        run("directory", {"path": str(outside / "made")}, [allowed])

    assert not (outside / "made").exists()


def test_files_and_directories_under_the_allowed_paths_converge(allowed: Path) -> None:
    assert run("directory", {"path": str(allowed / "www")}, [allowed]).changed
    assert run("file", {"path": str(allowed / "www" / "index"), "content": "hi\n"}, [allowed]).changed

    assert (allowed / "www" / "index").read_text() == "hi\n"


def test_a_symlink_that_stays_inside_the_allowed_paths_is_followed(allowed: Path) -> None:
    (allowed / "real").write_text("old\n")
    (allowed / "link").symlink_to(allowed / "real")

    assert run("file", {"path": str(allowed / "link"), "content": "new\n"}, [allowed]).changed

    assert (allowed / "real").read_text() == "new\n" and os.path.islink(allowed / "link")


def test_an_allowed_path_that_is_itself_a_symlink_allows_what_is_under_it(
    tmp_path: Path, allowed: Path
) -> None:
    (tmp_path / "srv").symlink_to(allowed, target_is_directory=True)

    assert run("file", {"path": str(tmp_path / "srv" / "f"), "content": "x"}, [tmp_path / "srv"]).changed
    assert (allowed / "f").read_text() == "x"


def test_a_command_cwd_or_creates_outside_the_allowed_paths_is_refused(allowed: Path, outside: Path) -> None:
    marker = outside / "ran"
    for spec in (
        {"run": f"touch {marker}", "creates": str(allowed / "done"), "cwd": str(outside)},
        {"run": f"touch {marker}", "creates": str(outside / "done")},
    ):
        with pytest.raises(StepError) as caught:
            run("command", spec, [allowed])
        assert "allowed_paths" in str(caught.value)

    assert not marker.exists()


def test_a_command_inside_the_allowed_paths_runs(allowed: Path) -> None:
    spec = {"run": "touch done", "creates": str(allowed / "done"), "cwd": str(allowed)}

    assert run("command", spec, [allowed]).changed
    assert (allowed / "done").exists()


def test_by_default_every_path_is_allowed_but_dot_dot_is_not(tmp_path: Path) -> None:
    assert execute(
        default_registry(), "directory", {"path": str(tmp_path / "d")}, "apply", NullContext()
    ).changed

    with pytest.raises(StepError):
        execute(default_registry(), "directory", {"path": f"{tmp_path}/d/../e"}, "apply", NullContext())


def test_dot_dot_in_a_desired_state_is_refused_when_the_file_is_checked() -> None:
    text = "apiVersion: converge/v1\nkind: DesiredState\nmetadata: {name: x}\nresources:\n"
    text += "  - {kind: file, name: f, role: web, spec: {path: /tmp/x/../../etc/whatever, content: x}}\n"

    with pytest.raises(SpecError) as caught:
        load_text(text, "estate.yaml", default_registry())

    (problem,) = caught.value.problems
    assert (
        caught.value.exit_code == 2
        and problem.field == "resources[0].spec.path"
        and "`..`" in problem.message
    )


@pytest.mark.parametrize("given", ["srv", "/srv/../etc"])
def test_the_allowed_paths_setting_takes_only_absolute_paths_without_dot_dot(
    given: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CONVERGE_AGENT_CONFIG", str(tmp_path / "agent.toml"))  # no file: defaults only
    monkeypatch.delenv("CONVERGE_AGENT_ALLOWED_PATHS", raising=False)

    with pytest.raises(ValidationError):
        AgentSettings(roles=["web"], allowed_paths=[Path(given)])
