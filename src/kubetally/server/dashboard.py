"""The dashboard: a page served by ``kubetally server`` itself at ``/``, its sign-in, and the two
API answers the page needs that the cost API did not have (usage per pricing label, last report
per cluster).

The page (``server/static/``: plain HTML, CSS and JavaScript, hand-drawn SVG charts, nothing
fetched from elsewhere) reads the same ``/api/v1`` routes as any client — one code path for
every number. It authenticates with a session cookie (:mod:`kubetally.server.sessions`) that
``POST /session`` hands out for a token: the token is sent once, in a request body, and never
kept by the browser.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from importlib import resources
from typing import TYPE_CHECKING, Annotated, Any

from fastapi import FastAPI, Query, Request
from fastapi.responses import JSONResponse, Response
from pydantic import BaseModel, Field
from sqlalchemy import select

from kubetally.periods import format_time
from kubetally.rating.money import EXACT, format_money_fixed
from kubetally.record import normalize
from kubetally.server.sessions import COOKIE, end_session, find_session, open_session
from kubetally.server.tables import clusters as cluster_table
from kubetally.server.tokens import Role, Token

if TYPE_CHECKING:
    from kubetally.server.app import ServerState
    from kubetally.server.costs import CostQuery, Scope

#: Pricing labels a ``costs/labels`` row is split by when none are asked for.
DEFAULT_LABELS = ("gpu_sku", "gpu_profile")
STATIC = resources.files("kubetally.server") / "static"
#: Files the page may load; anything else under /static is a 404.
ASSETS = {"app.js": "text/javascript", "app.css": "text/css", "favicon.svg": "image/svg+xml"}
#: Only this origin, no inline script, no framing: a page that can only talk to its own server.
POLICY = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; "
    "font-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
)
SECURITY_HEADERS = {
    "Content-Security-Policy": POLICY,
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "X-Frame-Options": "DENY",
}


Filter = Annotated[list[str] | None, Query(description="Only these values (repeatable or comma-separated).")]
LabelKeys = Annotated[list[str] | None, Query(description=f"Label keys (default {', '.join(DEFAULT_LABELS)}).")]
Start = Annotated[str, Query(description="First day, UTC.")]
End = Annotated[str, Query(description="Day after the last, UTC (exclusive).")]
Step = Annotated[str, Query(description="Bucket: day, week or month.")]


class SignIn(BaseModel):
    token: str = Field(min_length=1, max_length=512)


# -- costs per pricing label -------------------------------------------------------------------------


@dataclass
class _LabelRow:
    start: datetime
    end: datetime
    category: str
    item: str
    unit: str
    labels: tuple[str, ...]
    usage: Decimal = Decimal(0)
    cost: int = 0
    priced: int = 0
    unpriced: int = 0


def label_rows(
    state: ServerState, query: CostQuery, scope: Scope, keys: tuple[str, ...]
) -> tuple[Any, list[dict[str, Any]]]:
    """Usage and cost per bucket, item and the values of ``keys`` (e.g. GPU SKU and MIG
    profile), from the charges of the very report ``costs/total`` answers from: the rows of an
    item add up to its ``costs/usage`` row exactly, usage and micro-units alike."""
    report, _rows = state.service.report(query, scope, ("item",))
    # The report is grouped by item plus the filtered columns; keep the rows the filters allow,
    # as the cost routes do.
    post = {k: set(v) for k, v in query.filters.items() if k in ("project", "cluster", "namespace") and v}
    found: dict[tuple[Any, ...], _LabelRow] = {}
    for row in report.rows:
        if not all(row.group[k] in allowed for k, allowed in post.items()):
            continue
        for charge in row.charges:
            line = charge.line
            labels = line.label_map
            values = tuple(labels.get(k, "") for k in keys)
            key = (row.period.start, line.category, line.item, line.unit, values)
            entry = found.get(key)
            if entry is None:
                entry = found[key] = _LabelRow(
                    row.period.start, row.period.end, line.category, line.item, line.unit, values
                )
            entry.usage = EXACT.add(entry.usage, charge.usage)
            entry.cost += charge.cost
            if charge.priced:
                entry.priced += 1
            else:
                entry.unpriced += 1
    out = []
    for key in sorted(found):
        e = found[key]
        status = "priced" if not e.unpriced else ("unpriced" if not e.priced else "partly unpriced")
        out.append(
            {
                "start": format_time(e.start),
                "end": format_time(e.end),
                "category": e.category,
                "item": e.item,
                "unit": e.unit,
                "labels": dict(zip(keys, e.labels, strict=True)),
                "usage": format(normalize(e.usage), "f"),
                "cost": None if status == "unpriced" else format_money_fixed(e.cost),
                "costMicros": None if status == "unpriced" else e.cost,
                "currency": report.currency,
                "status": status,
            }
        )
    return report, out


# -- routes ------------------------------------------------------------------------------------------


def register(
    app: FastAPI,
    state: ServerState,
    read: Any,
    admin: Any,
    make_query: Callable[..., CostQuery],
    values: Callable[[list[str] | None], list[str]],
) -> None:
    """Add the dashboard's page, session and API routes to the server application."""
    _api(app, state, read, admin, make_query, values)
    _pages(app, state)


