"""Templates: vars rendered when the file is loaded, facts left for the agent, clear errors, no secrets."""

from __future__ import annotations

from pathlib import Path

import pytest

from agents import facts
from workflows import templates
from workflows.registry import default_registry
from workflows.spec import SpecError, load_text

SOURCE = """apiVersion: converge/v1
kind: DesiredState
metadata: {name: templated}
vars: {port: 8080, name: web}
resources:
  - kind: file
    name: conf
    role: web
    spec:
      path: /etc/{{ vars.name }}.conf
      content: "listen {{ vars.port }} on {{ vars.host }}\\n"
  - kind: file
    name: motd
    role: web
    scope: each
    spec: {path: /etc/motd, content: "I am {{ facts.agent_id }}\\n"}
"""


def load(text: str, **overrides: object) -> list[dict[str, object]]:
    desired = load_text(text, "estate.yaml", default_registry(), overrides=overrides)
    return [r.spec for r in desired.resources]


def test_vars_are_rendered_and_facts_left_for_the_agent() -> None:
    conf, motd = load(SOURCE, host="a.example")

    assert conf == {"path": "/etc/web.conf", "content": "listen 8080 on a.example\n"}
    assert motd["content"] == "I am {{ facts.agent_id }}\n"


def test_given_variables_win_over_the_files() -> None:
    conf, _ = load(SOURCE, host="a", port="9090")

    assert conf["content"] == "listen 9090 on a\n"


def test_a_missing_variable_names_itself_the_file_and_the_line() -> None:
    with pytest.raises(SpecError) as raised:
        load(SOURCE)

    (problem,) = raised.value.problems
    assert (problem.file, problem.line, problem.field) == ("estate.yaml", 11, "resources[0].spec.content")
    assert "vars.host is not defined" in problem.message


def test_a_template_mixing_facts_and_vars_is_refused() -> None:
    text = SOURCE.replace("I am {{ facts.agent_id }}", "{{ vars.port }} {{ facts.agent_id }}")

    with pytest.raises(SpecError, match="rendered on the agent"):
        load(text, host="a")


def test_a_syntax_error_is_bad_input() -> None:
    with pytest.raises(SpecError, match="template syntax error"):
        load(SOURCE.replace("{{ vars.host }}", "{{ vars.host "), host="a")


def test_the_sandbox_reaches_no_python_object() -> None:
    text = SOURCE.replace("{{ vars.host }}", "{{ vars.__class__.__mro__ }}")

    with pytest.raises(SpecError, match="template"):
        load(text, host="a")


def test_no_secret_is_in_a_templates_context() -> None:
    with pytest.raises(templates.TemplateProblem, match="credentials"):
        templates.render("{{ credentials['db'] }}", {"vars": {}}, "in vars")


def test_facts_render_per_agent() -> None:
    spec = {"content": "I am {{ facts.agent_id }} of {{ facts.roles | join(',') }}"}

    first = templates.render_facts(spec, facts.gather("web-1", ["web"]))
    second = templates.render_facts(spec, facts.gather("web-2", ["web", "db"]))

    assert (first["content"], second["content"]) == ("I am web-1 of web", "I am web-2 of db,web")


def test_an_unknown_fact_is_an_error_naming_it() -> None:
    with pytest.raises(templates.TemplateProblem, match=r"facts\.kernel is not defined"):
        templates.render_facts("{{ facts.kernel }}", facts.gather("a", []))


def test_os_release_is_read_from_its_file(tmp_path: Path) -> None:
    release = tmp_path / "os-release"
    release.write_text('ID=debian\nVERSION_ID="12"\nPRETTY_NAME="Debian GNU/Linux 12 (bookworm)"\n')

    assert facts.os_release(release) == {
        "id": "debian",
        "version_id": "12",
        "pretty_name": "Debian GNU/Linux 12 (bookworm)",
    }


@pytest.mark.parametrize(
    "text",
    [
        "{{ vars.root }}/d1/f\n",
        "a {{ vars.n }} b {{ vars.flag }} {{ vars.items }}",
        "{{ vars.root }}{{ vars.none }}",
        "{{ vars.n + 1 }} {% if vars.flag %}yes{% endif %}",
    ],
)
def test_simple_templates_render_as_jinja_renders_them(text: str) -> None:
    context = {"vars": {"root": "/srv", "n": 8080, "flag": True, "none": None, "items": "x"}}

    assert templates.render(text, context, "in vars") == templates._compiled(text).render(context)
