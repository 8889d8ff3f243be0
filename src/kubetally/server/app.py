"""The ``kubetally server`` HTTP application: routes, access control, errors and metrics.

Route handlers only parse parameters, check who is asking and shape answers; what the numbers
are is decided in :mod:`kubetally.server.costs` (which calls the reports of ``kubetally
report``), ingest rules in :mod:`kubetally.server.ingest`, tokens in
:mod:`kubetally.server.tokens`.

Every answer is JSON, errors included: ``{"error": code, "reason": text, "parameter": name or
null}`` — 400 for a bad parameter (named), 401 without a valid token, 403 for a role or scope
that may not do this, 404 for an unknown route, 503 when the ledger cannot be reached, 500
(with no stack trace) for anything else. ``/`` is left free for the dashboard.
"""

from __future__ import annotations

import functools
import inspect
import json
import logging
import os
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, tzinfo
from decimal import Decimal
from typing import Annotated, Any

from fastapi import Depends, FastAPI, Query, Request
from fastapi import Path as FastApiPath
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, PlainTextResponse, Response, StreamingResponse
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from pydantic import BaseModel, Field, ValidationError
from sqlalchemy import text
from sqlalchemy.exc import OperationalError
from starlette.background import BackgroundTask
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from kubetally.config.loader import Config
from kubetally.delivery.outbox import Outbox, all_destinations, outbox_lag
from kubetally.ledger.migrate import alembic_config
from kubetally.ledger.store import Ledger
from kubetally.periods import format_time, parse_time, zone_name
from kubetally.rating.pricebook import PriceBook
from kubetally.record import UsageRecord
from kubetally.reports.buckets import Per, is_midnight
from kubetally.reports.build import ReportError
from kubetally.reports.focus import GRAINS, ROW_GRAINS, CsvWriter, FocusBuilder, FocusError, ParquetWriter
from kubetally.server import budgets, costs, dashboard
from kubetally.server.config import ServerConfig
from kubetally.server.costs import CostQuery, CostService, QueryError, ReportCache
from kubetally.server.costs import Scope as CostScope
from kubetally.server.ingest import MAX_RECORDS, foreign_records, ingest
from kubetally.server.metrics import ServerMetrics
from kubetally.server.tokens import Role, Token, verify_token

log = logging.getLogger(__name__)
API = "/api/v1"


class ApiError(Exception):
    def __init__(self, status: int, error: str, reason: str, parameter: str | None = None, **extra: Any):
        self.status = status
        self.error = error
        self.reason = reason
        self.parameter = parameter
        self.extra = extra
        super().__init__(reason)


def error_body(error: str, reason: str, parameter: str | None = None, **extra: Any) -> dict[str, Any]:
    return {"error": error, "reason": reason, "parameter": parameter, **extra}


class ErrorModel(BaseModel):
    error: str
    reason: str
    parameter: str | None = None


ERRORS: dict[int | str, dict[str, Any]] = {
    code: {"model": ErrorModel, "description": text}
    for code, text in (
        (400, "a bad parameter (named in `parameter`)"),
        (401, "no valid bearer token"),
        (403, "the token's role or scope does not allow this"),
        (503, "the ledger cannot be reached"),
    )
}


# -- access ------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Caller:
    token: Token

    @property
    def scope(self) -> CostScope:
        return CostScope(tenant=self.token.tenant if self.token.role is Role.tenant else None)


_bearer = HTTPBearer(auto_error=False, description="A kubetally token (`kubetally token create`).")


def _require(*roles: Role) -> Callable[..., Caller]:
    def dependency(
        request: Request, credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)]
    ) -> Caller:
        state: ServerState = request.app.state.kubetally
        if credentials is None or credentials.scheme.lower() != "bearer":
            # The dashboard's session cookie (reads only); see kubetally.server.dashboard.
            token = dashboard.session_token(state, request)
            if token is None:
                raise ApiError(401, "unauthorized", "a bearer token is required (Authorization: Bearer <token>)")
        else:
            token = verify_token(state.ledger, credentials.credentials)
        if token is None:
            raise ApiError(401, "unauthorized", "the token is unknown, revoked or expired")
        if token.role not in roles:
            allowed = " or ".join(str(r) for r in roles)
            raise ApiError(403, "forbidden", f"a {token.role} token may not do this (needs {allowed})")
        return Caller(token)

    return dependency


