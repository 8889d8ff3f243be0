"""``Idempotency-Key`` header semantics shared by the Stripe (v1) and Metronome fakes.

Both vendors document the same contract: the first answer for a key is cached and replayed for
the same request; the same key with different parameters is a 409 Conflict. Server errors are
not cached, so a retry after a 5xx is processed again.
"""

from __future__ import annotations

import hashlib
import json
import threading
from collections.abc import Callable
from typing import Any

from starlette.responses import Response

from kubetally.testing.backends.base import Call, json_response

HEADER = "idempotency-key"


class IdempotencyCache:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._entries: dict[str, tuple[str, int, Any]] = {}

    def clear(self) -> None:
        with self._lock:
            self._entries.clear()

    def run(self, call: Call, handler: Callable[[Call], Response], conflict: Callable[[Call], Response]) -> Response:
        """Answer ``call`` through the cache when it carries an idempotency key."""
        key = call.headers.get(HEADER)
        if not key:
            return handler(call)
        fingerprint = hashlib.sha256(call.method.encode() + call.path.encode() + b"\0" + call.body).hexdigest()
        with self._lock:
            cached = self._entries.get(key)
        if cached is not None:
            if cached[0] != fingerprint:
                return conflict(call)
            return json_response(cached[2], cached[1], {"Idempotent-Replayed": "true"})
        response = handler(call)
        if response.status_code < 500:
            body = json.loads(bytes(response.body)) if response.body else None
            with self._lock:
                self._entries.setdefault(key, (fingerprint, response.status_code, body))
        return response
