"""HTTP face of the simulator: the Kubernetes REST wire format (discovery, list, get, watch).

Clients are the official ``kubernetes`` Python client and kubectl, so responses follow what a
real apiserver sends byte for byte where clients look: list items of built-in types carry no
apiVersion/kind, watch events are newline-delimited JSON, bookmarks carry only a resourceVersion,
an expired resourceVersion is an ``ERROR`` event with a 410 ``Status`` on watch and an HTTP 410 on
a continued list, and every error body is a ``v1 Status``.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import contextlib
import json
import logging
import re
import threading
from collections.abc import AsyncIterator, Callable, Mapping
from email.utils import format_datetime
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response, StreamingResponse
from starlette.routing import Route

from kubetally.sim.faults import Faults, status_body
from kubetally.sim.rbac import RBAC, request_of
from kubetally.sim.resources import ResourceType
from kubetally.sim.selectors import FIELD_LABELS, SelectorError, matcher, parse_field_selector, parse_label_selector
from kubetally.sim.simulation import Simulation, WriteRefused
from kubetally.sim.store import Change, Expired, key_range
from kubetally.sim.tables import table, wants_table

KUBE_VERSION = {
    "major": "1",
    "minor": "32",
    "gitVersion": "v1.32.1",
    "gitCommit": "e9c9be4007d1664e68796af02b8978640d2c1b26",
    "gitTreeState": "clean",
    "buildDate": "2025-01-15T14:31:55Z",
    "goVersion": "go1.23.4",
    "compiler": "gc",
    "platform": "linux/amd64",
}

# Field labels beyond metadata.name/namespace that the real apiserver accepts, per kind.
EXTRA_FIELD_LABELS: dict[str, tuple[str, ...]] = {
    "Pod": (
        "spec.nodeName",
        "spec.restartPolicy",
        "spec.schedulerName",
        "spec.serviceAccountName",
        "spec.hostNetwork",
        "status.phase",
        "status.podIP",
        "status.nominatedNodeName",
    ),
    "Node": ("spec.unschedulable",),
    "Namespace": ("status.phase",),
    "Secret": ("type",),
    "Event": (
        "involvedObject.kind",
        "involvedObject.namespace",
        "involvedObject.name",
        "involvedObject.uid",
        "involvedObject.apiVersion",
        "involvedObject.resourceVersion",
        "involvedObject.fieldPath",
        "reason",
        "reportingComponent",
        "source",
        "type",
    ),
    "ReplicaSet": ("status.replicas",),
    "ReplicationController": ("status.replicas",),
    "Job": ("status.successful",),
}
_TRUE = ("1", "true", "True", "yes")
_VERSION = re.compile(r"^v(\d+)(?:(alpha|beta)(\d+))?$")
_NOT_FOUND = "the server could not find the requested resource"
log = logging.getLogger(__name__)


def version_priority(version: str) -> tuple[int, int, int, str]:
    """Kubernetes version order: GA before beta before alpha, higher numbers first."""
    match = _VERSION.match(version)
    if match is None:
        return (3, 0, 0, version)
    stage = {None: 0, "beta": 1, "alpha": 2}[match.group(2)]
    return (stage, -int(match.group(1)), -int(match.group(3) or 0), version)


def dumps(body: Any) -> bytes:
    return json.dumps(body, separators=(",", ":"), ensure_ascii=False).encode("utf-8")


def encode_continue(rv: int, last_key: str) -> str:
    """The apiserver's continue token: base64 JSON of the snapshot RV and the next etcd key."""
    token = {"v": "meta.k8s.io/v1", "rv": rv, "start": last_key + "\x00"}
    return base64.urlsafe_b64encode(json.dumps(token, separators=(",", ":")).encode()).decode().rstrip("=")


def decode_continue(token: str) -> tuple[int, str]:
    try:
        padded = token + "=" * (-len(token) % 4)
        data = json.loads(base64.urlsafe_b64decode(padded.encode()))
        if (
            data.get("v") != "meta.k8s.io/v1"
            or not isinstance(data.get("rv"), int)
            or not isinstance(data.get("start"), str)
        ):
            raise ValueError("unknown continue token version")
        return data["rv"], data["start"]
    except (ValueError, binascii.Error, UnicodeDecodeError, AttributeError) as exc:
        raise ValueError(f"continue key is not valid: {exc}") from None


