"""The server's contract over HTTP, on a real uvicorn process over a SQLite ledger (the
single-box setup): tokens and roles, errors, the numbers of ``kubetally report``, paging,
exports, delivery status, health and metrics. Data: tests/server/scenario.py."""

from __future__ import annotations

import csv
import hashlib
import io
import json
import re
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path

import httpx
import pytest
from sqlalchemy import create_engine, select, text

from kubetally.config.destinations import one_off_config
from kubetally.delivery.engine import deliver_once
from kubetally.delivery.outbox import Outbox
from kubetally.ledger.store import Ledger, database_url
from kubetally.server.ingest import ingest
from kubetally.server.tables import tokens as token_table
from kubetally.server.tokens import create_token
from kubetally.testing.server import ServerProcess, cli

from .conftest import api_token, cli_token, get
from .scenario import END, PRICES, START, east_records, hourly, west_records


@pytest.fixture(scope="module")
def box(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[ServerProcess, str, dict[str, str]]]:
    db = str(tmp_path_factory.mktemp("box") / "server.db")
    with Ledger.open(db) as ledger:
        ingest(ledger, [*east_records(), *west_records()])
    tokens = {
        "admin": api_token(db, "admin"),
        "team-a": api_token(db, "tenant", tenant="team-a"),
        "team-b": api_token(db, "tenant", tenant="team-b"),
        "east": api_token(db, "agent", cluster="east"),
    }
    process = ServerProcess(db, ["--prices", str(PRICES)])
    process.start()
    try:
        yield process, db, tokens
    finally:
        process.stop()


def post(server: ServerProcess, token: str | None, body: object, *, raw: bytes | None = None) -> httpx.Response:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    if raw is not None:
        return httpx.post(f"{server.url}/api/v1/records", content=raw, headers=headers, timeout=30)
    return httpx.post(f"{server.url}/api/v1/records", json=body, headers=headers, timeout=30)


def test_tokens_roles_and_revocation(box: tuple[ServerProcess, str, dict[str, str]]) -> None:
    server, db, tokens = box
    costs = "/api/v1/costs/total"
    assert get(server, None, costs, start=START, end=END).status_code == 401
    assert get(server, "kt_0000_not-a-token", costs, start=START, end=END).status_code == 401
    assert get(server, tokens["east"], costs, start=START, end=END).status_code == 403  # agent: ingest only
    assert post(server, tokens["team-a"], {"records": []}).status_code == 403  # tenant: read only
    assert get(server, tokens["team-a"], "/api/v1/delivery").status_code == 403  # admin only
    answer = get(server, None, "/api/v1/tenants")
    assert answer.status_code == 401
    assert set(answer.json()) == {"error", "reason", "parameter"}

    # Created by the CLI, listed without its secret, revoked by id: it stops working at once.
    secret = cli_token(db, "--role", "tenant", "--tenant", "team-a", "--expires", "90d", "--name", "portal")
    assert re.fullmatch(r"kt_[0-9a-f]{12}_[A-Za-z0-9_-]{43}", secret)
    assert get(server, secret, "/api/v1/tenants").status_code == 200
    listed = cli("token", "list", "--db", db, "--json")
    assert listed.returncode == 0 and secret not in listed.stdout
    mine = [json.loads(line) for line in listed.stdout.splitlines() if json.loads(line)["name"] == "portal"]
    assert len(mine) == 1 and mine[0]["role"] == "tenant" and mine[0]["tenant"] == "team-a" and mine[0]["active"]
    # Only a SHA-256 of the token is stored, nowhere the token itself.
    with Ledger.open(db) as ledger, ledger.engine.connect() as conn:
        row = conn.execute(select(token_table).where(token_table.c.id == mine[0]["id"])).one()
        assert row.hash == hashlib.sha256(secret.encode()).hexdigest()
        assert secret not in json.dumps([str(v) for v in row])
        expires = row.expires_at - row.created_at
        assert expires == timedelta(days=90)
    revoked = cli("token", "revoke", mine[0]["id"], "--db", db)
    assert revoked.returncode == 0, revoked.stderr
    assert get(server, secret, "/api/v1/tenants").status_code == 401

    # An expired token is refused (created an hour ago, valid for a minute).
    with Ledger.open(db) as ledger:
        old, _ = create_token(ledger, "admin", expires=timedelta(minutes=1), now=datetime.now(UTC) - timedelta(hours=1))
    assert get(server, old, "/api/v1/tenants").status_code == 401

    # Bad token requests on the command line: one line, non-zero exit.
    bad = cli("token", "create", "--db", db, "--role", "tenant")
    assert bad.returncode == 1 and "--role tenant needs --tenant" in bad.stderr and "Traceback" not in bad.stderr
    bad = cli("token", "create", "--db", db, "--role", "root")
    assert bad.returncode == 1 and "--role must be admin, tenant or agent" in bad.stderr


