"""Live configuration from the API: cost-model ConfigMaps selected by label, kept current by
list+watch, and Warning Events on the ones that are invalid.

Alauda reads its collection and display ConfigMaps once at start (a change needs a pod restart);
the agent watches them, so ``kubectl apply`` of a new price or item is used from the next period
on. Which ConfigMaps count is decided by label and namespace only; parsing and validation belong
to :mod:`kubetally.config.live`.
"""

from __future__ import annotations

import logging
import queue
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import partial
from typing import Any

from kubernetes import client as k8s

from kubetally.sources.kubernetes.client import Resource, describe_api_error
from kubetally.sources.kubernetes.watch import SYNC, Watcher, WatchItem

log = logging.getLogger("kubetally.agent")

#: Who reports the Events (``reportingComponent`` / ``source.component``).
COMPONENT = "kubetally-agent"


@dataclass(frozen=True)
class Selection:
    """ConfigMaps carrying ``label: "true"`` in ``namespace``."""

    label: str
    namespace: str

    @property
    def name(self) -> str:
        return f"configmaps:{self.namespace}:{self.label}"


Key = tuple[str, str]  # (namespace, name)


class ConfigMapSource:
    """List+watch the selected ConfigMaps; :meth:`poll` applies what arrived and says whether
    the set changed (the caller rebuilds its config then)."""

    def __init__(self, api: Any, selections: list[Selection], *, timeout_seconds: int = 300):
        self.api = api
        self.selections = selections
        self.queue: queue.Queue[WatchItem] = queue.Queue()
        self.objects: dict[str, dict[Key, dict[str, Any]]] = {s.name: {} for s in selections}
        self.synced: set[str] = set()
        self.watchers = [
            Watcher(
                api,
                Resource(s.name, "ConfigMap", _lister(s.namespace), f"{s.label}=true"),
                self.queue,
                timeout_seconds=timeout_seconds,
            )
            for s in selections
        ]

    def start(self) -> None:
        for watcher in self.watchers:
            watcher.start()

    def stop(self) -> None:
        for watcher in self.watchers:
            watcher.stop()
        for watcher in self.watchers:
            watcher.join(timeout=5)

    @property
    def ready(self) -> bool:
        """Every selection listed at least once."""
        return len(self.synced) == len(self.selections)

    def poll(self, timeout: float = 0.0) -> bool:
        """Apply queued changes, waiting up to ``timeout`` for one (bookmarks do not count);
        True when any ConfigMap was added, changed or removed."""
        changed = False
        deadline = time.monotonic() + timeout
        while True:
            # Wait (up to the deadline) until something changed; then take only what is queued.
            wait = 0.0 if changed else deadline - time.monotonic()
            try:
                item = self.queue.get(timeout=wait) if wait > 0 else self.queue.get_nowait()
            except queue.Empty:
                return changed
            bucket = self.objects.setdefault(item.resource, {})
            if item.type == SYNC:
                fresh = {_key(obj): _typed(obj) for obj in item.items}
                self.synced.add(item.resource)
                if fresh != bucket:
                    self.objects[item.resource] = fresh
                    changed = True
            elif item.obj is not None and item.type in ("ADDED", "MODIFIED"):
                obj = _typed(item.obj)
                if bucket.get(_key(obj)) != obj:
                    bucket[_key(obj)] = obj
                    changed = True
            elif item.obj is not None and item.type == "DELETED":
                changed = bucket.pop(_key(item.obj), None) is not None or changed

    def current(self) -> list[dict[str, Any]]:
        """Every selected ConfigMap, in selection order then namespace/name order."""
        return [bucket[key] for s in self.selections for bucket in [self.objects[s.name]] for key in sorted(bucket)]


def _lister(namespace: str) -> Callable[[k8s.ApiClient], Callable[..., Any]]:
    """LIST/WATCH of the ConfigMaps of one namespace (never cluster-wide: least privilege)."""
    return lambda api: partial(k8s.CoreV1Api(api).list_namespaced_config_map, namespace)


def _typed(obj: dict[str, Any]) -> dict[str, Any]:
    """List items of built-in kinds come without apiVersion/kind; the config loader needs them."""
    return {"apiVersion": "v1", "kind": "ConfigMap", **obj}


def _key(obj: dict[str, Any]) -> Key:
    meta = obj.get("metadata") or {}
    return (str(meta.get("namespace") or ""), str(meta.get("name") or ""))


def post_warning(api: Any, configmap: dict[str, Any], reason: str, message: str, now: datetime | None = None) -> bool:
    """Create a ``Warning`` Event about ``configmap`` in its namespace (``kubectl describe
    configmap`` shows it). Failing to report never stops the agent: False, with a log line."""
    meta = configmap.get("metadata") or {}
    namespace, name = str(meta.get("namespace") or "default"), str(meta.get("name") or "")
    at = (now or datetime.now(UTC)).replace(microsecond=0)
    event = k8s.CoreV1Event(
        metadata=k8s.V1ObjectMeta(generate_name=f"{name}."[:253], namespace=namespace),
        involved_object=k8s.V1ObjectReference(
            api_version="v1",
            kind="ConfigMap",
            name=name,
            namespace=namespace,
            uid=meta.get("uid"),
            resource_version=meta.get("resourceVersion"),
        ),
        reason=reason,
        message=message[:1024],
        type="Warning",
        source=k8s.V1EventSource(component=COMPONENT),
        reporting_component=COMPONENT,
        first_timestamp=at,
        last_timestamp=at,
        count=1,
    )
    try:
        k8s.CoreV1Api(api).create_namespaced_event(namespace, event, _request_timeout=10)
    except Exception as exc:
        log.warning("could not post an Event on ConfigMap %s/%s: %s", namespace, name, describe_api_error(exc)[1])
        return False
    return True
