"""7. Heartbeat cost: engine and Redis CPU with 1,000 simulated agents beating, against an idle baseline.

One engine, no real agent. Its CPU (user + system of its process tree, from /proc) and Redis's (`INFO cpu`)
are measured over a fixed window with nothing else running (the baseline), then over a window of the same
length while 1,000 simulated agents beat. Each does what a real agent's heartbeat and elector threads do
once per heartbeat interval (1 s as shipped), with the project's own code: the `agents.heartbeat.Heartbeat`
beat (the `agents.identity.RENEW` script: its alive key and its announcement) and a `common.election`
campaign for its role, one of 10 (so each role has one leader and 99 backups renewing nothing). Each agent
first claims its id (`agents.identity.claim`) and has a Redis connection of its own. Once all have claimed,
they start on one schedule, their beats spread evenly over the interval.

The simulators are 4 processes of 250 agents each (`python -m tests.bench.heartbeats`), outside what is
measured; each counts the beats it did in the window against those due, so the report says whether they
kept pace. After each window (with the agents still beating after the second), `converge agents list
--json` (a fresh Python process each time, as an operator runs it) and GET /v1/agents are timed: the
operator's view of no agents, then of 1,000. They are timed outside the windows, whose CPU is the beats' alone.
Not simulated: what a real agent's Celery consumer costs Redis besides (its BRPOP loop, and its worker
heartbeat events when task events are on).
"""

from __future__ import annotations

import json
import math
import os
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime

import redis

from agents.config import AgentSettings
from agents.heartbeat import Heartbeat, Link
from agents.identity import claim, new_token
from common import names
from common.defaults import HEARTBEAT_TTL_S
from common.election import Election
from common.models import AgentInfo
from engine.fleet import alive_ids, leaders
from tests.bench.harness import REPO_ROOT, BenchContext, BenchError, CpuMeter, Stack, wait_until, workdir
from tests.bench.report import BenchResult, Target, median, percentile

NAME = "heartbeats"
TITLE = "7. Heartbeat cost: engine and Redis CPU, idle and with 1,000 simulated agents"
AGENTS = 1000
SIMULATORS = 4
ROLES = [f"role-{i}" for i in range(10)]
LISTS = 5
REDIS_TARGET_PCT = 25.0  # of one core, at 1,000 agents
LIST_TARGET_S = 1.0
_SHIPPED = AgentSettings.model_fields
INTERVAL_S: float = _SHIPPED["heartbeat_interval_s"].default
# The agent's elector stops believing it leads after this long without a renewal (agents/worker.py).
RENEW_DEADLINE_S: float = INTERVAL_S * (_SHIPPED["max_connection_failures"].default + 1)


@dataclass(frozen=True)
class Window:
    """CPU seconds spent in one measurement window, and the Redis commands it served."""

    seconds: float
    engine_s: float
    redis_s: float
    commands: int
    simulators_s: float = 0.0

    def pct(self, cpu_s: float) -> float:
        return 100 * cpu_s / self.seconds


@dataclass(frozen=True)
class Listing:
    """How long the operator waited for the agents list, by CLI and by API, and the states it showed."""

    cli_s: list[float]
    api_s: list[float]
    states: dict[str, int]