@pytest.mark.parametrize(
    ("params", "parameter"),
    [
        ({"end": END}, "start"),
        ({"start": "yesterday", "end": END}, "start"),
        ({"start": "2026-11-01T10:00:00Z", "end": END}, "start"),
        ({"start": END, "end": START}, "end"),
        ({"start": START, "end": END, "step": "hour"}, "step"),
        ({"start": START, "end": END, "kind": "pod"}, "kind"),
        ({"start": START, "end": END, "orderBy": "colour"}, "orderBy"),
        ({"start": START, "end": END, "pageSize": "0"}, "pageSize"),
        ({"start": START, "end": END, "pageSize": "100000"}, "pageSize"),
        ({"start": START, "end": END, "currentPage": "x"}, "currentPage"),
        ({"start": START, "end": END, "item": "maybe"}, "item"),
    ],
)
def test_bad_parameters_get_400_naming_them(
    box: tuple[ServerProcess, str, dict[str, str]], params: dict[str, str], parameter: str
) -> None:
    server, _db, tokens = box
    answer = get(server, tokens["admin"], "/api/v1/costs/total", **params)
    assert answer.status_code == 400, answer.text
    body = answer.json()
    assert body["error"] == "bad_parameter" and body["parameter"] == parameter and body["reason"]
    assert "Traceback" not in answer.text


def test_unknown_routes_methods_and_bodies_are_json_errors(box: tuple[ServerProcess, str, dict[str, str]]) -> None:
    server, _db, tokens = box
    answer = get(server, tokens["admin"], "/api/v1/nothing")
    assert answer.status_code == 404
    assert answer.json() == {"error": "not_found", "reason": "no such route: GET /api/v1/nothing", "parameter": None}
    assert get(server, None, "/nothing").status_code == 404
    assert get(server, None, "/").headers["content-type"].startswith("text/html")  # the dashboard
    answer = httpx.delete(f"{server.url}/api/v1/costs/total", timeout=30)
    assert answer.status_code == 405 and answer.json()["error"] == "method_not_allowed"
    answer = post(server, tokens["east"], None, raw=b"{not json")
    assert answer.status_code == 400 and answer.json()["parameter"] == "records"
    record = json.loads(east_records()[0].to_json())
    answer = post(server, tokens["east"], {"records": [{**record, "usage": "lots"}]})
    assert answer.status_code == 400 and answer.json()["parameter"] == "records.0.usage"
    answer = post(server, tokens["east"], {"records": [record] * 1001})
    assert answer.status_code == 413 and answer.json()["parameter"] == "records"
    answer = get(server, tokens["admin"], "/api/v1/focus", start=START, end=END, format="xlsx")
    assert answer.status_code == 400 and answer.json()["parameter"] == "format"
    # Unpriced usage in a FOCUS export: a 400 with the reason, not a truncated file.
    answer = get(server, tokens["admin"], "/api/v1/focus", start=START, end=END)
    assert answer.status_code == 400 and "storage_gib_hours" in answer.json()["reason"]


