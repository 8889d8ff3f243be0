"""The dashboard in a real browser: Debian's headless Chromium (Selenium, the system
chromedriver) against a real ``kubetally server`` process over a SQLite ledger.

It signs in with an admin token and with tenant tokens, checks that what the page shows equals
what the API answers for the same period (to the micro-unit, so certainly to the cent), that a
tenant sees no other tenant anywhere in the page or its downloads, that the page requests
nothing outside the server's own origin, that the session cookie is HttpOnly / SameSite=Strict
/ expiring (Secure over TLS) and ends on sign-out, and saves a screenshot of every view at a
laptop and a phone width under the test's folder (``screenshots/``).

Data: the two-cluster scenario (tests/server/scenario.py: team-a 687.744 on east + 181.44 on
west = 869.184; team-b 20 H100 GPU-h on west = 78.00, and 2,400 GiB-h of unpriced storage)
plus, for team-b on west:

* ``mig-0``: an A100 MIG 1g.10gb slice (1/7 GPU, metered 0.142857143 GPU-h per hour) for the
  10 hours 2026-11-03 00–09: 1.42857143 GPU-h × 2.10 = 3.000000003 → 3.000000 (rounded once,
  half-up to the micro-unit);
* ``etl-0``: 1 core-h of CPU at 00:00 on each of 2026-11-01 … 11-25: 25 × 0.04 = 1.00.

So team-b costs 78.00 + 3.00 + 1.00 = 82.00. An untenanted record (2 core-h of kube-system CPU on
east, 0.08) is dead-lettered by the server's file destination but still priced in the totals:
everyone is 869.184 + 82.00 + 0.08 = 951.264 USD;
team-b has 25 (CPU) + 1 (H100, 11-02) + 1 (storage, 11-02) + 1 (MIG, 11-03) = 28 detail rows
per day, two pages of 20. GPU-hours by SKU and profile: H100 whole 192 + 20 = 212 GPU-h
(673.92 + 78.00 = 751.92), A100 whole 96 (181.44), A100 1g.10gb 1.42857143 (3.00); in all
309.42857143 GPU-h.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import os
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import select

from kubetally.config.destinations import one_off_config
from kubetally.delivery.engine import deliver_once
from kubetally.ledger.store import Ledger
from kubetally.periods import Period, PeriodKind
from kubetally.rating.money import format_money
from kubetally.record import UsageRecord
from kubetally.server.ingest import ingest
from kubetally.server.sessions import find_session, open_session, sessions
from kubetally.server.tokens import create_token
from kubetally.testing import MissingPart
from kubetally.testing.browser import Browser, headless_chromium
from kubetally.testing.server import ServerProcess, cli

from .conftest import api_token
from .scenario import A100, END, PRICES, START, east_records, hourly, west_records

pytestmark = pytest.mark.slow
NOV = "#view={view}&period=month&start=2026-11-01"
LAPTOP, PHONE = (1366, 900), (390, 844)


def _mig(hour: int) -> UsageRecord:
    start = datetime(2026, 11, 3, hour, tzinfo=UTC)
    return UsageRecord.measure(
        cluster="west", kind="Pod", category="compute", item="gpu_hours", name="mig-0", namespace="team-b",
        project="proj-team-b", tenant="team-b", period_kind=PeriodKind.hourly,
        period=Period(start, start + timedelta(hours=1)), usage=Decimal("0.142857143"), unit="h",
        dimensions={"gpu_sku": A100, "gpu_profile": "1g.10gb"},
    )  # fmt: skip


def _etl(day: int) -> UsageRecord:
    return hourly("west", "team-b", "etl-0", "cpu_core_hours", 0, "1", day=datetime(2026, 11, day, tzinfo=UTC))


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[ServerProcess, dict[str, str]]]:
    folder = tmp_path_factory.mktemp("site")
    db = str(folder / "server.db")
    with Ledger.open(db) as ledger:
        ingest(ledger, [*east_records(), *west_records(), *(_mig(h) for h in range(10))])
        ingest(ledger, [_etl(d) for d in range(1, 26)])
        # The server's own outbox to a file: an untenanted record is dead-lettered with its reason.
        ingest(ledger, [hourly("east", "", "kube-system-0", "cpu_core_hours", 3, "2", namespace="kube-system")])
        summary = deliver_once(ledger, [one_off_config("file", path=str(folder / "out.jsonl"))])
        assert summary.dead_lettered == 1
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


@pytest.fixture
def browser() -> Iterator[Browser]:
    try:
        opened = headless_chromium()
        browser = opened.__enter__()
    except MissingPart as exc:  # as tests/conftest.py's require(): CI must not pass without a browser
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(f"real part missing in CI: {exc}")
        pytest.skip(str(exc))
    try:
        yield browser
    finally:
        opened.__exit__(None, None, None)


# -- helpers -------------------------------------------------------------------------------------------


def api(server: ServerProcess, token: str, path: str, **params: Any) -> Any:
    answer = httpx.get(f"{server.url}{path}", params=params, headers={"Authorization": f"Bearer {token}"}, timeout=60)
    assert answer.status_code == 200, answer.text
    return answer.json() if "json" in answer.headers["content-type"] else answer.text


def shown(cost: str | None) -> str:
    """How the page prints an API amount: the reports' exact money text, grouped, with the
    price book's currency (USD here)."""
    micros = int(Decimal(cost) * 1_000_000)
    whole, frac = format_money(micros).split(".")
    return f"{int(whole):,}.{frac} USD"