def run(ctx: BenchContext, result: BenchResult) -> None:
    window_s = 5.0 if ctx.quick else 30.0
    lists = 3 if ctx.quick else LISTS
    with workdir(ctx.root, NAME, ctx.keep) as wd, Stack(wd) as stack:
        ctx.say("heartbeats: starting Redis and the engine")
        stack.start_engine()
        result.raw["logs"] = str(stack.logs)
        client = stack.redis_client()
        engine = {"engine": stack.children["engine"].proc.pid}
        ctx.say(f"heartbeats: baseline window of {window_s:g} s, then {lists} agent lists, no agents")
        idle = measure(CpuMeter(engine), client, window_s)
        empty = list_agents(stack, lists, 0)
        ctx.say(f"heartbeats: starting {AGENTS:,} simulated agents in {SIMULATORS} processes")
        with simulators(stack) as procs:
            t0 = start_beating(procs)
            time.sleep(max(0.0, t0 + 2 * INTERVAL_S - time.time()))  # two whole rounds before measuring
            wait_until(lambda: fleet_up(client, procs), 30, f"{AGENTS:,} simulated agents alive, roles led")
            ctx.say(f"heartbeats: window of {window_s:g} s with {AGENTS:,} agents beating")
            start = time.time()
            sims = {f"simulator {i}": p.pid for i, p in enumerate(procs)}
            loaded = measure(CpuMeter(engine | sims), client, window_s)
            end = time.time()
            ctx.say(f"heartbeats: timing {lists} agent lists, the agents still beating")
            full = list_agents(stack, lists, AGENTS)
            pace = [finish(p, start, end) for p in procs]
        client.close()
    result.raw.update(idle=idle.__dict__, loaded=loaded.__dict__, pace=pace, empty=empty.__dict__)
    result.raw["full"] = full.__dict__
    report_cpu(result, idle, loaded, pace)
    report_listing(result, empty, full, pace)


def report_cpu(result: BenchResult, idle: Window, loaded: Window, pace: list[dict[str, float]]) -> None:
    done, due = sum(p["done"] for p in pace), sum(p["due"] for p in pace)
    idle_redis_s = idle.redis_s * loaded.seconds / idle.seconds  # the baseline over the loaded window
    per_beat_us = 1e6 * (loaded.redis_s - idle_redis_s) / done if done else math.nan
    window = f"{loaded.seconds:.0f} s windows"
    result.row("engine CPU, idle", idle.pct(idle.engine_s), "% of a core", window)
    result.row(f"engine CPU, {AGENTS:,} agents beating", loaded.pct(loaded.engine_s), "% of a core")
    result.row(
        "Redis CPU, idle", idle.pct(idle.redis_s), "% of a core", f"{idle.commands / idle.seconds:.0f} cmd/s"
    )
    result.row(
        f"Redis CPU, {AGENTS:,} agents beating",
        loaded.pct(loaded.redis_s),
        "% of a core",
        f"{loaded.commands / loaded.seconds:,.0f} cmd/s, counting those the scripts run",
    )
    result.row(
        "Redis CPU per beat",
        per_beat_us,
        "us",
        "(beating - idle) / beats; a beat: RENEW + a campaign, 2 EVALSHA",
    )
    late = max(p["late_p99_s"] for p in pace), max(p["late_max_s"] for p in pace)
    result.row(
        "beats done / due in the window",
        f"{done:,}/{due:,}",
        "",
        f"lateness p99 {late[0] * 1000:.0f} ms, worst {late[1] * 1000:.0f} ms; errors "
        f"{sum(p['errors'] for p in pace):g}; simulators' CPU {loaded.pct(loaded.simulators_s):.0f}% of a core",
    )
    result.targets.append(
        Target.at_most(f"Redis CPU at {AGENTS:,} agents", loaded.pct(loaded.redis_s), REDIS_TARGET_PCT, "%")
    )
    result.notes.append(
        f"Redis target: at most {REDIS_TARGET_PCT:g}% of its one core, so that heartbeats leave most of the "
        "single-threaded Redis to the steps' own traffic (deliveries, status streams) it also serves"
    )
    if done < 0.99 * due:
        result.notes.append(
            f"the simulators fell behind ({100 * done / due:.1f}% of the beats due were done, lateness p99 "
            f"{late[0]:.2f} s): the load measured is lower than 1,000 agents make; was the machine busy?"
        )


def report_listing(result: BenchResult, empty: Listing, full: Listing, pace: list[dict[str, float]]) -> None:
    for what, key in (("`converge agents list --json`", "cli_s"), ("GET /v1/agents", "api_s")):
        none, many = getattr(empty, key), getattr(full, key)
        result.row(f"{what}, no agents: median", median(none), "s", f"of {len(none)}")
        result.row(
            f"{what}, {AGENTS:,} agents: median",
            median(many),
            "s",
            f"worst {max(many):.3f} s, of {len(many)}",
        )
    result.row(
        "agents listed",
        ", ".join(f"{n:,} {state}" for state, n in sorted(full.states.items())),
        "",
        f"roles led, as the simulated agents' elections say: {sum(p['led'] for p in pace):g}/{len(ROLES)}",
    )
    result.targets.append(
        Target.at_most(f"GET /v1/agents at {AGENTS:,} agents, median", median(full.api_s), LIST_TARGET_S, "s")
    )
    result.notes.append(
        f"agents list target: the API answers within {LIST_TARGET_S:g} s, the usual limit for an interactive "
        "answer that keeps the operator's train of thought; the CLI adds its start-up, agents or none"
    )