def test_costs_are_the_numbers_kubetally_report_prints(box: tuple[ServerProcess, str, dict[str, str]]) -> None:
    server, db, tokens = box
    for by, kind in (("tenant", "tenant"), ("cluster", "cluster"), ("project", "project")):
        printed = cli(
            "report", "--db", db, "--prices", str(PRICES), "--from", START, "--to", END,
            "--by", by, "--per", "day", "--format", "json",
        )  # fmt: skip
        assert printed.returncode == 0, printed.stderr
        report = json.loads(printed.stdout)
        answer = get(
            server, tokens["admin"], "/api/v1/costs/total", start=START, end=END, kind=kind, step="day", pageSize=1000
        ).json()
        assert sorted((r["start"], r[kind], r["cost"]) for r in answer["items"]) == sorted(
            (r["period_start"], r[by], r["cost"]) for r in report["rows"]
        )
        assert answer["sum"]["cost"] == report["total"]["cost"] == "947.184000"  # 687.744 + 181.44 + 78


def test_detail_paging_ordering_and_archive(box: tuple[ServerProcess, str, dict[str, str]]) -> None:
    server, _db, tokens = box
    params = {"start": START, "end": END, "orderBy": "cost", "order": "desc"}
    whole = get(server, tokens["admin"], "/api/v1/costs/detail", **params, pageSize=100).json()
    # Rows: east team-a gpu 673.92 and cpu 13.824; west team-a gpu 181.44; west team-b gpu 78.00
    # and storage (unpriced: cost null, listed last).
    assert [(r["cluster"], r["tenant"], r["item"], r["cost"]) for r in whole["items"]] == [
        ("east", "team-a", "gpu_hours", "673.920000"),
        ("west", "team-a", "gpu_hours", "181.440000"),
        ("west", "team-b", "gpu_hours", "78.000000"),
        ("east", "team-a", "cpu_core_hours", "13.824000"),
        ("west", "team-b", "storage_gib_hours", None),
    ]
    assert whole["items"][0]["price"] == "3.51"  # 3.90 less 10 %
    assert whole["total"] == 5
    page = get(server, tokens["admin"], "/api/v1/costs/detail", **params, pageSize=2, currentPage=2).json()
    assert page["items"] == whole["items"][2:4] and page["total"] == 5 and page["currentPage"] == 2
    zero = get(server, tokens["admin"], "/api/v1/costs/detail", **params, filterZero="true").json()
    assert len(zero["items"]) == 4
    archive = get(server, tokens["admin"], "/api/v1/costs/detail/archive", **params)
    assert archive.status_code == 200 and archive.headers["content-type"].startswith("text/csv")
    rows = list(csv.DictReader(io.StringIO(archive.text)))
    assert [(r["tenant"], r["item"], r["cost"]) for r in rows] == [
        (r["tenant"], r["item"], r["cost"] or "") for r in whole["items"]
    ]
    # A tenant's archive holds only its rows, and the filter for another tenant finds nothing.
    mine = get(server, tokens["team-b"], "/api/v1/costs/detail/archive", **params).text
    assert {r["tenant"] for r in csv.DictReader(io.StringIO(mine))} == {"team-b"}
    other = get(server, tokens["team-b"], "/api/v1/costs/detail", **params, tenant="team-a").json()
    assert other["items"] == [] and other["sum"]["cost"] == "0.000000"


