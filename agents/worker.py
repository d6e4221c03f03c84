"""The agent's Celery worker: prefork, at most `throttle` steps at once, its role queues and its own queue."""

from __future__ import annotations

import base64
import logging
import os
import signal
import sqlite3
import uuid
import warnings
from collections.abc import Mapping
from typing import Any

import redis
from celery import Celery, signals
from celery.exceptions import SecurityWarning
from celery.worker import state as worker_state
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from agents import enroll, extensions
from agents import policy as agent_policy
from agents.autoscale import KEEPALIVE_CONF
from agents.config import AgentSettings, ConfigError, Source
from agents.connection import fail_fast
from agents.courier import Courier
from agents.elector import Elector
from agents.engine_api import EngineApi
from agents.healthfile import HealthWriter
from agents.heartbeat import Heartbeat, Link, agent_info
from agents.identity import claim, new_token
from agents.live import LiveSettings, step_settings
from agents.outbox import Outbox
from agents.reporter import Reporter
from agents.runner import StepRunner
from agents.shared import SharedStepSettings
from agents.verdicts import EXPECTED, tell
from agents.verify import Gate, load_engine_key
from common import names, sentinel, signing
from common.celery_app import make_app, queue
from common.election import Election
from common.errors import Refused, Unreachable
from common.models import StepMessage
from common.redisclient import described, redis_client, unreachable
from common.version import converge_version
from workflows.registry import Registry, default_registry

log = logging.getLogger("converge.agent")

EVENT_KEY_FILE = "event.key"  # in the agent's state folder: a trusted agent's status-event key


def queues_for(settings: AgentSettings) -> list[str]:
    """Every queue the agent may consume: its roles' (while it leads them) and its own."""
    return [names.role_queue(role) for role in settings.roles] + [names.agent_queue(settings.id)]


def open_outbox(settings: AgentSettings) -> Outbox:
    """This run's outbox and journal; a new run id, so that what an earlier run left is seen as lost."""
    path = settings.agent_dir / "outbox.db"
    try:
        return Outbox(path, run_id=uuid.uuid4().hex)
    except (OSError, sqlite3.Error) as exc:
        raise ConfigError(
            f"cannot open the agent's outbox {path}: {exc}; set state_dir "
            "(`converge-agent config set state_dir=DIR`) to a folder this user can write"
        ) from exc


def build_app(
    settings: AgentSettings,
    reporter: Reporter,
    link: Link,
    engine_key: Ed25519PublicKey,
    registry: Registry | None = None,
    shared: SharedStepSettings | None = None,
) -> Celery:
    """The agent's Celery app with the step task bound to this agent's runner; `shared`: the settings its
    steps read, which the main process may change while it runs (agents.live)."""
    app = make_app(
        settings.broker_url, visibility_timeout_s=settings.visibility_timeout_s, agent_id=settings.id
    )
    runner = StepRunner(
        settings.id,
        settings.roles,
        registry or default_registry(),
        reporter,
        settings.progress_interval_s,
        settings.visibility_timeout_s,
        settings.step_timeout_s,
        lambda: link.cut_off,
        allowed_paths=settings.allowed_paths,
        shared=shared,
    )

    gate = Gate(engine_key, settings.id)

    # The task ends as the step did (agents.verdicts): Flower shows FAILURE, RETRY or REVOKED, not SUCCESS.
    @app.task(  # type: ignore[untyped-decorator]
        name=names.STEP_TASK, acks_late=True, ignore_result=True, throws=EXPECTED
    )
    def step(**fields: Any) -> None:
        if gate.admits(fields, reporter.client):
            tell(runner.run(StepMessage.model_validate(fields)))

    app.conf.task_queues = [queue(q) for q in queues_for(settings)]
    app.conf.worker_consumer = "agents.consumer:Consumer"  # junk Celery cannot use: counted and dropped
    app.conf.worker_autoscaler = "agents.autoscale:Autoscaler"  # used with --autoscale (pool_args)
    app.conf[KEEPALIVE_CONF] = settings.pool_keepalive_s
    if settings.broker_url.startswith(("redis://", "rediss://")):  # rediss: SSL connections, same fixes
        app.conf.broker_transport = "agents.transport:Transport"
    elif sentinel.is_sentinel(settings.broker_url):
        app.conf.broker_transport = "agents.transport:SentinelTransport"
    return app


def pool_args(settings: AgentSettings) -> list[str]:
    """The pool's size: from `pool_min` up to `throttle` processes as the work asks, or `throttle` always.

    Either way the throttle is the most steps the agent reserves (the prefetch count, with late ack and a
    multiplier of 1) and so the most it runs at once.
    """
    if settings.autoscale:
        return [f"--autoscale={settings.throttle},{settings.pool_min}"]
    return [f"--concurrency={settings.throttle}"]


