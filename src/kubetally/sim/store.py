"""The simulated cluster's object store: etcd semantics that list/watch clients depend on.

One global, monotonically increasing resourceVersion stamps every change, exactly as etcd's
revision does for a real apiserver. A change log since the last compaction lets a watch resume
from any resourceVersion it saw, lets paginated lists serve a consistent snapshot, and lets the
simulator answer "too old" (410 Expired) after compaction — the recovery path a correct
informer must handle. Everything is guarded by one lock: writers are the scenario clock and test
code in other threads; readers are the HTTP handlers.
"""

from __future__ import annotations

import bisect
import threading
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from kubetally.periods import format_time
from kubetally.sim.models import model_problems
from kubetally.sim.resources import ResourceRegistry, ResourceType
from kubetally.sim.scenario import EVENT_TYPES, ScenarioError, check_object, describe

_UID_NAMESPACE = uuid.UUID("5f0c7a7e-2b7e-4d55-9a3e-6b7574616c6c")
_IDENTITY_KEYS = {"apiVersion", "kind", "metadata"}

Key = tuple[str, str]  # (namespace or "", name)


class Expired(Exception):
    """A resourceVersion older than the compaction point (HTTP 410, reason Expired)."""

    def __init__(self, requested: int, oldest: int):
        self.requested = requested
        self.oldest = oldest
        super().__init__(f"too old resource version: {requested} ({oldest})")


def deterministic_uid(kind: str, namespace: str, name: str) -> str:
    """Same object identity → same uid in every run, so records derived from it are stable."""
    return str(uuid.uuid5(_UID_NAMESPACE, f"{kind}/{namespace}/{name}"))


@dataclass(frozen=True)
class Change:
    """One entry of the change log: what a watcher of ``rtype`` receives."""

    rv: int
    type: str
    rtype: ResourceType
    key: Key
    obj: dict[str, Any]
    prev: dict[str, Any] | None


#: Who writes an object's status in a real cluster, for the managedFields entry the store records
#: when a scenario event changes the status without giving managedFields itself.
STATUS_MANAGERS = {
    "Pod": "kubelet",
    "Node": "kubelet",
    "PersistentVolumeClaim": "kube-controller-manager",
    "Service": "service-controller",
}


def track_managed_fields(kind: str, prev: dict[str, Any] | None, new: dict[str, Any], at: datetime) -> None:
    """Maintain ``metadata.managedFields`` as the apiserver does for a write that does not send
    them: the previous entries are kept, and the top-level status fields whose value changed are
    now owned by the kind's status writer (:data:`STATUS_MANAGERS`), in one ``Update`` entry of
    the ``status`` subresource stamped ``at``; other entries lose those fields (a field has one
    owner among Update managers). A write that gives managedFields is served as given."""
    meta = new["metadata"]
    if "managedFields" in meta:
        return
    entries = json_copy((prev or {}).get("metadata", {}).get("managedFields") or [])
    old_status = (prev or {}).get("status") or {}
    new_status = new.get("status") or {}
    changed = sorted(k for k in set(old_status) | set(new_status) if old_status.get(k) != new_status.get(k))
    changed = [k for k in changed if k in new_status]
    if changed:
        manager = STATUS_MANAGERS.get(kind, "kube-controller-manager")
        owned: dict[str, dict[str, Any]] = {f"f:{k}": {} for k in changed}
        kept = []
        for entry in entries:
            status = (entry.get("fieldsV1") or {}).get("f:status")
            if isinstance(status, dict):
                for key in owned:
                    status.pop(key, None)
            if entry.get("manager") == manager and entry.get("subresource") == "status":
                owned = {**(status or {}), **owned}
                continue
            if isinstance(status, dict) and not status and len(entry.get("fieldsV1") or {}) == 1:
                continue  # owns nothing any more
            kept.append(entry)
        kept.append(
            {
                "manager": manager,
                "operation": "Update",
                "apiVersion": new.get("apiVersion", "v1"),
                "time": format_time(at),
                "fieldsType": "FieldsV1",
                "fieldsV1": {"f:status": owned},
                "subresource": "status",
            }
        )
        entries = kept
    if entries:
        meta["managedFields"] = entries


def object_key(rtype: ResourceType, obj: dict[str, Any]) -> Key:
    meta = obj["metadata"]
    return (meta.get("namespace") or "" if rtype.namespaced else "", meta["name"])


