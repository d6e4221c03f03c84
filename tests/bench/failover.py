"""6. A lost agent: SIGKILL the agent running a step, time until the step's next attempt starts elsewhere.

One engine, two agents of role `work` as shipped (heartbeat every 2 s, TTL 15 s, 5 connection failures).
Each sample submits one `wait_for {seconds: 5}` step; once it has started (the store is polled read-only
every 10 ms), the whole process group of the agent running it gets SIGKILL. The engine holds that agent
lost when its heartbeat key expires (at most the TTL after the kill) and publishes the step's next attempt
at once; the other agent takes it. Measured: the kill to the new attempt's `started_at` (the agent's clock,
same machine). The killed agent is started again before the next sample, so that two agents serve the role.
The sample then waits for the workflow to succeed at attempt 2, on the other agent.
"""

from __future__ import annotations

import time
import uuid

from tests.bench.harness import BenchContext, BenchError, Stack, desired_state, wait_step, wait_until, workdir
from tests.bench.report import BenchResult, Target, median

NAME = "failover"
TITLE = "6. A lost agent: SIGKILL to the step's next attempt started on another agent"
ROLE = "work"
AGENTS = ("bench-loss-1", "bench-loss-2")
STEP_S = 5.0
TTL_S = 15.0  # the agents' default


def run(ctx: BenchContext, result: BenchResult) -> None:
    samples = 2 if ctx.quick else 10
    result.notes.append(
        f"{samples} samples; one `wait_for {{seconds: {STEP_S:g}}}` step each; SIGKILL of the process group "
        f"of the agent running it; two agents of the role, as shipped (heartbeat TTL {TTL_S:g} s)"
    )
    to_new: list[float] = []
    failures: list[str] = []
    with workdir(ctx.root, NAME, ctx.keep) as wd, Stack(wd) as stack:
        ctx.say("failover: starting Redis, engine and two agents")
        stack.start_engine()
        for agent_id in AGENTS:
            stack.start_agent(agent_id, role=ROLE)
        result.raw["logs"] = str(stack.logs)
        for i in range(samples):
            try:
                seconds, killed = sample(stack, f"loss-{uuid.uuid4().hex[:8]}")
            except BenchError as exc:
                failures.append(f"sample {i + 1}: {exc}")
                ctx.say(f"failover: sample {i + 1}/{samples} failed: {exc}")
                continue
            to_new.append(seconds)
            ctx.say(
                f"failover: sample {i + 1}/{samples}: {killed} killed, next attempt {seconds:.2f} s later"
            )
            stack.start_agent(killed, role=ROLE)
        result.raw.update(to_new_attempt_s=to_new, failures=failures)
    if not to_new:
        raise BenchError("no sample: " + "; ".join(failures))
    result.row("agent SIGKILL -> next attempt started: median", median(to_new), "s", f"of {len(to_new)}")
    result.row("  worst", max(to_new), "s", f"target: at most the TTL + 2 s = {TTL_S + 2:g} s")
    result.targets.append(
        Target.at_most("agent loss to new attempt, worst case", max(to_new), TTL_S + 2, "s")
    )
    result.notes += failures


def sample(stack: Stack, name: str) -> tuple[float, str]:
    workflow_id, _ = stack.submit(desired_state(name, [wait_step("slow", STEP_S, role=ROLE)]))

    def running_on() -> str | None:
        stack.check_alive()
        row = stack.db.execute(
            "SELECT agent FROM converge_steps WHERE workflow_id = ? AND state = 'started'", (workflow_id,)
        ).fetchone()
        return str(row[0]) if row else None

    agent = wait_until(running_on, 60, f"the step of {workflow_id} to start", interval_s=0.01)
    killed = time.time()
    stack.kill(f"agent-{agent}")

    def next_started() -> float | None:
        row = stack.db.execute(
            "SELECT started_at FROM converge_steps WHERE workflow_id = ? AND attempt = 2", (workflow_id,)
        ).fetchone()
        return float(row[0]) if row and row[0] is not None else None

    started = wait_until(next_started, TTL_S + 30, f"attempt 2 of {workflow_id} to start", interval_s=0.01)
    state, _ = stack.wait_finished(workflow_id, timeout_s=STEP_S + 60)
    row = stack.db.execute(
        "SELECT attempt, agent FROM converge_steps WHERE workflow_id = ?", (workflow_id,)
    ).fetchone()
    if state != "succeeded" or row[0] != 2 or row[1] == agent:
        raise BenchError(f"{workflow_id} ended {state} at attempt {row[0]} on {row[1]} (killed: {agent})")
    return started - killed, agent