def raise_priority(boost: int) -> int:
    """Raise this (the agent's main) process's priority by up to `boost` nice levels; how many it got.

    The main process is the agent's one consumer: it takes each step from Redis, hands it to the pool and
    acknowledges it, and its threads heartbeat and send the outbox. Twenty busy pool processes at its
    priority left it a twenty-first of the CPU, and the pool waited on it: on 2 cores the agent ran no-op
    steps with a fifth of the CPU idle. Raising a priority needs root or CAP_SYS_NICE; without, the agent
    runs as before and says so.
    """
    if not boost:
        return 0
    now = os.getpriority(os.PRIO_PROCESS, 0)
    wanted = max(-20, now - boost)
    try:
        os.setpriority(os.PRIO_PROCESS, 0, wanted)
    except OSError as exc:
        log.info(
            "runs at its starting priority (nice %d): raising it by %d needs root or CAP_SYS_NICE (%s)",
            now,
            boost,
            exc.strerror or exc,
        )
        return 0
    return now - wanted


def steps_priority(boosted: int, step_nice: int) -> None:
    """In a new pool process: back to the agent's starting priority (it inherits the boosted one), and
    `step_nice` levels below that; the commands its steps start inherit it."""
    if boosted + step_nice:
        try:
            os.nice(boosted + step_nice)
        except OSError as exc:  # lowering a priority is always allowed; a host that refuses it is odd
            log.warning("cannot set the priority of a pool process: %s", exc)


def role_running(role: str) -> bool:
    """Whether a step of `role` runs on this agent now (in the main process: Celery's active requests)."""
    try:
        return any(
            (request.kwargs or {}).get("role") == role for request in tuple(worker_state.active_requests)
        )
    except RuntimeError:  # the set changed while it was read: ask again at the next tick
        return True


def trusted_event_key(settings: AgentSettings) -> bytes:
    """The status-event key of an agent that was not enrolled: its own, kept in its state folder."""
    path = settings.agent_dir / EVENT_KEY_FILE
    try:
        return signing.load_or_create_secret(path)
    except (OSError, ValueError) as exc:
        raise ConfigError(
            f"cannot use the agent's event key {path}: {exc}; set state_dir "
            "(`converge-agent config set state_dir=DIR`) to a folder this user can write"
        ) from exc


def stop_when_turned_away(settings: AgentSettings, heartbeat: Heartbeat) -> list[str]:
    """Have the agent stop when Redis refuses its user because the operator denied or revoked it since: the
    list the reason goes in, for `run` to raise once Celery has shut down."""
    turned_away: list[str] = []

    def on_refused() -> bool:
        why = enroll.refusal(settings)
        if why is None:
            return False
        log.error("%s; ending its running steps, which the engine has queued again", why)
        turned_away.append(why)
        if heartbeat.health is not None:
            heartbeat.health.admission = "turned away"
        os.kill(os.getpid(), signal.SIGTERM)  # Celery's warm shutdown, with no step left to wait for
        return True

    heartbeat.on_refused = on_refused
    return turned_away


def say_start(settings: AgentSettings) -> None:
    """One line per fact an operator checks at start; never a password."""
    log.info("converge-agent %s", converge_version())
    log.info("agent %s", settings.id)
    log.info("roles %s", ", ".join(settings.roles))
    log.info("throttle %d (steps at once)", settings.throttle)
    if settings.autoscale:
        log.info(
            "pool %d to %d processes, back to %d after %gs without a step",
            settings.pool_min,
            settings.throttle,
            settings.pool_min,
            settings.pool_keepalive_s,
        )
    else:
        log.info("pool %d processes (autoscale off)", settings.throttle)
    roles = ", ".join(names.role_queue(role) for role in settings.roles)
    log.info("queues %s, and %s while it leads the role", names.agent_queue(settings.id), roles)
    log.info(
        "engine %s", settings.engine_url or "not set (engine_url): steps are reported through Redis only"
    )
    log.info("broker %s", described(settings.broker_url))
    if os.geteuid() == 0:
        log.info("runs as root: the steps of its roles change this host's files and run its commands")


def quiet_celery(settings: AgentSettings, banner: bool) -> list[str]:
    """Celery's global options: no banner (the start lines say what matters) and no root warning (an
    agent managing a host's files runs as root by design), unless asked or at DEBUG."""
    if banner or settings.loglevel.upper() == "DEBUG":
        return []
    warnings.filterwarnings("ignore", category=SecurityWarning)
    return ["--quiet"]