class ApiError(Exception):
    """Answered as a ``v1 Status`` with this HTTP code."""

    def __init__(
        self,
        code: int,
        message: str,
        reason: str | None = None,
        details: dict[str, Any] | None = None,
        metadata: dict[str, Any] | None = None,
    ):
        super().__init__(message)
        self.body = status_body(code, message, reason, details, metadata)
        self.code = code


class SimAPI:
    """Builds the ASGI app serving one :class:`Simulation`."""

    def __init__(
        self,
        sim: Simulation,
        faults: Faults,
        stopping: threading.Event,
        address: Callable[[], str],
        rbac: RBAC | None = None,
    ):
        self.sim = sim
        self.rbac = rbac
        self.store = sim.store
        self.registry = sim.registry
        self.faults = faults
        self.stopping = stopping
        self.address = address

    def app(self) -> Starlette:
        methods = ["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE"]
        return Starlette(routes=[Route("/{path:path}", self.handle, methods=methods)])

    # ---- plumbing ----------------------------------------------------------------------------

    def headers(self) -> dict[str, str]:
        return {"Date": format_datetime(self.sim.now, usegmt=True), "Cache-Control": "no-cache, private"}

    def json(self, body: Any, code: int = 200) -> Response:
        return Response(dumps(body), status_code=code, media_type="application/json", headers=self.headers())

    async def handle(self, request: Request) -> Response:
        try:
            if self.rbac is not None:
                self.authorize(request)
            return await self.route(request)
        except ApiError as exc:
            return self.json(exc.body, exc.code)
        except Exception as exc:  # a simulator bug must still answer in the wire format, and say what broke
            log.exception("simulated API server failed on %s", request.url.path)
            return self.json(status_body(500, f"simulated API server error: {type(exc).__name__}: {exc}"), 500)

    def authorize(self, request: Request) -> None:
        """Authenticate the bearer token, then authorize the request (401, 403 as a real apiserver),
        before any routing: a refused request learns nothing, not even whether the path exists."""
        assert self.rbac is not None
        user = self.rbac.authenticate(request.headers.get("authorization"))
        if user is None:
            raise ApiError(401, "Unauthorized")
        asked = request_of(request.method, request.url.path, request.url.query)
        if not self.rbac.allows(user, asked):
            details: dict[str, Any] = {}
            if asked.resource_request:
                details = {"name": asked.name, "group": asked.api_group, "kind": asked.resource}
                details = {k: v for k, v in details.items() if v or k == "kind"}
            raise ApiError(403, self.rbac.forbidden_message(user, asked), details=details)

    async def route(self, request: Request) -> Response:
        parts = [p for p in request.url.path.split("/") if p]
        if request.method not in ("GET", "HEAD", "POST", "PUT", "DELETE"):
            raise ApiError(405, f"the simulated API server does not support {request.method}")
        if parts in (["healthz"], ["livez"], ["readyz"]):
            return Response("ok", media_type="text/plain", headers=self.headers())
        if parts == ["version"]:
            return self.json(KUBE_VERSION)
        if parts and parts[0] == "api":
            if len(parts) == 1:
                return self.json(
                    {
                        "kind": "APIVersions",
                        "versions": ["v1"],
                        "serverAddressByClientCIDRs": [{"clientCIDR": "0.0.0.0/0", "serverAddress": self.address()}],
                    }
                )
            group, version, rest = "", parts[1], parts[2:]
        elif parts and parts[0] == "apis":
            if len(parts) == 1:
                return self.json(
                    {
                        "kind": "APIGroupList",
                        "apiVersion": "v1",
                        "groups": [self.group_doc(g) for g in self.registry.groups()],
                    }
                )
            if len(parts) == 2:
                if parts[1] not in self.registry.groups():
                    raise ApiError(404, _NOT_FOUND, details={})
                return self.json({"kind": "APIGroup", "apiVersion": "v1", **self.group_doc(parts[1])})
            group, version, rest = parts[1], parts[2], parts[3:]
        else:
            raise ApiError(404, _NOT_FOUND, details={})
        if version not in self.registry.versions(group):
            raise ApiError(404, _NOT_FOUND, details={})
        if not rest:
            return self.json(self.resource_list_doc(group, version))
        return await self.resource(request, group, version, rest)

    def group_doc(self, group: str) -> dict[str, Any]:
        versions = sorted(self.registry.versions(group), key=version_priority)
        entries = [{"groupVersion": f"{group}/{v}", "version": v} for v in versions]
        return {"name": group, "versions": entries, "preferredVersion": entries[0]}

    def resource_list_doc(self, group: str, version: str) -> dict[str, Any]:
        resources = [e for r in self.registry.in_group_version(group, version) for e in r.discovery_entries()]
        doc: dict[str, Any] = {"kind": "APIResourceList"}
        if group:
            doc["apiVersion"] = "v1"
        doc.update({"groupVersion": f"{group}/{version}" if group else version, "resources": resources})
        return doc

    # ---- resources ---------------------------------------------------------------------------

    async def resource(self, request: Request, group: str, version: str, rest: list[str]) -> Response:
        params = request.query_params
        watch = params.get("watch") in _TRUE
        if rest[0] == "watch":  # legacy /api/v1/watch/... paths
            watch, rest = True, rest[1:]
        namespace = ""
        if len(rest) >= 3 and rest[0] == "namespaces" and not (len(rest) == 3 and rest[2] == "status"):
            namespace, rest = rest[1], rest[2:]
        plural, name = rest[0], (rest[1] if len(rest) > 1 else None)
        subresource = rest[2] if len(rest) > 2 else None
        rtype = self.registry.by_path(group, version, plural)
        if (
            rtype is None
            or len(rest) > 3
            or (namespace and not rtype.namespaced)
            or (subresource is not None and (subresource != "status" or not rtype.status_subresource))
        ):
            raise ApiError(404, _NOT_FOUND, details={})
        writing = request.method in ("POST", "PUT", "DELETE")
        if writing:
            verb = {"POST": "create", "PUT": "update", "DELETE": "delete"}[request.method]
            if (
                not rtype.writable
                or subresource is not None
                or (verb == "create") != (name is None)
                or (rtype.namespaced and not namespace)
            ):
                raise ApiError(
                    405, f"the simulated API server is read-only for {plural}; {request.method} is not supported"
                )
        else:
            verb = "watch" if watch else ("get" if name is not None else "list")
        failure = self.faults.take(verb, plural)
        if failure is not None:
            raise ApiError(
                failure,
                f"injected failure: {verb} {plural}",
                details={"kind": plural, **({"group": group} if group else {})},
                metadata={},
            )
        if writing:
            return await self.write(request, verb, rtype, namespace, name)
        as_table = wants_table(request.headers.get("accept"))
        if name is not None and not watch:
            return self.get(rtype, namespace, name, as_table)
        match = self.selector(rtype, params, name)
        if watch:
            return self.watch(rtype, namespace, match, params, as_table)
        return self.list(rtype, namespace, match, params, as_table)

    async def write(
        self, request: Request, verb: str, rtype: ResourceType, namespace: str, name: str | None
    ) -> Response:
        body: Any = None
        if verb != "delete":
            try:
                body = json.loads(await request.body() or b"null")
            except ValueError as exc:
                raise ApiError(400, f"the request body is not JSON: {exc}", reason="BadRequest") from None
        try:
            code, obj = self.sim.write(verb, rtype, namespace, name, body)
        except WriteRefused as exc:
            raise ApiError(exc.code, str(exc), reason=exc.reason, details=exc.details or None) from None
        return self.json(obj, code)

    def selector(
        self, rtype: ResourceType, params: Mapping[str, str], name: str | None
    ) -> Callable[[Mapping[str, Any]], bool]:
        supported = FIELD_LABELS[:2] + EXTRA_FIELD_LABELS.get(rtype.kind, ())
        try:
            labels = parse_label_selector(params.get("labelSelector"))
            field_text = params.get("fieldSelector") or ""
            if name is not None:  # /watch/<plural>/<name>
                field_text = ",".join(filter(None, [field_text, f"metadata.name={name}"]))
            fields = parse_field_selector(field_text, supported if rtype.builtin else FIELD_LABELS[:2])
        except SelectorError as exc:
            raise ApiError(400, str(exc)) from None
        return matcher(labels, fields)

    def get(self, rtype: ResourceType, namespace: str, name: str, as_table: bool = False) -> Response:
        obj = self.store.get(rtype, namespace, name)
        if obj is None:
            details = {"name": name, **({"group": rtype.group} if rtype.group else {}), "kind": rtype.plural}
            raise ApiError(
                404, f'{rtype.plural}{"." + rtype.group if rtype.group else ""} "{name}" not found', details=details
            )
        if as_table:
            return self.json(table(rtype, [obj], self.sim.now, {"resourceVersion": obj["metadata"]["resourceVersion"]}))
        return self.json(obj)

    def list(
        self,
        rtype: ResourceType,
        namespace: str,
        match: Callable[[Mapping[str, Any]], bool],
        params: Mapping[str, str],
        as_table: bool = False,
    ) -> Response:
        limit = _int_param(params, "limit", 0)
        token = params.get("continue")
        rv_text = params.get("resourceVersion") or ""
        start = ""
        at_rv: int | None = None
        if token:
            if rv_text and rv_text != "0":
                raise ApiError(400, "specifying resource version is not allowed when using continue")
            try:
                at_rv, start = decode_continue(token)
            except ValueError as exc:
                raise ApiError(400, str(exc)) from None
            if at_rv < 0:  # the inconsistent-continuation token handed out with a 410: latest state
                at_rv = None
        elif rv_text and rv_text != "0":
            requested = _rv(rv_text)
            if requested > self.store.rv:
                raise ApiError(
                    504,
                    f"Too large resource version: {requested}, current: {self.store.rv}",
                    reason="Timeout",
                    details={
                        "causes": [{"reason": "ResourceVersionTooLarge", "message": "Too large resource version"}],
                        "retryAfterSeconds": 1,
                    },
                )
            if params.get("resourceVersionMatch") == "Exact":
                at_rv = requested
        try:
            items, rv = self.store.snapshot(rtype, at_rv)
        except Expired as exc:
            if token:
                message = (
                    "The provided continue parameter is too old to display a consistent list result. "
                    "You can start a new list without the continue parameter, or use the continue token "
                    "in this response to retrieve the remainder of the results. Continuing with the "
                    "provided token results in an inconsistent list - objects that were created, "
                    "modified, or deleted between the time the first chunk was returned and now may "
                    "show up in the list."
                )
                fresh = base64.urlsafe_b64encode(dumps({"v": "meta.k8s.io/v1", "rv": -1, "start": start}))
                raise ApiError(
                    410, message, reason="Expired", metadata={"continue": fresh.decode().rstrip("=")}
                ) from None
            raise ApiError(410, str(exc), reason="Expired") from None
        lo, hi = key_range(items, namespace, start)
        filtered = bool(params.get("labelSelector") or params.get("fieldSelector"))
        selected: list[dict[str, Any]] = []
        meta: dict[str, Any] = {"resourceVersion": str(rv)}
        last = ""
        for index in range(lo, hi):
            key, obj = items[index]
            if filtered and not match(obj):
                continue
            if limit and len(selected) == limit:
                meta["continue"] = encode_continue(rv, last)
                if not filtered:  # the apiserver counts the rest only when it need not filter
                    meta["remainingItemCount"] = hi - index
                break
            selected.append(obj)
            last = key
        if as_table:
            return self.json(table(rtype, selected, self.sim.now, meta))
        strip = rtype.builtin
        body = {
            "kind": rtype.list_kind,
            "apiVersion": rtype.api_version,
            "metadata": meta,
            "items": [_without_type(obj) if strip else obj for obj in selected],
        }
        return self.json(body)

    # ---- watch -------------------------------------------------------------------------------

    def watch(
        self,
        rtype: ResourceType,
        namespace: str,
        match: Callable[[Mapping[str, Any]], bool],
        params: Mapping[str, str],
        as_table: bool = False,
    ) -> Response:
        rv_text = params.get("resourceVersion") or ""
        start_rv = None if rv_text in ("", "0") else _rv(rv_text)
        timeout = _int_param(params, "timeoutSeconds", 0)
        bookmarks = params.get("allowWatchBookmarks") in _TRUE
        initial = params.get("sendInitialEvents") in _TRUE
        if initial and (not bookmarks or params.get("resourceVersionMatch") != "NotOlderThan"):
            raise ApiError(
                422,
                "sendInitialEvents requires allowWatchBookmarks=true and resourceVersionMatch=NotOlderThan",
                reason="Invalid",
            )
        if initial:
            start_rv = None  # NotOlderThan: the current state is never older than what was asked for

        def render(obj: Mapping[str, Any]) -> Mapping[str, Any]:
            if not as_table:
                return obj
            return table(rtype, [obj], self.sim.now, {"resourceVersion": obj["metadata"]["resourceVersion"]})

        stream = self.events(rtype, namespace, match, start_rv, bookmarks, timeout, initial, render)
        return StreamingResponse(stream, media_type="application/json", headers=self.headers())

    async def events(
        self,
        rtype: ResourceType,
        namespace: str,
        match: Callable[[Mapping[str, Any]], bool],
        start_rv: int | None,
        bookmarks: bool,
        timeout: int,
        initial_end: bool = False,
        render: Callable[[Mapping[str, Any]], Mapping[str, Any]] = lambda o: o,
    ) -> AsyncIterator[bytes]:
        loop = asyncio.get_running_loop()
        wake = asyncio.Event()

        def notify() -> None:
            with contextlib.suppress(RuntimeError):  # loop already closed: the server is shutting down
                loop.call_soon_threadsafe(wake.set)

        unsubscribe = self.store.subscribe(notify)
        deadline = loop.time() + timeout if timeout else None
        bookmarked = -1
        try:
            if start_rv is None:
                # "Get state and start at most recent": synthetic ADDED for what exists now.
                items, pos = self.store.snapshot(rtype)
                lo, hi = key_range(items, namespace)
                lines = [_event("ADDED", render(obj)) for _, obj in items[lo:hi] if match(obj)]
                if initial_end:  # WatchList (sendInitialEvents): mark where the initial state ends
                    lines.append(_bookmark(rtype, pos, {"k8s.io/initial-events-end": "true"}))
                    bookmarked = pos
                if lines:
                    yield b"".join(lines)
            else:
                pos = start_rv
            while not self.stopping.is_set():
                wake.clear()
                try:
                    changes, ends, _ = self.store.changes_after(pos)
                except Expired as exc:
                    yield _error_event(exc)
                    return
                out: list[bytes] = []
                pending_ends = iter(ends)
                next_end = next(pending_ends, None)
                for change in changes:
                    while next_end is not None and next_end < change.rv:
                        if bookmarks:
                            out.append(_bookmark(rtype, next_end))
                            bookmarked = next_end
                        next_end = next(pending_ends, None)
                    if change.rtype is rtype and (not namespace or change.key[0] == namespace):
                        line = _translate(change, match, render)
                        if line is not None:
                            out.append(line)
                    pos = change.rv
                while next_end is not None:
                    if bookmarks:
                        out.append(_bookmark(rtype, next_end))
                        bookmarked = next_end
                    pos = max(pos, next_end)
                    next_end = next(pending_ends, None)
                if out:
                    yield b"".join(out)
                remaining = None if deadline is None else deadline - loop.time()
                if remaining is not None and remaining <= 0:
                    # Like the apiserver, tell the client where it stands before the watch times out.
                    # Only up to what this watch has processed, or the client could skip changes.
                    if bookmarks and pos != bookmarked:
                        yield _bookmark(rtype, pos)
                    return
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(wake.wait(), timeout=min(remaining or 0.5, 0.5))
        finally:
            unsubscribe()


