"""Bursts of slow steps, and what they tell of an agent: its pool processes and how many steps ran at once."""

from __future__ import annotations

import json
from pathlib import Path

from tests.integration.conftest import Cluster, desired_state, wait_for


def children_of(pid: int) -> list[int]:
    """Pids of the live child processes of `pid` (the pool processes of an agent's worker), from /proc."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        fields = stat[stat.rindex(")") + 2 :].split()  # after the command name, which may hold spaces
        if fields[0] != "Z" and int(fields[1]) == pid:
            found.append(int(entry.name))
    return found


def burst(
    root: Path, name: str, count: int, *, role: str = "web", gate: Path | None = None, hold_s: float = 0
) -> str:
    """A desired state of `count` commands that each log `start I` and `end I` to root/steps.log, holding in
    between until `gate` exists (when given), then for `hold_s`."""
    root.mkdir(parents=True, exist_ok=True)
    log = root / "steps.log"
    # a slow poll: 20 shells forking `sleep` 20 times a second would load the machine as much as the agent
    wait = f"while [ ! -e {gate} ]; do sleep 0.25; done; " if gate else ""
    resources = []
    for i in range(count):
        done = root / f"done-{i}"
        run = f"echo start {i} >> {log}; {wait}sleep {hold_s}; echo end {i} >> {log}; touch {done}"
        resources.append(
            f"  - kind: command\n    name: c{i}\n    role: {role}\n"
            f"    spec: {{run: {json.dumps(run)}, creates: {done}}}\n"
        )
    return desired_state(name, "".join(resources))


def started(root: Path) -> int:
    log = root / "steps.log"
    return sum(line.startswith("start") for line in log.read_text().splitlines()) if log.exists() else 0


def most_at_once(root: Path) -> int:
    """The most steps that ran at once, from the order of their `start` and `end` lines (no clock)."""
    running = most = 0
    for line in (root / "steps.log").read_text().splitlines():
        running += 1 if line.startswith("start") else -1
        most = max(most, running)
    return most


def submit(cluster: Cluster, path: Path) -> str:
    """`converge apply FILE --json` without waiting: the workflow's id."""
    result = cluster.cli("apply", str(path), "--json")
    assert result.returncode == 0, result.stderr
    return str(json.loads(result.stdout)["workflow"]["id"])


def wait_succeeded(cluster: Cluster, workflow_id: str, timeout_s: float = 90) -> dict:
    def finished() -> dict | None:
        shown = cluster.show(workflow_id)
        return shown if shown["state"] in ("succeeded", "failed", "aborted", "cancelled") else None

    workflow = wait_for(finished, timeout_s, f"workflow {workflow_id} to finish")
    assert workflow["state"] == "succeeded", workflow
    return workflow
