"""The desired-state language end to end, with real agents: on_change, many files, --limit, templates."""

from __future__ import annotations

import json
from pathlib import Path

from tests.integration.conftest import Cluster, desired_state


def steps_by_resource(workflow: dict) -> dict[str, dict]:
    return {step["resource"]: step for step in workflow["steps"]}


def reloading(root: Path, content: str) -> str:
    return desired_state(
        "reload",
        f"""  - kind: file
    name: proxy-conf
    role: web
    spec: {{path: {root}/proxy.conf, content: {json.dumps(content)}}}
  - kind: command
    name: reload
    role: web
    on_change: [file/proxy-conf]
    spec: {{run: "echo reloaded >> {root}/reload.log", unless: "false"}}
""",
    )


def test_a_command_on_change_runs_once_after_its_file_changed_and_is_skipped_when_it_did_not(
    cluster: Cluster, tmp_path: Path
) -> None:
    cluster.start_agent("web", agent_id="web-1")
    root = tmp_path / "estate"
    root.mkdir()
    log = root / "reload.log"
    desired = cluster.write("estate.yaml", reloading(root, "upstream a\n"))

    first = cluster.apply(desired)

    assert first["exit_code"] == 0, first
    assert steps_by_resource(first["workflow"])["command/reload"]["state"] == "succeeded"
    assert log.read_text().splitlines() == ["reloaded"]

    second = cluster.apply(desired)

    assert second["exit_code"] == 0, second
    assert second["workflow"]["state"] == "succeeded"
    reload = steps_by_resource(second["workflow"])["command/reload"]
    assert (reload["state"], reload["message"]) == ("skipped", "skipped: none of file/proxy-conf changed")
    assert log.read_text().splitlines() == ["reloaded"]

    planned = cluster.cli("plan", str(desired), "--json")
    assert planned.returncode == 0, planned.stderr
    (change,) = [c for c in json.loads(planned.stdout)["changes"] if c["resource"] == "command/reload"]
    assert change["note"] == "would be skipped: none of file/proxy-conf would change"

    changed = cluster.write("estate.yaml", reloading(root, "upstream b\n"))
    planned = cluster.cli("plan", str(changed), "--json")
    (change,) = [c for c in json.loads(planned.stdout)["changes"] if c["resource"] == "command/reload"]
    assert change["note"] == "would run: file/proxy-conf would change"
    third = cluster.apply(changed)

    assert steps_by_resource(third["workflow"])["command/reload"]["state"] == "succeeded"
    assert log.read_text().splitlines() == ["reloaded", "reloaded"]


def folder(tmp_path: Path, root: Path) -> Path:
    estate = tmp_path / "estate.d"
    estate.mkdir()
    header = "apiVersion: converge/v1\nkind: DesiredState\nmetadata: {name: many}\nresources:\n"
    (estate / "10-dirs.yaml").write_text(
        header + f"  - {{kind: directory, name: www, role: web, spec: {{path: {root}/www}}}}\n"
    )
    (estate / "20-files.yml").write_text(
        header + "  - kind: file\n    name: index\n    role: web\n    depends_on: [directory/www]\n"
        f"    spec: {{path: {root}/www/index.html, content: hi}}\n"
    )
    (estate / "30-other.yaml").write_text(
        header + f"  - {{kind: directory, name: other, role: web, spec: {{path: {root}/other}}}}\n"
    )
    (estate / "notes.txt").write_text("not read")
    return estate


def test_apply_of_a_folder_converges_its_files_as_one_desired_state(cluster: Cluster, tmp_path: Path) -> None:
    cluster.start_agent("web", agent_id="web-1")
    root = tmp_path / "root"
    root.mkdir()

    applied = cluster.apply(folder(tmp_path, root))

    assert applied["exit_code"] == 0, applied
    steps = steps_by_resource(applied["workflow"])
    assert set(steps) == {"directory/www", "file/index", "directory/other"}
    assert steps["file/index"]["started_at"] >= steps["directory/www"]["finished_at"]
    assert (root / "www" / "index.html").read_text() == "hi"


def test_limit_applies_only_the_named_resource_and_what_it_depends_on(
    cluster: Cluster, tmp_path: Path
) -> None:
    cluster.start_agent("web", agent_id="web-1")
    root = tmp_path / "root"
    root.mkdir()
    estate = folder(tmp_path, root)

    applied = cluster.apply(estate, "--limit", "file/index")

    assert applied["exit_code"] == 0, applied
    assert set(steps_by_resource(applied["workflow"])) == {"directory/www", "file/index"}
    assert (root / "www" / "index.html").exists() and not (root / "other").exists()

    unknown = cluster.cli("apply", str(estate), "--limit", "file/indx")
    assert unknown.returncode == 2
    assert "did you mean `file/index`?" in unknown.stderr


def templated(root: Path) -> str:
    return desired_state(
        "templated",
        f"""  - kind: file
    name: motd
    role: web
    scope: each
    spec:
      path: "{root}/motd-{{{{ facts.agent_id }}}}"
      content: "{{{{ facts.agent_id }}}} of {{{{ facts.roles | join(',') }}}}\\n"
  - kind: file
    name: conf
    role: web
    spec: {{path: {root}/app.conf, content: "port {{{{ vars.port }}}}\\n"}}
""",
    ).replace("resources:\n", "vars: {port: 8080}\nresources:\n")


def test_a_fact_template_renders_on_each_agent_of_a_fan_out_and_var_overrides_the_file(
    cluster: Cluster, tmp_path: Path
) -> None:
    cluster.start_agent("web", agent_id="web-1")
    cluster.start_agent("web", "db", agent_id="web-2")
    root = tmp_path / "root"
    root.mkdir()
    desired = cluster.write("estate.yaml", templated(root))
    wait_for_agents(cluster, "web-1", "web-2")

    planned = cluster.cli("plan", str(desired), "--json", "--var", "port=9090")
    assert planned.returncode == 0, planned.stderr
    diffs = {c["resource"]: c["diff"] for c in json.loads(planned.stdout)["changes"]}
    assert "web-1 of web" in diffs["file/motd@web-1"] and "web-2 of db,web" in diffs["file/motd@web-2"]
    assert "port 9090" in diffs["file/conf"]

    applied = cluster.apply(desired, "--var", "port=9090")

    assert applied["exit_code"] == 0, applied
    assert (root / "motd-web-1").read_text() == "web-1 of web\n"
    assert (root / "motd-web-2").read_text() == "web-2 of db,web\n"
    assert (root / "app.conf").read_text() == "port 9090\n"


def wait_for_agents(cluster: Cluster, *ids: str) -> None:
    from tests.integration.conftest import wait_for

    wait_for(lambda: all(cluster.agent_state(i) for i in ids), what="agents alive")


def test_a_missing_variable_is_bad_input_naming_it_and_its_line(cluster: Cluster, tmp_path: Path) -> None:
    text = templated(tmp_path).replace("{{ vars.port }}", "{{ vars.listen_port }}")
    desired = cluster.write("estate.yaml", text)

    result = cluster.cli("apply", str(desired))

    assert result.returncode == 2
    assert (
        f"{desired}:16: resources[1].spec.content: template: vars.listen_port is not defined" in result.stderr
    )
