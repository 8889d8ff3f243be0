"""A tenant token never sees another tenant's rows or totals — on EVERY route of the server.

The routes come from the server's own OpenAPI document, so a route added later is walked too
without anyone adding it here. Each route is called with its required parameters, then once
per value of every optional parameter the walker knows (every ``kind``, ``step``, ``format`` …),
and once with filters that *ask* for the other tenant (``tenant=``, ``namespace=``,
``project=``, ``cluster=``, ``name=``). A required parameter the walker has no value for fails
the test, naming it. Every answer must be a non-5xx and must not contain any marker of the
other tenant: its id, namespace, project, pod names, its costs, or the all-tenant total.
Path parameters (``/projects/{project}/…``) are filled with the caller's own value and with the
other tenant's; a path parameter the walker has no value for fails the test too.
A positive control checks the admin token does see every marker, so the check can fail.

Scenario (tests/server/scenario.py): team-a on east and west (687.744 + 181.44 = 869.184),
team-b on west (78.00, plus storage, unpriced, which only team-b has); all tenants: 947.184.
"""

from __future__ import annotations

import io
import itertools
import re
from collections.abc import Iterator
from typing import Any

import httpx
import pyarrow.parquet as pq
import pytest

from kubetally.ledger.store import Ledger
from kubetally.server.ingest import ingest
from kubetally.testing.server import ServerProcess

from .conftest import api_token
from .scenario import END, PRICES, START, east_records, west_records

pytestmark = pytest.mark.postgres

MARKERS = {
    "team-a": ["team-a", "proj-team-a", "train-0", "infer-0", "687.744", "181.44", "869.184"],
    "team-b": ["team-b", "proj-team-b", "batch-0", "data-0", "78.000000", "storage_gib_hours"],
}
ALL_TENANTS_TOTAL = "947.184"
#: What asking for the other tenant looks like, per filter parameter.
ESCAPES = {
    "team-a": {"tenant": "team-b", "namespace": "team-b", "project": "proj-team-b", "name": "team-b"},
    "team-b": {
        "tenant": "team-a",
        "namespace": "team-a",
        "project": "proj-team-a",
        "name": "team-a",
        "cluster": "east",
    },
}
#: Optional parameters set in every call (each value is still tried on its own).
PRESET = {"skipUnpriced": "true"}
#: Values to try per parameter name (the first is used when the parameter is required).
VALUES: dict[str, list[str]] = {
    "start": [START],
    "end": [END],
    "step": ["day", "week", "month"],
    "kind": ["tenant", "project", "namespace", "cluster"],
    "format": ["csv", "parquet"],
    "per": ["day", "month"],
    "rows": ["sku", "resource"],
    "skipUnpriced": ["true", "false"],
    "filterZero": ["true", "false"],
    "orderBy": ["cost", "tenant"],
    "order": ["asc", "desc"],
    "pageSize": ["1000"],
    "at": ["2026-11-02"],
}


@pytest.fixture(scope="module")
def world(pg_server) -> Iterator[tuple[ServerProcess, dict[str, str]]]:  # type: ignore[no-untyped-def]
    db = pg_server.create_database("kt_isolation")
    with Ledger.open(db) as ledger:
        ingest(ledger, [*east_records(), *west_records()])
    tokens = {
        "admin": api_token(db, "admin"),
        "team-a": api_token(db, "tenant", tenant="team-a"),
        "team-b": api_token(db, "tenant", tenant="team-b"),
    }
    process = ServerProcess(db, ["--prices", str(PRICES)])
    process.start()
    try:
        yield process, tokens
    finally:
        process.stop()


#: Path parameters: each route is walked with the caller's own value and with the other
#: tenant's (an escape through the path, e.g. ``/projects/proj-team-b/costs/total``).
PATH_VALUES: dict[str, dict[str, list[str]]] = {
    "team-a": {"project": ["proj-team-a", "proj-team-b"], "name": ["team-a-month", "team-b-month"]},
    "team-b": {"project": ["proj-team-b", "proj-team-a"], "name": ["team-b-month", "team-a-month"]},
}


