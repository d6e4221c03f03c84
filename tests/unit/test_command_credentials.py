"""A `command` given credentials as environment variables: listed by its resource, seen by `run` only."""

from __future__ import annotations

from pathlib import Path

import pytest

from workflows.context import NullContext
from workflows.execute import execute
from workflows.registry import StepError, default_registry
from workflows.spec import SpecError, load_text

SECRET = "pa55-w0rd!"
HEADER = "apiVersion: converge/v1\nkind: DesiredState\nmetadata: {name: db}\nresources:\n"


def command(run: str, *, unless: str = "false") -> dict[str, object]:
    return {"run": run, "unless": unless, "env": {"DB_PASSWORD": {"credential": "db-password"}, "MODE": "x"}}


def test_run_sees_the_credential_in_its_environment(tmp_path: Path) -> None:
    out = tmp_path / "out"
    ctx = NullContext(credentials={"db-password": SECRET})

    execute(default_registry(), "command", command(f'printf %s "$DB_PASSWORD$MODE" > {out}'), "apply", ctx)

    assert out.read_text() == SECRET + "x"


def test_unless_runs_without_the_credential(tmp_path: Path) -> None:
    out = tmp_path / "out"
    spec = command("true", unless=f'printf %s "${{DB_PASSWORD:-unset}}" > {out}; false')

    execute(default_registry(), "command", spec, "check", NullContext())

    assert out.read_text() == "unset"


def test_a_failing_command_does_not_report_the_value_it_printed(tmp_path: Path) -> None:
    ctx = NullContext(credentials={"db-password": SECRET})

    with pytest.raises(StepError) as caught:
        execute(default_registry(), "command", command('echo "got $DB_PASSWORD" >&2; exit 3'), "apply", ctx)

    assert SECRET not in str(caught.value)
    assert "got ***" in str(caught.value)


def test_a_credential_the_context_cannot_give_fails_the_step_before_anything_runs(tmp_path: Path) -> None:
    out = tmp_path / "out"

    with pytest.raises(StepError) as caught:
        execute(default_registry(), "command", command(f"touch {out}"), "apply", NullContext())

    assert not caught.value.retryable
    assert not out.exists()


def resource(credentials: str) -> str:
    return (
        "  - kind: command\n    name: migrate\n    role: db\n"
        f"    credentials: {credentials}\n"
        "    spec: {run: ./migrate, unless: 'false', env: {DB_PASSWORD: {credential: db-password}}}\n"
    )


def test_a_desired_state_may_pass_a_credential_its_resource_lists() -> None:
    state = load_text(HEADER + resource("[db-password]"), "db.yaml", default_registry())

    assert state.resources[0].credentials == ["db-password"]


def test_a_credential_the_resource_does_not_list_is_bad_input_naming_the_field() -> None:
    with pytest.raises(SpecError) as caught:
        load_text(HEADER + resource("[other]"), "db.yaml", default_registry())

    assert caught.value.exit_code == 2
    assert "resources[0].spec.env" in str(caught.value)
    assert "credential db-password, which the resource does not list" in str(caught.value)


def test_a_credential_reference_has_only_the_credential_key() -> None:
    text = resource("[db-password]").replace("{credential: db-password}", "{credential: db-password, x: 1}")

    with pytest.raises(SpecError, match=r"resources\[0\]\.spec\.env"):
        load_text(HEADER + text, "db.yaml", default_registry())
