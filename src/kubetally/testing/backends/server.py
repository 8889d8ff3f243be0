"""Run an ASGI app with uvicorn in a background thread, and stop/restart it on the same port.

A fake backend must be able to "go down" (connection refused) and come back at the same
address, exactly like a vendor outage seen from an adapter. We therefore bind the listening
socket ourselves (SO_REUSEADDR, so the port is reusable at once) and hand it to uvicorn.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
import threading
import time
from typing import Any

import uvicorn

from kubetally.testing.net import free_port

_START_TIMEOUT_S = 10.0


class _QuietCancellation(logging.Filter):
    """Hide uvicorn's traceback for requests cancelled because the fake was stopped on purpose."""

    def filter(self, record: logging.LogRecord) -> bool:
        exc = record.exc_info[1] if record.exc_info else None
        return not isinstance(exc, asyncio.CancelledError)


logging.getLogger("uvicorn.error").addFilter(_QuietCancellation())


def _abort_connections(server: uvicorn.Server) -> None:
    """Drop every open connection (RST), so in-flight clients see a network error, not a 500."""
    for connection in list(server.server_state.connections):
        transport = getattr(connection, "transport", None)
        if transport is not None:
            transport.abort()


def _listen(host: str, port: int) -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)  # lets asyncio set TCP_NODELAY
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, port))
    sock.listen(1024)
    sock.set_inheritable(True)
    return sock


class ServerThread:
    """One uvicorn server on ``host:port``; ``stop()`` then ``start()`` reuses the port."""

    def __init__(self, app: Any, host: str = "127.0.0.1", port: int | None = None) -> None:
        self.app = app
        self.host = host
        self.port = port or free_port()
        self._server: uvicorn.Server | None = None
        self._thread: threading.Thread | None = None
        self._error: BaseException | None = None
        self._loop: asyncio.AbstractEventLoop | None = None

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def start(self) -> None:
        if self.running:
            return
        sock = _listen(self.host, self.port)
        config = uvicorn.Config(
            self.app,
            lifespan="off",
            log_level=logging.WARNING,
            access_log=False,
            timeout_graceful_shutdown=1,
            timeout_keep_alive=30,
        )
        server = uvicorn.Server(config)
        self._server = server
        self._error = None

        async def serve() -> None:
            self._loop = asyncio.get_running_loop()
            await server.serve(sockets=[sock])

        def run() -> None:
            try:
                asyncio.run(serve())
            except BaseException as exc:  # surfaced by start() instead of dying silently in a thread
                self._error = exc
            finally:
                sock.close()

        self._thread = threading.Thread(target=run, name=f"fake-backend-{self.port}", daemon=True)
        self._thread.start()
        deadline = time.monotonic() + _START_TIMEOUT_S
        while not server.started:
            if self._error is not None or not self._thread.is_alive():
                raise RuntimeError(f"fake backend on port {self.port} failed to start") from self._error
            if time.monotonic() > deadline:
                raise TimeoutError(f"fake backend on port {self.port} did not start")
            time.sleep(0.005)

    def stop(self) -> None:
        """Stop listening and drop open connections (in-flight requests are cut, like a crash)."""
        server, thread = self._server, self._thread
        if server is None or thread is None:
            return
        loop = self._loop
        if loop is not None and not loop.is_closed():
            with contextlib.suppress(RuntimeError):  # loop closed in between: nothing left to abort
                loop.call_soon_threadsafe(_abort_connections, server)
        server.should_exit = True
        server.force_exit = True
        thread.join(timeout=10)
        self._server = None
        self._thread = None
        self._loop = None