def _api(
    app: FastAPI,
    state: ServerState,
    read: Any,
    admin: Any,
    make_query: Callable[..., CostQuery],
    values: Callable[[list[str] | None], list[str]],
) -> None:
    @app.get(
        "/api/v1/costs/labels",
        tags=["costs"],
        summary="Usage and cost per item and pricing label (GPU SKU, MIG profile, capacity type).",
    )
    def labels(
        start: Start,
        end: End,
        step: Step = "month",
        by: LabelKeys = None,
        item: Filter = None,
        tenant: Filter = None,
        project: Filter = None,
        cluster: Filter = None,
        namespace: Filter = None,
        caller: Any = read,
    ) -> dict[str, Any]:
        keys = tuple(dict.fromkeys(values(by))) or DEFAULT_LABELS
        query = make_query(
            start, end, step, "tenant", tenant=tenant, project=project, cluster=cluster, namespace=namespace, item=item
        )
        report, rows = label_rows(state, query, caller.scope, keys)
        return {
            "start": start,
            "end": end,
            "step": step,
            "by": list(keys),
            "currency": report.currency,
            "items": rows,
        }

    @app.get("/api/v1/clusters", tags=["operations"], summary="Each reporting cluster's last report (admin).")
    def clusters(_caller: Any = admin) -> dict[str, Any]:
        now = datetime.now(UTC)
        with state.ledger.engine.connect() as conn:
            rows = conn.execute(select(cluster_table).order_by(cluster_table.c.cluster)).all()
        return {
            "at": format_time(now),
            "items": [
                {
                    "cluster": r.cluster,
                    "records": int(r.records),
                    "lastReport": format_time(r.last_ingest_at),
                    "ageSeconds": int((now - r.last_ingest_at).total_seconds()),
                }
                for r in rows
            ],
        }


def _identity(state: ServerState, token: Token, expires: datetime) -> dict[str, Any]:
    return {
        "role": str(token.role),
        "tenant": token.tenant,
        "expires": format_time(expires),
        "lang": state.settings.lang,
        "currency": state.service.pricebook.currency,
    }


def _same_origin(request: Request) -> bool:
    """A browser names the page's origin on every POST/DELETE; it must be this server."""
    origin = request.headers.get("origin")
    if origin is None:
        return True  # not a browser (curl, tests): no cookie to ride on
    host = request.headers.get("host", "")
    return origin in (f"http://{host}", f"https://{host}")


def _pages(app: FastAPI, state: ServerState) -> None:
    lifetime = state.settings.session_lifetime

    def page(name: str, media: str, *, cache: bool) -> Response:
        resource = STATIC / name
        headers = {**SECURITY_HEADERS, "Cache-Control": "no-cache" if cache else "no-store"}
        return Response(resource.read_bytes(), media_type=media, headers=headers)

    @app.get("/", include_in_schema=False)
    def index() -> Response:
        return page("index.html", "text/html; charset=utf-8", cache=False)

    @app.get("/static/{name}", include_in_schema=False)
    def asset(name: str) -> Response:
        media = ASSETS.get(name)
        if media is None:
            return JSONResponse(
                {"error": "not_found", "reason": f"no such file: /static/{name}", "parameter": None}, status_code=404
            )
        return page(name, media, cache=True)

    @app.post("/session", include_in_schema=False)
    def sign_in(body: SignIn, request: Request) -> JSONResponse:
        if not _same_origin(request):
            return JSONResponse(
                {"error": "forbidden", "reason": "sign-in from another origin", "parameter": None}, status_code=403
            )
        opened = open_session(state.ledger, body.token.strip(), lifetime)
        if opened is None:
            return JSONResponse(
                {"error": "unauthorized", "reason": "the token is unknown, revoked or expired", "parameter": "token"},
                status_code=401,
            )
        session_id, session = opened
        if session.token.role is Role.agent:
            end_session(state.ledger, session_id)
            return JSONResponse(
                {"error": "forbidden", "reason": "an agent token cannot sign in", "parameter": "token"},
                status_code=403,
            )
        answer = JSONResponse(
            _identity(state, session.token, session.expires_at), headers={"Cache-Control": "no-store"}
        )
        max_age = max(1, int((session.expires_at - datetime.now(UTC)).total_seconds()))
        answer.set_cookie(
            COOKIE,
            session_id,
            max_age=max_age,
            path="/",
            secure=request.url.scheme == "https",
            httponly=True,
            samesite="strict",
        )
        return answer

    @app.get("/session", include_in_schema=False)
    def who(request: Request) -> JSONResponse:
        session = find_session(state.ledger, request.cookies.get(COOKIE, ""))
        if session is None:
            # The language is not a secret: the sign-in form is shown in the server's language.
            return JSONResponse(
                {"error": "unauthorized", "reason": "not signed in", "parameter": None, "lang": state.settings.lang},
                status_code=401,
                headers={"Cache-Control": "no-store"},
            )
        return JSONResponse(_identity(state, session.token, session.expires_at), headers={"Cache-Control": "no-store"})

    @app.delete("/session", include_in_schema=False)
    def sign_out(request: Request) -> JSONResponse:
        if not _same_origin(request):
            return JSONResponse(
                {"error": "forbidden", "reason": "sign-out from another origin", "parameter": None}, status_code=403
            )
        ended = end_session(state.ledger, request.cookies.get(COOKIE, "")) if request.cookies.get(COOKIE) else False
        answer = JSONResponse({"signedOut": ended})
        answer.delete_cookie(COOKIE, path="/", secure=request.url.scheme == "https", httponly=True, samesite="strict")
        return answer


def session_token(state: ServerState, request: Request) -> Token | None:
    """The token behind the request's session cookie — for reads only (GET/HEAD), so a cookie
    can never make a state-changing API call on the user's behalf."""
    if request.method not in ("GET", "HEAD"):
        return None
    value = request.cookies.get(COOKIE)
    if not value:
        return None
    session = find_session(state.ledger, value)
    return session.token if session is not None else None
