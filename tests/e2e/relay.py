"""A TCP relay before the broker, in a thread of its own, that can cut the network and restore it.

The broker advertises the relay's port, so every client connection goes
through it. `cut()` drops every open connection and stops listening, so
clients see what they would see of a broker gone away (a reset, then refused
connections), while the broker itself keeps its topics: the embedded broker
keeps them in memory only, and a restarted one would come back empty, racing
the clients' reconnections to recreate them. `restore()` listens again on the
same port. With an `ssl.SSLContext` the relay also terminates TLS
(`tests.e2e.tls`).
"""

from __future__ import annotations

import asyncio
import ssl
import threading


class Relay:
    """Forwards connections on `listen_port` to the broker on `target_port` of 127.0.0.1."""

    def __init__(self, listen_port: int, target_port: int, tls: ssl.SSLContext | None = None) -> None:
        self.listen_port = listen_port
        self.target_port = target_port
        self._tls = tls
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self._server: asyncio.Server | None = None
        self._writers: set[asyncio.StreamWriter] = set()

    def __enter__(self) -> Relay:
        self._thread.start()
        self.restore()
        return self

    def __exit__(self, *exc: object) -> None:
        self.cut()
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=10)

    def cut(self) -> None:
        """Stop listening and drop every connection, on both sides."""
        asyncio.run_coroutine_threadsafe(self._cut(), self._loop).result(timeout=10)

    def restore(self) -> None:
        """Listen again on the same port."""
        asyncio.run_coroutine_threadsafe(self._listen(), self._loop).result(timeout=10)

    async def _listen(self) -> None:
        self._server = await asyncio.start_server(
            self._serve,
            "127.0.0.1",
            self.listen_port,
            ssl=self._tls,
            ssl_handshake_timeout=5 if self._tls is not None else None,
        )

    async def _cut(self) -> None:
        if self._server is not None:
            self._server.close()
            self._server = None
        for writer in list(self._writers):
            writer.transport.abort()  # a reset, not a polite close: as when the network goes
        self._writers.clear()

    async def _serve(self, client_reader: asyncio.StreamReader, client_writer: asyncio.StreamWriter) -> None:
        try:
            broker_reader, broker_writer = await asyncio.open_connection("127.0.0.1", self.target_port)
        except OSError:
            client_writer.close()
            return
        self._writers |= {client_writer, broker_writer}
        try:
            await asyncio.gather(
                _pipe(client_reader, broker_writer),
                _pipe(broker_reader, client_writer),
                return_exceptions=True,
            )
        finally:
            self._writers -= {client_writer, broker_writer}


async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while data := await reader.read(65536):
            writer.write(data)
            await writer.drain()
    finally:
        writer.close()
