"""The cost API follows ``billing.timezone`` like ``kubetally report``: its ``start``/``end`` dates
are local dates, its days local days, and it keeps the ledger's rollups in that zone, so a CLI and
a server sharing one ledger never rebuild them back and forth. On SQLite and PostgreSQL."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select

from kubetally.app.report import resolve_range
from kubetally.config import load_config
from kubetally.ledger.store import Ledger
from kubetally.periods import Period
from kubetally.rating import rollups as rollup_module
from kubetally.rating.pricebook import PriceBook
from kubetally.rating.tables import rollup_state
from kubetally.reports import build_report
from kubetally.server.app import API, create_app
from kubetally.server.tokens import create_token
from rating.conftest import record

PRICES = 'currency: USD\nprices:\n  - {category: compute, item: gpu_hours, price: "2.00"}\n'


def utc(*parts: int) -> datetime:
    return datetime(*parts, tzinfo=UTC)  # type: ignore[misc]


def gpu(start: datetime, usage: str) -> object:
    return record("t", "gpu_hours", Period(start, start + timedelta(hours=1)), usage)


def kept_zone(ledger: Ledger) -> str:
    with ledger.engine.connect() as conn:
        return str(conn.execute(select(rollup_state.c.timezone)).scalar_one())


def test_server_days_are_the_cli_report_days_and_share_its_rollups(
    ledger: Ledger, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "prices.yaml").write_text(PRICES)
    (tmp_path / "kubetally.yaml").write_text("billing:\n  timezone: Asia/Shanghai\n")
    book = PriceBook.load(tmp_path / "prices.yaml")
    config = load_config([tmp_path / "kubetally.yaml"])
    # Each record sits just before or after a local (UTC+8) midnight, i.e. 16:00Z:
    ledger.write(
        [
            gpu(utc(2026, 10, 31, 15), "1"),  # local Oct 31 23:00
            gpu(utc(2026, 10, 31, 16), "2"),  # local Nov 1 00:00
            gpu(utc(2026, 11, 1, 15), "4"),  # local Nov 1 23:00
            gpu(utc(2026, 11, 1, 16), "8"),  # local Nov 2 00:00
            gpu(utc(2026, 11, 2, 15), "16"),  # local Nov 2 23:00
            gpu(utc(2026, 11, 2, 16), "32"),  # local Nov 3 00:00
        ]
    )
    # The CLI report: local 2026-11-01 and 2026-11-02 = [10-31T16Z, 11-02T16Z)
    since, until = resolve_range("2026-11-01", "2026-11-03", config.settings.billing.zone)
    assert (since, until) == (utc(2026, 10, 31, 16), utc(2026, 11, 2, 16))
    cli = build_report(ledger, book, config, since, until, by="tenant", per="day")
    # local Nov 1: 2 + 4 = 6 GPU-h × 2.00 = 12.00; local Nov 2: 8 + 16 = 24 GPU-h × 2.00 = 48.00
    assert [(r.period.start, r.cost) for r in cli.rows] == [
        (utc(2026, 10, 31, 16), 12_000_000),
        (utc(2026, 11, 1, 16), 48_000_000),
    ]
    assert kept_zone(ledger) == "Asia/Shanghai"

    resets: list[str] = []
    real_reset = rollup_module._reset

    def counting_reset(conn: object, keys: object, zone: str) -> None:
        resets.append(zone)
        real_reset(conn, keys, zone)  # type: ignore[arg-type]

    monkeypatch.setattr(rollup_module, "_reset", counting_reset)
    token = create_token(ledger, "admin")[0]
    client = TestClient(create_app(ledger, book, config))
    answer = client.get(
        f"{API}/costs/total",
        params={"start": "2026-11-01", "end": "2026-11-03", "step": "day", "kind": "tenant"},
        headers={"Authorization": f"Bearer {token}"},
    )
    assert answer.status_code == 200, answer.text
    items = answer.json()["items"]
    # The same local days and micro-units as the CLI report
    assert [(i["start"], i["end"], i["costMicros"]) for i in items] == [
        ("2026-10-31T16:00:00Z", "2026-11-01T16:00:00Z", 12_000_000),
        ("2026-11-01T16:00:00Z", "2026-11-02T16:00:00Z", 48_000_000),
    ]
    assert [i["costMicros"] for i in items] == [r.cost for r in cli.rows]
    # Neither the server nor a following CLI report rebuilt the rollups: one zone throughout
    again = build_report(ledger, book, config, since, until, by="tenant", per="day")
    assert again.total == cli.total == 60_000_000
    assert resets == [] and kept_zone(ledger) == "Asia/Shanghai"
    # A UTC midnight that is not a local one is refused by name
    bad = client.get(
        f"{API}/costs/total",
        params={"start": "2026-11-01T00:00:00Z", "end": "2026-11-03", "step": "day"},
        headers={"Authorization": f"Bearer {token}"},
    )
    assert bad.status_code == 400 and "whole Asia/Shanghai days" in bad.text
