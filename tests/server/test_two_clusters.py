"""Two agents (clusters east and west, both with namespace and tenant ``team-a``) report to a
real server process over a real PostgreSQL ledger through their outboxes. Scenario and every
expected figure: :mod:`tests.server.scenario`."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from decimal import Decimal
from pathlib import Path

import httpx
import pytest

from kubetally.config.destinations import one_off_config
from kubetally.delivery.engine import deliver_once
from kubetally.delivery.outbox import Outbox
from kubetally.ledger.store import Ledger
from kubetally.periods import parse_time
from kubetally.rating.pricebook import PriceBook
from kubetally.reports import build_report
from kubetally.testing.server import cli, cli_env

from .conftest import api_token, cli_token, get
from .scenario import END, EXPECTED_MICROS, PRICES, START, east_records, hourly, west_records

pytestmark = pytest.mark.postgres
NOV, DEC = parse_time(START), parse_time(END)


def totals(ledger: Ledger) -> dict[tuple[str, str], tuple[int, dict[tuple[str, str, str], Decimal]]]:
    """(cluster, tenant) → (cost in micro-units, usage per item): ``kubetally report`` numbers."""
    report = build_report(ledger, PriceBook.load(PRICES), None, NOV, DEC, by=("cluster", "tenant"))
    return {(r.group["cluster"], r.group["tenant"]): (r.cost, dict(r.usage_by_item)) for r in report.rows}


def deliver(db: str, url: str, token: str, *extra: str) -> subprocess.CompletedProcess[str]:
    """``kubetally deliver --to kubetally``: the agent's outbox, as an operator runs it."""
    return cli("deliver", "--db", db, "--to", "kubetally", "--url", url, *extra, env={"KUBETALLY_SERVER_TOKEN": token})


def deliver_api(ledger: Ledger, url: str, token: str, name: str = "kubetally"):  # type: ignore[no-untyped-def]
    return deliver_once(
        ledger,
        [one_off_config("kubetally", url=url, name=name)],
        environ={"KUBETALLY_SERVER_TOKEN": token},
    )


def test_two_agents_report_and_server_totals_equal_each_ledger(server, pg_url: str, tmp_path: Path) -> None:
    east_db, west_db = str(tmp_path / "east.db"), str(tmp_path / "west.db")
    east_token = cli_token(pg_url, "--role", "agent", "--cluster", "east")
    west_token = cli_token(pg_url, "--role", "agent", "--cluster", "west")
    admin = api_token(pg_url, "admin")
    with Ledger.open(east_db) as east, Ledger.open(west_db) as west, Ledger.open(pg_url) as central:
        east.write(east_records())
        west.write(west_records())
        done = deliver(east_db, server.url, east_token)
        assert done.returncode == 0, done.stdout + done.stderr
        summary = deliver_api(west, server.url, west_token)
        assert summary.ok and summary.delivered == 58 and summary.dead_lettered == 0  # 24 + 10 + 24 records

        # The server's totals per (cluster, tenant) are each agent's own report, exactly.
        server_totals = totals(central)
        assert {k: v[0] for k, v in server_totals.items()} == EXPECTED_MICROS
        for cluster, agent in (("east", east), ("west", west)):
            mine = {k: v for k, v in server_totals.items() if k[0] == cluster}
            assert mine == totals(agent)
        # Usage, exactly: east team-a 192 GPU-h and 384 core-h; west team-b 2400 GiB-h unpriced.
        assert server_totals[("east", "team-a")][1] == {
            ("compute", "gpu_hours", "h"): Decimal(192),
            ("compute", "cpu_core_hours", "h"): Decimal(384),
        }

        # The same figures over HTTP: per cluster, the rows of the agent's report.
        for cluster in ("east", "west"):
            answer = get(server, admin, "/api/v1/costs/total", start=START, end=END, cluster=cluster).json()
            got = {(r["cluster"], r["tenant"]): r["costMicros"] for r in answer["items"]}
            assert got == {k: v for k, v in EXPECTED_MICROS.items() if k[0] == cluster}
        # kind=namespace: two team-a rows, one per cluster — never one summed row.
        rows = get(server, admin, "/api/v1/costs/total", start=START, end=END, kind="namespace").json()["items"]
        assert sorted((r["cluster"], r["namespace"], r["cost"]) for r in rows) == [
            ("east", "team-a", "687.744000"),
            ("west", "team-a", "181.440000"),
            ("west", "team-b", "78.000000"),
        ]
        # Unpriced usage is listed with cost null: 2400 GiB-h of storage for team-b.
        usage = get(server, admin, "/api/v1/costs/usage", start=START, end=END, tenant="team-b").json()["items"]
        assert {(r["item"], r["usage"], r["cost"]) for r in usage} == {
            ("gpu_hours", "20", "78.000000"),
            ("storage_gib_hours", "2400", None),
        }

        # A correction on east (hour 5 re-measured: 4 GPU-h, not 8) arrives as a revision:
        # 188 GPU-h × 3.90 = 733.20 → 659.88; + 13.824 = 673.704.
        east.write([hourly("east", "team-a", "train-0", "gpu_hours", 5, "4", sku="nvidia-h100-sxm-80gb")])
        assert deliver(east_db, server.url, east_token).returncode == 0
        after = totals(central)
        assert after[("east", "team-a")][0] == 673_704_000
        assert {k: v for k, v in after.items() if k[0] == "east"} == totals(east)

        # Replay: a second outbox on the east ledger sends everything again from the start, the
        # old revision of the corrected record included — the server changes nothing.
        summary = deliver_api(east, server.url, east_token, name="replay")
        assert summary.ok and summary.delivered == 0 and summary.dead_lettered == 0
        assert totals(central) == after

        # Out of order, by hand: revision 1 of a new record first, then revision 0 (stale).
        first = hourly("east", "team-a", "train-1", "gpu_hours", 0, "1", sku="nvidia-h100-sxm-80gb")
        east.write([first])
        east.write([first.model_copy(update={"usage": Decimal(3)})])
        rev0, rev1 = (east.revision(first.id, r) for r in (0, 1))
        assert rev0 is not None and rev1 is not None
        post = {"Authorization": f"Bearer {east_token}"}
        wire = [json.loads(rec.to_json()) for rec in (rev1, rev0)]
        answer = httpx.post(f"{server.url}/api/v1/records", json={"records": wire[:1]}, headers=post).json()
        assert answer == {"applied": [f"{first.id}-1"], "duplicates": [], "stale": []}
        answer = httpx.post(f"{server.url}/api/v1/records", json={"records": wire[1:]}, headers=post).json()
        assert answer == {"applied": [], "duplicates": [], "stale": [f"{first.id}-0"]}
        # 3 GPU-h × 3.90 × 0.9 = 10.53 more for east/team-a: 673.704 + 10.53 = 684.234.
        assert totals(central)[("east", "team-a")][0] == 684_234_000
        assert deliver(east_db, server.url, east_token).returncode == 0  # the outbox sends both again
        assert {k: v for k, v in totals(central).items() if k[0] == "east"} == totals(east)

        # A record for another cluster in east's ledger: the server refuses it (403) and it lands
        # in east's dead letters with the reason; the rest of the batch is delivered.
        stray = hourly("west", "team-a", "stray-0", "gpu_hours", 1, "5", sku="nvidia-a100-80gb")
        ok = hourly("east", "team-a", "train-2", "gpu_hours", 1, "1", sku="nvidia-h100-sxm-80gb")
        east.write([stray, ok])
        before_west = {k: v for k, v in totals(central).items() if k[0] == "west"}
        done = deliver(east_db, server.url, east_token)
        # A run that dead-letters anything exits 1 (issue 16: a cron job must not stay green).
        assert done.returncode == 1, done.stdout + done.stderr
        assert "is for cluster 'west'; this agent token may only report 'east'" in done.stdout
        letters = Outbox(east, "kubetally").dead_letters()
        assert [(d.record_id, d.status) for d in letters] == [(stray.id, 403)]
        assert "may only report 'east'" in letters[0].reason
        # east/team-a gained train-2's 1 GPU-h: 3.51 → 687.744; west is untouched.
        now = totals(central)
        assert now[("east", "team-a")][0] == 687_744_000
        assert {k: v for k, v in now.items() if k[0] == "west"} == before_west

        # The agent sees the outbox state through the server's delivery endpoint only for the
        # server's own outboxes; the agent's lag is in its own ledger: nothing pending.
        assert Outbox(east, "kubetally").pending() == 0