def cell(row: dict[str, Any]) -> str:
    """How the page prints an API row's cost: unpriced usage is named, never shown as 0."""
    if row["cost"] is None:
        return "unpriced"
    return shown(row["cost"]) + (" + unpriced usage" if row["status"] == "partly unpriced" else "")


def ready(browser: Browser, act: Callable[[], object], view: str) -> None:
    """Do something and wait until the page has drawn the view anew."""
    from selenium.webdriver.support.ui import WebDriverWait

    driver = browser.driver
    before = driver.execute_script("return document.body.dataset.ready || ''")
    act()

    def drawn(d: Any) -> bool:
        now = d.execute_script("return document.body.dataset.ready || ''")
        return bool(now) and now != before and now.startswith(f"{view}:" if view else "")

    WebDriverWait(driver, 60).until(drawn)
    status = driver.find_element("id", "status").text
    assert status == "", status


def sign_in(browser: Browser, server: ServerProcess, token: str, hash_: str = "") -> None:
    from selenium.webdriver.common.keys import Keys
    from selenium.webdriver.support.ui import WebDriverWait

    driver = browser.driver
    driver.get(f"{server.url}/{hash_}")
    WebDriverWait(driver, 30).until(lambda d: d.find_element("id", "token").is_displayed())
    # Keyboard only: the field has the focus; type the token and press Enter.
    assert driver.switch_to.active_element.get_attribute("id") == "token"
    ready(browser, lambda: driver.switch_to.active_element.send_keys(token, Keys.ENTER), "")


def texts(browser: Browser, css: str) -> list[str]:
    return [e.text for e in browser.driver.find_elements("css selector", css)]


def screenshot(browser: Browser, folder: Path, name: str) -> None:
    """The whole page at a laptop and at a phone width."""
    driver = browser.driver
    folder.mkdir(exist_ok=True)
    for label, (width, height) in (("laptop", LAPTOP), ("phone", PHONE)):
        driver.set_window_size(width, height)
        full = driver.execute_script("return document.documentElement.scrollHeight")
        driver.set_window_size(width, min(max(height, full + 140), 6000))
        assert driver.save_screenshot(str(folder / f"{name}-{label}.png"))
        if label == "phone":  # nothing wider than the phone: everything reads without side-scrolling the page
            overflow = driver.execute_script("return document.documentElement.scrollWidth - window.innerWidth")
            assert overflow <= 0, f"{name}: the page is {overflow}px wider than a phone"
    driver.set_window_size(*LAPTOP)


