"""A local HTTP receiver for budget alerts: records every request; can hold the first one unanswered."""

from __future__ import annotations

import json
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


@dataclass
class Received:
    path: str
    headers: dict[str, str]
    body: bytes

    @property
    def json(self) -> Any:
        return json.loads(self.body)


@dataclass
class Receiver:
    server: ThreadingHTTPServer
    received: list[Received] = field(default_factory=list)
    #: Requests answered 2xx (what the sender may count as delivered).
    acknowledged: list[Received] = field(default_factory=list)
    hold_first: threading.Event | None = None
    got_one: threading.Event = field(default_factory=threading.Event)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}"

    def close(self) -> None:
        if self.hold_first is not None:
            self.hold_first.set()
        self.server.shutdown()
        self.server.server_close()


def start_receiver(*, hold_first: bool = False) -> Receiver:
    receiver: Receiver

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
            item = Received(self.path, {k.lower(): v for k, v in self.headers.items()}, body)
            receiver.received.append(item)
            first = len(receiver.received) == 1
            receiver.got_one.set()
            if first and receiver.hold_first is not None:
                receiver.hold_first.wait(60)  # the sender is killed while waiting for this answer
                return
            receiver.acknowledged.append(item)
            self.send_response(200)
            self.send_header("Content-Length", "2")
            self.end_headers()
            self.wfile.write(b"ok")

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    receiver = Receiver(server, hold_first=threading.Event() if hold_first else None)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return receiver
