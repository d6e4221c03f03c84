"""A step's output: what its command wrote on stdout and stderr, kept by the engine, shown by `workflows logs`
and under `workflows show`, bounded per step."""

from __future__ import annotations

import json
from pathlib import Path

from tests.integration.conftest import Cluster, desired_state


def failing(tmp_path: Path) -> str:
    # Lines alternate between the streams, with a flush between them, so that their order is known.
    script = "; ".join(f"echo out-{i}; sleep 0.02; echo err-{i} >&2; sleep 0.02" for i in range(1, 4))
    return desired_state(
        "chatty",
        f"""  - kind: command
    name: chatty
    role: web
    retry: {{attempts: 1}}
    spec: {{run: "{script}; exit 3", creates: {tmp_path}/never}}
  - kind: command
    name: loud
    role: web
    spec: {{run: "head -c 200000 /dev/zero | tr '\\\\0' x | fold -w 99; echo last-line", creates: {tmp_path}/loud}}
""",
    )


def test_a_failed_command_s_stdout_and_stderr_are_in_logs_and_under_show(
    cluster: Cluster, tmp_path: Path
) -> None:
    cluster.start_agent("web", agent_id="web-1")
    desired = cluster.write("chatty.yaml", failing(tmp_path))

    result = cluster.apply(desired)

    assert result["exit_code"] == 1
    workflow_id = result["workflow"]["id"]
    steps = {s["resource"]: s for s in result["workflow"]["steps"]}
    assert steps["command/chatty"]["state"] == "failed"
    assert steps["command/chatty"]["message"].startswith("command exited with code 3")

    logs = cluster.cli("workflows", "logs", workflow_id, "command/chatty", "--json")
    assert logs.returncode == 0, logs.stderr
    (step,) = json.loads(logs.stdout)
    lines = [(stream, text) for _, stream, text in step["output"]["lines"]]
    assert lines == [
        *[("out", "out-1"), ("err", "err-1"), ("out", "out-2"), ("err", "err-2")],
        *[("out", "out-3"), ("err", "err-3")],
    ]
    assert step["output"]["cut_bytes"] == 0 and step["output"]["attempt"] == 1
    times = [at for at, _, _ in step["output"]["lines"]]
    assert times == sorted(times)

    text = cluster.cli("workflows", "logs", workflow_id)
    assert text.returncode == 0, text.stderr
    assert "== command/chatty" in text.stdout and "err | err-2" in text.stdout

    shown = cluster.cli("workflows", "show", workflow_id)
    assert shown.returncode == 0, shown.stderr
    under = shown.stdout[shown.stdout.index("command/chatty (attempt 1), last 6 lines") :]
    assert [line.split("| ", 1)[1] for line in under.splitlines()[1:7]] == [
        *["out-1", "err-1", "out-2", "err-2", "out-3", "err-3"]
    ]
    as_json = json.loads(cluster.cli("workflows", "show", workflow_id, "--json").stdout)
    by_resource = {s["resource"]: s for s in as_json["steps"]}
    assert len(by_resource["command/chatty"]["output"]["lines"]) == 6

    unknown = cluster.cli("workflows", "logs", workflow_id, "command/nope")
    assert unknown.returncode == 2 and "no step command/nope" in unknown.stderr


def test_a_step_keeps_the_last_64_kb_of_its_output_and_says_how_much_was_cut(
    cluster: Cluster, tmp_path: Path
) -> None:
    cluster.start_agent("web", agent_id="web-1")
    desired = cluster.write("chatty.yaml", failing(tmp_path))
    workflow_id = cluster.apply(desired)["workflow"]["id"]

    logs = json.loads(cluster.cli("workflows", "logs", workflow_id, "command/loud", "--json").stdout)

    output = logs[0]["output"]
    kept = sum(len(text) + 1 for _, _, text in output["lines"])
    assert output["lines"][-1][2] == "x" * 20 + "last-line"
    assert 60_000 < kept <= 64 * 1024
    # 200,000 x folded in lines of 99 (2,020 newlines, and 20 x before `last-line` and its newline)
    assert kept + output["cut_bytes"] == 200_000 + 2_020 + len("last-line\n")
