"""What every fake billing backend shares: recording, fault injection, contract checks, serving.

A fake plays one vendor on loopback. Every request is recorded, checked against the vendor's
OpenAPI contract (method + path, auth header, content type, body schema), and answered with the
vendor's documented success or error body. Tests drive faults (429/500, outage, slow answers,
rejected events) through the methods below and finally assert ``violations == []``.

State is touched by the server thread and the test thread, so it sits behind one lock and the
public properties hand out snapshots.
"""

from __future__ import annotations

import asyncio
import json
import threading
from collections import deque
from collections.abc import Callable, Hashable, Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar
from urllib.parse import parse_qs

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.types import Receive, Scope, Send

from kubetally.testing.backends.form_encoding import coerce
from kubetally.testing.backends.server import ServerThread
from kubetally.testing.contracts import Match, Spec, load_spec

EventPredicate = Callable[[dict[str, Any]], bool]


@dataclass(frozen=True)
class Recorded:
    """One request as the fake received it (header names lower-cased)."""

    method: str
    path: str
    headers: dict[str, str]
    body: bytes
    query: str = ""

    def json(self) -> Any:
        return json.loads(self.body)


@dataclass(frozen=True)
class Failure:
    status: int
    retry_after: float | None
    body: Any


@dataclass
class Call:
    """A request being handled: raw parts plus what the contract check derived from them."""

    method: str
    path: str
    query: dict[str, list[str]]
    headers: dict[str, str]
    body: bytes
    content_type: str
    match: Match | None = None
    payload: Any = None
    problems: list[str] = field(default_factory=list)
    #: status the vendor uses for this kind of contract problem (400 malformed, 422 invalid …)
    problem_status: int = 400
    #: validation errors in the vendor's own detail format (e.g. Lago ``error_details``)
    problem_details: Any = None

    @property
    def operation_id(self) -> str:
        return self.match.operation.operation_id if self.match else ""

    @property
    def params(self) -> dict[str, str]:
        return self.match.path_params if self.match else {}


def json_response(
    body: Any, status: int = 200, headers: Mapping[str, str] | None = None, media_type: str = "application/json"
) -> Response:
    return JSONResponse(body, status_code=status, headers=dict(headers or {}), media_type=media_type)


def media_type(header: str) -> str:
    return header.split(";", 1)[0].strip().lower()


