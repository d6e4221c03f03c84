"""A TCP proxy that a test controls: put it between a process and Redis, then cut, blackhole and heal the link.

- `cut()`: every open connection is closed, and every new one is accepted and closed at once, until
  `heal()`; a client sees "connection closed" (what a Redis restart or a dropped link looks like).
- `blackhole()`: connections stay open and new ones are accepted, but nothing is forwarded either way until
  `heal()`, which delivers what was held; a client sees timeouts (what a partition looks like to TCP).

Threads, one per direction of each connection, and one accepting; all daemons, all ended by `stop()`.
"""

from __future__ import annotations

import contextlib
import enum
import socket
import threading
from types import TracebackType

CHUNK = 65536


class Mode(enum.Enum):
    OPEN = "open"
    CUT = "cut"
    BLACKHOLE = "blackhole"


class _Link:
    """One client connection and its upstream connection."""

    def __init__(self, client: socket.socket, upstream: socket.socket) -> None:
        self.client, self.upstream = client, upstream
        self.closed = False

    def close(self) -> None:
        self.closed = True
        for sock in (self.client, self.upstream):
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
            sock.close()


class TcpProxy:
    """Listens on 127.0.0.1:`port` and forwards to `upstream_host`:`upstream_port` while the link is open."""

    def __init__(self, upstream_port: int, upstream_host: str = "127.0.0.1") -> None:
        self.upstream = (upstream_host, upstream_port)
        self._listener = socket.create_server(("127.0.0.1", 0))
        self._listener.settimeout(0.1)  # so that the accepting thread sees stop() soon
        self.port: int = self._listener.getsockname()[1]
        self._lock = threading.Lock()
        self._mode = Mode.OPEN
        self._flowing = threading.Event()
        self._flowing.set()
        self._links: list[_Link] = []
        self._held: list[socket.socket] = []
        self._stopped = False
        self._acceptor = threading.Thread(target=self._accept_loop, name="proxy-accept", daemon=True)

    def redis_url(self, db: int = 0) -> str:
        return f"redis://127.0.0.1:{self.port}/{db}"

    @property
    def mode(self) -> Mode:
        return self._mode

    @property
    def open_connections(self) -> int:
        """Connections forwarded to the upstream right now (held ones not counted)."""
        with self._lock:
            self._links = [link for link in self._links if not link.closed]
            return len(self._links)

    def start(self) -> TcpProxy:
        self._acceptor.start()
        return self

    def cut(self) -> None:
        """Close every connection, and close new ones as they come, until `heal()`."""
        with self._lock:
            self._mode = Mode.CUT
            self._flowing.set()  # pumps holding data see their socket closed and end
            links, held = self._links, self._held
            self._links, self._held = [], []
        for link in links:
            link.close()
        for sock in held:
            sock.close()

    def blackhole(self) -> None:
        """Keep connections open and accept new ones, but forward nothing until `heal()`."""
        with self._lock:
            self._mode = Mode.BLACKHOLE
            self._flowing.clear()

    def heal(self) -> None:
        """Forward again: held data goes through, held connections are connected upstream."""
        with self._lock:
            self._mode = Mode.OPEN
            held, self._held = self._held, []
            self._flowing.set()
        for sock in held:
            self._open(sock)

    def stop(self) -> None:
        self._stopped = True
        self.cut()
        self._listener.close()
        if self._acceptor.is_alive():
            self._acceptor.join(timeout=5)

    def __enter__(self) -> TcpProxy:
        return self.start()

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    def _accept_loop(self) -> None:
        while not self._stopped:
            try:
                client, _ = self._listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return  # the listener was closed: stop()
            client.settimeout(None)
            with self._lock:
                mode = self._mode
                if mode is Mode.BLACKHOLE:
                    self._held.append(client)
            if mode is Mode.CUT:
                client.close()
            elif mode is Mode.OPEN:
                self._open(client)

    def _open(self, client: socket.socket) -> None:
        try:
            upstream = socket.create_connection(self.upstream, timeout=5)
        except OSError:
            client.close()  # as the upstream would: refused
            return
        upstream.settimeout(None)
        link = _Link(client, upstream)
        with self._lock:
            if self._mode is Mode.CUT:  # cut while connecting
                link.close()
                return
            self._links.append(link)  # blackholed while connecting: its pumps wait for heal()
        for source, target in ((client, upstream), (upstream, client)):
            threading.Thread(target=self._pump, args=(link, source, target), daemon=True).start()

    def _pump(self, link: _Link, source: socket.socket, target: socket.socket) -> None:
        try:
            while True:
                data = source.recv(CHUNK)
                if not data:
                    break
                self._flowing.wait()  # a blackhole holds what was read until heal() (or cut())
                if link.closed:
                    break
                target.sendall(data)
        except OSError:
            pass
        link.close()
