"""5. Resume after a crash: SIGKILL the engine in the middle of a chain, start it again, time the resume.

One engine, one agent (role `work`). Each sample submits a fresh workflow: a chain of 30 `wait_for
{seconds: 0.2}` steps, each depending on the one before. Once 5 steps have succeeded (the store is polled
read-only with SQLite every 10 ms), the engine's whole process group gets SIGKILL: no shutdown of any
kind. The store as the engine left it says which steps had started. The engine stays down for 1 s, long
enough for the agent to finish its running step and report into the Redis status stream with nobody
reading it; then it is spawned again (same store, same Redis) and, from that spawn:

- API up: the first answer of GET /v1/workflows (polled every 5 ms with a fresh client), i.e. the
  process start-up;
- time to resume: the `started_at` (the agent's clock, same machine) of the first step that had not
  started before the kill (as the store shows it). Should that step have started before the spawn anyway
  (published before the kill; it started while the engine was down, or just before the kill without the
  engine having recorded it), the first step started after the spawn is taken instead, and the note says
  how often.

The sample then waits for the workflow to succeed and checks that every step is at attempt 1 (no step
was retried or run twice). Deliveries the agent dropped because the attempt was already claimed (the
engine published a step again) are counted from the agent's log: they are not runs.
"""

from __future__ import annotations

import sys
import time
import uuid

import httpx

from tests.bench.harness import BenchContext, BenchError, Stack, desired_state, wait_step, wait_until, workdir
from tests.bench.report import BenchResult, median

NAME = "resume"
TITLE = "5. Resume after the engine is killed (SIGKILL)"
ROLE = "work"
AGENT_ID = "bench-resume"
CHAIN = 30
STEP_S = 0.2
KILL_AFTER = 5
DOWN_S = 1.0
RESUME_TIMEOUT_S = 60.0


def run(ctx: BenchContext, result: BenchResult) -> None:
    samples = 2 if ctx.quick else 5
    result.notes.append(
        f"{samples} samples; a fresh chain of {CHAIN} dependent `wait_for {{seconds: {STEP_S:g}}}` steps each; "
        f"SIGKILL of the engine's process group once {KILL_AFTER} steps succeeded; engine down {DOWN_S:g} s; "
        "one agent (role `work`, --throttle 20) stays up throughout"
    )
    with workdir(ctx.root, NAME, ctx.keep) as wd, Stack(wd) as stack:
        ctx.say("resume: starting Redis, engine and one agent")
        stack.start_engine()
        stack.start_agent(AGENT_ID, role=ROLE)
        result.raw["logs"] = str(stack.logs)
        api_up: list[float] = []
        resumed: list[float] = []
        early = {"": 0, "down": 0, "kill": 0}  # when the first step unrecorded at the kill really started
        clean = 0
        dropped = 0
        failures: list[str] = []
        for i in range(samples):
            try:
                s = sample(stack, f"resume-{uuid.uuid4().hex[:8]}")
            except BenchError as exc:
                failures.append(f"sample {i + 1}: {exc}")
                ctx.say(f"resume: sample {i + 1}/{samples} failed: {exc}")
                engine = stack.children.get("engine")
                if engine is None or engine.proc.poll() is not None:  # killed or dead: a fresh one
                    stack.children.pop("engine", None)
                    stack.reset_api()
                    stack.start_engine()
                continue
            api_up.append(s["api_up"])
            resumed.append(s["resumed"])
            early[str(s["early"])] += 1
            dropped += int(s["dropped"])
            clean += int(s["clean"])
            if not s["clean"]:
                failures.append(f"sample {i + 1}: steps not at attempt 1: {s['retried']}")
            ctx.say(
                f"resume: sample {i + 1}/{samples}: API up {s['api_up']:.2f} s, "
                f"next step started {s['resumed']:.2f} s after the spawn"
            )
        result.raw.update(api_up_s=api_up, resume_s=resumed, failures=failures)

    if not resumed:
        raise BenchError("no sample resumed: " + "; ".join(failures))
    result.row(
        "engine spawn -> API answers GET /v1/workflows: median", median(api_up), "s", "process start-up"
    )
    result.row("  worst", max(api_up), "s", f"of {len(api_up)}")
    result.row(
        "engine spawn -> next step started: median",
        median(resumed),
        "s",
        "time to resume: started_at of the first step not started before the kill",
    )
    result.row("  worst", max(resumed), "s", f"of {len(resumed)}")
    gaps = [r - a for r, a in zip(resumed, api_up, strict=True)]
    result.row(
        "  next step started minus API up: median",
        median(gaps),
        "s",
        f"range {min(gaps):.2f} to {max(gaps):.2f} s; negative: dispatching resumed before the API answered",
    )
    result.row(
        "samples that succeeded with every step at attempt 1",
        f"{clean}/{samples}",
        "",
        "no step retried or run twice",
    )
    result.row(
        "deliveries dropped by the agent (attempt already claimed)",
        dropped,
        "",
        "steps the engine published again; the agent's claim kept them from running twice",
    )
    if early["down"] or early["kill"]:
        result.notes.append(
            f"in {early['down'] + early['kill']} sample(s) the first step the store showed as not started at "
            f"the kill had in fact started before the spawn ({early['kill']} just before the kill, not yet "
            f"recorded by the engine; {early['down']} while the engine was down): it had been published before "
            "the kill. The first step started after the spawn was timed instead"
        )
    result.notes += failures