class FakeBackend:
    """Base class; one subclass per vendor fills in auth, error bodies and handlers."""

    name: ClassVar[str] = ""
    #: contract in ``shared/contracts`` (see :data:`kubetally.testing.contracts.SPEC_FILES`)
    spec_name: ClassVar[str | None] = None
    #: URL path the spec's paths are relative to (Lago: ``/api/v1``)
    prefix: ClassVar[str] = ""
    #: what a user configures as the base URL, relative to ``http://host:port``
    base_path: ClassVar[str] = ""
    #: status used by ``reject_events`` when the caller does not give one
    default_reject_status: ClassVar[int] = 422
    default_api_key: ClassVar[str] = "test-api-key"

    def __init__(self, *, api_key: str | None = None, host: str = "127.0.0.1", port: int | None = None) -> None:
        self.api_key = api_key or self.default_api_key
        self._lock = threading.RLock()
        self._events: dict[Hashable, dict[str, Any]] = {}
        self._requests: list[Recorded] = []
        self._violations: list[str] = []
        self._objects: dict[str, dict[str, dict[str, Any]]] = {}
        self._failures: deque[Failure] = deque()
        self._hangs: deque[float] = deque()
        self._reject: tuple[EventPredicate, int] | None = None
        self._doubled: set[Hashable] = set()
        self._lost: dict[Hashable, dict[str, Any]] = {}
        self._server = ServerThread(self, host=host, port=port)
        self.spec: Spec | None = load_spec(self.spec_name) if self.spec_name else None

    # -- lifecycle -------------------------------------------------------------------------
    @property
    def host(self) -> str:
        return self._server.host

    @property
    def port(self) -> int:
        return self._server.port

    @property
    def base_url(self) -> str:
        return f"http://{self.host}:{self.port}{self.base_path}"

    @property
    def is_up(self) -> bool:
        return self._server.running

    def start(self) -> FakeBackend:
        self._server.start()
        return self

    def stop(self) -> None:
        self._server.stop()

    def __enter__(self) -> FakeBackend:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    # -- observed state (snapshots: safe to iterate while requests keep arriving) ----------
    @property
    def events(self) -> dict[Hashable, dict[str, Any]]:
        """Accepted usage events by the vendor's idempotency key (see :meth:`event_key`)."""
        with self._lock:
            return dict(self._events)

    @property
    def requests(self) -> list[Recorded]:
        with self._lock:
            return list(self._requests)

    @property
    def violations(self) -> list[str]:
        with self._lock:
            return list(self._violations)

    @property
    def objects(self) -> dict[str, dict[str, dict[str, Any]]]:
        """Created setup objects: ``objects[type][id] -> object`` as the vendor returned it."""
        with self._lock:
            return {kind: dict(items) for kind, items in self._objects.items()}

    def event_key(self, event: Mapping[str, Any]) -> Hashable:
        """The vendor's idempotency key of one event; keys of :attr:`events`."""
        raise NotImplementedError

    # -- fault injection --------------------------------------------------------------------
    def fail_next(self, status: int = 429, times: int = 1, retry_after: float | None = None, body: Any = None) -> None:
        """The next ``times`` requests get ``status`` with the vendor's documented error body.

        ``retry_after`` (seconds) adds ``Retry-After`` (and the vendor's rate-limit headers);
        ``body`` replaces the documented body verbatim.
        """
        with self._lock:
            self._failures.extend(Failure(status, retry_after, body) for _ in range(times))

    def hang_next(self, seconds: float, times: int = 1) -> None:
        """The next ``times`` requests are answered only after ``seconds``.

        They are still processed after the delay, like a slow vendor that commits a request the
        client already gave up on — a retry must then be deduplicated by the idempotency key.
        """
        with self._lock:
            self._hangs.extend(seconds for _ in range(times))

    def reject_events(self, predicate: EventPredicate | None, status: int | None = None) -> None:
        """Requests carrying an event for which ``predicate(event)`` is true get the vendor's
        validation error naming that event (until ``reject_events(None)`` or :meth:`reset`)."""
        with self._lock:
            self._reject = None if predicate is None else (predicate, status or self.default_reject_status)

    def lose_event(self, key: Hashable) -> dict[str, Any]:
        """Forget one accepted event (by :meth:`event_key`), as a backend that lost it would:
        usage reads no longer count it although the adapter was told it was accepted."""
        with self._lock:
            event = self._events.pop(key)
            self._lost[key] = event
            return event

    def double_count(self, key: Hashable) -> None:
        """Count one accepted event twice in every usage read (a backend-side double count)."""
        with self._lock:
            if key not in self._events:
                raise KeyError(key)
            self._doubled.add(key)

    def repair(self) -> None:
        """The vendor fixes its data: lost events are back, nothing is counted twice."""
        with self._lock:
            self._events.update(self._lost)
            self._lost.clear()
            self._doubled.clear()

    def counted_events(self) -> list[dict[str, Any]]:
        """The events usage reads aggregate: accepted ones, doubled ones twice."""
        with self._lock:
            return [e for k, e in self._events.items() for _ in range(2 if k in self._doubled else 1)]

    def go_down(self) -> None:
        """Stop listening: new connections are refused until :meth:`come_up`."""
        self._server.stop()

    def come_up(self) -> None:
        self._server.start()

    def reset(self) -> None:
        """Forget everything received and every pending fault (the server keeps running)."""
        with self._lock:
            self._events.clear()
            self._requests.clear()
            self._violations.clear()
            self._objects.clear()
            self._failures.clear()
            self._hangs.clear()
            self._reject = None
            self._doubled.clear()
            self._lost.clear()
            self._reset_vendor_state()

    def _reset_vendor_state(self) -> None:
        """Subclasses clear extra state (sessions, dedup windows) here."""

    # -- helpers for subclasses ---------------------------------------------------------------
    def violation(self, call: Call, message: str) -> None:
        with self._lock:
            self._violations.append(f"{call.method} {call.path}: {message}")

    def rejected(self, event: Mapping[str, Any]) -> int | None:
        """Status to reject this event with, if a test asked for it."""
        with self._lock:
            reject = self._reject
        if reject is None:
            return None
        predicate, status = reject
        try:
            return status if predicate(dict(event)) else None
        except Exception:  # a predicate that cannot handle this event does not match it
            return None

    def store_object(self, kind: str, key: str, obj: dict[str, Any]) -> None:
        with self._lock:
            self._objects.setdefault(kind, {})[key] = obj

    def get_object(self, kind: str, key: str) -> dict[str, Any] | None:
        with self._lock:
            return self._objects.get(kind, {}).get(key)

    # -- vendor hooks ---------------------------------------------------------------------------
    def error(
        self,
        status: int,
        message: str,
        *,
        code: str | None = None,
        details: Any = None,
        headers: Mapping[str, str] | None = None,
        call: Call | None = None,
    ) -> Response:
        """The vendor's documented error body for ``status`` (``call`` picks the API flavour)."""
        raise NotImplementedError

    def rate_limit_headers(self, retry_after: float) -> dict[str, str]:
        return {"Retry-After": _seconds(retry_after)}

    def authenticate(self, call: Call) -> Response | None:
        """401 response when the credentials are wrong, else None; a missing header is also a
        contract violation (the adapter forgot auth), a wrong key is not."""
        raise NotImplementedError

    def decode(self, call: Call) -> None:
        """Parse ``call.body`` into ``call.payload`` (JSON by default)."""
        if not call.body:
            call.payload = None
            return
        try:
            call.payload = json.loads(call.body)
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            call.problems.append(f"body is not valid JSON ({exc})")
            call.problem_status = 400

    def check_contract(self, call: Call) -> None:
        """Method+path, content type and body schema against the spec; fills ``call.problems``."""
        spec = self.spec
        if spec is None:
            return
        call.match = spec.match(call.method, call.path)
        if call.match is None:
            if spec.path_exists(call.path):
                call.problems.append(f"method {call.method} not allowed on {call.path} by the contract")
                call.problem_status = 405
            else:
                call.problems.append(f"path {call.path} is not in the {spec.name} contract")
                call.problem_status = 404
            return
        op = call.match.operation
        self.check_query(call, spec)
        content = op.request_content
        if not content:
            return
        if not call.body:
            if op.body_required:
                call.problems.append("request body is required by the contract")
            return
        if call.content_type not in content:
            call.problems.append(f"content type {call.content_type!r} not accepted (contract: {sorted(content)})")
            call.problem_status = 400
            return
        self.decode(call)
        if call.problems:
            return
        schema = spec.request_schema(op, call.content_type)
        if schema is not None:
            self.validate_body(call, spec, schema)

    def check_query(self, call: Call, spec: Spec) -> None:
        """Declared query parameters: required ones present, values of the declared type."""
        assert call.match is not None
        for param in call.match.operation.parameters:
            if param.get("in") != "query" or param.get("style") == "deepObject":
                continue
            name = str(param["name"])
            values = call.query.get(name)
            if not values:
                if param.get("required"):
                    call.problems.append(f"query parameter {name!r} is required by the contract")
                continue
            schema = spec.inlined(param.get("schema") or {})
            value: Any = (
                [coerce(v, schema.get("items")) for v in values]
                if schema.get("type") == "array"
                else coerce(values[0], schema)
            )
            call.problems.extend(spec.errors(schema, value, f"query/{name}"))

    def validate_body(self, call: Call, spec: Spec, schema: Mapping[str, Any]) -> None:
        problems = spec.errors(schema, call.payload, "body")
        if problems:
            call.problems.extend(problems)
            call.problem_status = self.schema_error_status

    schema_error_status: ClassVar[int] = 400

    async def handle(self, call: Call) -> Response:
        raise NotImplementedError

    def not_implemented(self, call: Call) -> Response:
        return self.error(501, f"the fake {self.name} backend does not implement {call.method} {call.path}", call=call)

    def contract_error(self, call: Call) -> Response:
        return self.error(call.problem_status, "; ".join(call.problems)[:2000], details=call.problem_details, call=call)

    # -- ASGI -------------------------------------------------------------------------------------
    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return
        request = Request(scope, receive)
        response = await self._dispatch(request)
        await response(scope, receive, send)

    async def _dispatch(self, request: Request) -> Response:
        body = await request.body()
        headers = {k.lower(): v for k, v in request.headers.items()}
        raw_path = request.url.path
        query = request.url.query
        recorded = Recorded(request.method, raw_path, headers, body, query)
        with self._lock:
            self._requests.append(recorded)
            hang = self._hangs.popleft() if self._hangs else None
            failure = self._failures.popleft() if self._failures else None
        if hang:
            await asyncio.sleep(hang)

        path = raw_path[len(self.prefix) :] if self.prefix and raw_path.startswith(self.prefix) else raw_path
        call = Call(
            method=request.method,
            path=path,
            query=parse_qs(query, keep_blank_values=True),
            headers=headers,
            body=body,
            content_type=media_type(headers.get("content-type", "")),
        )
        if self.prefix and not raw_path.startswith(self.prefix):
            call.problems.append(f"path {raw_path} is outside {self.prefix}")
            call.problem_status = 404
        else:
            self.check_contract(call)
        for problem in call.problems:
            self.violation(call, problem)

        if failure is not None:
            return self._failure_response(failure, call)
        denied = self.authenticate(call)
        if denied is not None:
            return denied
        if call.problems:
            return self.contract_error(call)
        return await self.handle(call)

    def _failure_response(self, failure: Failure, call: Call) -> Response:
        headers = self.rate_limit_headers(failure.retry_after) if failure.retry_after is not None else {}
        if failure.body is not None:
            if isinstance(failure.body, bytes | str):
                return Response(failure.body, status_code=failure.status, headers=headers)
            return json_response(failure.body, failure.status, headers)
        return self.error(failure.status, _REASONS.get(failure.status, "injected failure"), headers=headers, call=call)


def _seconds(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else f"{value:g}"


def bearer_token(call: Call) -> str | None:
    value = call.headers.get("authorization", "")
    scheme, _, token = value.partition(" ")
    return token.strip() if scheme.lower() == "bearer" and token.strip() else None


_REASONS = {
    400: "Bad Request",
    401: "Unauthorized",
    403: "Forbidden",
    404: "Not Found",
    408: "Request Timeout",
    409: "Conflict",
    422: "Unprocessable Entity",
    429: "Too Many Requests",
    500: "Internal Server Error",
    502: "Bad Gateway",
    503: "Service Unavailable",
    504: "Gateway Timeout",
}


def reason(status: int) -> str:
    return _REASONS.get(status, "Error")
