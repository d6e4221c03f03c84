"""8. The live display of `apply --wait`: what drawing it costs, against `--json` and against Salt.

`converge apply FILE --wait` of N `file` resources (1,000 and 10,000), each run a fresh CLI process:

- display: stdin, stdout and stderr on a pseudo-terminal of 50 x 160 (the `pty` module), so the live
  display and the final table are really drawn; the bench drains the terminal as a terminal would;
- json: `--json`, stdout to a file (as a script would), stderr on the same kind of terminal.

Each round applies to a fresh directory (create: every file written), then applies the same file again
(no change). Wall time from spawn to exit; the CLI process's CPU from `os.wait4` (user + system).
Display and json alternate within a round (which goes first too); the ratios are the median of each
round's own ratio, the two runs of a round being next to each other in time.

Salt, when it can be installed (`salt-call` on the PATH, in $BENCH_SALT_VENV or in /tmp/salt-venv, else
`pip install salt` into /tmp/salt-venv): `salt-call --local state.apply` of the same 1,000 files as
`file.managed` (contents, mode 0644), create then no change, its terse output on the same terminal.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import pty
import shutil
import struct
import subprocess
import sys
import termios
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from tests.bench.harness import BENCH_ROLE, REPO_ROOT, BenchContext, BenchError, Stack, desired_state, workdir
from tests.bench.report import BenchResult, Target, median

NAME = "display"
TITLE = "8. Live display: apply --wait on a terminal against --json, and Salt"
ROWS, COLUMNS = 50, 160
SALT_VENV = Path(os.environ.get("BENCH_SALT_VENV", "/tmp/salt-venv"))
RUN_TIMEOUT_S = 900.0


@dataclass
class Run:
    """One process: its wall time, its CPU seconds, its exit code and the tail of what it drew."""

    wall_s: float
    cpu_s: float
    code: int
    tail: str
    drawn_bytes: int


def run_on_terminal(argv: list[str], env: dict[str, str], cwd: Path, stdout: Path | None = None) -> Run:
    """Run `argv` with a pseudo-terminal as its terminal (stdout to `stdout` if given), reading the
    terminal as fast as it writes; CPU from wait4, the child's own rusage."""
    master, slave = pty.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", ROWS, COLUMNS, 0, 0))
    drawn = bytearray()

    def drain() -> None:
        while True:
            try:
                chunk = os.read(master, 1 << 16)
            except OSError:  # EIO: the child closed the terminal
                return
            if not chunk:
                return
            drawn.extend(chunk)
            if len(drawn) > 1 << 20:
                del drawn[: len(drawn) - (1 << 19)]

    reader = threading.Thread(target=drain, daemon=True)
    reader.start()
    terminal_env = {k: v for k, v in env.items() if k not in ("COLUMNS", "LINES", "NO_COLOR")}
    terminal_env["TERM"] = "xterm-256color"
    with contextlib.ExitStack() as stack:
        out = stack.enter_context(stdout.open("wb")) if stdout else None
        started = time.monotonic()
        proc = subprocess.Popen(
            argv,
            env=terminal_env,
            cwd=cwd,
            stdin=slave,
            stdout=out if out else slave,
            stderr=slave,
            start_new_session=True,
        )
        os.close(slave)
        _, status, usage = os.wait4(proc.pid, 0)
        wall = time.monotonic() - started
        proc.returncode = os.waitstatus_to_exitcode(status)
    reader.join(timeout=10)
    os.close(master)
    tail = bytes(drawn[-4000:]).decode(errors="replace")
    return Run(wall, usage.ru_utime + usage.ru_stime, proc.returncode, tail, len(drawn))


def files_state(name: str, root: Path, n: int) -> str:
    resources = [
        f'{{kind: file, name: f{i}, role: {BENCH_ROLE}, spec: {{path: "{root / f"f{i}"}", '
        f'content: "hello {i}\\n", mode: "0644"}}}}'
        for i in range(n)
    ]
    return desired_state(name, resources)


