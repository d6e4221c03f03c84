"""A Redis primary, one replica and three sentinels, each a child process on a free port of loopback.

The data nodes require a password (the engine is Redis's admin: it makes the agents' users), the replica
authenticates to the primary with it, and the sentinels use it to watch both and to reconfigure them.
The sentinels take a primary for down after one second without an answer, and `failover-timeout` is
short, so that a failover in a test takes seconds. Everything is stopped by `stop`, also when a start failed
half-way (use it as a context manager).
"""

from __future__ import annotations

import shutil
import subprocess
import time
from pathlib import Path
from types import TracebackType
from urllib.parse import quote

import redis

from common.errors import Unreachable
from common.localredis import free_port, redis_server_binary

MASTER = "converge"
HOST = "127.0.0.1"
DOWN_AFTER_MS = 1000
FAILOVER_TIMEOUT_MS = 5000
QUORUM = 2


def _quoted(text: str) -> str:
    """A value in a Redis configuration file, in double quotes with its backslashes and quotes escaped."""
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def sentinel_binary() -> list[str]:
    """Debian's redis-sentinel, else `redis-server --sentinel`."""
    found = shutil.which("redis-sentinel") or (
        "/usr/bin/redis-sentinel" if Path("/usr/bin/redis-sentinel").exists() else None
    )
    return [found] if found else [redis_server_binary(), "--sentinel"]