READ = Depends(_require(Role.admin, Role.tenant))
ADMIN = Depends(_require(Role.admin))
INGEST = Depends(_require(Role.admin, Role.agent))


# -- parameters --------------------------------------------------------------------------------------


def _date(value: str, parameter: str, zone: tzinfo = UTC) -> datetime:
    """A time, or a date read as local midnight in the billing time zone ``zone``."""
    text_value = value.strip()
    if len(text_value) == 8 and text_value.isdigit():  # Alauda's 20250601
        text_value = f"{text_value[:4]}-{text_value[4:6]}-{text_value[6:]}"
    try:
        moment = parse_time(text_value, zone)
    except ValueError as exc:
        raise ApiError(400, "bad_parameter", str(exc), parameter) from None
    return moment


def _range(start: str, end: str, *, days: bool = True, zone: tzinfo = UTC) -> tuple[datetime, datetime]:
    since, until = _date(start, "start", zone), _date(end, "end", zone)
    if days:
        for name, moment in (("start", since), ("end", until)):
            if not is_midnight(moment, zone):
                reason = (
                    f"{format_time(moment)}: costs cover whole {zone_name(zone)} days (billing.timezone); give a date"
                )
                raise ApiError(400, "bad_parameter", reason, name)
    if until <= since:
        raise ApiError(
            400, "bad_parameter", f"end {format_time(until)} must be after start {format_time(since)}", "end"
        )
    return since, until


def _values(raw: list[str] | None) -> list[str]:
    """Repeated or comma-separated parameter values."""
    return [v.strip() for value in raw or [] for v in value.split(",") if v.strip()]


def _step(value: str) -> Per:
    try:
        return Per.parse(value)
    except ValueError:
        raise ApiError(400, "bad_parameter", f"must be day, week or month, not {value!r}", "step") from None


def _page(rows: list[dict[str, Any]], current_page: int, page_size: int, limit: int) -> list[dict[str, Any]]:
    if page_size > limit:
        raise ApiError(400, "bad_parameter", f"at most {limit}", "pageSize")
    first = (current_page - 1) * page_size
    return rows[first : first + page_size]


Start = Annotated[str, Query(description="First day, in billing.timezone (`2026-11-01` or `20261101`).")]
End = Annotated[str, Query(description="Day after the last, in billing.timezone (exclusive).")]
Step = Annotated[str, Query(description="Bucket: day, week (ISO) or month.")]
Kind = Annotated[str, Query(description="Group by tenant, project, namespace (with its cluster) or cluster.")]
Filter = Annotated[list[str] | None, Query(description="Only these values (repeatable or comma-separated).")]
Page = Annotated[int, Query(alias="currentPage", ge=1, description="1-based page.")]
PageSize = Annotated[int, Query(alias="pageSize", ge=1, description="Rows per page.")]
OrderBy = Annotated[str, Query(alias="orderBy", description=f"One of {', '.join(costs.ORDERABLE)}.")]
Order = Annotated[str, Query(description="asc or desc.", pattern="^(asc|desc)$")]


