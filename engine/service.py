"""`converge engine run`: the API, the dispatcher and the status ingester in one process."""

from __future__ import annotations

import errno
import ipaddress
import logging
import socket
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import redis
import uvicorn
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from common import logformat, signing
from common.celery_app import make_app
from common.errors import BadInput, Unreachable
from common.redisclient import described, redis_client, unreachable
from common.settings import Settings, redact, split_bind
from common.store import Pool, open_store
from common.store.imports import MachineRecord
from common.version import converge_version
from engine.acl_mirror import Mirror
from engine.api import create_api
from engine.core import Engine
from engine.dispatcher import Dispatcher
from engine.duties import Duties, default_engine_id
from engine.eventkeys import EventKeys
from engine.imports.agent_routes import rows_of
from engine.imports.monitor import Monitor
from engine.imports.start import start_import
from engine.ingest import Ingester
from engine.local_agent import LocalAgent
from engine.redischeck import check_eviction
from engine.scheduler import Scheduler
from engine.tls import TlsFiles
from engine.vault import Vault, engine_reader, key_path
from engine.watchdog import Watchdog
from workflows.registry import default_registry

# Under the engine's home (CONVERGE_HOME): the key that signs step messages, and its public half.
SIGNING_KEY = Path("keys/signing.key")
SIGNING_PUBLIC = Path("keys/signing.pub")

log = logging.getLogger("converge.engine")


def connect_redis(url: str) -> redis.Redis:
    client = redis_client(url, socket_connect_timeout=5, health_check_interval=30)
    try:
        client.ping()
    except redis.RedisError as exc:
        raise Unreachable(unreachable(url, exc)) from exc
    return client


def store_pool(settings: Settings) -> Pool:
    return Pool(
        size=settings.store_pool_size,
        max_overflow=settings.store_max_overflow,
        timeout_s=settings.store_pool_timeout_s,
        recycle_s=settings.store_pool_recycle_s,
    )


def build(settings: Settings) -> Engine:
    store = open_store(settings.store_url, migrate=settings.migrate_at_start, pool=store_pool(settings))
    client = connect_redis(settings.broker_url)
    app = make_app(settings.broker_url, visibility_timeout_s=settings.visibility_timeout_s)
    dispatcher = Dispatcher(
        app, client, attempt_ttl_s=settings.visibility_timeout_s, signer=signing_key(settings.home)
    )
    keys = EventKeys.under(settings.home, store, client)
    return Engine(settings, store, client, dispatcher, default_registry(), keys)


def signing_key(home: Path) -> Ed25519PrivateKey:
    """The engine's key for signing step messages, made on first use under `home`; its public half is
    written beside it (signing.pub) for the agents' `engine_key` setting."""
    key = signing.load_or_create(home / SIGNING_KEY)
    public = home / SIGNING_PUBLIC
    if not public.exists():
        public.write_text(signing.public_pem(key))
    return key


def serving(settings: Settings, host: str) -> dict[str, Any]:
    """uvicorn's TLS options: the certificate of `converge engine init`, or none for plain HTTP on loopback.

    Raises BadInput, before anything starts, for plain HTTP on any other address or HTTPS without
    certificates: a token sent in the clear on a network is as good as published.
    """
    if settings.insecure_http:
        if not is_loopback(host):
            raise BadInput(
                f"plain HTTP is served only on a loopback address, not on {host}: drop "
                "CONVERGE_INSECURE_HTTP (or --insecure-http) to serve HTTPS, or bind to 127.0.0.1"
            )
        return {}
    files = TlsFiles.under(settings.home)
    if not files.exist():
        raise BadInput(
            f"no certificate under {files.folder}: run `converge engine init` first (CONVERGE_HOME is "
            f"{settings.home}), or serve plain HTTP on loopback with --insecure-http"
        )
    return {"ssl_certfile": str(files.server_cert), "ssl_keyfile": str(files.server_key)}


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def listen(host: str, port: int) -> socket.socket:
    """The API's socket, bound before anything else starts: a second engine on the same address stops here,
    with nothing half-started, instead of in uvicorn's `[Errno 98]` once the threads run.

    Raises Unreachable (exit 3) when the address is taken or cannot be bound.
    """
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    # IPPROTO_TCP said, not left 0: asyncio turns Nagle off (TCP_NODELAY) only on connections whose socket
    # says it is TCP, and accepted ones take the listener's protocol number. With 0, a response's body
    # waited for the client's delayed ACK of its headers: 40 ms on every request.
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)  # and accepted sockets inherit it
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as uvicorn: no wait after a restart
    try:
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        where = f"{host}:{port}"
        if exc.errno == errno.EADDRINUSE:
            raise Unreachable(
                f"port {where} is in use: another engine (or another program) listens there; stop the "
                "other engine or choose another --api-bind (CONVERGE_API_BIND)"
            ) from None
        raise Unreachable(
            f"cannot listen on {where} ({exc.strerror or exc}): choose another --api-bind (CONVERGE_API_BIND)"
        ) from None
    sock.set_inheritable(True)
    return sock


def api_url(host: str, port: int, https: bool) -> str:
    shown = f"[{host}]" if ":" in host else host
    return f"{'https' if https else 'http'}://{shown}:{port}"


