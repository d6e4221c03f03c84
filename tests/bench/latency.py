"""2. Latency on an idle system: submit -> step started, and step succeeded -> visible in `workflows show`.

One agent, nothing else running. Each sample POSTs a fresh one-step workflow (a `wait_for` of 0 s), then
polls GET /v1/workflows/{id} (what `converge workflows show` calls) back to back, 2 ms apart, until the
step is `succeeded`. Same machine, one clock:

- submit -> started: the step's `started_at` (the agent's clock when it claimed the step) minus the
  wall time just before the POST;
- succeeded -> visible: the wall time the first response showing `succeeded` arrived minus the step's
  `finished_at` (the agent's clock when it reported). An upper bound: it includes up to one poll period
  and one request, whose median is reported alongside.
"""

from __future__ import annotations

import time
import uuid
from datetime import datetime
from typing import Any

from tests.bench.harness import BenchContext, BenchError, Stack, desired_state, noop_step, workdir
from tests.bench.report import BenchResult, Target, median, percentile

NAME = "latency"
TITLE = "2. Latency on an idle system"
POLL_GAP_S = 0.002
WARMUP = 10


def run(ctx: BenchContext, result: BenchResult) -> None:
    samples = 50 if ctx.quick else 500
    with workdir(ctx.root, NAME, ctx.keep) as wd, Stack(wd) as stack:
        ctx.say("latency: starting Redis, engine and one agent")
        stack.start_engine()
        stack.start_agent("bench-1")
        result.raw["logs"] = str(stack.logs)
        tag = uuid.uuid4().hex[:8]
        for i in range(WARMUP):
            sample(stack, f"lat-warm-{tag}-{i}")
        to_started: list[float] = []
        to_visible: list[float] = []
        posts: list[float] = []
        polls: list[float] = []
        end_to_end: list[float] = []
        for i in range(samples):
            s = sample(stack, f"lat-{tag}-{i}")
            to_started.append(s["to_started"])
            to_visible.append(s["to_visible"])
            posts.append(s["post"])
            polls.append(s["poll"])
            end_to_end.append(s["end_to_end"])
            if (i + 1) % 100 == 0:
                ctx.say(f"latency: {i + 1}/{samples} samples")
            time.sleep(0.01)
        result.raw.update(submit_to_started_s=to_started, succeeded_to_visible_s=to_visible)

    ms = 1000.0
    result.notes.append(
        f"{samples} samples after {WARMUP} discarded; one sample at a time; agent --throttle 20"
    )
    for label, values, detail in [
        ("submit -> step started", to_started, "started_at (agent clock) - time before POST"),
        ("step succeeded -> visible in workflows show", to_visible, "first GET showing it - finished_at"),
        ("submit -> succeeded visible (end to end)", end_to_end, ""),
        ("  POST /v1/workflows round trip", posts, "validate, plan, persist, publish"),
        ("  GET /v1/workflows/{id} round trip", polls, "the poll's resolution, plus a 2 ms gap"),
    ]:
        result.row(f"{label}: p50", percentile(values, 50) * ms, "ms", detail)
        result.row(f"{label}: p99", percentile(values, 99) * ms, "ms", f"max {max(values) * ms:.1f} ms")
    result.targets.append(Target.at_most("submit -> started p50", percentile(to_started, 50) * ms, 20, "ms"))
    result.targets.append(Target.at_most("submit -> started p99", percentile(to_started, 99) * ms, 100, "ms"))
    result.raw["median_poll_s"] = median(polls)


def sample(stack: Stack, name: str) -> dict[str, float]:
    workflow_id, submitted = stack.submit(desired_state(name, [noop_step("s")]))
    posted = time.time()
    deadline = time.monotonic() + 30
    polls: list[float] = []
    while True:
        sent = time.time()
        response = stack.api.get(f"/v1/workflows/{workflow_id}")
        seen = time.time()
        polls.append(seen - sent)
        view: dict[str, Any] = response.json()
        step = view["steps"][0]
        if step["state"] == "succeeded":
            break
        if step["state"] in ("failed", "timed_out", "cancelled") or time.monotonic() > deadline:
            raise BenchError(f"step of {workflow_id} is {step['state']}; see {stack.logs}")
        time.sleep(POLL_GAP_S)
    started = datetime.fromisoformat(step["started_at"]).timestamp()
    finished = datetime.fromisoformat(step["finished_at"]).timestamp()
    return {
        "to_started": started - submitted,
        "to_visible": seen - finished,
        "post": posted - submitted,
        "poll": median(polls),
        "end_to_end": seen - submitted,
    }