def _query(
    start: str,
    end: str,
    step: str,
    kind: str,
    *,
    split_item: bool = False,
    tenant: list[str] | None = None,
    project: list[str] | None = None,
    cluster: list[str] | None = None,
    namespace: list[str] | None = None,
    item: list[str] | None = None,
    name: list[str] | None = None,
    zone: tzinfo = UTC,
) -> CostQuery:
    since, until = _range(start, end, zone=zone)
    if kind not in costs.KINDS:
        raise ApiError(400, "bad_parameter", f"must be one of {', '.join(costs.KINDS)}, not {kind!r}", "kind")
    filters = {
        "tenant": _values(tenant),
        "project": _values(project),
        "cluster": _values(cluster),
        "namespace": _values(namespace),
        "item": _values(item),
    }
    if name:  # Alauda: ``name`` filters the column ``kind`` groups by
        filters[kind] = sorted(set(filters[kind]) | set(_values(name)))
    return CostQuery(since, until, _step(step), kind, split_item, {k: v for k, v in filters.items() if v})


# -- bodies ------------------------------------------------------------------------------------------


class IngestBody(BaseModel):
    """Records as the agent's ledger holds them, each with its revision. ``usage`` is an exact
    decimal (a string, or a JSON number read without going through binary floating point)."""

    records: list[UsageRecord] = Field(max_length=MAX_RECORDS)


class IngestAnswer(BaseModel):
    applied: list[str]
    duplicates: list[str]
    stale: list[str]


# -- application ---------------------------------------------------------------------------------------


@dataclass
class ServerState:
    ledger: Ledger
    service: CostService
    settings: ServerConfig
    metrics: ServerMetrics


class _Metrics:
    """Pure ASGI middleware: counts and times every request by its route template."""

    def __init__(self, app: ASGIApp):
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        began = time.perf_counter()
        status = {"code": 500}

        async def sending(message: Message) -> None:
            if message["type"] == "http.response.start":
                status["code"] = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, sending)
        finally:
            route = scope.get("route")
            template = getattr(route, "path", None) or "unmatched"
            state: ServerState | None = getattr(scope["app"].state, "kubetally", None) if "app" in scope else None
            if state is not None:
                method = scope.get("method", "")
                state.metrics.requests.labels(template, method, str(status["code"])).inc()
                state.metrics.latency.labels(template, method).observe(time.perf_counter() - began)


def create_app(
    ledger: Ledger,
    pricebook: PriceBook,
    config: Config | None = None,
    settings: ServerConfig | None = None,
) -> FastAPI:
    """The server application over an open ledger (the caller closes it)."""
    settings = settings or ServerConfig()
    app = FastAPI(
        title="kubetally",
        version="1",
        summary="Usage and cost of tenants on Kubernetes GPU clouds; ingest from kubetally agents.",
        docs_url="/docs",
        redoc_url=None,
        openapi_url="/openapi.json",
        responses=ERRORS,
    )
    size = settings.report_cache
    service = CostService(
        ledger,
        pricebook,
        config,
        ReportCache(size),
        ReportCache(size and max(size, 4096)),
        store=settings.report_store and size > 0,
    )
    state = ServerState(ledger, service, settings, ServerMetrics(ledger))
    app.state.kubetally = state
    app.add_middleware(_Metrics)
    _errors(app)
    _operations(app, state)
    _ingest(app, state)
    _costs(app, state)
    _catalogue(app, state)
    dashboard.register(app, state, READ, ADMIN, _query, _values)
    budgets.register(app, state, READ, ADMIN, ApiError)
    return app