def test_project_routes_are_the_project_filter(box: tuple[ServerProcess, str, dict[str, str]]) -> None:
    """``/projects/{p}/costs/…`` (Alauda's project-scoped routes) answer exactly what
    ``?project=p`` does, under the same token scope."""
    server, _db, tokens = box
    scoped = get(
        server, tokens["admin"], "/api/v1/projects/proj-team-a/costs/total", start=START, end=END, kind="cluster"
    ).json()
    # proj-team-a is team-a's project on both clusters: east 673.92 + 13.824 = 687.744, west 181.44.
    assert [(r["cluster"], r["project"], r["cost"]) for r in scoped["items"]] == [
        ("east", "proj-team-a", "687.744000"),
        ("west", "proj-team-a", "181.440000"),
    ]
    assert scoped["sum"]["cost"] == "869.184000"  # 687.744 + 181.44
    for route in ("costs/total", "costs/usage", "costs/detail"):
        for kind in ("tenant", "cluster", "namespace"):
            params = {"start": START, "end": END, "kind": kind, "step": "day", "pageSize": 1000}
            filtered = get(server, tokens["admin"], f"/api/v1/{route}", **params, project="proj-team-a").json()
            aliased = get(server, tokens["admin"], f"/api/v1/projects/proj-team-a/{route}", **params).json()
            assert aliased == filtered, (route, kind)
    archive = get(server, tokens["team-a"], "/api/v1/projects/proj-team-a/costs/detail/archive", start=START, end=END)
    assert archive.headers["content-type"].startswith("text/csv")
    rows = list(csv.DictReader(io.StringIO(archive.text)))
    # team-a's detail rows: east gpu 673.92 and cpu 13.824, west gpu 181.44.
    assert sorted((r["cluster"], r["item"], r["cost"]) for r in rows) == [
        ("east", "cpu_core_hours", "13.824000"),
        ("east", "gpu_hours", "673.920000"),
        ("west", "gpu_hours", "181.440000"),
    ]
    # Another tenant's project through the path: no rows, no total (as with ?project=).
    other = get(server, tokens["team-b"], "/api/v1/projects/proj-team-a/costs/detail", start=START, end=END).json()
    assert other["items"] == [] and other["sum"]["cost"] == "0.000000"
    # The path parameter replaces the query filter: it is not accepted twice.
    spec = httpx.get(f"{server.url}/openapi.json", timeout=30).json()
    names = [p["name"] for p in spec["paths"]["/api/v1/projects/{project}/costs/detail"]["get"]["parameters"]]
    assert names.count("project") == 1


def test_catalogue_and_focus(box: tuple[ServerProcess, str, dict[str, str]]) -> None:
    server, _db, tokens = box
    tenants = get(server, tokens["admin"], "/api/v1/tenants").json()["items"]
    assert [(t["tenant"], t["clusters"]) for t in tenants] == [("team-a", ["east", "west"]), ("team-b", ["west"])]
    assert get(server, tokens["team-b"], "/api/v1/tenants").json()["items"][0]["tenant"] == "team-b"
    items = get(server, tokens["team-b"], "/api/v1/items").json()["items"]
    assert [(i["item"], i["priced"]) for i in items] == [("gpu_hours", True), ("storage_gib_hours", False)]
    prices = get(server, tokens["admin"], "/api/v1/prices", at="2026-11-02").json()
    assert prices["currency"] == "USD" and prices["tenants"] == {"team-a": {"discount_percent": "10"}}
    assert get(server, tokens["team-b"], "/api/v1/prices").json()["tenants"] == {}
    focus = get(server, tokens["team-a"], "/api/v1/focus", start=START, end=END, per="month")
    assert focus.status_code == 200
    rows = list(csv.DictReader(io.StringIO(focus.text)))
    # team-a, November: 673.92 + 13.824 + 181.44 = 869.184 billed.
    assert {r["SubAccountId"] for r in rows} == {"team-a"}
    assert sum(Decimal(r["BilledCost"]) for r in rows) == Decimal("869.184")
    parquet = get(server, tokens["team-a"], "/api/v1/focus", start=START, end=END, per="month", format="parquet")
    assert parquet.status_code == 200 and parquet.content[:4] == b"PAR1"