def say_start(settings: Settings, url: str, engine_id: str) -> None:
    """One line per fact an operator checks at start; never a password."""
    log.info("converge %s, engine %s", converge_version(), engine_id)
    log.info("listening on %s", url)
    log.info("broker %s", described(settings.broker_url))
    log.info("store %s", redact(settings.store_url))


def _republish(engine: Engine, why: str) -> None:
    """Publish every queued step again (engine.duties says when); agents drop what they already claimed."""
    published = engine.republish_queued()
    if published:
        log.info("published %d steps %s", published, why)


def _taken_over(engine: Engine, ingester: Ingester, gone: list[str], absent: list[str]) -> None:
    """What engines that stopped or restarted left: their queued steps, and (if they are not back) the
    status entries they read and did not record."""
    ingester.adopt(absent)
    _republish(engine, f"left queued by engines {', '.join(gone)}")


def own_agent(
    settings: Settings, engine: Engine, engine_id: str, host: str, port: int, *, https: bool
) -> LocalAgent | None:
    """The engine's own agent (engine.local_agent), unless `local_agent` is off; the engine admits it."""
    if not settings.local_agent:
        return None
    reach = {"0.0.0.0": "127.0.0.1", "::": "::1", "": "127.0.0.1"}.get(host, host)
    agent = LocalAgent(settings.home, engine_id, api_url(reach, port, https), https)
    engine.local_agent_key = agent.key
    return agent


def import_monitor(engine: Engine, leading: Callable[[], bool]) -> Monitor:
    """The import monitor (engine.imports.monitor), polling only while this engine holds the duties: each
    machine's import is an ordinary workflow, submitted as an operator's would be."""

    def start(machine: MachineRecord) -> str:
        return start_import(lambda source, name: engine.submit(source, name)[0].id, machine)

    def outcome(workflow_id: str) -> tuple[str, str | None] | None:
        view = engine.store.workflow(workflow_id)
        if view is None:
            return None
        error = next((s.error for s in view.steps or [] if s.error), None)
        return view.state.value, error

    secret = engine_reader(engine.store, Vault.at(key_path(engine.settings)), "engine (import source bind)")
    return Monitor(rows_of(engine), start, secret, workflow_state=outcome, leading=leading)


def run(settings: Settings) -> None:
    """Run until SIGINT/SIGTERM. The engine that holds the singleton duties (engine.duties) publishes the
    steps left `queued` by a previous run or a stopped engine again.

    `settings` come from `load_settings`, checked before anything starts.
    """
    host, port = split_bind(settings.api_bind)
    transport = serving(settings, host)
    logformat.configure(settings.log_level, settings.log_format)
    sock = listen(host, port)
    try:
        engine = build(settings)
    except BaseException:
        sock.close()
        raise
    engine_id = settings.engine_id or default_engine_id(socket.gethostname(), port)
    say_start(settings, api_url(host, port, https=bool(transport)), engine_id)
    check_eviction(engine.client)
    ingester = Ingester(
        engine.client,
        engine.store,
        engine.act,
        engine.event_keys.grant,
        consumer=engine_id,
        outstanding=engine.dispatcher.outstanding,
    )
    duties = engine.duties = Duties(
        engine.client,
        engine_id,
        settings.duties_ttl_s,
        on_take=lambda: _republish(engine, "left queued before this engine took the singleton duties"),
        on_gone=lambda gone, absent: _taken_over(engine, ingester, gone, absent),
    )
    try:
        duties.start()
    except redis.RedisError as exc:
        sock.close()
        raise Unreachable(f"cannot reach Redis at {redact(settings.broker_url)} ({exc})") from exc
    others = duties.others()
    if others and settings.store_url.startswith("sqlite"):
        log.warning(
            "engines %s share this SQLite store: several engines need PostgreSQL, whose row locks keep "
            "their status records consistent; run one engine on SQLite",
            ", ".join(others),
        )
    local = own_agent(settings, engine, engine_id, host, port, https=bool(transport))
    watchdog = Watchdog(engine, leading=duties.leading)
    checker = Scheduler(engine, leading=duties.leading)
    monitor = import_monitor(engine, duties.leading)
    mirror = Mirror(settings.broker_url, leading=duties.leading)  # behind Sentinel only
    threads = [
        threading.Thread(target=duties.run, name="converge-duties", daemon=True),
        threading.Thread(target=ingester.run, name="converge-ingest", daemon=True),
        threading.Thread(target=watchdog.run, name="converge-watchdog", daemon=True),
        threading.Thread(target=checker.run, name="converge-schedules", daemon=True),
        threading.Thread(target=monitor.run, name="converge-imports", daemon=True),
        threading.Thread(target=mirror.run, name="converge-acl-mirror", daemon=True),
    ]
    for thread in threads:
        thread.start()
    if local is not None:
        local.start()
    try:
        config = uvicorn.Config(create_api(engine), host=host, port=port, log_level="warning", **transport)
        uvicorn.Server(config).run(sockets=[sock])
    finally:
        sock.close()
        if local is not None:
            local.stop()  # first: its steps end while the engine still records their status
        ingester.stop()
        watchdog.stop()
        checker.stop()
        monitor.stop()
        mirror.stop()
        for thread in threads[1:]:
            thread.join(timeout=5)
        duties.stop()  # last: hands the duties over once this engine has stopped acting on them
        threads[0].join(timeout=5)
        engine.store.close()