def _errors(app: FastAPI) -> None:
    @app.exception_handler(ApiError)
    async def api_error(_request: Request, exc: ApiError) -> JSONResponse:
        return JSONResponse(error_body(exc.error, exc.reason, exc.parameter, **exc.extra), status_code=exc.status)

    @app.exception_handler(QueryError)
    async def query_error(_request: Request, exc: QueryError) -> JSONResponse:
        return JSONResponse(error_body("bad_parameter", exc.reason, exc.parameter), status_code=400)

    @app.exception_handler(ReportError)
    @app.exception_handler(FocusError)
    async def report_error(_request: Request, exc: Exception) -> JSONResponse:
        return JSONResponse(error_body("bad_request", str(exc)), status_code=400)

    @app.exception_handler(RequestValidationError)
    async def validation_error(_request: Request, exc: RequestValidationError) -> JSONResponse:
        first = exc.errors()[0] if exc.errors() else {}
        loc = [str(p) for p in first.get("loc", ()) if p not in ("query", "body", "path", "header")]
        parameter = ".".join(loc) or None
        return JSONResponse(error_body("bad_parameter", str(first.get("msg", "invalid")), parameter), status_code=400)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        if exc.status_code == 404:
            body = error_body("not_found", f"no such route: {request.method} {request.url.path}")
        elif exc.status_code == 405:
            body = error_body("method_not_allowed", f"{request.method} is not allowed on {request.url.path}")
        else:
            body = error_body("http_error", str(exc.detail))
        return JSONResponse(body, status_code=exc.status_code, headers=getattr(exc, "headers", None))

    @app.exception_handler(OperationalError)
    async def ledger_down(_request: Request, exc: OperationalError) -> JSONResponse:
        log.warning("ledger unreachable: %s", str(exc.orig or exc).splitlines()[0] if str(exc) else exc)
        return JSONResponse(error_body("unavailable", "the ledger cannot be reached; try again"), status_code=503)

    @app.exception_handler(Exception)
    async def internal(_request: Request, exc: Exception) -> JSONResponse:
        log.exception("internal error")
        return JSONResponse(error_body("internal", "internal error (logged on the server)"), status_code=500)


def _operations(app: FastAPI, state: ServerState) -> None:
    @app.get("/healthz", tags=["operations"], summary="The process is up.")
    def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/readyz", tags=["operations"], summary="The ledger is reachable and its migrations are current.")
    def readyz() -> JSONResponse:
        from alembic.runtime.migration import MigrationContext
        from alembic.script import ScriptDirectory

        try:
            with state.ledger.engine.connect() as conn:
                conn.execute(text("SELECT 1"))
                current = set(MigrationContext.configure(conn).get_current_heads())
        except OperationalError:
            return JSONResponse(error_body("unavailable", "the ledger cannot be reached"), status_code=503)
        heads = set(ScriptDirectory.from_config(alembic_config()).get_heads())
        if current != heads:
            missing = ", ".join(sorted(heads - current)) or "(other heads)"
            return JSONResponse(
                error_body("not_ready", f"ledger migrations are not current (missing {missing})"), status_code=503
            )
        return JSONResponse({"status": "ready", "migrations": sorted(current)})

    def metrics_response() -> Response:
        return Response(generate_latest(state.metrics.registry), media_type=CONTENT_TYPE_LATEST)

    if state.settings.public_metrics:

        @app.get("/metrics", tags=["operations"], summary="Prometheus metrics.", response_class=PlainTextResponse)
        def metrics() -> Response:
            return metrics_response()
    else:

        @app.get("/metrics", tags=["operations"], summary="Prometheus metrics (admin token).")
        def metrics_admin(_caller: Caller = ADMIN) -> Response:
            return metrics_response()


def _ingest(app: FastAPI, state: ServerState) -> None:
    @app.post(
        f"{API}/records",
        tags=["ingest"],
        summary="Apply records from an agent's ledger, idempotently by (record id, revision).",
        response_model=IngestAnswer,
        openapi_extra={
            "requestBody": {
                "required": True,
                "content": {
                    "application/json": {
                        "schema": IngestBody.model_json_schema(ref_template="#/components/schemas/{model}")
                    }
                },
            }
        },
    )
    async def records(request: Request, caller: Caller = INGEST) -> JSONResponse:
        raw = await request.body()
        try:
            data = json.loads(raw, parse_float=Decimal)
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise ApiError(400, "bad_parameter", f"body is not JSON: {exc}", "records") from None
        try:
            body = IngestBody.model_validate(data)
        except ValidationError as exc:
            first = exc.errors()[0]
            where = ".".join(str(p) for p in first["loc"])
            if first["type"] == "too_long":
                raise ApiError(413, "too_large", f"at most {MAX_RECORDS} records per request", "records") from None
            raise ApiError(400, "bad_parameter", first["msg"], where or "records") from None
        bound = caller.token.cluster if caller.token.role is Role.agent else None
        rejected = foreign_records(body.records, bound)
        if rejected:
            raise ApiError(
                403,
                "forbidden",
                f"{len(rejected)} record(s) are for another cluster than {bound!r}; nothing of this batch was applied",
                "records",
                rejected=rejected,
            )
        result = ingest(state.ledger, body.records)
        # New usage may cross a budget threshold: evaluate after the answer is sent.
        background = BackgroundTask(budgets.evaluate_now, state) if result.applied else None
        return JSONResponse(
            {"applied": result.applied, "duplicates": result.duplicates, "stale": result.stale}, background=background
        )