def _paths(spec: dict[str, Any], path: str, me: str) -> Iterator[str]:
    """The route's path once per combination of its path parameters' values."""
    names = re.findall(r"{(\w+)}", path)
    for name in names:
        assert name in PATH_VALUES[me], f"{path}: no test value for path parameter {name!r}"
    for values in itertools.product(*(PATH_VALUES[me][name] for name in names)):
        filled = path
        for name, value in zip(names, values, strict=True):
            filled = filled.replace(f"{{{name}}}", value)
        yield filled


def _requests(spec: dict[str, Any], path: str, me: str, *, every: bool = True) -> Iterator[tuple[str, dict[str, Any]]]:
    """(method, params) variations for one route of the OpenAPI document (without ``every``:
    the required parameters, then with every escape at once — per value of a path parameter)."""
    for method, op in spec["paths"][path].items():
        params = [p for p in op.get("parameters", []) if p["in"] == "query"]
        base = {}
        for p in params:
            if p.get("required"):
                assert p["name"] in VALUES, f"{method.upper()} {path}: no test value for required {p['name']!r}"
                base[p["name"]] = VALUES[p["name"]][0]
        for p in params:
            if not p.get("required") and p["name"] in PRESET:
                base[p["name"]] = PRESET[p["name"]]  # so e.g. resource rows are not all refused
        yield method, dict(base)
        for p in params if every else ():
            name = p["name"]
            if p.get("required"):
                continue
            values = VALUES.get(name, [])
            if "boolean" in str(p.get("schema")):
                values = ["true", "false"]
            for value in values:
                yield method, {**base, name: value}
        escapes = {p["name"]: ESCAPES[me][p["name"]] for p in params if p["name"] in ESCAPES[me]}
        if escapes:
            yield method, {**base, **escapes}
            for name, value in escapes.items() if every else ():
                yield method, {**base, name: value}


def _text(response: httpx.Response) -> str:
    if response.headers.get("content-type", "").startswith("application/vnd.apache.parquet"):
        return str(pq.read_table(io.BytesIO(response.content)).to_pylist())
    return response.text


def _call(server: ServerProcess, token: str, method: str, path: str, params: dict[str, Any]) -> httpx.Response:
    headers = {"Authorization": f"Bearer {token}"}
    if method == "get":
        return httpx.get(f"{server.url}{path}", params=params, headers=headers, timeout=120)
    body = {"records": []}  # well-formed for ingest; a tenant token must be refused before it
    return httpx.request(method.upper(), f"{server.url}{path}", params=params, json=body, headers=headers, timeout=120)


def test_every_route_keeps_tenants_apart(world: tuple[ServerProcess, dict[str, str]]) -> None:
    server, tokens = world
    spec = httpx.get(f"{server.url}/openapi.json", timeout=30).json()
    paths = sorted(spec["paths"])
    # The walker must at least see the routes of issue 11 (and any added later).
    for expected in (
        "/api/v1/costs/total",
        "/api/v1/costs/detail/archive",
        "/api/v1/projects/{project}/costs/total",
        "/api/v1/projects/{project}/costs/detail/archive",
        "/api/v1/focus",
        "/api/v1/records",
    ):
        assert expected in paths
    seen_by_admin = ""
    walked = 0
    for me, other in (("team-a", "team-b"), ("team-b", "team-a")):
        forbidden = [*MARKERS[other], ALL_TENANTS_TOTAL]
        for route in paths:
            # A route with path parameters is the same handler as its unscoped twin (walked in
            # full): per path value, the plain call and the escapes are enough.
            every = "{" not in route
            for path, (method, params) in itertools.product(
                _paths(spec, route, me), _requests(spec, route, me, every=every)
            ):
                response = _call(server, tokens[me], method, path, params)
                walked += 1
                where = f"{method.upper()} {path} {params} as {me}"
                assert response.status_code < 500, f"{where}: {response.status_code} {response.text[:300]}"
                assert response.status_code in (200, 400, 403, 404), f"{where}: {response.status_code}"
                text = _text(response)
                leaked = [m for m in forbidden if m in text]
                assert not leaked, f"{where}: answer contains {leaked}"
                if me == "team-a":
                    seen_by_admin += _text(_call(server, tokens["admin"], method, path, params))
    # Positive control: the same walk as admin finds every marker, so the check above can fail.
    for marker in [*MARKERS["team-a"], *MARKERS["team-b"], ALL_TENANTS_TOTAL]:
        assert marker in seen_by_admin, marker
    assert walked > 100
