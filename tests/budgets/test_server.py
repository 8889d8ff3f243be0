"""Budgets on the central server: admin CRUD, tenant-scoped budgets and alerts, evaluation after
ingest, and the dashboard's budget panel in a real browser (Debian chromium, Selenium).

Data: the two-cluster scenario of tests/server/scenario.py, all on 2026-11-02 (the last committed
hour ends 2026-11-03 00:00, so 28 of November's 30 days are left):

* team-a spends 673.92 + 13.824 (east) + 181.44 (west) = 869.184 USD. Budget ``team-a-month``
  (kubetally.yaml): 1000.00, forecast threshold 100 % → 86.9 %: 50 % and 80 % crossed. Forecast:
  the last 24 h are the whole of Nov 2, × 672 h / 24 h = × 28 → 869.184 + 28 × 869.184 =
  29 × 869.184 = 25206.336 (2520.6 %) → the forecast alert too.
* team-b spends 20 GPU-h × 3.90 = 78.00 (its storage is unpriced). Budget ``team-b-month`` (PUT by an
  admin): 100.00 → 78.0 %: 50 % crossed. Forecast 29 × 78.00 = 2262.00.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from kubetally.ledger.store import Ledger
from kubetally.server.ingest import ingest
from kubetally.server.tokens import create_token
from kubetally.testing.browser import Browser
from kubetally.testing.server import ServerProcess
from server import test_dashboard as dashboard
from server.scenario import PRICES, east_records, west_records

pytestmark = pytest.mark.slow
#: The dashboard tests' headless Chromium (fails in CI when it is missing, else skips).
browser = dashboard.browser
sign_in, screenshot, texts = dashboard.sign_in, dashboard.screenshot, dashboard.texts
CONFIG = """
budgets:
  items:
    - name: team-a-month
      tenant: team-a
      amount: "1000.00"
      forecast_threshold: 100