def apply(stack: Stack, desired: Path, mode: str, n: int, phase: str) -> Run:
    """One `converge apply --wait` in `mode` ("display" or "json"), checked: it succeeded, and its recap
    counts every file as changed (create) or ok (no change)."""
    argv = [sys.executable, "-m", "engine", "apply", str(desired), "--wait", "--timeout", "600"]
    document = desired.with_suffix(".json")
    if mode == "json":
        run = run_on_terminal([*argv, "--json"], stack.env, REPO_ROOT, stdout=document)
    else:
        run = run_on_terminal(argv, stack.env, REPO_ROOT)
    if run.code != 0:
        raise BenchError(f"apply ({mode}, {phase}, {n}) exited {run.code}: {run.tail[-1500:]}")
    want = "changed" if phase == "create" else "ok"
    if mode == "json":
        total = json.loads(document.read_text())["recap"]["total"]
        if total[want] != n:
            raise BenchError(f"apply --json ({phase}, {n}): recap {total}, expected {want}={n}")
    elif f"{want}={n}" not in run.tail.replace(",", ""):
        raise BenchError(f"apply ({phase}, {n}): no {want}={n} in its recap: {run.tail[-1500:]}")
    return run


def converge_rounds(
    ctx: BenchContext, stack: Stack, wd: Path, n: int, rounds: int
) -> dict[tuple[str, str], list[Run]]:
    """`rounds` rounds of create then no change, json and display alternating (which goes first too)."""
    runs: dict[tuple[str, str], list[Run]] = {}
    for r in range(rounds):
        modes = ("json", "display") if r % 2 == 0 else ("display", "json")
        for mode in modes:
            root = wd / f"estate-{n}-{mode}-{r}"
            root.mkdir()
            desired = wd / f"estate-{n}-{mode}-{r}.yaml"
            desired.write_text(files_state(f"display-{n}-{mode}-{r}", root, n))
            for phase in ("create", "no-change"):
                run = apply(stack, desired, mode, n, phase)
                runs.setdefault((mode, phase), []).append(run)
                ctx.say(
                    f"display: {n:,} files, {mode}, {phase}: {run.wall_s:.2f} s wall, {run.cpu_s:.2f} s CPU"
                )
            shutil.rmtree(root, ignore_errors=True)
    return runs


def report_converge(result: BenchResult, n: int, runs: dict[tuple[str, str], list[Run]]) -> None:
    """Medians per mode, and the ratios display/json as the median of each round's own ratio (the two
    runs of a round are next to each other in time, so a drift of the machine's load cancels out)."""
    for phase in ("create", "no-change"):
        label = f"{n:,} files, {phase}"
        json_runs, display_runs = runs[("json", phase)], runs[("display", phase)]
        for mode, mine in (("json", json_runs), ("display", display_runs)):
            walls = ", ".join(f"{r.wall_s:.2f}" for r in mine)
            result.row(f"{label}: {mode} wall", median([r.wall_s for r in mine]), "s", f"each: {walls}")
            cpus = ", ".join(f"{r.cpu_s:.2f}" for r in mine)
            result.row(f"{label}: {mode} CLI CPU", median([r.cpu_s for r in mine]), "s", f"each: {cpus}")
        drawn = median([float(r.drawn_bytes) for r in display_runs]) / 1000
        wall_ratio = median([d.wall_s / j.wall_s for d, j in zip(display_runs, json_runs, strict=True)])
        cpu_ratio = median([d.cpu_s / j.cpu_s for d, j in zip(display_runs, json_runs, strict=True)])
        rounds = f"median over {len(json_runs)} round(s) of each round's ratio"
        result.row(f"{label}: display / json wall", wall_ratio, "x", rounds)
        result.row(
            f"{label}: display / json CLI CPU", cpu_ratio, "x", f"{rounds}; display drew {drawn:.0f} kB"
        )
        result.raw[f"{n}-{phase}"] = {
            mode: [{"wall_s": r.wall_s, "cli_cpu_s": r.cpu_s, "drawn_bytes": r.drawn_bytes} for r in mine]
            for mode, mine in (("json", json_runs), ("display", display_runs))
        }
        if n == 1000:
            result.targets.append(Target.at_most(f"display / json wall, {label}", wall_ratio, 1.10, "x"))


# -- Salt --------------------------------------------------------------------------------------------------


def salt_call(ctx: BenchContext) -> tuple[Path | None, str]:
    """The `salt-call` to run, installing Salt into SALT_VENV if there is none; or None and why."""
    found = shutil.which("salt-call")
    if found:
        return Path(found), "on the PATH"
    venv_call = SALT_VENV / "bin" / "salt-call"
    if not venv_call.exists():
        ctx.say(f"display: installing Salt into {SALT_VENV} (pip install salt)")
        try:
            subprocess.run([sys.executable, "-m", "venv", str(SALT_VENV)], check=True, capture_output=True)
            subprocess.run(
                [str(SALT_VENV / "bin" / "pip"), "install", "-q", "salt"],
                check=True,
                capture_output=True,
                text=True,
                timeout=900,
            )
        except (OSError, subprocess.SubprocessError) as exc:
            detail = getattr(exc, "stderr", "") or str(exc)
            return None, f"Salt could not be installed into {SALT_VENV}: {str(detail).strip()[-300:]}"
    if not venv_call.exists():
        return None, f"Salt installed into {SALT_VENV} has no salt-call"
    return venv_call, f"from {SALT_VENV}"


