"""The virtual clock and the scenario's timed events, on top of the object store.

Metering integrates object lifetimes to the second, so tests need time they control exactly:
the clock only moves when told (``advance``), or — for the demo and ``sim serve`` — at wall time
× ``speed``. Events fire in scenario order the moment the clock reaches their ``at``.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from datetime import datetime, timedelta
from typing import Any

from kubetally.periods import format_time, parse_time, utc
from kubetally.sim.resources import ResourceType
from kubetally.sim.scenario import EVENT_TYPES, Scenario, ScenarioError, ScenarioEvent, describe
from kubetally.sim.store import Change, ObjectStore, json_copy


class WriteRefused(Exception):
    """A client write the apiserver would refuse: HTTP ``code`` with a Status ``reason``."""

    def __init__(self, code: int, reason: str, message: str, details: dict[str, Any] | None = None):
        super().__init__(message)
        self.code = code
        self.reason = reason
        self.details = details or {}


def as_time(value: datetime | str) -> datetime:
    return parse_time(value) if isinstance(value, str) else utc(value)


class Simulation:
    """A scenario being played: store + clock + the events not yet applied."""

    def __init__(self, scenario: Scenario, speed: float = 0.0):
        if speed < 0:
            raise ValueError(f"speed must be >= 0, not {speed}")
        self.scenario = scenario
        self.registry = scenario.registry()
        self.store = ObjectStore(self.registry)
        self.speed = speed
        self._lock = threading.RLock()
        self._pending: deque[ScenarioEvent] = deque(scenario.events)
        self._base_virtual = scenario.now
        self._base_wall = time.monotonic()
        with self.store.batch():
            for obj in scenario.objects:
                self.store.apply("ADDED", obj, scenario.now, validate=False, track=False)
            self._apply_due(scenario.now)

    def start_clock(self) -> None:
        """Let a running clock (``speed`` > 0) start from the scenario's ``now`` at this moment."""
        with self._lock:
            self._base_wall = time.monotonic()

    @property
    def now(self) -> datetime:
        """Virtual time: frozen unless advanced, or moving at wall time × speed."""
        with self._lock:
            if not self.speed:
                return self._base_virtual
            elapsed = (time.monotonic() - self._base_wall) * self.speed
            return self._base_virtual + timedelta(seconds=elapsed)

    def advance(self, to: datetime | str) -> list[Change]:
        """Apply every pending event with ``at <= to`` in order (one batch); then ``now = to``."""
        target = as_time(to)
        with self._lock:
            current = self.now
            if target < current:
                raise ValueError(f"cannot move the clock back from {format_time(current)} to {format_time(target)}")
            with self.store.batch():
                changes = self._apply_due(target)
            self._base_virtual = target
            self._base_wall = time.monotonic()
            return changes

    def tick(self) -> list[Change]:
        """Apply what is due at the running clock's current time (``speed`` > 0)."""
        with self._lock, self.store.batch():
            return self._apply_due(self.now)

    def seconds_until_next_event(self) -> float | None:
        """Wall seconds until the next event is due (None: none left, or the clock is frozen)."""
        with self._lock:
            if not self._pending or not self.speed:
                return None
            return max(0.0, (self._pending[0].at - self.now).total_seconds() / self.speed)

    @property
    def pending(self) -> list[ScenarioEvent]:
        with self._lock:
            return list(self._pending)

    def apply(self, event_type: str, obj: dict[str, Any]) -> Change:
        """Inject one change now (its own batch), as if a controller had written it."""
        if event_type not in EVENT_TYPES:
            raise ScenarioError([f"event type must be one of {', '.join(EVENT_TYPES)}, not {event_type!r}"])
        with self._lock, self.store.batch():
            return self.store.apply(event_type, obj, self.now)

    # ---- client writes (create / update / delete), as the apiserver answers them ------------

    def write(
        self, verb: str, rtype: ResourceType, namespace: str, name: str | None, body: Any
    ) -> tuple[int, dict[str, Any]]:
        """Apply a client's ``create``/``update``/``delete``; returns (HTTP code, response object).

        Checked under the clock's lock, so the existence and resourceVersion checks and the write
        are one step: two clients updating the same Lease from the same resourceVersion get one
        success and one 409 Conflict, which is what leader election relies on."""
        with self._lock:
            if verb == "delete":
                assert name is not None
                prev = self.store.get(rtype, namespace, name)
                if prev is None:
                    raise self._not_found(rtype, name)
                identity = {"apiVersion": rtype.api_version, "kind": rtype.kind, "metadata": dict(prev["metadata"])}
                with self.store.batch():
                    self.store.apply("DELETED", identity, self.now)
                details = {"name": name, "kind": rtype.plural, "uid": prev["metadata"].get("uid")}
                if rtype.group:
                    details["group"] = rtype.group
                return 200, {
                    "kind": "Status",
                    "apiVersion": "v1",
                    "metadata": {},
                    "status": "Success",
                    "details": details,
                }
            obj = self._body(rtype, namespace, body)
            meta = obj["metadata"]
            if verb == "create":
                if not meta.get("name") and meta.get("generateName"):
                    meta["name"] = f"{meta['generateName']}{self.store.rv + 1:05x}"
                if not meta.get("name"):
                    raise WriteRefused(422, "Invalid", f"{rtype.kind} is invalid: metadata.name: Required value")
                if self.store.get(rtype, namespace, meta["name"]) is not None:
                    raise WriteRefused(
                        409,
                        "AlreadyExists",
                        f'{self._resource(rtype)} "{meta["name"]}" already exists',
                        self._details(rtype, meta["name"]),
                    )
                for key in ("resourceVersion", "uid", "creationTimestamp"):
                    meta.pop(key, None)
                event_type, code = "ADDED", 201
            else:
                assert name is not None
                if meta.get("name") != name:
                    raise WriteRefused(400, "BadRequest", "the name of the object does not match the name on the URL")
                prev = self.store.get(rtype, namespace, name)
                if prev is None:
                    raise self._not_found(rtype, name)
                given = meta.get("resourceVersion")
                if given and given != prev["metadata"]["resourceVersion"]:
                    raise WriteRefused(
                        409,
                        "Conflict",
                        f'Operation cannot be fulfilled on {self._resource(rtype)} "{name}": the object has been '
                        "modified; please apply your changes to the latest version and try again",
                        self._details(rtype, name),
                    )
                meta["uid"] = prev["metadata"].get("uid")
                meta["creationTimestamp"] = prev["metadata"].get("creationTimestamp")
                event_type, code = "MODIFIED", 200
            try:
                with self.store.batch():
                    change = self.store.apply(event_type, obj, self.now)
            except ScenarioError as exc:
                raise WriteRefused(422, "Invalid", "; ".join(exc.problems)) from None
            return code, json_copy(change.obj)

    def _body(self, rtype: ResourceType, namespace: str, body: Any) -> dict[str, Any]:
        if not isinstance(body, dict) or not isinstance(body.get("metadata"), dict):
            raise WriteRefused(400, "BadRequest", f"the request body is not a {rtype.kind} object")
        obj: dict[str, Any] = json_copy(body)
        obj.setdefault("apiVersion", rtype.api_version)
        obj.setdefault("kind", rtype.kind)
        if (obj["apiVersion"], obj["kind"]) != (rtype.api_version, rtype.kind):
            raise WriteRefused(
                400, "BadRequest", f"the body is a {obj['kind']} ({obj['apiVersion']}), not a {rtype.kind}"
            )
        meta = obj["metadata"]
        if rtype.namespaced:
            if meta.get("namespace") and meta["namespace"] != namespace:
                raise WriteRefused(
                    400,
                    "BadRequest",
                    "the namespace of the provided object does not match the namespace sent on the request",
                )
            meta["namespace"] = namespace
        for key in [k for k, v in meta.items() if v is None]:
            del meta[key]  # the client sends unset fields as null
        return obj

    @staticmethod
    def _resource(rtype: ResourceType) -> str:
        return f"{rtype.plural}.{rtype.group}" if rtype.group else rtype.plural

    @staticmethod
    def _details(rtype: ResourceType, name: str) -> dict[str, Any]:
        return {"name": name, **({"group": rtype.group} if rtype.group else {}), "kind": rtype.plural}

    def _not_found(self, rtype: ResourceType, name: str) -> WriteRefused:
        return WriteRefused(404, "NotFound", f'{self._resource(rtype)} "{name}" not found', self._details(rtype, name))

    def _apply_due(self, target: datetime) -> list[Change]:
        changes = []
        while self._pending and self._pending[0].at <= target:
            event = self._pending.popleft()
            try:
                changes.append(self.store.apply(event.type, event.object, event.at, validate=False))
            except ScenarioError as exc:
                raise ScenarioError(
                    [
                        f"{self.scenario.source}: events[{event.index}] ({event.type} {describe(event.object)}): {p}"
                        for p in exc.problems
                    ]
                ) from None
        return changes
