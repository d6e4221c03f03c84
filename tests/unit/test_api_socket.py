"""The API's listening socket: connections accepted on it send each write at once (no Nagle delay)."""

from __future__ import annotations

import asyncio
import socket

from engine.service import listen


def test_connections_accepted_on_the_api_socket_have_nagle_off() -> None:
    """uvicorn serves on the socket `listen` made; asyncio sets TCP_NODELAY only on a socket that says it
    is TCP, and without it a response's body waited 40 ms for the client's delayed ACK of its headers."""
    sock = listen("127.0.0.1", 0)
    sock.listen()
    accepted: list[int] = []

    async def serve() -> None:
        def on_connect(_reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            peer: socket.socket = writer.get_extra_info("socket")
            accepted.append(peer.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY))
            writer.close()

        server = await asyncio.start_server(on_connect, sock=sock)
        async with server:
            _, writer = await asyncio.open_connection(*sock.getsockname()[:2])
            for _ in range(200):
                if accepted:
                    break
                await asyncio.sleep(0.01)
            writer.close()

    asyncio.run(serve())
    assert accepted and accepted[0] != 0