def _page_answer(
    state: ServerState, report: Any, rows: list[dict[str, Any]], page: int, size: int, **echo: Any
) -> dict[str, Any]:
    return {
        **echo,
        "currency": report.currency,
        "total": len(rows),
        "currentPage": page,
        "pageSize": size,
        "sum": costs.total_of(rows),
        "unpriced": [
            {"category": u.category, "item": u.item, "unit": u.unit, "usage": format(u.usage, "f"), "reason": u.reason}
            for u in report.unpriced
        ],
        "items": _page(rows, page, size, state.settings.max_page_size),
    }


def _costs(app: FastAPI, state: ServerState) -> None:
    service = state.service

    def total(
        start: Start,
        end: End,
        step: Step = "month",
        kind: Kind = "tenant",
        item: Annotated[bool, Query(description="Split rows by item.")] = False,
        name: Filter = None,
        tenant: Filter = None,
        project: Filter = None,
        cluster: Filter = None,
        namespace: Filter = None,
        current_page: Page = 1,
        page_size: PageSize = 20,
        order_by: OrderBy = "start",
        order: Order = "asc",
        caller: Caller = READ,
    ) -> JSONResponse:
        query = _query(
            start, end, step, kind, split_item=item, tenant=tenant, project=project, cluster=cluster,
            namespace=namespace, name=name, zone=service.zone,
        )  # fmt: skip
        report, rows = service.total(query, caller.scope)
        rows = costs.order_rows(rows, order_by, order == "desc")
        return JSONResponse(
            _page_answer(state, report, rows, current_page, page_size, start=start, end=end, step=step, kind=kind)
        )

    def usage(
        start: Start,
        end: End,
        step: Step = "month",
        kind: Kind = "tenant",
        item: Filter = None,
        name: Filter = None,
        tenant: Filter = None,
        project: Filter = None,
        cluster: Filter = None,
        namespace: Filter = None,
        current_page: Page = 1,
        page_size: PageSize = 20,
        order_by: OrderBy = "start",
        order: Order = "asc",
        caller: Caller = READ,
    ) -> JSONResponse:
        query = _query(
            start, end, step, kind, tenant=tenant, project=project, cluster=cluster, namespace=namespace,
            item=item, name=name, zone=service.zone,
        )  # fmt: skip
        report, rows = service.usage(query, caller.scope)
        rows = costs.order_rows(rows, order_by, order == "desc")
        return JSONResponse(
            _page_answer(state, report, rows, current_page, page_size, start=start, end=end, step=step, kind=kind)
        )

    def detail_rows(
        start: str,
        end: str,
        step: str,
        filter_zero: bool,
        order_by: str,
        order: str,
        caller: Caller,
        **filters: list[str] | None,
    ) -> tuple[Any, list[dict[str, Any]]]:
        query = _query(start, end, step, "tenant", zone=service.zone, **filters)  # type: ignore[arg-type]
        report, rows = service.detail(query, caller.scope)
        if filter_zero:
            rows = [r for r in rows if r["costMicros"]]
        return report, costs.order_rows(rows, order_by, order == "desc")

    def detail(
        start: Start,
        end: End,
        step: Step = "day",
        tenant: Filter = None,
        project: Filter = None,
        cluster: Filter = None,
        namespace: Filter = None,
        item: Filter = None,
        filter_zero: Annotated[bool, Query(alias="filterZero", description="Leave out rows costing 0.")] = False,
        current_page: Page = 1,
        page_size: PageSize = 20,
        order_by: OrderBy = "start",
        order: Order = "desc",
        caller: Caller = READ,
    ) -> JSONResponse:
        report, rows = detail_rows(
            start, end, step, filter_zero, order_by, order, caller, tenant=tenant, project=project,
            cluster=cluster, namespace=namespace, item=item,
        )  # fmt: skip
        return JSONResponse(_page_answer(state, report, rows, current_page, page_size, start=start, end=end, step=step))

    def archive(
        start: Start,
        end: End,
        step: Step = "day",
        tenant: Filter = None,
        project: Filter = None,
        cluster: Filter = None,
        namespace: Filter = None,
        item: Filter = None,
        filter_zero: Annotated[bool, Query(alias="filterZero")] = False,
        order_by: OrderBy = "start",
        order: Order = "desc",
        caller: Caller = READ,
    ) -> StreamingResponse:
        _report, rows = detail_rows(
            start, end, step, filter_zero, order_by, order, caller, tenant=tenant, project=project,
            cluster=cluster, namespace=namespace, item=item,
        )  # fmt: skip
        name = f"kubetally-costs-{start}-{end}.csv"
        return StreamingResponse(
            costs.detail_csv(rows),
            media_type="text/csv; charset=utf-8",
            headers={"Content-Disposition": f'attachment; filename="{name}"'},
        )

    csv_file: dict[str, Any] = {
        "response_class": StreamingResponse,
        "responses": {200: {"content": {"text/csv": {}}}},
    }
    routes: list[tuple[str, Callable[..., Any], str, dict[str, Any]]] = [
        ("costs/total", total, "Cost per kind and step (Alauda costs/total).", {}),
        ("costs/usage", usage, "Usage (and cost, null when unpriced) per item.", {}),
        ("costs/detail", detail, "Cost per tenant, project, cluster, namespace and item.", {}),
        ("costs/detail/archive", archive, "costs/detail as a CSV file (every row, no paging).", csv_file),
    ]
    for route, endpoint, summary, extra in routes:
        app.get(f"{API}/{route}", tags=["costs"], summary=summary, **extra)(endpoint)
    # Alauda serves each cost route under ``/projects/{project}/`` too: the same answer with the
    # ``project`` filter fixed by the path, under the same token scope (a tenant asking for a
    # project of another tenant gets no rows, exactly as with ``?project=``).
    for route, endpoint, summary, extra in routes:
        app.get(f"{API}/projects/{{project}}/{route}", tags=["costs"], summary=f"{summary} One project.", **extra)(
            _project_scoped(endpoint)
        )