def salt_version(call: Path) -> str:
    done = subprocess.run([str(call), "--version"], capture_output=True, text=True, timeout=60, check=False)
    return done.stdout.strip() or "unknown"


def salt_runs(call: Path, wd: Path, n: int) -> dict[str, Run]:
    """`salt-call --local state.apply` of n `file.managed`, create then no change, on a terminal."""
    base = wd / "salt"
    states, root, target = base / "states", base / "root", base / "files"
    for d in (states, root, target):
        d.mkdir(parents=True)
    (base / "minion").write_text(
        f"root_dir: {root}\nfile_client: local\nfile_roots:\n  base:\n    - {states}\n"
        "log_level: warning\nstate_output: terse\n"
    )
    (states / "bench.sls").write_text(
        "".join(
            f"{target / f'f{i}'}:\n  file.managed:\n    - contents: \"hello {i}\"\n    - mode: '0644'\n"
            for i in range(n)
        )
    )
    argv = [str(call), "--local", "-c", str(base), "--retcode-passthrough", "state.apply", "bench"]
    found: dict[str, Run] = {}
    for phase in ("create", "no-change"):
        run = run_on_terminal(argv, dict(os.environ), base)
        if run.code != 0:
            raise BenchError(f"salt-call ({phase}) exited {run.code}: {run.tail[-1500:]}")
        found[phase] = run
    written = sum(1 for _ in target.iterdir())
    if written != n:
        raise BenchError(f"salt-call wrote {written} files, expected {n}")
    return found


def report_salt(
    result: BenchResult, salt: dict[str, Run], converge: dict[tuple[str, str], list[Run]], n: int
) -> None:
    for phase in ("create", "no-change"):
        label = f"{n:,} files, {phase}"
        result.row(f"Salt {label}: wall", salt[phase].wall_s, "s", "salt-call --local state.apply")
        result.row(f"Salt {label}: CPU", salt[phase].cpu_s, "s", "salt-call and what it waited for")
        for mode in ("json", "display"):
            wall = median([r.wall_s for r in converge[(mode, phase)]])
            result.row(f"Converge {mode} / Salt wall, {label}", wall / salt[phase].wall_s, "x")
        result.raw[f"salt-{n}-{phase}"] = {"wall_s": salt[phase].wall_s, "cpu_s": salt[phase].cpu_s}


# -- the benchmark -----------------------------------------------------------------------------------------


def run(ctx: BenchContext, result: BenchResult) -> None:
    plan = [(100, 1), (500, 1)] if ctx.quick else [(1000, 5), (10_000, 1)]
    salt_n = plan[0][0]
    measured: dict[int, dict[tuple[str, str], list[Run]]] = {}
    with workdir(ctx.root, NAME, ctx.keep) as wd, Stack(wd) as stack:
        ctx.say("display: starting Redis, engine and one agent (--throttle 20)")
        stack.start_engine()
        stack.start_agent("bench-1", throttle=20)
        result.raw["logs"] = str(stack.logs)
        warm = wd / "warm"
        warm.mkdir()
        (wd / "warm.yaml").write_text(files_state("display-warm-up", warm, 100))
        apply(stack, wd / "warm.yaml", "display", 100, "create")
        for n, rounds in plan:
            measured[n] = converge_rounds(ctx, stack, wd, n, rounds)
            report_converge(result, n, measured[n])
            stack.check_alive()
    result.notes.append(
        f"terminal {ROWS} x {COLUMNS}; one agent, --throttle 20; each round a fresh directory (create) "
        "then the same file again (no change); display and json alternate; --json stdout to a file"
    )
    with workdir(ctx.root, f"{NAME}-salt", ctx.keep) as wd:
        call, where = salt_call(ctx)
        if call is None:
            result.notes.append(f"Salt not measured: {where}")
            ctx.say(f"display: {where}")
            return
        version = salt_version(call)
        ctx.say(f"display: {version} ({where}), {salt_n:,} files")
        salt = salt_runs(call, wd, salt_n)
        report_salt(result, salt, measured[salt_n], salt_n)
        result.notes.append(
            f"{version} ({where}): salt-call --local state.apply, {salt_n:,} file.managed (contents, mode), "
            "state_output terse, on the same terminal; one run each"
        )