"""


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[ServerProcess, dict[str, str]]]:
    folder = tmp_path_factory.mktemp("budgets")
    db = str(folder / "server.db")
    config = folder / "kubetally.yaml"
    config.write_text(CONFIG, encoding="utf-8")
    west = west_records()
    with Ledger.open(db) as ledger:
        ingest(ledger, [*east_records(), *west[:-1]])
        tokens = {
            "admin": create_token(ledger, "admin")[0],
            "agent": create_token(ledger, "agent", cluster="west")[0],
            "team-a": create_token(ledger, "tenant", tenant="team-a")[0],
            "team-b": create_token(ledger, "tenant", tenant="team-b")[0],
        }
    process = ServerProcess(db, ["--prices", str(PRICES), "-c", str(config)])
    process.start()
    try:
        put = call(
            process, tokens["admin"], "PUT", "/api/v1/budgets/team-b-month", {"tenant": "team-b", "amount": "100.00"}
        )
        assert put.status_code == 201, put.text
        # The last record arrives through the API: the server evaluates budgets after the ingest.
        body = {"records": [west[-1].model_dump(mode="json")]}
        posted = call(process, tokens["agent"], "POST", "/api/v1/records", body)
        assert posted.status_code == 200 and len(posted.json()["applied"]) == 1, posted.text
        deadline = time.monotonic() + 60
        while len(call(process, tokens["admin"], "GET", "/api/v1/alerts").json()["items"]) < 4:
            assert time.monotonic() < deadline, "the server did not evaluate budgets after the ingest"
            time.sleep(0.2)
        yield process, tokens
    finally:
        process.stop()


def call(server: ServerProcess, token: str, method: str, path: str, body: Any = None) -> httpx.Response:
    return httpx.request(
        method, f"{server.url}{path}", json=body, headers={"Authorization": f"Bearer {token}"}, timeout=60
    )


def test_budgets_api_is_tenant_scoped_and_admin_only_for_changes(site: tuple[ServerProcess, dict[str, str]]) -> None:
    server, tokens = site
    admin = call(server, tokens["admin"], "GET", "/api/v1/budgets").json()
    assert admin["asOf"] == "2026-11-03T00:00:00Z"
    got = {
        b["name"]: (b["source"], b["spent"], b["spentPercent"], b["forecast"], b["unpriced"]) for b in admin["items"]
    }
    assert got == {
        "team-a-month": ("config", "869.184", "86.9", "25206.336", False),
        "team-b-month": ("server", "78.00", "78.0", "2262.00", True),
    }
    mine = call(server, tokens["team-a"], "GET", "/api/v1/budgets").json()["items"]
    assert [b["name"] for b in mine] == ["team-a-month"]
    assert mine[0]["method"] == "forecast: run rate of last 24 h, not a bill"
    assert {(ln["tenant"], ln["item"], ln["spent"], ln["forecast"]) for ln in mine[0]["lines"]} == {
        # 673.92 + 181.44 = 855.36 of GPUs, × 29 = 24805.44; CPU 13.824 × 29 = 400.896.
        ("team-a", "gpu_hours", "855.36", "24805.44"),
        ("team-a", "cpu_core_hours", "13.824", "400.896"),
    }
    alerts_a = call(server, tokens["team-a"], "GET", "/api/v1/alerts").json()["items"]
    assert sorted((a["budget"], a["kind"], a["threshold"], a["crossedAt"]) for a in alerts_a) == [
        ("team-a-month", "actual", "50", "2026-11-03T00:00:00Z"),
        ("team-a-month", "actual", "80", "2026-11-03T00:00:00Z"),
        ("team-a-month", "forecast", "100", "2026-11-03T00:00:00Z"),
    ]
    alerts_b = call(server, tokens["team-b"], "GET", "/api/v1/alerts").json()["items"]
    assert [(a["budget"], a["kind"], a["threshold"], a["value"]) for a in alerts_b] == [
        ("team-b-month", "actual", "50", "78.00")
    ]
    # Changes: admin only; bad bodies named; a kubetally.yaml budget is changed in the file.
    assert (
        call(server, tokens["team-a"], "PUT", "/api/v1/budgets/x", {"tenant": "team-a", "amount": 1}).status_code == 403
    )
    bad = call(server, tokens["admin"], "PUT", "/api/v1/budgets/x", {"tenant": "team-a", "amount": 1, "treshold": [5]})
    assert (bad.status_code, bad.json()["parameter"], bad.json()["reason"]) == (400, "treshold", "unknown key")
    clash = call(server, tokens["admin"], "PUT", "/api/v1/budgets/team-a-month", {"tenant": "team-a", "amount": 1})
    assert clash.status_code == 409
    assert (
        call(server, tokens["admin"], "PUT", "/api/v1/budgets/tmp", {"cluster": "east", "amount": 5}).status_code == 201
    )
    assert "tmp" not in [b["name"] for b in call(server, tokens["team-a"], "GET", "/api/v1/budgets").json()["items"]]
    assert call(server, tokens["admin"], "DELETE", "/api/v1/budgets/tmp").status_code == 200
    assert call(server, tokens["admin"], "DELETE", "/api/v1/budgets/tmp").status_code == 404


def test_budget_panel_shows_a_tenant_only_its_own_budget(
    site: tuple[ServerProcess, dict[str, str]],
    browser: Browser,
    tmp_path: Path,
) -> None:
    server, tokens = site
    shots = tmp_path / "screenshots"
    sign_in(browser, server, tokens["team-a"], "#view=budgets")
    assert texts(browser, "[data-field=budget-name]") == ["team-a-month"]
    assert texts(browser, "[data-field=budget-spent]") == ["869.184 USD (86.9 %)"]
    assert texts(browser, "[data-field=budget-forecast]") == ["25,206.336 USD (2520.6 %)"]
    assert texts(browser, "[data-field=forecast-method]") == [
        "Forecast: run rate of the last 24 h extrapolated to the end of the period — an estimate, not a bill."
    ]
    crossed = texts(browser, "[data-field=budget-crossed] li")
    assert crossed == [
        "spend 50 % at 2026-11-03 00:00",
        "spend 80 % at 2026-11-03 00:00",
        "forecast 100 % at 2026-11-03 00:00",
    ]
    page = browser.driver.find_element("tag name", "body").text
    assert "team-b" not in page
    screenshot(browser, shots, "budgets-tenant")
    # An admin sees every tenant's budget.
    browser.driver.delete_all_cookies()
    sign_in(browser, server, tokens["admin"], "#view=budgets")
    assert texts(browser, "[data-field=budget-name]") == ["team-a-month", "team-b-month"]
    screenshot(browser, shots, "budgets-admin")
    print(f"screenshots: {shots}")
