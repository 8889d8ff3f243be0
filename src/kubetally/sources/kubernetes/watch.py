"""List+watch of one resource, done carefully (the informer contract, as kopf and client-go do it).

* Start with a LIST; its ``resourceVersion`` is where the watch begins, so no change between the
  list and the watch is lost. The listed objects go to the consumer as one ``SYNC`` (a complete
  snapshot: whatever is not in it is gone).
* Watch with ``allowWatchBookmarks``; every event and BOOKMARK advances the resourceVersion, so a
  watch that times out (``timeoutSeconds``) resumes exactly where it stopped.
* ``410 Gone`` (an ``ERROR`` event or the HTTP status: history was compacted) → LIST again and
  hand over a new ``SYNC``; never resume from a guessed version.
* Any other failure → exponential backoff (0.5 s … 30 s), then resume from the last version.
* A garbage line is reported with the resource named and skipped; the stream continues.

The thread only reads and queues; the consumer (the agent's main loop) applies events in order.
"""

from __future__ import annotations

import contextlib
import json
import logging
import queue
import socket
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import partial
from typing import Any

from kubernetes import client as k8s
from kubernetes.client.exceptions import ApiException
from kubernetes.watch.watch import iter_resp_lines
from urllib3.exceptions import ProtocolError, ReadTimeoutError

from kubetally.sources.kubernetes.client import ListFailed, Resource, describe_api_error, list_objects
from kubetally.sources.kubernetes.tracker import KINDS, freeze

log = logging.getLogger("kubetally.kubernetes.watch")

SYNC = "SYNC"
BOOKMARK = "BOOKMARK"
ERROR = "ERROR"
HEALTHY = "HEALTHY"


@dataclass
class WatchItem:
    """One thing for the consumer: an event, a full snapshot (SYNC), a bookmark or an error."""

    resource: str
    kind: str
    type: str
    obj: dict[str, Any] | None = None
    #: A SYNC's objects, frozen as the page arrived (see ``tracker.freeze``).
    items: list[Any] = field(default_factory=list)
    rv: str | None = None
    message: str = ""


class Gone(Exception):
    """The resourceVersion is too old (410): re-list."""