def _project_scoped(endpoint: Callable[..., Any]) -> Callable[..., Any]:
    """``endpoint`` with its ``project`` query filter replaced by a ``{project}`` path parameter.

    FastAPI reads parameters from the signature, so the wrapper carries the endpoint's own
    signature minus the query filter plus the path parameter: defaults, aliases and docs stay
    those of the unscoped route, and a route parameter added later is carried over by itself."""
    signature = inspect.signature(endpoint)
    kept = [
        p.replace(kind=inspect.Parameter.KEYWORD_ONLY) for name, p in signature.parameters.items() if name != "project"
    ]
    path = inspect.Parameter(
        "project",
        inspect.Parameter.KEYWORD_ONLY,
        annotation=Annotated[str, FastApiPath(description="The project (Alauda `projects/{project}/…`).")],
    )

    @functools.wraps(endpoint)
    def scoped(*, project: str, **values: Any) -> Any:
        return endpoint(project=[project], **values)

    scoped.__signature__ = signature.replace(parameters=[path, *kept])  # type: ignore[attr-defined]
    return scoped


def _catalogue(app: FastAPI, state: ServerState) -> None:
    service = state.service

    @app.get(f"{API}/tenants", tags=["catalogue"], summary="Tenants with usage (a tenant token: itself).")
    def tenants(caller: Caller = READ) -> dict[str, Any]:
        return {"items": service.tenants(caller.scope)}

    @app.get(f"{API}/items", tags=["catalogue"], summary="Items with usage, their names and whether priced.")
    def items(
        at: Annotated[str | None, Query(description="Price book as of (default: now).")] = None,
        caller: Caller = READ,
    ) -> dict[str, Any]:
        moment = _date(at, "at") if at else datetime.now(UTC)
        return {"items": service.items(caller.scope, moment)}

    @app.get(f"{API}/prices", tags=["catalogue"], summary="The price book in force (a tenant sees its own terms).")
    def prices(
        at: Annotated[str | None, Query(description="As of (default: now).")] = None,
        caller: Caller = READ,
    ) -> dict[str, Any]:
        moment = _date(at, "at") if at else datetime.now(UTC)
        return service.prices(caller.scope, moment)

    @app.get(
        f"{API}/focus",
        tags=["exports"],
        summary="FinOps FOCUS 1.3 export for a range (CSV or Parquet), streamed.",
        response_class=StreamingResponse,
        responses={200: {"content": {"text/csv": {}, "application/vnd.apache.parquet": {}}}},
    )
    def focus(
        start: Start,
        end: End,
        per: Annotated[str, Query(description=f"Charge period: {', '.join(GRAINS)}.")] = "day",
        rows: Annotated[str, Query(description=f"Row grain: {', '.join(ROW_GRAINS)}.")] = ROW_GRAINS[0],
        fmt: Annotated[str, Query(alias="format", description="csv or parquet.")] = "csv",
        skip_unpriced: Annotated[bool, Query(alias="skipUnpriced")] = False,
        tenant: Filter = None,
        cluster: Filter = None,
        project: Filter = None,
        caller: Caller = READ,
    ) -> StreamingResponse:
        since, until = _range(start, end, days=per != "hour", zone=state.service.zone)
        if (cluster or project) and rows != "resource":
            reason = "cluster and project filters need rows=resource (a sku row may merge several)"
            raise ApiError(400, "bad_parameter", reason, "rows")
        wanted = FocusFilter(caller.scope.tenants(_values(tenant)), _values(cluster), _values(project))
        if per not in GRAINS:
            raise ApiError(400, "bad_parameter", f"must be one of {', '.join(GRAINS)}, not {per!r}", "per")
        if rows not in ROW_GRAINS:
            raise ApiError(400, "bad_parameter", f"must be one of {', '.join(ROW_GRAINS)}, not {rows!r}", "rows")
        if fmt not in ("csv", "parquet"):
            raise ApiError(400, "bad_parameter", f"must be csv or parquet, not {fmt!r}", "format")
        path = _focus_file(state, wanted, since, until, per, rows, fmt, skip_unpriced)
        media = "text/csv; charset=utf-8" if fmt == "csv" else "application/vnd.apache.parquet"
        name = f"kubetally-focus-{start}-{end}.{fmt}"
        return StreamingResponse(
            _stream_file(path), media_type=media, headers={"Content-Disposition": f'attachment; filename="{name}"'}
        )

    @app.get(f"{API}/delivery", tags=["operations"], summary="Outbox per destination: lag, pending, dead letters.")
    def delivery(
        limit: Annotated[int, Query(ge=0, le=1000, description="Dead letters listed per destination.")] = 100,
        _caller: Caller = ADMIN,
    ) -> dict[str, Any]:
        now = datetime.now(UTC)
        lags = {lag.destination: lag for lag in outbox_lag(state.ledger, age=True)}
        out = []
        for cursor in all_destinations(state.ledger):
            outbox = Outbox(state.ledger, cursor.destination)
            dead = outbox.dead_letters("dead")
            reasons: dict[str, int] = {}
            for letter in dead:
                reasons[letter.reason] = reasons.get(letter.reason, 0) + 1
            lag = lags.get(cursor.destination)
            oldest = lag.oldest_pending if lag is not None else None
            out.append(
                {
                    "destination": cursor.destination,
                    "cursor": cursor.cursor,
                    "delivered": cursor.delivered,
                    "duplicates": cursor.duplicates,
                    "pending": outbox.pending(),
                    "lagRecords": lag.records if lag is not None else 0,
                    "lagSeconds": lag.seconds(now) if lag is not None else 0.0,
                    "oldestPending": format_time(oldest) if oldest is not None else None,
                    "deadLetters": len(dead),
                    "deadLetterReasons": [{"reason": r, "count": n} for r, n in sorted(reasons.items())],
                    "deadLetterList": [
                        {
                            "eventId": d.event_id,
                            "recordId": d.record_id,
                            "revision": d.revision,
                            "tenant": d.tenant,
                            "item": d.item,
                            "quantity": format(d.quantity, "f"),
                            "start": format_time(d.timestamp),
                            "status": d.status,
                            "reason": d.reason,
                        }
                        for d in dead[:limit]
                    ],
                    "updatedAt": format_time(cursor.updated_at),
                }
            )
        return {"items": out}


