"""Injected API failures (``sim.fail_next``): the apiserver errors a source must survive.

Real clusters answer 500s during etcd leader changes, 429 under API priority and fairness, and
503 while an aggregated API is down; the metering source must retry and never lose or double a
period. Tests arm a failure for the next N matching requests and assert the recovery.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from typing import Any

VERBS = ("list", "get", "watch", "create", "update", "delete")

REASONS = {
    400: "BadRequest",
    401: "Unauthorized",
    403: "Forbidden",
    404: "NotFound",
    405: "MethodNotAllowed",
    409: "Conflict",
    410: "Expired",
    422: "Invalid",
    429: "TooManyRequests",
    500: "InternalError",
    503: "ServiceUnavailable",
    504: "Timeout",
}


def status_body(
    code: int,
    message: str,
    reason: str | None = None,
    details: dict[str, Any] | None = None,
    metadata: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """A ``v1 Status`` failure object exactly as the apiserver encodes it."""
    body: dict[str, Any] = {
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": metadata or {},
        "status": "Failure",
        "message": message,
        "reason": reason or REASONS.get(code, ""),
    }
    if details is not None:
        body["details"] = details
    body["code"] = code
    return body


@dataclass
class Fault:
    verb: str
    resource: str | None
    status: int
    remaining: int


class Faults:
    """Armed failures, consumed first-armed-first by the matching requests."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._faults: list[Fault] = []

    def arm(self, verb: str, resource: str | None, status: int, times: int) -> None:
        if verb not in VERBS:
            raise ValueError(f"verb must be one of {', '.join(VERBS)}, not {verb!r}")
        if not 400 <= status <= 599:
            raise ValueError(f"status must be an HTTP error code (400-599), not {status}")
        if times < 1:
            raise ValueError(f"times must be >= 1, not {times}")
        with self._lock:
            self._faults.append(Fault(verb, resource, status, times))

    def take(self, verb: str, resource: str) -> int | None:
        """The status to fail this request with, or None to serve it."""
        with self._lock:
            for fault in self._faults:
                if fault.verb == verb and fault.resource in (None, "*", resource):
                    fault.remaining -= 1
                    if fault.remaining == 0:
                        self._faults.remove(fault)
                    return fault.status
        return None

    def clear(self) -> None:
        with self._lock:
            self._faults.clear()