class Sentinels:
    """`start()` them, `url` is the broker URL through the sentinels (with the admin's password)."""

    def __init__(self, workdir: Path, password: str, sentinels: int = 3) -> None:
        self.workdir = workdir
        self.password = password
        self.primary_port = free_port()
        self.replica_port = free_port()
        self.sentinel_ports = [free_port() for _ in range(sentinels)]
        self.processes: dict[str, subprocess.Popen[bytes]] = {}
        parts = [f"sentinel://{HOST}:{port}" for port in self.sentinel_ports]
        parts[0] = f"sentinel://:{quote(password, safe='')}@{HOST}:{self.sentinel_ports[0]}"
        self.url = ";".join(parts) + f"/0?master={MASTER}"

    def __enter__(self) -> Sentinels:
        return self.start()

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    def start(self, timeout_s: float = 30.0) -> Sentinels:
        try:
            self._data_node("primary", self.primary_port)
            self._data_node("replica", self.replica_port, replica_of=self.primary_port)
            self.wait_replicated(timeout_s)
            for number, port in enumerate(self.sentinel_ports, start=1):
                self._sentinel(f"sentinel-{number}", port)
            deadline = time.monotonic() + timeout_s
            while not self._sentinels_ready():
                self._check_alive()
                if time.monotonic() > deadline:
                    raise Unreachable(
                        f"the sentinels did not all see the primary and its replica: {self.workdir}"
                    )
                time.sleep(0.1)
        except BaseException:
            self.stop()
            raise
        return self

    def _conf(self, name: str, lines: list[str]) -> Path:
        folder = self.workdir / name
        folder.mkdir(parents=True, exist_ok=True)
        conf = folder / f"{name}.conf"
        lines += [f"dir {folder}", f"logfile {folder / (name + '.log')}", "daemonize no"]
        conf.write_text("\n".join(lines) + "\n")
        conf.chmod(0o600)  # the passwords are in it
        return conf

    def _data_node(self, name: str, port: int, replica_of: int | None = None) -> None:
        lines = [
            f"port {port}",
            f"bind {HOST}",
            'save ""',
            "appendonly no",
            "maxmemory-policy noeviction",
            f"requirepass {_quoted(self.password)}",
            f"masterauth {_quoted(self.password)}",
            f"replica-announce-ip {HOST}",
        ]
        if replica_of is not None:
            lines.append(f"replicaof {HOST} {replica_of}")
        argv = [redis_server_binary(), str(self._conf(name, lines))]
        self.processes[name] = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

    def restart(self, name: str) -> None:
        """A killed data node (`primary`, `replica`) again, on its port, from its configuration file; it
        comes back empty (no persistence), and the sentinels make it a replica of the primary of the day."""
        conf = self.workdir / name / f"{name}.conf"
        self.processes[name] = subprocess.Popen(
            [redis_server_binary(), str(conf)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )

    def is_replica_of(self, port: int, primary_port: int) -> bool:
        """Whether the node on `port` is a replica of `primary_port` with its link up."""
        try:
            with self.node(port) as client:
                info = client.info("replication")
        except redis.RedisError:
            return False
        return bool(
            info.get("role") == "slave"
            and int(info.get("master_port", 0)) == primary_port
            and info.get("master_link_status") == "up"
        )

    def start_replica(self, timeout_s: float = 30.0) -> None:
        """The replica again (after `kill("replica")`), on its port, following the primary of the day."""
        primary = self.primary_address() or (HOST, self.primary_port)
        self._data_node("replica", self.replica_port, replica_of=primary[1])
        self.wait_replicated(timeout_s)

    def _sentinel(self, name: str, port: int) -> None:
        lines = [
            f"port {port}",
            f"bind {HOST}",
            "sentinel resolve-hostnames no",
            f"sentinel announce-ip {HOST}",
            f"sentinel monitor {MASTER} {HOST} {self.primary_port} {QUORUM}",
            f"sentinel auth-pass {MASTER} {_quoted(self.password)}",
            f"sentinel down-after-milliseconds {MASTER} {DOWN_AFTER_MS}",
            f"sentinel failover-timeout {MASTER} {FAILOVER_TIMEOUT_MS}",
            f"sentinel parallel-syncs {MASTER} 1",
        ]
        argv = [*sentinel_binary(), str(self._conf(name, lines))]
        self.processes[name] = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

    def node(self, port: int) -> redis.Redis:
        """A client on one data node (the admin's), failing fast."""
        return redis.Redis(
            host=HOST, port=port, password=self.password, socket_timeout=2, socket_connect_timeout=2
        )

    def sentinel(self, number: int = 0) -> redis.Redis:
        return redis.Redis(
            host=HOST, port=self.sentinel_ports[number], socket_timeout=2, socket_connect_timeout=2
        )

    def wait_replicated(self, timeout_s: float) -> None:
        deadline = time.monotonic() + timeout_s
        while True:
            self._check_alive()
            try:
                with self.node(self.replica_port) as replica:
                    if replica.info("replication").get("master_link_status") == "up":
                        return
            except redis.RedisError:
                pass
            if time.monotonic() > deadline:
                raise Unreachable(f"the replica did not sync with the primary: see {self.workdir}")
            time.sleep(0.05)

    def _sentinels_ready(self) -> bool:
        """Every sentinel knows the primary, its replica and the other sentinels."""
        others = len(self.sentinel_ports) - 1
        for number in range(len(self.sentinel_ports)):
            try:
                with self.sentinel(number) as client:
                    master = client.sentinel_master(MASTER)
                    if (
                        int(master.get("num-slaves", 0)) < 1
                        or int(master.get("num-other-sentinels", 0)) < others
                    ):
                        return False
            except redis.RedisError:
                return False
        return True

    def _check_alive(self) -> None:
        for name, process in self.processes.items():
            if process.poll() is not None:
                raise Unreachable(f"{name} exited with {process.returncode}: see {self.workdir / name}")

    def primary_address(self) -> tuple[str, int] | None:
        """Where the sentinels say the primary is (the first that answers), or None."""
        for number in range(len(self.sentinel_ports)):
            try:
                with self.sentinel(number) as client:
                    found = client.sentinel_get_master_addr_by_name(MASTER)
                    if found:
                        host = found[0].decode() if isinstance(found[0], bytes) else str(found[0])
                        return host, int(found[1])
            except redis.RedisError:
                continue
        return None

    def all_name(self, port: int) -> bool:
        """Whether every sentinel says the primary is the node on `port` (they learn of a failover one
        after another; a client asks them in turn)."""
        for number in range(len(self.sentinel_ports)):
            try:
                with self.sentinel(number) as client:
                    found = client.sentinel_get_master_addr_by_name(MASTER)
            except redis.RedisError:
                return False
            if not found or int(found[1]) != port:
                return False
        return True

    def is_primary(self, port: int) -> bool:
        """Whether the node on `port` answers as a primary now."""
        try:
            with self.node(port) as client:
                return bool(client.info("replication").get("role") == "master")
        except redis.RedisError:
            return False

    def kill(self, name: str) -> None:
        """SIGKILL one process (`primary`, `replica`, `sentinel-N`) and reap it."""
        process = self.processes.pop(name)
        process.kill()
        process.wait()

    def stop(self) -> None:
        for name in list(self.processes):
            process = self.processes.pop(name)
            if process.poll() is None:
                process.terminate()
                try:
                    process.wait(timeout=10)
                except subprocess.TimeoutExpired:
                    process.kill()
                    process.wait()