def sort_key(key: Key) -> str:
    """etcd key order (``<namespace>/<name>``), which is the order the apiserver lists in."""
    return f"{key[0]}/{key[1]}" if key[0] else key[1]


Entry = tuple[str, dict[str, Any]]  # (sort key, object), kept in sort-key order


def _first(entry: Entry) -> str:
    return entry[0]


def key_range(entries: list[Entry], namespace: str = "", start: str = "") -> tuple[int, int]:
    """Index range of ``entries`` in ``namespace`` (all: ``""``) from sort key ``start`` on."""
    lo, hi = 0, len(entries)
    if namespace:  # "<ns>/..." keys sit between "<ns>/" and "<ns>0" ('0' follows '/')
        lo = bisect.bisect_left(entries, f"{namespace}/", key=_first)
        hi = bisect.bisect_left(entries, f"{namespace}0", key=_first)
    if start:
        lo = max(lo, bisect.bisect_left(entries, start, key=_first))
    return lo, max(lo, hi)


def json_copy(value: Any) -> Any:
    """Deep copy of JSON-shaped data, several times faster than ``copy.deepcopy``."""
    if isinstance(value, dict):
        return {k: json_copy(v) for k, v in value.items()}
    if isinstance(value, list):
        return [json_copy(v) for v in value]
    return value


