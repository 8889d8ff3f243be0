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
from kubetally.sim.scenario import EVENT_TYPES, Scenario, ScenarioError, ScenarioEvent, describe
from kubetally.sim.store import Change, ObjectStore


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