def fetch(browser: Browser, url: str) -> tuple[int, str]:
    """GET a download the way the page's link does (same origin, the session cookie)."""
    script = (
        "const done = arguments[arguments.length - 1];"
        "fetch(arguments[0], {credentials: 'same-origin'}).then(r => r.text().then(t => done([r.status, t])));"
    )
    status, body = browser.driver.execute_async_script(script, url)
    return status, body


def only_own_origin(browser: Browser, server: ServerProcess) -> None:
    requests = browser.drain()
    assert requests, "the performance log recorded no request"
    foreign = [u for u in requests if not u.startswith(f"{server.url}/")]
    assert foreign == [], foreign


# -- tests -------------------------------------------------------------------------------------------


def test_admin_views_match_the_api(
    site: tuple[ServerProcess, dict[str, str]], browser: Browser, tmp_path: Path
) -> None:
    from selenium.webdriver.support.ui import Select

    server, tokens = site
    admin = tokens["admin"]
    shots = tmp_path / "screenshots"
    driver = browser.driver
    driver.get(f"{server.url}/")
    screenshot(browser, shots, "sign-in")

    # Default period: this month (UTC).
    sign_in(browser, server, admin)
    assert driver.find_element("id", "period-label").text == datetime.now(UTC).strftime("%Y-%m")

    # November 2026, overview: totals and the tenant ranking are the API's, to the micro-unit.
    ready(browser, lambda: driver.get(f"{server.url}/{NOV.format(view='overview')}"), "overview")
    assert driver.find_element("id", "period-label").text == "2026-11"
    totals = api(server, admin, "/api/v1/costs/total", start=START, end=END, kind="tenant", step="month",
                 orderBy="cost", order="desc")  # fmt: skip
    assert totals["sum"]["costMicros"] == 951_264_000  # 869.184 + 82.00 + 0.08 (module docstring)
    assert driver.find_element("id", "kpi-total").text == shown(totals["sum"]["cost"]) == "951.264 USD"
    ranked = [(r["tenant"], cell(r)) for r in totals["items"]]
    assert ranked == [("team-a", "869.184 USD"), ("team-b", "82.00 USD + unpriced usage"), ("", "0.08 USD")]
    page_rows = driver.find_elements("css selector", "tr[data-tenant]")
    assert [(r.get_attribute("data-tenant"), r.find_element("css selector", "[data-field=tenant-cost]").text)
            for r in page_rows] == ranked  # fmt: skip
    assert driver.find_element("css selector", "[data-field=total-cost]").text == "951.264 USD"
    assert "(no tenant)" in driver.find_element("css selector", "tr[data-tenant='']").text
    # Unpriced storage is called out with its usage, never as 0.
    note = driver.find_element("css selector", ".warn").text
    assert "2,400 GiB-hours" in note and "0.00" not in note
    # GPU-hours by SKU and MIG profile, as costs/labels answers.
    gpu = api(server, admin, "/api/v1/costs/labels", start=START, end=END, step="month", item="gpu_hours",
              by=["gpu_sku", "gpu_profile"])  # fmt: skip
    expected = [
        [r["labels"]["gpu_sku"], r["labels"]["gpu_profile"] or "whole GPU", f"{r['usage']} GPU-hours", shown(r["cost"])]
        for r in gpu["items"]
    ]
    assert expected == [
        ["nvidia-a100-80gb", "whole GPU", "96 GPU-hours", "181.44 USD"],
        ["nvidia-a100-80gb", "1g.10gb", "1.42857143 GPU-hours", "3.00 USD"],
        ["nvidia-h100-sxm-80gb", "whole GPU", "212 GPU-hours", "751.92 USD"],
    ]
    table = driver.find_element("css selector", "section[aria-label='GPU-hours by SKU and MIG profile'] tbody")
    assert [[c.text for c in row.find_elements("tag name", "td")] for row in table.find_elements("tag name", "tr")] == [
        [r[0], r[1], r[2].replace("96", "96"), r[3]] for r in expected
    ]
    assert driver.find_element("id", "kpi-gpu").text == "309.42857143"
    screenshot(browser, shots, "overview")

    # Steps: the month before is empty; back again; the cluster filter is the API's filter.
    ready(browser, lambda: driver.find_element("id", "prev").click(), "overview")
    assert driver.find_element("id", "period-label").text == "2026-10"
    assert driver.find_element("id", "kpi-total").text == "0.00 USD"
    ready(browser, lambda: driver.find_element("id", "next").click(), "overview")
    assert driver.find_element("id", "period-label").text == "2026-11"
    ready(browser, lambda: Select(driver.find_element("id", "f-cluster")).select_by_value("east"), "overview")
    east = api(server, admin, "/api/v1/costs/total", start=START, end=END, kind="tenant", step="month", cluster="east")
    assert east["sum"]["costMicros"] == 687_824_000  # team-a's H100 and CPU on east, 687.744, + the 0.08
    assert driver.find_element("id", "kpi-total").text == shown(east["sum"]["cost"]) == "687.824 USD"
    ready(browser, lambda: Select(driver.find_element("id", "f-cluster")).select_by_value(""), "overview")
    # A week (ISO, Monday 2026-11-02 … Sunday 11-08) of the same data.
    ready(browser, lambda: Select(driver.find_element("id", "period-kind")).select_by_value("week"), "overview")
    assert driver.find_element("id", "period-label").text == "2026-10-26 – 2026-11-01"
    ready(browser, lambda: driver.find_element("id", "next").click(), "overview")
    week = api(server, admin, "/api/v1/costs/total", start="2026-11-02", end="2026-11-09", kind="tenant", step="week")
    assert driver.find_element("id", "kpi-total").text == shown(week["sum"]["cost"])

    # Tenant view of team-b (admin): items, SKUs, detail rows page by page, downloads.
    hash_ = NOV.format(view="tenant") + "&tenant=team-b"
    ready(browser, lambda: driver.get(f"{server.url}/{hash_}"), "tenant")
    check_tenant_view(browser, server, admin, "team-b")
    screenshot(browser, shots, "tenant-admin")

    # Delivery: the file destination's dead letter with its reason; each cluster's last report.
    ready(browser, lambda: driver.find_element("css selector", "#nav button[data-view=delivery]").click(), "delivery")
    delivery = api(server, admin, "/api/v1/delivery")["items"]
    page = driver.find_element("id", "view").text
    assert [d["destination"] for d in delivery] == ["file"] and delivery[0]["deadLetters"] == 1
    assert delivery[0]["deadLetterList"][0]["reason"] in page and "no tenant" in page
    for cluster in api(server, admin, "/api/v1/clusters")["items"]:
        assert cluster["cluster"] in page and cluster["lastReport"] in page
    screenshot(browser, shots, "delivery")

    # Chinese, as `kubetally report --lang zh`.
    ready(browser, lambda: driver.get(f"{server.url}/{NOV.format(view='overview')}&lang=zh"), "overview")
    assert "总费用" in driver.find_element("id", "view").text
    assert driver.find_element("id", "kpi-total").text == "951.264 USD"
    screenshot(browser, shots, "overview-zh")
    only_own_origin(browser, server)

    # Sign-out ends the session on the server: the old cookie opens nothing afterwards.
    cookie = driver.get_cookie("kubetally_session")
    assert cookie is not None
    assert cookie["httpOnly"] is True and cookie["sameSite"] == "Strict" and cookie["secure"] is False
    assert 0 < cookie["expiry"] - datetime.now(UTC).timestamp() <= 8 * 3600 + 60
    jar = {"kubetally_session": cookie["value"]}
    assert httpx.get(f"{server.url}/api/v1/tenants", cookies=jar, timeout=30).status_code == 200
    driver.find_element("id", "signout").click()
    from selenium.webdriver.support.ui import WebDriverWait

    WebDriverWait(driver, 30).until(lambda d: d.find_element("id", "signin").is_displayed())
    assert httpx.get(f"{server.url}/api/v1/tenants", cookies=jar, timeout=30).status_code == 401
    # A session cookie never makes a state-changing call (ingest needs a bearer token).
    print(f"screenshots: {shots}")