class ObjectStore:
    """Objects by resource type, the change log, batch boundaries and the compaction point."""

    def __init__(self, registry: ResourceRegistry):
        self.registry = registry
        self.lock = threading.RLock()
        self.rv = 0
        self.compacted_rv = 0
        self.generation = 0  # bumped by compaction; open watches notice and end with 410
        self._objects: dict[ResourceType, dict[Key, dict[str, Any]]] = {}
        self._sorted: dict[ResourceType, list[Entry]] = {}
        self._log: list[Change] = []
        self._log_rvs: list[int] = []
        self._batch_ends: list[int] = []
        self._batch_depth = 0
        self._batch_start_rv = 0
        self._listeners: set[Callable[[], None]] = set()

    # ---- writing -----------------------------------------------------------------------------

    @contextmanager
    def batch(self) -> Iterator[None]:
        """Group changes; watchers with bookmarks get one BOOKMARK at the end of each batch."""
        changed = False
        try:
            with self.lock:
                if self._batch_depth == 0:
                    self._batch_start_rv = self.rv
                self._batch_depth += 1
                try:
                    yield
                finally:
                    self._batch_depth -= 1
                    changed = self._batch_depth == 0 and self.rv != self._batch_start_rv
                    if changed:
                        self._batch_ends.append(self.rv)
        finally:
            if changed:
                self._notify()

    def apply(
        self, event_type: str, obj: dict[str, Any], at: datetime, validate: bool = True, track: bool = True
    ) -> Change:
        """Apply one ADDED/MODIFIED/DELETED change; ``at`` fills a missing creationTimestamp.

        ``validate=False`` skips the manifest checks for objects a loaded Scenario already checked.
        ``track=False`` (a scenario's initial objects, whose history is unknown) serves the object's
        managedFields as given; otherwise a status change is recorded in them
        (:func:`track_managed_fields`).
        """
        if event_type not in EVENT_TYPES:
            raise ScenarioError([f"event type must be one of {', '.join(EVENT_TYPES)}, not {event_type!r}"])
        if validate:
            identity_only = event_type == "DELETED" and set(obj) <= _IDENTITY_KEYS
            problems = check_object(obj) or ([] if identity_only else model_problems(obj))
            if problems:
                raise ScenarioError([f"{describe(obj)}: {p}" for p in problems])
        with self.batch():
            rtype = self.registry.by_kind(obj["apiVersion"], obj["kind"])
            if rtype is None:
                raise ScenarioError(
                    [
                        f"{describe(obj)}: unknown resource {obj['apiVersion']} {obj['kind']}; "
                        "a new custom resource kind must appear in the scenario"
                    ]
                )
            ns = obj["metadata"].get("namespace") or ""
            if rtype.namespaced != bool(ns):
                need = "requires metadata.namespace" if rtype.namespaced else "is cluster-scoped; drop namespace"
                raise ScenarioError([f"{describe(obj)}: {rtype.kind} {need}"])
            key = object_key(rtype, obj)
            bucket = self._objects.setdefault(rtype, {})
            prev = bucket.get(key)
            new = json_copy(obj)
            meta = new["metadata"]
            if event_type == "ADDED":
                if prev is not None:
                    raise ScenarioError([f"{describe(obj)}: already exists; use MODIFIED"])
            elif prev is None:
                raise ScenarioError([f"{describe(obj)}: {event_type} of an object that does not exist"])
            if event_type == "DELETED" and prev is not None and set(obj) <= _IDENTITY_KEYS:
                # Only the identity given: the watcher gets the object's last state, as from etcd.
                new = json_copy(prev)
                new["metadata"].update(json_copy(obj["metadata"]))
                meta = new["metadata"]
            if track and event_type != "DELETED":
                track_managed_fields(rtype.kind, prev, new, at)
            old_meta = prev["metadata"] if prev is not None else {}
            meta.setdefault("uid", old_meta.get("uid") or deterministic_uid(rtype.kind, ns, meta["name"]))
            meta.setdefault("creationTimestamp", old_meta.get("creationTimestamp") or format_time(at))
            self.rv += 1
            meta["resourceVersion"] = str(self.rv)
            entries = self._sorted.setdefault(rtype, [])
            sk = sort_key(key)
            index = bisect.bisect_left(entries, sk, key=_first)
            if event_type == "DELETED":
                del bucket[key]
                del entries[index]
            elif event_type == "MODIFIED":
                bucket[key] = new
                entries[index] = (sk, new)
            else:
                bucket[key] = new
                entries.insert(index, (sk, new))
            change = Change(self.rv, event_type, rtype, key, new, prev)
            self._log.append(change)
            self._log_rvs.append(self.rv)
            return change

    def compact(self) -> int:
        """Forget history: RVs issued so far become too old; returns the new compaction point."""
        with self.lock:
            # Compaction "uses" a revision so that every RV a client holds is now older than it.
            self.rv += 1
            self.compacted_rv = self.rv
            self._log.clear()
            self._log_rvs.clear()
            self._batch_ends = [b for b in self._batch_ends if b > self.rv]
            self.generation += 1
        self._notify()
        return self.compacted_rv

    # ---- reading -----------------------------------------------------------------------------

    def check_rv(self, rv: int) -> None:
        if rv < self.compacted_rv:
            raise Expired(rv, self.compacted_rv)

    def get(self, rtype: ResourceType, namespace: str, name: str) -> dict[str, Any] | None:
        with self.lock:
            return self._objects.get(rtype, {}).get((namespace if rtype.namespaced else "", name))

    def snapshot(self, rtype: ResourceType, at_rv: int | None = None) -> tuple[list[Entry], int]:
        """All (sort key, object) of ``rtype`` as of ``at_rv`` (default: now), in etcd key order."""
        with self.lock:
            rv = self.rv if at_rv is None else at_rv
            if rv >= self.rv:
                return list(self._sorted.get(rtype, ())), rv
            self.check_rv(rv)
            current = dict(self._sorted.get(rtype, ()))
            start = bisect.bisect_right(self._log_rvs, rv)
            for change in reversed(self._log[start:]):
                if change.rtype != rtype:
                    continue
                if change.prev is None:
                    current.pop(sort_key(change.key), None)
                else:
                    current[sort_key(change.key)] = change.prev
        return sorted(current.items(), key=_first), rv

    def changes_after(self, rv: int) -> tuple[list[Change], list[int], int]:
        """Changes with resourceVersion > ``rv``, the batch ends after ``rv``, and the generation."""
        with self.lock:
            self.check_rv(rv)
            start = bisect.bisect_right(self._log_rvs, rv)
            ends = self._batch_ends[bisect.bisect_right(self._batch_ends, rv) :]
            return list(self._log[start:]), ends, self.generation

    # ---- notification ------------------------------------------------------------------------

    def subscribe(self, listener: Callable[[], None]) -> Callable[[], None]:
        """Call ``listener`` (from the writer's thread) after every batch and compaction."""
        with self.lock:
            self._listeners.add(listener)

        def unsubscribe() -> None:
            with self.lock:
                self._listeners.discard(listener)

        return unsubscribe

    def wake_all(self) -> None:
        """Wake every listener (open watches) without a change, e.g. so they notice a shutdown."""
        self._notify()

    def _notify(self) -> None:
        with self.lock:
            listeners = list(self._listeners)
        for listener in listeners:
            listener()