def test_delivery_health_and_metrics(box: tuple[ServerProcess, str, dict[str, str]], tmp_path: Path) -> None:
    server, db, tokens = box
    # The server's own outbox to a file: an untenanted record is dead-lettered with the reason.
    loose = hourly("east", "", "kube-system-0", "cpu_core_hours", 3, "2", namespace="kube-system")
    assert post(server, tokens["east"], {"records": [json.loads(loose.to_json())]}).status_code == 200
    with Ledger.open(db) as ledger:
        summary = deliver_once(ledger, [one_off_config("file", path=str(tmp_path / "out.jsonl"))])
        assert summary.dead_lettered == 1
        ingest(ledger, [hourly("east", "team-a", "late-0", "cpu_core_hours", h, "1") for h in range(3)])
    status = get(server, tokens["admin"], "/api/v1/delivery").json()["items"]
    assert len(status) == 1
    out = status[0]
    assert out["destination"] == "file" and out["lagRecords"] == 3 and out["pending"] == 3
    assert out["lagSeconds"] >= 0 and out["oldestPending"] is not None
    assert out["deadLetters"] == 1 and "no tenant" in out["deadLetterList"][0]["reason"]

    assert get(server, None, "/healthz").json() == {"status": "ok"}
    assert get(server, None, "/readyz").status_code == 200
    # Counted by route template (this test may run alone on its server: ask once here).
    assert get(server, tokens["admin"], "/api/v1/costs/total", start=START, end=END).status_code == 200
    assert get(server, None, "/no-such-route").status_code == 404
    metrics = get(server, None, "/metrics").text
    assert re.search(
        r'kubetally_server_requests_total\{method="GET",route="/api/v1/costs/total",status="200"\} \d', metrics
    )
    assert 'kubetally_server_request_duration_seconds_bucket{le="0.005",method="GET",route="/healthz"}' in metrics
    assert re.search(r'kubetally_server_requests_total\{method="GET",route="unmatched",status="404"\}', metrics)
    # Ingested per cluster: east 48 (scenario) + 1 loose + 3 late = 52; west 58.
    assert 'kubetally_server_ingested_records_total{cluster="east"} 52.0' in metrics
    assert 'kubetally_server_ingested_records_total{cluster="west"} 58.0' in metrics
    assert 'kubetally_server_last_ingest_timestamp_seconds{cluster="east"}' in metrics
    assert 'kubetally_outbox_lag_records{destination="file"} 3.0' in metrics
    assert 'kubetally_outbox_dead_letters{destination="file"} 1.0' in metrics

    # Migrations not current → not ready (503), with the reason; health is still fine.
    # Straight to the database: a ledger behind its schema is (rightly) refused by Ledger.open.
    schema = create_engine(database_url(db))
    with schema.begin() as conn:
        conn.execute(text("DELETE FROM alembic_version WHERE version_num = '0005_server'"))
    try:
        answer = get(server, None, "/readyz")
        assert answer.status_code == 503 and "0005_server" in answer.json()["reason"]
        assert get(server, None, "/healthz").status_code == 200
    finally:
        with schema.begin() as conn:
            conn.execute(text("INSERT INTO alembic_version (version_num) VALUES ('0005_server')"))
        schema.dispose()
    assert get(server, None, "/readyz").status_code == 200


def test_kubetally_destination_from_config_with_token_file(
    box: tuple[ServerProcess, str, dict[str, str]], tmp_path: Path
) -> None:
    """``destinations: [{type: kubetally}]`` with the token in a file; a revoked token stops the
    destination with nothing dead-lettered (and nothing lost: the rows stay pending)."""
    server, db, _tokens = box
    token = cli_token(db, "--role", "agent", "--cluster", "north")
    (tmp_path / "token").write_text(token + "\n", encoding="utf-8")
    config = tmp_path / "kubetally.yaml"
    config.write_text(
        f"destinations:\n  - type: kubetally\n    url: {server.url}\n    api_key_file: {tmp_path / 'token'}\n"
        "server:\n  port: 9000\n",
        encoding="utf-8",
    )
    agent_db = str(tmp_path / "north.db")
    with Ledger.open(agent_db) as ledger:
        ledger.write([hourly("north", "team-c", "job-0", "cpu_core_hours", h, "3") for h in range(4)])
    done = cli("deliver", "--db", agent_db, "-c", str(config))
    assert done.returncode == 0, done.stdout + done.stderr
    # 12 core-h × 0.04 = 0.48 for team-c (no discount).
    answer = get(server, _tokens["admin"], "/api/v1/costs/total", start=START, end=END, tenant="team-c").json()
    assert [(r["tenant"], r["cost"]) for r in answer["items"]] == [("team-c", "0.480000")]

    token_id = token.split("_")[1]
    assert cli("token", "revoke", token_id, "--db", db).returncode == 0
    with Ledger.open(agent_db) as ledger:
        ledger.write([hourly("north", "team-c", "job-0", "cpu_core_hours", 5, "3")])
    done = cli("deliver", "--db", agent_db, "-c", str(config), "--max-wait", "5s")
    assert done.returncode == 1 and "401" in done.stdout + done.stderr
    with Ledger.open(agent_db) as ledger:
        assert Outbox(ledger, "kubetally").dead_letters() == []
        assert Outbox(ledger, "kubetally").pending() == 1

    # Without a token or URL: one line naming what is missing.
    missing = cli("deliver", "--db", agent_db, "--to", "kubetally", "--url", server.url)
    assert missing.returncode == 1 and "KUBETALLY_SERVER_TOKEN" in missing.stderr
    assert "Traceback" not in missing.stderr
    missing = cli("deliver", "--db", agent_db, "--to", "kubetally")
    assert missing.returncode == 1 and "--to kubetally needs --url URL" in missing.stderr