def measure(meter: CpuMeter, client: redis.Redis, seconds: float) -> Window:
    """CPU of the meter's processes and of Redis over `seconds` (a fixed window, the load's own pace)."""
    before = client.info()
    meter.start()
    started = time.monotonic()
    time.sleep(seconds)
    used = meter.stop()
    elapsed = time.monotonic() - started
    after = client.info()
    return Window(
        seconds=elapsed,
        engine_s=used["engine"] + used.get("engine pool", 0.0),
        redis_s=sum(after[k] - before[k] for k in ("used_cpu_sys", "used_cpu_user")),
        commands=after["total_commands_processed"] - before["total_commands_processed"],
        simulators_s=sum(v for k, v in used.items() if k.startswith("simulator")),
    )


@contextmanager
def simulators(stack: Stack) -> Iterator[list[subprocess.Popen[str]]]:
    """The simulator processes; each stops and reports when its stdin closes, and is killed on the way out."""
    procs: list[subprocess.Popen[str]] = []
    try:
        for i in range(SIMULATORS):
            argv = [sys.executable, "-m", "tests.bench.heartbeats", stack.broker_url, str(i), str(SIMULATORS)]
            with (stack.logs / f"simulator-{i}.log").open("ab") as log:
                procs.append(
                    subprocess.Popen(
                        argv,
                        env=stack.env,
                        cwd=REPO_ROOT,
                        stdin=subprocess.PIPE,
                        stdout=subprocess.PIPE,
                        stderr=log,
                        text=True,
                    )
                )
        yield procs
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.kill()
                proc.wait()


def start_beating(procs: list[subprocess.Popen[str]]) -> float:
    """Once every simulator has claimed its agents, start them all on one schedule, from a moment just
    ahead: none falls behind while the others are still claiming. Returns that moment (wall clock)."""
    for i, proc in enumerate(procs):
        assert proc.stdin is not None and proc.stdout is not None
        if proc.stdout.readline().strip() != "ready":
            raise BenchError(f"simulator {i} exited with {proc.wait()}: see simulator-{i}.log")
    t0 = time.time() + INTERVAL_S / 2
    for proc in procs:
        assert proc.stdin is not None
        proc.stdin.write(f"{t0}\n")
        proc.stdin.flush()
    return t0


def fleet_up(client: redis.Redis, procs: list[subprocess.Popen[str]]) -> bool:
    for i, proc in enumerate(procs):
        if proc.poll() is not None:
            raise BenchError(f"simulator {i} exited with {proc.returncode}: see simulator-{i}.log")
    if client.hlen(names.AGENTS_HASH) < AGENTS:
        return False
    ids = {agent_id(g) for g in range(AGENTS)}
    return len(alive_ids(client, ids)) == AGENTS and all(a for a, _ in leaders(client, ROLES).values())


def list_agents(stack: Stack, times: int, expected: int) -> Listing:
    """Time `converge agents list --json` (a fresh process, as an operator runs it) and GET /v1/agents."""
    cli_s: list[float] = []
    api_s: list[float] = []
    states: dict[str, int] = {}
    for _ in range(times):
        started = time.perf_counter()
        done = stack.cli("agents", "list", "--json")
        cli_s.append(time.perf_counter() - started)
        if done.returncode != 0:
            raise BenchError(f"agents list failed: {done.stderr[-1000:]}")
        started = time.perf_counter()
        response = stack.api.get("/v1/agents")
        api_s.append(time.perf_counter() - started)
        states = {}
        for agent in response.json():
            states[agent["state"]] = states.get(agent["state"], 0) + 1
    if sum(states.values()) != expected:
        raise BenchError(f"the agents list shows {sum(states.values())} agents, not {expected}")
    return Listing(cli_s, api_s, states)