class Watcher(threading.Thread):
    """Keeps one resource listed and watched, putting :class:`WatchItem` s on ``out``."""

    def __init__(
        self,
        api: k8s.ApiClient,
        resource: Resource,
        out: queue.Queue[WatchItem],
        *,
        timeout_seconds: int = 300,
        resource_version: str | None = None,
        min_backoff: float = 0.5,
        max_backoff: float = 30.0,
    ):
        super().__init__(name=f"kubetally-watch-{resource.name}", daemon=True)
        self.api = api
        self.resource = resource
        self.out = out
        self.timeout_seconds = timeout_seconds
        self.rv = resource_version
        self.min_backoff = min_backoff
        self.max_backoff = max_backoff
        self.healthy = resource_version is not None
        self.failures = 0
        self._stopping = threading.Event()
        self._response: Any = None

    # -- control ---------------------------------------------------------------------------

    def stop(self) -> None:
        """Stop promptly: also unblock a read waiting on an idle watch stream."""
        self._stopping.set()
        response = self._response
        connection = getattr(response, "connection", None)
        sock = getattr(connection, "sock", None)
        if sock is not None:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)

    @property
    def stopping(self) -> bool:
        return self._stopping.is_set()

    # -- loop ------------------------------------------------------------------------------

    def run(self) -> None:
        backoff = self.min_backoff
        while not self._stopping.is_set():
            try:
                if self.rv is None:
                    self._relist()
                self._watch_once()
                backoff = self.min_backoff
                self.failures = 0
            except Gone as exc:
                self.healthy = False
                log.info("watch %s: %s; re-listing", self.resource.name, exc)
                self.rv = None
            except Exception as exc:  # every failure is retried; the consumer holds periods meanwhile
                if self._stopping.is_set():
                    break
                self.healthy = False
                self.failures += 1
                status, reason = (
                    describe_api_error(exc.__cause__ if isinstance(exc.__cause__, Exception) else exc)
                    if isinstance(exc, ListFailed)
                    else describe_api_error(exc)
                )
                message = f"watch {self.resource.name}: {reason}; retrying in {backoff:.1f}s"
                log.warning("%s", message)
                self.out.put(WatchItem(self.resource.name, self.resource.kind, ERROR, message=message))
                if status == 410:
                    self.rv = None
                    continue
                self._stopping.wait(backoff)
                backoff = min(backoff * 2, self.max_backoff)

    def _relist(self) -> None:
        # Metered kinds are frozen as their pages arrive (the tracker keeps them so); others
        # (ConfigMaps of the live configuration) are consumed as plain dicts.
        keep = partial(freeze, self.resource.kind) if self.resource.kind in KINDS else None
        listing = list_objects(self.api, self.resource, keep=keep)
        self.rv = listing.resource_version
        self.healthy = True
        self.out.put(WatchItem(self.resource.name, self.resource.kind, SYNC, items=listing.items, rv=self.rv))

    def _watch_once(self) -> None:
        kwargs: dict[str, Any] = {
            "watch": True,
            "allow_watch_bookmarks": True,
            "resource_version": self.rv,
            "timeout_seconds": self.timeout_seconds,
            "_preload_content": False,
            "_request_timeout": (10, self.timeout_seconds + 30),
        }
        if self.resource.label_selector:
            kwargs["label_selector"] = self.resource.label_selector
        try:
            response = self.resource.call(self.api)(**kwargs)
        except ApiException as exc:
            if exc.status == 410:
                raise Gone(describe_api_error(exc)[1]) from exc
            raise
        self._response = response
        self.healthy = True
        self.out.put(WatchItem(self.resource.name, self.resource.kind, HEALTHY, rv=self.rv))
        try:
            for line in iter_resp_lines(response):
                if self._stopping.is_set():
                    return
                if line.strip():
                    self._handle_line(line)
            # A normal end (timeoutSeconds): everything up to rv was delivered.
            self.out.put(WatchItem(self.resource.name, self.resource.kind, HEALTHY, rv=self.rv))
        except (ReadTimeoutError, ProtocolError, OSError) as exc:
            if self._stopping.is_set():
                return
            if isinstance(exc, ReadTimeoutError):
                return  # idle past the read timeout: just resume from rv
            raise
        finally:
            self._response = None
            with contextlib.suppress(Exception):
                response.close()  # never hand a half-read stream back to the pool
                response.release_conn()

    def _handle_line(self, line: str) -> None:
        try:
            event = json.loads(line)
        except ValueError:
            log.warning("watch %s: not JSON, skipped: %.200s", self.resource.name, line)
            return
        if not isinstance(event, Mapping) or not isinstance(event.get("object"), Mapping):
            log.warning("watch %s: not a watch event, skipped: %.200s", self.resource.name, line)
            return
        kind, obj = str(event.get("type") or ""), dict(event["object"])
        if kind == "ERROR":
            code = obj.get("code")
            if code == 410:
                raise Gone(str(obj.get("message") or "resource version expired"))
            raise ApiException(status=int(code or 0), reason=str(obj.get("message") or obj))
        raw_meta = obj.get("metadata")
        meta: Mapping[str, Any] = raw_meta if isinstance(raw_meta, Mapping) else {}
        rv = meta.get("resourceVersion")
        if kind == BOOKMARK:
            if rv:
                self.rv = str(rv)
            self.out.put(WatchItem(self.resource.name, self.resource.kind, BOOKMARK, rv=self.rv))
            return
        if kind not in ("ADDED", "MODIFIED", "DELETED"):
            log.warning("watch %s: unknown event type %r skipped", self.resource.name, kind)
            return
        if rv:
            self.rv = str(rv)
        self.out.put(WatchItem(self.resource.name, self.resource.kind, kind, obj=obj, rv=self.rv))


def rv_at_least(rv: str | None, target: str | int) -> bool:
    """Whether ``rv`` has reached ``target`` (resourceVersions are opaque; numeric ones, as etcd
    and the simulator issue, compare as numbers)."""
    if rv is None:
        return False
    try:
        return int(rv) >= int(target)
    except ValueError:
        return str(rv) == str(target)


def sleep_until(deadline: float, stop: threading.Event | None = None) -> None:
    while time.monotonic() < deadline and not (stop is not None and stop.is_set()):
        time.sleep(min(0.05, max(deadline - time.monotonic(), 0)))