def run(
    settings: AgentSettings,
    event_key: bytes | None = None,
    *,
    banner: bool = False,
    sources: Mapping[str, Source] | None = None,
    configured: AgentSettings | None = None,
    options: dict[str, Any] | None = None,
) -> None:
    """Run the agent until it is stopped (SIGTERM or Ctrl-C). Raises Unreachable if Redis is not there.

    With `configured` (what `agents.config.load(options)` gave, before an admission), the agent follows its
    configuration file while it runs (agents.live), resolving it again with the same `options`.

    `event_key` signs its status events: the one its admission gave, or None for a trusted agent (one
    given the broker's credentials, not enrolled), which makes its own and keeps it in Redis for the
    engine while it holds its id. `sources` says where each setting came from (agents.config.load), for
    the log of a policy change.
    """
    engine_key = load_engine_key(settings.engine_key)  # BadInput before anything is claimed
    registered = None
    if event_key is None:
        event_key = trusted_event_key(settings)
        registered = base64.b64encode(event_key).decode()
    client = redis_client(settings.broker_url, socket_connect_timeout=5)
    registry, loaded = extensions.agent_registry(settings)  # announced: a refused file shows in agents list
    info = agent_info(settings, converge_version())
    info = info.model_copy(update={"extension_problems": extensions.announced_problems(registry, loaded)})
    token = new_token(info.host, info.pid)
    try:  # the id, before the outbox that lives in its folder: Refused while another live agent holds it
        claim(client, info, token, settings.heartbeat_ttl_s, registered)
    except redis.RedisError as exc:
        raise Unreachable(unreachable(settings.broker_url, exc)) from exc
    finally:
        client.close()
    link = Link(settings.max_connection_failures)
    holder = names.lease_holder(settings.id, token)
    reporter = Reporter(
        settings.broker_url,
        settings.id,
        open_outbox(settings),
        event_key,
        holder,
        EngineApi.from_settings(settings),
    )
    shared = SharedStepSettings(step_settings(settings))
    app = build_app(settings, reporter, link, engine_key, registry, shared)
    elector = Elector(
        Election(
            fail_fast(settings.broker_url, settings.heartbeat_interval_s),
            settings.roles,
            holder,
            ttl_s=settings.heartbeat_ttl_s,
            # It ends its steps after this window without Redis (the connection-failure limit): it stops
            # acting as leader then too, before its lease can expire and a backup take over.
            renew_deadline_s=settings.heartbeat_interval_s * (settings.max_connection_failures + 1),
        ),
        settings.heartbeat_interval_s,
        running=role_running,
    )
    courier = Courier(reporter)
    heartbeat = Heartbeat(
        settings.broker_url,
        info,
        settings.heartbeat_interval_s,
        settings.heartbeat_ttl_s,
        link,
        token,
        registered,
    )

    heartbeat.health = HealthWriter(
        settings,
        admission="trusted" if registered is not None else "admitted",
        queues=lambda: [names.agent_queue(settings.id), *elector.consuming],
        leader_of=lambda: elector.leading,
    )

    def on_cut_off(failures: int) -> None:
        log.error(
            "%d heartbeats failed in a row: ending every running step, since nobody can follow them any "
            "more; the engine runs them again. Trying to reconnect",
            failures,
        )

    def on_restored() -> None:
        log.warning("Redis is reachable again: sending the reports of the steps that were ended")
        courier.wake()

    link.on_cut_off, link.on_restored = on_cut_off, on_restored
    # an enrolled agent: Redis refusing its user may mean the operator revoked it
    turned_away = stop_when_turned_away(settings, heartbeat) if registered is None else []

    live = LiveSettings(
        configured or settings,
        options or {},
        shared=shared,
        info=info,
        elector=elector,
        watch=configured is not None,
    )
    # The engine's policy for the agent's roles, fetched every heartbeat interval in a thread of its own:
    # kept in the state folder (for `config show` and the next start), logged, and applied at once.
    live.policy = agent_policy.kept(settings)
    follower = agent_policy.follow(settings, sources or {}, then=lambda kept: live.refresh(kept.values))

    def on_ready(sender: Any = None, **_: Any) -> None:
        courier.start()
        heartbeat.start()
        if follower is not None:
            follower.start()
        elector.start(sender)  # the consumer: sent again after a reconnect, with its new state
        live.start(sender)

    def on_shutdown(**_: Any) -> None:
        if follower is not None:
            follower.stop()
        live.stop()
        elector.stop()
        heartbeat.stop()
        courier.stop()

    if settings.loglevel.upper() != "DEBUG":
        # Celery logs two lines per task ("received", "succeeded in"); every step's story is already in
        # the store, `converge workflows show` and Flower. Failures and Converge's own lines still log.
        # httpx logs a line per request: the policy is fetched every heartbeat interval.
        for name in ("celery.worker.strategy", "celery.app.trace", "httpx"):
            logging.getLogger(name).setLevel(logging.WARNING)
    signals.celeryd_after_setup.connect(lambda **_: say_start(settings), weak=False)  # Celery's logging is up
    signals.celeryd_after_setup.connect(lambda **_: extensions.log_report(loaded), weak=False)
    signals.worker_ready.connect(on_ready, weak=False)
    boosted = raise_priority(settings.priority_boost)  # before Celery forks the pool from this process
    signals.worker_process_init.connect(lambda **_: steps_priority(boosted, settings.step_nice), weak=False)
    signals.worker_shutdown.connect(on_shutdown, weak=False)
    app.worker_main(
        [
            *quiet_celery(settings, banner),
            "worker",
            f"--loglevel={settings.loglevel}",
            "--pool=prefork",
            *pool_args(settings),
            # only its own queue at first: the elector adds a role's queue while the agent leads the role
            f"--queues={names.agent_queue(settings.id)}",
            f"--hostname={settings.id}@%h",
            *(["--task-events"] if settings.task_events else []),
            "--without-gossip",
            "--without-mingle",
        ]
    )
    if turned_away:
        raise Refused(turned_away[0])