def check_tenant_view(browser: Browser, server: ServerProcess, token: str, tenant: str) -> str:
    """The tenant view's numbers against the API with ``token``; returns the CSV download."""
    driver = browser.driver
    base = {"start": START, "end": END, "tenant": tenant}
    usage = api(server, token, "/api/v1/costs/usage", **base, kind="tenant", step="month", orderBy="cost",
                order="desc", pageSize=1000)  # fmt: skip
    assert driver.find_element("id", "kpi-tenant-total").text == shown(usage["sum"]["cost"])
    assert texts(browser, "[data-field=tenant-total]") == [shown(usage["sum"]["cost"])]
    assert texts(browser, "[data-field=item-cost]") == [cell(r) for r in usage["items"]]
    detail = {**base, "step": "day", "orderBy": "start", "order": "desc"}
    first = api(server, token, "/api/v1/costs/detail", **detail, pageSize=20, currentPage=1)
    pages = -(-first["total"] // 20)
    for number in range(1, pages + 1):
        answer = api(server, token, "/api/v1/costs/detail", **detail, pageSize=20, currentPage=number)
        on_page = texts(browser, "[data-field=detail-cost]")
        assert on_page == [cell(r) for r in answer["items"]]
        assert f"Page {number} of {pages} ({first['total']} rows)" in driver.find_element("id", "page-label").text
        if number < pages:
            ready(browser, lambda: driver.find_element("id", "page-next").click(), "tenant")
    # The CSV download is the API's archive of exactly these rows (all pages).
    href = driver.find_element("id", "download-csv").get_attribute("href")
    status, body = fetch(browser, href)
    assert status == 200
    archive = api(server, token, "/api/v1/costs/detail/archive", **detail)
    assert body == archive
    assert len(list(csv.DictReader(io.StringIO(body)))) == first["total"]
    # The FOCUS download: the API's export of this tenant for the period, and only of it.
    status, focus = fetch(browser, driver.find_element("id", "download-focus").get_attribute("href"))
    assert status == 200
    assert focus == api(server, token, "/api/v1/focus", **base, per="day", skipUnpriced="true")
    rows = list(csv.DictReader(io.StringIO(focus)))
    assert rows and {r["SubAccountId"] for r in rows} == {tenant}
    billed = sum(Decimal(r["BilledCost"]) for r in rows)
    # FOCUS skips unpriced usage; its priced rows bill the tenant's total.
    assert billed == Decimal(usage["sum"]["cost"])
    return body + focus


def test_tenant_sees_only_itself(site: tuple[ServerProcess, dict[str, str]], browser: Browser, tmp_path: Path) -> None:
    server, tokens = site
    driver = browser.driver
    shots = tmp_path / "screenshots"
    token = tokens["team-b"]
    sign_in(browser, server, token, NOV.format(view="overview"))
    assert driver.find_element("id", "period-label").text == "2026-11"
    # The token is nowhere in the browser: not in storage, the URL, script-readable cookies.
    assert driver.execute_script("return localStorage.length + sessionStorage.length") == 0
    assert token not in driver.current_url and driver.execute_script("return document.cookie") == ""
    assert token not in driver.page_source

    own = api(server, token, "/api/v1/costs/total", start=START, end=END, kind="tenant", step="month")
    assert own["sum"]["costMicros"] == 82_000_000  # 78.00 + 3.00 + 1.00 (module docstring)
    assert driver.find_element("id", "kpi-total").text == shown(own["sum"]["cost"]) == "82.00 USD"
    assert [e.get_attribute("data-tenant") for e in driver.find_elements("css selector", "tr[data-tenant]")] == [
        "team-b"
    ]
    assert not driver.find_element("css selector", "#nav button[data-view=delivery]").is_displayed()
    pages = [driver.page_source]
    screenshot(browser, shots, "overview-tenant")

    ready(browser, lambda: driver.find_element("css selector", "#nav button[data-view=tenant]").click(), "tenant")
    assert not driver.find_element("id", "f-tenant").is_displayed()  # a tenant cannot pick another
    pages.append(driver.page_source)
    screenshot(browser, shots, "tenant")
    body = check_tenant_view(browser, server, token, "team-b")
    pages.append(driver.page_source)
    downloads = [body]  # the CSV and the FOCUS file; FOCUS bills team-b's 82.00 (unpriced storage left out)
    # Asking for another tenant through the page's own routes gives nothing of it.
    status, other = fetch(browser, f"{server.url}/api/v1/costs/detail/archive?start={START}&end={END}&tenant=team-a")
    assert status == 200 and len(other.splitlines()) == 1  # the header only
    status, _refused = fetch(browser, f"{server.url}/api/v1/delivery")
    assert status == 403

    for text in [*pages, *downloads, other]:
        for marker in ("team-a", "proj-team-a", "train-0", "infer-0", "869.184", "951.264", "687.744", "kube-system"):
            assert marker not in text
    only_own_origin(browser, server)


def test_session_cookie_rules(site: tuple[ServerProcess, dict[str, str]]) -> None:
    server, tokens = site
    # Behind a TLS-terminating proxy (on loopback, trusted by uvicorn) the cookie is Secure.
    answer = httpx.post(
        f"{server.url}/session", json={"token": tokens["team-a"]}, headers={"X-Forwarded-Proto": "https"}, timeout=30
    )
    assert answer.status_code == 200 and answer.json()["tenant"] == "team-a"
    cookie = answer.headers["set-cookie"]
    for attribute in ("HttpOnly", "Secure", "SameSite=strict", "Max-Age=", "Path=/"):
        assert attribute in cookie
    plain = httpx.post(f"{server.url}/session", json={"token": tokens["team-a"]}, timeout=30)
    assert "Secure" not in plain.headers["set-cookie"]
    jar = {"kubetally_session": plain.cookies["kubetally_session"]}
    # A session reads as its token does (team-a only) but never writes: ingest refuses it.
    seen = httpx.get(f"{server.url}/api/v1/tenants", cookies=jar, timeout=30).json()["items"]
    assert [t["tenant"] for t in seen] == ["team-a"]
    assert httpx.post(f"{server.url}/api/v1/records", json={"records": []}, cookies=jar, timeout=30).status_code == 401
    # Bad tokens and foreign origins are refused; the page carries a same-origin-only policy.
    bad = httpx.post(f"{server.url}/session", json={"token": "kt_0_nope"}, timeout=30)
    assert bad.status_code == 401 and bad.json()["parameter"] == "token"
    foreign = httpx.post(
        f"{server.url}/session", json={"token": tokens["admin"]}, headers={"Origin": "https://evil.example"}, timeout=30
    )
    assert foreign.status_code == 403 and "set-cookie" not in foreign.headers
    # An expired session and a session of a revoked token open nothing.
    with Ledger.open(server.db) as ledger:
        secret, _ = create_token(ledger, "tenant", tenant="team-a")
        old = open_session(ledger, secret, timedelta(minutes=1), now=datetime.now(UTC) - timedelta(hours=1))
        live = open_session(ledger, secret, timedelta(hours=1))
        assert old is not None and live is not None
        assert find_session(ledger, old[0]) is None and find_session(ledger, live[0]) is not None
    tenants = f"{server.url}/api/v1/tenants"
    assert httpx.get(tenants, cookies={"kubetally_session": old[0]}, timeout=30).status_code == 401
    assert httpx.get(tenants, cookies={"kubetally_session": live[0]}, timeout=30).status_code == 200
    revoked = cli("token", "revoke", secret, "--db", server.db)
    assert revoked.returncode == 0, revoked.stderr
    assert httpx.get(tenants, cookies={"kubetally_session": live[0]}, timeout=30).status_code == 401
    # Only a SHA-256 of a session id is stored.
    with Ledger.open(server.db) as ledger, ledger.engine.connect() as conn:
        stored = [r.hash for r in conn.execute(select(sessions))]
    assert hashlib.sha256(live[0].encode()).hexdigest() in stored and live[0] not in stored

    # Not signed in: 401, with the server's language for the sign-in form (en here).
    anonymous = httpx.get(f"{server.url}/session", timeout=30)
    assert anonymous.status_code == 401 and anonymous.json()["lang"] == "en"

    page = httpx.get(f"{server.url}/", timeout=30)
    assert page.status_code == 200 and "default-src 'none'" in page.headers["content-security-policy"]
    assert "connect-src 'self'" in page.headers["content-security-policy"]
    # Every asset the page references is served by the server itself.
    for asset in ("/static/app.js", "/static/app.css", "/static/favicon.svg"):
        assert asset in page.text and httpx.get(f"{server.url}{asset}", timeout=30).status_code == 200
    assert "http" not in json.dumps([line for line in page.text.splitlines() if "src=" in line or "href=" in line])


def test_demo_serve_opens_the_dashboard_on_the_demo_ledger(tmp_path: Path) -> None:
    """``kubetally demo --serve``: the demo's pipeline, then the dashboard over its ledger; the URL
    and a fresh admin token are printed, and the API behind the page answers the demo report's
    numbers (the total of test_demo's hour, priced with the example price book)."""
    import re
    import subprocess
    import sys
    import time

    from kubetally.rating.pricebook import example_pricebook
    from kubetally.reports import build_report
    from kubetally.testing.net import free_port
    from kubetally.testing.server import cli_env

    port = free_port()
    out = tmp_path / "demo"
    command = [sys.executable, "-m", "kubetally.cli.main", "demo", "--out", str(out), "--serve", "--port", str(port)]
    process = subprocess.Popen(command, env=cli_env(), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        assert process.stdout is not None
        lines: list[str] = []
        deadline = time.monotonic() + 240
        while time.monotonic() < deadline and not any("Admin token" in line for line in lines):
            line = process.stdout.readline()
            if not line:
                break
            lines.append(line)
        printed = "".join(lines)
        url = re.search(r"Dashboard: (http://localhost:\d+/#\S+)", printed)
        token = re.search(r"Admin token \(sign in with it; shown once\): (kt_\S+)", printed)
        assert url and token, printed
        assert url.group(1) == f"http://localhost:{port}/#view=overview&period=day&start=2026-11-02"
        base = f"http://127.0.0.1:{port}"
        for _ in range(200):
            try:
                if httpx.get(f"{base}/readyz", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                time.sleep(0.2)
        assert httpx.get(f"{base}/", timeout=30).headers["content-type"].startswith("text/html")
        signed = httpx.post(f"{base}/session", json={"token": token.group(1)}, timeout=30)
        assert signed.status_code == 200 and signed.json()["role"] == "admin"
        jar = {"kubetally_session": signed.cookies["kubetally_session"]}
        answer = httpx.get(
            f"{base}/api/v1/costs/total",
            params={"start": "2026-11-02", "end": "2026-11-03", "step": "day", "kind": "tenant"},
            cookies=jar,
            timeout=60,
        ).json()
        with Ledger.open(str(out / "ledger.db")) as ledger:
            day = datetime(2026, 11, 2, tzinfo=UTC)
            report = build_report(
                ledger, example_pricebook(), None, day, day + timedelta(days=1), by="tenant", per="day"
            )
        assert answer["sum"]["costMicros"] == report.total
        # test_demo derives team-a's GPU-hours alone at 32.556000; the day's total is more.
        assert report.total > 32_556_000
    finally:
        process.terminate()
        process.wait(timeout=30)