def finish(proc: subprocess.Popen[str], start: float, end: float) -> dict[str, float]:
    """Stop one simulator and read its account of the window [start, end) (wall clock)."""
    out, _ = proc.communicate(f"{start} {end}\n", timeout=60)
    if proc.returncode != 0:
        raise BenchError(f"a simulator exited with {proc.returncode}: see its log")
    counts: dict[str, float] = json.loads(out.strip().splitlines()[-1])
    return counts


# -- the simulator process ---------------------------------------------------------------------------------


def agent_id(g: int) -> str:
    return f"sim-{g:04d}"


@dataclass
class SimulatedAgent:
    """One agent's heartbeat and election, as the agent's own threads hold them; `offset_s` into each
    interval is when it beats."""

    heartbeat: Heartbeat
    election: Election
    offset_s: float

    @classmethod
    def claim(cls, url: str, g: int) -> SimulatedAgent:
        now = datetime.now(UTC)
        role = ROLES[g % len(ROLES)]
        host, pid = socket.gethostname(), os.getpid()
        info = AgentInfo(
            id=agent_id(g),
            roles=[role],
            host=host,
            pid=pid,
            version="bench",
            throttle=_SHIPPED["throttle"].default,
            heartbeat_ttl_s=HEARTBEAT_TTL_S,
            started_at=now,
            last_seen=now,
        )
        token = new_token(host, pid)
        link = Link(_SHIPPED["max_connection_failures"].default)
        heartbeat = Heartbeat(url, info, INTERVAL_S, HEARTBEAT_TTL_S, link, token)
        claim(heartbeat.client, info, token, HEARTBEAT_TTL_S)
        holder = names.lease_holder(info.id, token)
        election = Election(heartbeat.client, [role], holder, HEARTBEAT_TTL_S, RENEW_DEADLINE_S)
        return cls(heartbeat, election, g * INTERVAL_S / AGENTS)

    def beat(self) -> None:
        self.heartbeat.beat()
        self.election.campaign()


def simulate(url: str, first: int, stride: int) -> None:
    """Claim agents first, first + stride, ...; say `ready`; beat them on their schedules from the moment
    stdin's first line gives until stdin closes; then print, as JSON, the beats due and done in the window
    its second line gave (`start end`, wall clock) and how late they were."""
    agents = [SimulatedAgent.claim(url, g) for g in range(first, AGENTS, stride)]
    print("ready", flush=True)
    t0 = float(sys.stdin.readline())
    window: list[float] = []
    stop = threading.Event()

    def read_window() -> None:
        window.extend(float(x) for x in sys.stdin.read().split()[:2])
        stop.set()

    threading.Thread(target=read_window, daemon=True).start()
    beats: list[tuple[float, float]] = []  # (done, late)
    errors = 0
    n = 0
    while True:
        agent = agents[n % len(agents)]
        due = t0 + (n // len(agents)) * INTERVAL_S + agent.offset_s
        if stop.wait(max(0.0, due - time.time())):
            break
        try:
            agent.beat()
        except redis.RedisError:
            errors += 1
        now = time.time()
        beats.append((now, now - due))
        n += 1
    start, end = window
    late = [lateness for done, lateness in beats if start <= done < end]
    due_count = sum(_slots(t0 + a.offset_s, start, end) for a in agents)
    led = sum(len(a.election.leading()) for a in agents)
    print(
        json.dumps(
            {
                "due": due_count,
                "done": len(late),
                "errors": errors,
                "led": led,
                "late_p99_s": percentile(late, 99),
                "late_max_s": max(late, default=0.0),
            }
        )
    )


def _slots(first: float, start: float, end: float) -> int:
    """How many of first, first + interval, ... fall in [start, end)."""
    return max(0, math.ceil((end - first) / INTERVAL_S) - max(0, math.ceil((start - first) / INTERVAL_S)))


if __name__ == "__main__":
    simulate(sys.argv[1], int(sys.argv[2]), int(sys.argv[3]))
