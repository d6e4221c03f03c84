"""6. A lost leader: SIGKILL the agent running a step, time the backup's takeover and the step's next attempt.

One engine, two agents of role `work` as shipped (heartbeat every 1 s, TTL `common.defaults.HEARTBEAT_TTL_S`,
8 s, 5 connection failures). Only the role's leader consumes the role's queue, so the agent that runs a step
is the leader. Each sample submits one `wait_for` step; once it has started (the store is polled read-only
every 10 ms), the whole process group of the agent running it gets SIGKILL. Its leadership lease and its
heartbeat key expire at most the TTL after its last renewal; the backup takes the lease the moment it
expires and starts consuming the role's queue, and the engine, holding the dead agent lost, publishes the
step's next attempt there. Measured from the kill:

- to the backup consuming the role's queue: Celery's own log line `Started consuming from
  converge.role.work`, written when the consumer has really added the queue (the elector's `leading role`
  line comes just before, when it only asked for it);
- to the next attempt's `started_at` (the agent's clock, same machine).

The killed agent is started again while the next attempt runs (it comes back a backup), and the sample
waits for the workflow to succeed at attempt 2, on the other agent.
"""

from __future__ import annotations

import time
import uuid
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from common import names
from common.defaults import HEARTBEAT_TTL_S
from tests.bench.harness import BenchContext, BenchError, Stack, desired_state, wait_step, wait_until, workdir
from tests.bench.report import BenchResult, Target, median

NAME = "failover"
TITLE = "6. A lost leader: SIGKILL to the backup consuming the role's queue and to the step's next attempt"
ROLE = "work"
AGENTS = ("bench-loss-1", "bench-loss-2")
STEP_S = 3.0
CONSUMING = f"Started consuming from {names.role_queue(ROLE)}"


@dataclass(frozen=True)
class Sample:
    killed: str
    backup: str
    to_consuming_s: float
    to_next_attempt_s: float


def run(ctx: BenchContext, result: BenchResult) -> None:
    samples = 2 if ctx.quick else 20
    result.notes.append(
        f"{samples} samples; one `wait_for {{seconds: {STEP_S:g}}}` step each; SIGKILL of the process group "
        f"of the agent running it (the role's leader); two agents of the role, as shipped (heartbeat TTL "
        f"{HEARTBEAT_TTL_S:g} s); the takeover is timed by Celery's `{CONSUMING}` line in the backup's log"
    )
    done: list[Sample] = []
    failures: list[str] = []
    with workdir(ctx.root, NAME, ctx.keep) as wd, Stack(wd) as stack:
        ctx.say("failover: starting Redis, engine and two agents")
        stack.start_engine()
        for agent_id in AGENTS:
            stack.start_agent(agent_id, role=ROLE)
        result.raw["logs"] = str(stack.logs)
        for i in range(samples):
            try:
                s = sample(stack, f"loss-{uuid.uuid4().hex[:8]}")
            except BenchError as exc:
                failures.append(f"sample {i + 1}: {exc}")
                ctx.say(f"failover: sample {i + 1}/{samples} failed: {exc}")
                for agent_id in AGENTS:  # two agents again for the next sample
                    if f"agent-{agent_id}" not in stack.children:
                        stack.start_agent(agent_id, role=ROLE)
                continue
            done.append(s)
            ctx.say(
                f"failover: sample {i + 1}/{samples}: {s.killed} killed, {s.backup} consuming the role's "
                f"queue {s.to_consuming_s:.2f} s later, next attempt {s.to_next_attempt_s:.2f} s later"
            )
        result.raw.update(
            to_consuming_s=[s.to_consuming_s for s in done],
            to_next_attempt_s=[s.to_next_attempt_s for s in done],
            failures=failures,
        )
    if not done:
        raise BenchError("no sample: " + "; ".join(failures))
    report(result, done)
    result.notes += failures


def report(result: BenchResult, done: list[Sample]) -> None:
    consuming = [s.to_consuming_s for s in done]
    attempt = [s.to_next_attempt_s for s in done]
    of = f"of {len(done)}"
    result.row("leader SIGKILL -> backup consuming the role's queue: median", median(consuming), "s", of)
    result.row("  worst", max(consuming), "s", f"target: at most the TTL + 1 s = {HEARTBEAT_TTL_S + 1:g} s")
    result.row("leader SIGKILL -> step's next attempt started: median", median(attempt), "s", of)
    result.row("  worst", max(attempt), "s", f"target: at most the TTL + 2 s = {HEARTBEAT_TTL_S + 2:g} s")
    result.targets += [
        Target.at_most(
            "leader loss to backup consuming, worst case", max(consuming), HEARTBEAT_TTL_S + 1, "s"
        ),
        Target.at_most("leader loss to next attempt, worst case", max(attempt), HEARTBEAT_TTL_S + 2, "s"),
    ]


def sample(stack: Stack, name: str) -> Sample:
    """Kill the agent running a fresh step; time the takeover; start the killed agent again as a backup."""
    workflow_id, _ = stack.submit(desired_state(name, [wait_step("slow", STEP_S, role=ROLE)]))

    def running_on() -> str | None:
        stack.check_alive()
        row = stack.db.execute(
            "SELECT agent FROM converge_steps WHERE workflow_id = ? AND state = 'started'", (workflow_id,)
        ).fetchone()
        return str(row[0]) if row else None

    killed = wait_until(running_on, 60, f"the step of {workflow_id} to start", interval_s=0.01)
    backup = next(a for a in AGENTS if a != killed)
    killed_at = time.time()
    stack.kill(f"agent-{killed}")

    def next_started() -> float | None:
        stack.check_alive()
        row = stack.db.execute(
            "SELECT started_at FROM converge_steps WHERE workflow_id = ? AND attempt = 2", (workflow_id,)
        ).fetchone()
        return float(row[0]) if row and row[0] is not None else None

    started = wait_until(
        next_started, HEARTBEAT_TTL_S + 30, f"attempt 2 of {workflow_id} to start", interval_s=0.01
    )
    log = stack.logs / f"agent-{backup}.log"
    consuming = wait_until(
        lambda: next((t for t in consuming_since(log) if t > killed_at), None),
        10,
        f"`{CONSUMING}` in {log} after the kill",
    )
    stack.start_agent(killed, role=ROLE)  # while attempt 2 runs
    state, _ = stack.wait_finished(workflow_id, timeout_s=STEP_S + 60)
    row = stack.db.execute(
        "SELECT attempt, agent FROM converge_steps WHERE workflow_id = ?", (workflow_id,)
    ).fetchone()
    if state != "succeeded" or row[0] != 2 or row[1] != backup:
        raise BenchError(f"{workflow_id} ended {state} at attempt {row[0]} on {row[1]} (killed: {killed})")
    return Sample(killed, backup, consuming - killed_at, started - killed_at)


def consuming_since(log: Path) -> list[float]:
    """When the agent started consuming the role's queue, from Celery's lines in its log (local time,
    milliseconds: `[2026-11-28 18:45:07,206: INFO/MainProcess] Started consuming from ...`)."""
    found = []
    for line in log.read_text(errors="replace").splitlines():
        if CONSUMING in line and line.startswith("["):
            stamp = line[1 : line.index(": ")]
            found.append(datetime.strptime(stamp, "%Y-%m-%d %H:%M:%S,%f").timestamp())
    return found
