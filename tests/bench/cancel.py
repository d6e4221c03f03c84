"""4. Cancel a running non-cooperative step: from `converge workflows cancel ID --wait` to the step's
process tree gone and the workflow `cancelled`.

Each sample submits a one-step workflow whose `command` runs `sleep 600 & sleep 600` (it never looks at
any cancellation request), waits until the agent has started it and its processes exist, then runs
`python -m engine workflows cancel ID --wait` and polls, every 5 ms, both the store (read-only SQLite) and
/proc. A process belongs to the step when its command line or environment holds the sample's marker
(`CONVERGE_BENCH_MARKER`, set through the command's `env`, is inherited by the whole tree); no psutil.

The time of a sample is the later of "no marked process left" and "workflow cancelled", counted from
launching the CLI, so it includes the CLI's Python start-up (measured and reported separately). If the
command does not exist yet, the benchmark is reported as not available.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
import uuid

from tests.bench.harness import (
    REPO_ROOT,
    BenchContext,
    BenchError,
    Stack,
    desired_state,
    kill_pids,
    pids_marked,
    wait_until,
    workdir,
)
from tests.bench.report import BenchResult, Target, median, percentile

NAME = "cancel"
TITLE = "4. Cancel a running non-cooperative step"
SAMPLE_TIMEOUT_S = 20.0
POLL_S = 0.005


def available() -> str | None:
    """None if `converge workflows cancel` exists, else why not."""
    done = subprocess.run(
        [sys.executable, "-m", "engine", "workflows", "cancel", "--help"],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    if done.returncode != 0:
        lines = (done.stderr or done.stdout).strip().splitlines()
        return lines[-1] if lines else f"exit code {done.returncode}"
    if "--wait" not in done.stdout:
        return "`converge workflows cancel` has no --wait option"
    return None


def run(ctx: BenchContext, result: BenchResult) -> None:
    samples = 5 if ctx.quick else 20
    missing = available()
    if missing is not None:
        result.status = "not available"
        result.notes.append(f"`converge workflows cancel ID --wait` is not available yet: {missing}")
        result.targets.append(Target("cancel worst case", None, "<= 2 s", None))
        return
    with workdir(ctx.root, NAME, ctx.keep) as wd, Stack(wd) as stack:
        ctx.say("cancel: starting Redis, engine and one agent")
        stack.start_engine()
        stack.start_agent("bench-1")
        result.raw["logs"] = str(stack.logs)
        startup = cli_startup(stack)
        totals: list[float] = []
        gone: list[float] = []
        cancelled: list[float] = []
        cli_exit: list[float] = []
        failures: list[str] = []
        for i in range(samples):
            try:
                s = sample(stack, i)
            except BenchError as exc:
                failures.append(str(exc))
                ctx.say(f"cancel: sample {i + 1} failed: {exc}")
                if len(failures) >= 3:
                    break
                continue
            totals.append(s["total"])
            gone.append(s["gone"])
            cancelled.append(s["cancelled"])
            cli_exit.append(s["cli"])
        result.raw.update(total_s=totals, failures=failures)

    if failures:
        result.notes += [f"failed sample: {f}" for f in failures[:3]]
        if not totals:
            result.status = "failed"
    result.notes.append(
        f"{len(totals)} of {samples} samples; step: `sleep 600 & sleep 600`, which never checks for a cancel"
    )
    if not totals:
        result.targets.append(Target("cancel worst case", None, "<= 2 s", False))
        return
    result.row("cancel -> tree gone and workflow cancelled: median", median(totals), "s", "")
    result.row("  worst", max(totals), "s", f"p90 {percentile(totals, 90):.2f} s")
    result.row("cancel -> process tree gone: median", median(gone), "s", f"worst {max(gone):.2f} s")
    result.row(
        "cancel -> workflow cancelled in the store: median",
        median(cancelled),
        "s",
        f"worst {max(cancelled):.2f} s",
    )
    result.row("cancel CLI exit (--wait): median", median(cli_exit), "s", f"worst {max(cli_exit):.2f} s")
    result.row("  of which CLI Python start-up", startup, "s", "median of `python -m engine --version`")
    result.targets.append(Target.at_most("cancel worst case", max(totals), 2, "s"))


def cli_startup(stack: Stack) -> float:
    times = []
    for _ in range(3):
        started = time.monotonic()
        stack.cli("--version")
        times.append(time.monotonic() - started)
    return median(times)


def sample(stack: Stack, i: int) -> dict[str, float]:
    marker = f"bench-{uuid.uuid4().hex}"
    spec = {
        "run": f"sleep 600 & sleep 600 # {marker}",
        "creates": f"/nonexistent/{marker}",
        "env": {"CONVERGE_BENCH_MARKER": marker},
    }
    resource = f"{{kind: command, name: sleep-{i}, role: bench, spec: {json.dumps(spec)}}}"
    workflow_id, _ = stack.submit(desired_state(f"cancel-{marker}", [resource]))
    try:
        wait_until(lambda: len(pids_marked(marker)) >= 2, 30, f"the processes of {workflow_id}")
        wait_until(
            lambda: (
                stack.db.execute(
                    "SELECT state FROM converge_steps WHERE workflow_id = ?", (workflow_id,)
                ).fetchone()[0]
                == "started"
            ),
            30,
            f"step of {workflow_id} to be started in the store",
        )
        return measure(stack, workflow_id, marker)
    finally:
        kill_pids(pids_marked(marker))


def measure(stack: Stack, workflow_id: str, marker: str) -> dict[str, float]:
    started = time.monotonic()
    proc = subprocess.Popen(
        [sys.executable, "-m", "engine", "workflows", "cancel", workflow_id, "--wait"],
        env=stack.env,
        cwd=REPO_ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    gone = cancelled = cli = None
    cli_error = ""
    try:
        while gone is None or cancelled is None or cli is None:
            now = time.monotonic() - started
            if now > SAMPLE_TIMEOUT_S:
                state = stack.workflow_row(workflow_id)[0]
                left = pids_marked(marker)
                raise BenchError(
                    f"after {SAMPLE_TIMEOUT_S:g}s: workflow {state}, {len(left)} processes left, "
                    f"CLI {'running' if cli is None else 'exited ' + str(proc.returncode)} {cli_error}"
                )
            if gone is None and not pids_marked(marker):
                gone = now
            if cancelled is None and stack.workflow_row(workflow_id)[0] == "cancelled":
                cancelled = now
            if cli is None and proc.poll() is not None:
                cli = now
                # CLI.md: exit 1 may also mean "the workflow was cancelled"; only the store decides.
                cli_error = proc.communicate()[1].strip()[-500:]
            time.sleep(POLL_S)
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.communicate()
    assert gone is not None and cancelled is not None and cli is not None
    return {"total": max(gone, cancelled), "gone": gone, "cancelled": cancelled, "cli": cli}