def test_server_down_mid_delivery_loses_nothing(server, pg_url: str, tmp_path: Path) -> None:
    """The agent delivers 1,200 records in batches of 20 while the server is killed (SIGKILL)
    and started again; afterwards the server holds exactly the agent's totals."""
    west_db = str(tmp_path / "west.db")
    token = api_token(pg_url, "agent", cluster="west")
    with Ledger.open(west_db) as west:
        # 50 pods × 24 hours of 1 A100 GPU-h each for team-a: 1,200 GPU-h × 2.10 × 0.9 = 2,268.00.
        west.write([hourly("west", "team-a", f"pod-{p}", "gpu_hours", h, "1", sku="nvidia-a100-80gb")
                    for p in range(50) for h in range(24)])  # fmt: skip
    command = [sys.executable, "-m", "kubetally.cli.main", "deliver", "--db", west_db, "--to", "kubetally"]
    command += ["--url", server.url, "--batch", "20", "--follow", "--interval", "1s"]
    agent = subprocess.Popen(
        command, env=cli_env({"KUBETALLY_SERVER_TOKEN": token}), stdout=subprocess.PIPE, stderr=subprocess.PIPE
    )
    try:
        with Ledger.open(pg_url) as central:
            deadline = time.monotonic() + 120
            while time.monotonic() < deadline and _applied(central) < 200:
                time.sleep(0.05)
            assert 0 < _applied(central) < 1200, "the kill must land mid-delivery"
            server.kill()
            time.sleep(2)  # the agent retries against a dead port meanwhile
            server.start()
            with Ledger.open(west_db) as west:
                deadline = time.monotonic() + 180
                while time.monotonic() < deadline and Outbox(west, "kubetally").pending() > 0:
                    time.sleep(0.2)
                assert Outbox(west, "kubetally").pending() == 0
                assert Outbox(west, "kubetally").dead_letters() == []
                assert totals(central) == totals(west)
                assert totals(central)[("west", "team-a")][0] == 2_268_000_000
    finally:
        agent.send_signal(signal.SIGTERM)
        agent.wait(timeout=30)


def _applied(ledger: Ledger) -> int:
    from sqlalchemy import func, select

    from kubetally.ledger import schema

    with ledger.engine.connect() as conn:
        return int(conn.execute(select(func.count()).select_from(schema.records)).scalar_one())