def sample(stack: Stack, name: str) -> dict[str, float | bool | str]:
    resources = [wait_step("w0", STEP_S, role=ROLE)]
    resources += [wait_step(f"w{i}", STEP_S, f"w{i - 1}", role=ROLE) for i in range(1, CHAIN)]
    workflow_id, _ = stack.submit(desired_state(name, resources))

    def enough() -> bool:
        stack.check_alive()
        steps = stack.steps(workflow_id)
        return sum(1 for _, state, _, _ in steps if state == "succeeded") >= KILL_AFTER

    wait_until(enough, 60, f"{KILL_AFTER} steps of {workflow_id} to succeed", interval_s=0.01)
    killed = time.time()
    stack.kill("engine")
    stack.reset_api()
    before = stack.steps(workflow_id)  # as the engine left the store
    not_started = [idx for idx, _, started, _ in before if started is None]
    if not not_started:
        raise BenchError(f"every step of {workflow_id} had started before the kill")
    first = not_started[0]
    time.sleep(DOWN_S)

    spawned = time.time()
    stack.spawn("engine", [sys.executable, "-m", "engine", "engine", "run"])
    api_up = wait_api(stack, spawned)

    def next_started() -> float | None:
        stack.check_alive()
        row = stack.db.execute(
            "SELECT min(started_at) FROM converge_steps WHERE workflow_id = ? AND idx >= ? AND started_at >= ?",
            (workflow_id, first, spawned),
        ).fetchone()
        return float(row[0]) if row and row[0] is not None else None

    started = wait_until(
        next_started, RESUME_TIMEOUT_S, f"a step of {workflow_id} to start", interval_s=0.005
    )
    first_started = next(s for i, _, s, _ in stack.steps(workflow_id) if i == first)
    early = (
        ""
        if first_started is None or first_started >= spawned
        else "down"
        if first_started >= killed
        else "kill"
    )

    stack.wait_finished(workflow_id, timeout_s=CHAIN * STEP_S + 60)
    rows = stack.db.execute(
        "SELECT id, idx, attempt FROM converge_steps WHERE workflow_id = ? ORDER BY idx", (workflow_id,)
    ).fetchall()
    retried = [f"#{idx} attempt {attempt}" for _, idx, attempt in rows if attempt != 1]
    log = stack.children[f"agent-{AGENT_ID}"].log.read_text(errors="replace")
    dropped = sum(log.count(f"dropping step {step_id} ") for step_id, _, _ in rows)
    return {
        "api_up": api_up - spawned,
        "resumed": started - spawned,
        "early": early,
        "clean": not retried and len(rows) == CHAIN,
        "retried": ", ".join(retried),
        "dropped": dropped,
    }


def wait_api(stack: Stack, spawned: float) -> float:
    """Wall time of the first successful GET /v1/workflows (HTTPS, with the token), polled every 5 ms."""
    with stack.new_api_client() as client:

        def answers() -> float | None:
            stack.check_alive()
            try:
                ok = client.get("/v1/workflows").status_code == 200
            except httpx.TransportError:
                return None
            return time.time() if ok else None

        return wait_until(answers, 60, "the restarted engine's API", interval_s=0.005)