def test_a_new_record_is_in_the_next_answer(box: tuple[ServerProcess, str, dict[str, str]]) -> None:
    """Reports are reused while the ledger is unchanged, never after a write."""
    server, _db, tokens = box
    params = {"start": START, "end": END, "tenant": "team-e"}
    first = get(server, tokens["admin"], "/api/v1/costs/total", **params).json()
    assert first["items"] == [] and get(server, tokens["admin"], "/api/v1/costs/total", **params).json() == first
    record = hourly("east", "team-e", "job-9", "cpu_core_hours", 7, "25")
    assert post(server, tokens["east"], {"records": [json.loads(record.to_json())]}).status_code == 200
    # 25 core-h × 0.04 = 1.00
    after = get(server, tokens["admin"], "/api/v1/costs/total", **params).json()
    assert [(r["tenant"], r["cost"]) for r in after["items"]] == [("team-e", "1.000000")]
    corrected = record.model_copy(update={"usage": Decimal(50), "revision": 1})
    assert post(server, tokens["east"], {"records": [json.loads(corrected.to_json())]}).status_code == 200
    # The agent's revision 1: 50 core-h × 0.04 = 2.00
    after = get(server, tokens["admin"], "/api/v1/costs/total", **params).json()
    assert [(r["tenant"], r["cost"]) for r in after["items"]] == [("team-e", "2.000000")]


def test_label_only_and_zero_corrections_reach_the_server(
    box: tuple[ServerProcess, str, dict[str, str]], tmp_path: Path
) -> None:
    """A revision that only moves usage to other labels (a reversal + full usage for billing
    backends) arrives as that revision; so does a correction to zero."""
    server, db, tokens = box
    base = hourly("east", "team-f", "job-1", "cpu_core_hours", 2, "10")
    moved = base.model_copy(update={"labels": {**base.labels, "node": "node-2"}})
    zeroed = hourly("east", "team-f", "job-2", "cpu_core_hours", 3, "6")
    with Ledger.open(str(tmp_path / "agent.db")) as agent:
        agent.write([base.model_copy(update={"labels": {**base.labels, "node": "node-1"}}), zeroed])
        agent.write([moved, zeroed.model_copy(update={"usage": Decimal(0), "labels": {"node": "node-9"}})])
        summary = deliver_once(
            agent,
            [one_off_config("kubetally", url=server.url)],
            environ={"KUBETALLY_SERVER_TOKEN": tokens["east"]},
        )
        assert summary.ok and summary.dead_lettered == 0
    with Ledger.open(db) as central:
        current = {r.name: (r.usage, r.labels.get("node")) for r in central.records(tenant="team-f")}
    # job-1: 10 core-h now on node-2. job-2: corrected to 0 (its reversal carries the old labels,
    # so the server keeps no usage for it whatever the label).
    assert current["job-1"] == (Decimal(10), "node-2")
    assert current["job-2"][0] == Decimal(0)
    answer = get(server, tokens["admin"], "/api/v1/costs/total", start=START, end=END, tenant="team-f").json()
    assert [(r["tenant"], r["cost"]) for r in answer["items"]] == [("team-f", "0.400000")]  # 10 × 0.04
