"""Budget routes of ``kubetally server``: budgets (admins create, replace and delete them;
everyone reads what their token's scope allows) and the alert list.

A tenant token sees the budgets and alerts of its own tenant only; project and cluster budgets
span tenants, so only admins see them. Budgets are evaluated with the usage committed so far,
and after every ingest that applied records (in the background, after the answer), so the alert
list fills as agents report; alert ids make a concurrent evaluation by another replica harmless.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse
from pydantic import ValidationError

from kubetally.app.budgets import evaluate_and_notify
from kubetally.config.budgets import BudgetConfig, BudgetsConfig
from kubetally.config.loader import Config
from kubetally.rating.display import DisplayCatalog
from kubetally.reports.budgets import alert_rows, committed_until, delete_budget, evaluate_all, save_budget

if TYPE_CHECKING:
    from kubetally.server.app import ServerState

log = logging.getLogger(__name__)


def configured(state: ServerState) -> BudgetsConfig:
    config = state.service.config
    return config.settings.budgets if config is not None else BudgetsConfig()


def evaluate_now(state: ServerState) -> None:
    """Record new crossings and send pending alerts (after an ingest); failures are logged."""
    config = state.service.config or Config()
    try:
        run = evaluate_and_notify(state.ledger, config, state.service.pricebook, dict(os.environ))
    except Exception as exc:  # an alert target must never fail an ingest
        log.error("budget evaluation failed: %s", exc)
        return
    for error in run.sends.errors:
        log.error("budget alert not sent (kept pending): %s", error)


def register(app: FastAPI, state: ServerState, read: Any, admin: Any, error: Callable[..., Exception]) -> None:
    @app.get("/api/v1/budgets", tags=["budgets"], summary="Each budget: spent, forecast, thresholds crossed.")
    def budgets(caller: Any = read) -> dict[str, Any]:
        now = datetime.now(UTC)
        as_of = committed_until(state.ledger, now) or now
        statuses = evaluate_all(
            state.ledger,
            configured(state),
            state.service.pricebook,
            DisplayCatalog.from_config(state.service.config),
            as_of,
            tenant=caller.scope.tenant,
            zone=state.service.zone,
        )
        return {"asOf": as_of.strftime("%Y-%m-%dT%H:%M:%SZ"), "items": [s.as_dict() for s in statuses]}

    @app.put("/api/v1/budgets/{name}", tags=["budgets"], summary="Create or replace a stored budget (admin).")
    async def put_budget(name: str, request: Request, _caller: Any = admin) -> JSONResponse:
        try:
            body = await request.json()
        except ValueError:
            raise error(400, "bad_parameter", "body is not JSON", "budget") from None
        if not isinstance(body, dict):
            raise error(400, "bad_parameter", "body must be a JSON object", "budget")
        body.setdefault("name", name)
        if body["name"] != name:
            raise error(400, "bad_parameter", f"name {body['name']!r} differs from the path's {name!r}", "name")
        try:
            budget = BudgetConfig.model_validate(body)
        except ValidationError as exc:
            first = exc.errors()[0]
            where = ".".join(str(p) for p in first["loc"]) or "budget"
            reason = "unknown key" if first["type"] == "extra_forbidden" else first["msg"].removeprefix("Value error, ")
            raise error(400, "bad_parameter", reason, where) from None
        if any(b.name == name for b in configured(state).items):
            raise error(409, "conflict", f"budget {name!r} is defined in kubetally.yaml; change it there", "name")
        created = save_budget(state.ledger, budget)
        return JSONResponse({"name": name, "created": created}, status_code=201 if created else 200)

    @app.delete("/api/v1/budgets/{name}", tags=["budgets"], summary="Delete a stored budget (admin).")
    def remove_budget(name: str, _caller: Any = admin) -> dict[str, Any]:
        if not delete_budget(state.ledger, name):
            raise error(404, "not_found", f"no stored budget {name!r}", "name")
        return {"name": name, "deleted": True}

    @app.get("/api/v1/alerts", tags=["budgets"], summary="Budget alerts, newest first (a tenant: its own).")
    def alerts(caller: Any = read) -> dict[str, Any]:
        return {"items": alert_rows(state.ledger, tenant=caller.scope.tenant)}