@dataclass(frozen=True)
class FocusFilter:
    """Which FOCUS rows an export keeps: ``tenants`` None for every tenant (an admin's export),
    else those (a tenant token's scope is always exactly its own)."""

    tenants: list[str] | None
    clusters: list[str]
    projects: list[str]

    def keep(self, row: dict[str, Any]) -> bool:
        return (
            (self.tenants is None or row["SubAccountId"] in self.tenants)
            and (not self.clusters or row.get("x_Cluster") in self.clusters)
            and (not self.projects or row.get("x_Project") in self.projects)
        )


def _focus_file(
    state: ServerState,
    wanted: FocusFilter,
    start: datetime,
    end: datetime,
    per: str,
    rows: str,
    fmt: str,
    skip_unpriced: bool,
) -> str:
    """Rate the whole export into a temporary file first: a failure (unpriced usage) becomes a
    clean 400 instead of a truncated download. Only the caller's tenant's rows are written."""
    service = state.service
    builder = FocusBuilder(service.pricebook, service.config, rows)
    handle, path = tempfile.mkstemp(prefix="kubetally-focus-", suffix=f".{fmt}")
    os.close(handle)
    try:
        # A tenant's export reads only its records, so even an error (unpriced usage) can only
        # ever name its own; the row filter below is a second fence.
        one = wanted.tenants[0] if wanted.tenants is not None and len(wanted.tenants) == 1 else None
        batches = builder.rows(state.ledger, start, end, per, skip_unpriced=skip_unpriced, tenant=one)
        if wanted.tenants == []:
            batches = iter(())

        def visible(batch: list[dict[str, Any]]) -> list[dict[str, Any]]:
            return [r for r in batch if wanted.keep(r)]

        if fmt == "csv":
            with open(path, "w", encoding="utf-8", newline="") as stream:
                writer = CsvWriter(stream)
                for batch in batches:
                    writer.write(visible(batch))
        else:
            parquet = ParquetWriter(path)
            try:
                for batch in batches:
                    parquet.write(visible(batch))
            finally:
                parquet.close()
    except BaseException:
        os.unlink(path)
        raise
    return path


def _stream_file(path: str, chunk: int = 1 << 16) -> Iterator[bytes]:
    try:
        with open(path, "rb") as stream:
            while block := stream.read(chunk):
                yield block
    finally:
        os.unlink(path)


def route_paths(app: FastAPI) -> list[str]:
    """Every path of the OpenAPI document (tests walk them all)."""
    return sorted(app.openapi()["paths"])


__all__ = ["ApiError", "create_app", "route_paths"]