def _int_param(params: Mapping[str, str], name: str, default: int) -> int:
    text = params.get(name)
    if not text:
        return default
    try:
        value = int(text)
    except ValueError:
        raise ApiError(400, f"{name}: invalid value {text!r}: must be a non-negative integer") from None
    if value < 0:
        raise ApiError(400, f"{name}: invalid value {text!r}: must be a non-negative integer")
    return value


def _rv(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = -1
    if value < 0:
        raise ApiError(
            400, f'resourceVersion: Invalid value: "{text}": must be a non-negative integer', reason="BadRequest"
        )
    return value


def _without_type(obj: Mapping[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in obj.items() if k not in ("apiVersion", "kind")}


def _event(kind: str, obj: Mapping[str, Any]) -> bytes:
    return dumps({"type": kind, "object": obj}) + b"\n"


def _bookmark(rtype: ResourceType, rv: int, annotations: dict[str, str] | None = None) -> bytes:
    meta: dict[str, Any] = {"resourceVersion": str(rv), "creationTimestamp": None}
    if annotations:
        meta["annotations"] = annotations
    return _event("BOOKMARK", {"kind": rtype.kind, "apiVersion": rtype.api_version, "metadata": meta})


def _error_event(exc: Expired) -> bytes:
    return _event("ERROR", status_body(410, str(exc), "Expired"))


def _translate(
    change: Change, match: Callable[[Mapping[str, Any]], bool], render: Callable[[Mapping[str, Any]], Mapping[str, Any]]
) -> bytes | None:
    """Selector-aware event type: an object leaving the selector is DELETED for this watcher."""
    if change.type == "MODIFIED":
        was, now = change.prev is not None and match(change.prev), match(change.obj)
        if was and now:
            return _event("MODIFIED", render(change.obj))
        if now:
            return _event("ADDED", render(change.obj))
        if was:
            return _event("DELETED", render(change.obj))
        return None
    return _event(change.type, render(change.obj)) if match(change.obj) else None
