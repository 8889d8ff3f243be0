"""Budgets over a month of generated usage: spend, forecast and alerts, computed by hand.

Tenant ``acme`` runs H100s all of November 2026 (30 days, 720 hours), priced 3.90 USD per
GPU-hour (tests/data/server/prices.yaml): 1 GPU from Nov 1 to Nov 10 (hours 1–240, 3.90/h),
3 GPUs from Nov 11 on (11.70/h). Budget ``acme-month``: 3000.00 USD, thresholds 50/80/100 %,
forecast threshold 100 %. Usage is committed one hour at a time and the budgets are evaluated
after each hour, as the agent does (with the usage committed by then). ``h`` = hours committed
since Nov 1 00:00.

* actual 50 % (1500.00): 240 × 3.90 = 936.00 by Nov 11 00:00; then 936 + 48 × 11.70 = 1497.60 <
  1500 and 936 + 49 × 11.70 = 1509.30 ≥ 1500 → crossed at h = 289, Nov 13 01:00.
* actual 80 % (2400.00): 936 + 125 × 11.70 = 2398.50 < 2400; 936 + 126 × 11.70 = 2410.20 →
  h = 366, Nov 16 06:00.
* actual 100 % (3000.00): 936 + 176 × 11.70 = 2995.20; 936 + 177 × 11.70 = 3006.90 → h = 417,
  Nov 18 09:00.
* forecast 100 %: forecast = spent + (GPU-h of the last 24 h) × (720 − h) / 24 × 3.90.
  For h ≤ 240 it is 3.90 × 720 = 2808.00. At h = 241: 947.70 + 26 × 479 / 24 × 3.90 =
  947.70 + 2023.775 = 2971.475 < 3000. At h = 242: spent 936 + 2 × 11.70 = 959.40, last 24 h
  22 × 1 + 2 × 3 = 28 GPU-h, 28 × 478 / 24 = 557.666… GPU-h × 3.90 = 2174.90 → forecast
  3134.30 ≥ 3000 → crossed at Nov 11 02:00.
* end of month: spent 936 + 480 × 11.70 = 936 + 5616 = 6552.00; forecast = spent (no time left).
"""

from __future__ import annotations

import base64
import json
import os
import socket
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx
import pytest
import standardwebhooks
from sqlalchemy import select, update

from kubetally.app.budgets import evaluate_and_notify
from kubetally.config import load_config
from kubetally.config.loader import Config
from kubetally.errors import ConfigError
from kubetally.ledger.store import Ledger
from kubetally.periods import Period, PeriodKind
from kubetally.rating.display import DisplayCatalog
from kubetally.rating.pricebook import PriceBook
from kubetally.record import UsageRecord
from kubetally.reports.budget_tables import budget_alert_sends
from kubetally.reports.budgets import alert_id, alert_rows, evaluate_budget, method_text, send_pending
from kubetally.testing.server import cli

from .receiver import start_receiver

DATA = Path(__file__).resolve().parents[1] / "data" / "server"
PRICES = DATA / "prices.yaml"
H100 = "nvidia-h100-sxm-80gb"
NOV = datetime(2026, 11, 1, tzinfo=UTC)
SECRET = "whsec_" + base64.b64encode(b"budget-test-secret-0123456789abc").decode()


def gpu(hour: int, gpus: str, *, tenant: str = "acme", name: str = "train-0") -> UsageRecord:
    start = NOV + timedelta(hours=hour)
    return UsageRecord.measure(
        cluster="c1", kind="Pod", category="compute", item="gpu_hours", name=name, namespace=tenant,
        project=f"proj-{tenant}", tenant=tenant, period_kind=PeriodKind.hourly,
        period=Period(start, start + timedelta(hours=1)), usage=Decimal(gpus), unit="h",
        dimensions={"gpu_sku": H100},
    )  # fmt: skip


def config(tmp_path: Path, receiver_url: str, budgets: str) -> Config:
    path = tmp_path / "kubetally.yaml"
    path.write_text(
        f"""
budgets:
  forecast_hours: 24
  notify:
    - type: webhook
      url: {receiver_url}/hook
      secret_env: BUDGET_SECRET
    - type: slack
      url_env: SLACK_URL
  items:
{budgets}
""",
        encoding="utf-8",
    )
    return load_config([path])


MONTH_BUDGET = """
    - name: acme-month
      tenant: acme
      amount: "3000.00"
      forecast_threshold: 100
"""


def test_a_month_of_usage_alerts_once_per_threshold_at_the_first_crossing(tmp_path: Path) -> None:
    receiver = start_receiver()
    environ = {"BUDGET_SECRET": SECRET, "SLACK_URL": f"{receiver.url}/slack"}
    try:
        cfg = config(tmp_path, receiver.url, MONTH_BUDGET)
        pricebook = PriceBook.load(PRICES)
        first_run: dict[str, datetime] = {}
        with Ledger.open(str(tmp_path / "ledger.db")) as ledger:
            # The month is written at once; each evaluation sees only the usage that had been
            # committed by the end of its hour (``as_of``), as the agent's tick after each hour does.
            ledger.write([gpu(hour, "1" if hour < 240 else "3") for hour in range(720)])
            for hour in range(720):
                run = evaluate_and_notify(ledger, cfg, pricebook, environ, as_of=NOV + timedelta(hours=hour + 1))
                assert run.sends.failed == 0
                for crossing in run.statuses[0].crossed:
                    first_run.setdefault(f"{crossing.kind} {crossing.threshold}", crossing.crossed_at)
                if hour == 240:  # h = 241 committed
                    assert run.statuses[0].forecast == Decimal("2971.475")
                if hour == 241:  # h = 242
                    assert run.statuses[0].spent == Decimal("959.40")
                    assert run.statuses[0].forecast == Decimal("3134.30")
            final = run.statuses[0]
            assert final.spent == Decimal("6552.00")
            assert final.forecast == Decimal("6552.00")
            assert final.method == "forecast: run rate of last 24 h, not a bill"
            assert [(ln.tenant, ln.item, ln.spent) for ln in final.lines] == [("acme", "gpu_hours", Decimal("6552.00"))]
            listed = alert_rows(ledger, tenant="acme")
            assert alert_rows(ledger, tenant="other") == []
        expected = {
            "forecast 100": NOV + timedelta(hours=242),
            "actual 50": NOV + timedelta(hours=289),
            "actual 80": NOV + timedelta(hours=366),
            "actual 100": NOV + timedelta(hours=417),
        }
        assert first_run == expected
        assert sorted((a["kind"], a["threshold"], a["crossedAt"]) for a in listed) == sorted(
            (k.split()[0], k.split()[1], v.strftime("%Y-%m-%dT%H:%M:%SZ")) for k, v in expected.items()
        )
        # Each alert reached each target exactly once: 4 webhooks + 4 Slack messages.
        hooks = [r for r in receiver.received if r.path == "/hook"]
        slack = [r for r in receiver.received if r.path == "/slack"]
        ids = [alert_id("acme-month", k.split()[0], Decimal(k.split()[1]), NOV) for k in expected]
        assert sorted(r.headers["webhook-id"] for r in hooks) == sorted(ids)
        assert len(slack) == 4
        # The webhook signature verifies with the receiver's secret (the reference library).
        verifier = standardwebhooks.Webhook(SECRET)
        for request in hooks:
            payload: Any = verifier.verify(request.body, request.headers)
            assert payload["id"] == request.headers["webhook-id"]
            assert payload["budget"] == "acme-month"
            assert payload["scope"] == {"kind": "tenant", "value": "acme"}
        fifty = next(r.json for r in hooks if r.json["kind"] == "actual" and r.json["threshold"] == "50")
        assert fifty["value"] == "1509.30" and fifty["limit"] == "3000.00" and fifty["unit"] == "USD"
        # A wrong secret does not verify.
        with pytest.raises(standardwebhooks.webhooks.WebhookVerificationError):
            standardwebhooks.Webhook("whsec_" + base64.b64encode(b"another-secret-0123456789abcdef").decode()).verify(
                hooks[0].body, hooks[0].headers
            )
        # Slack: exactly {"text": ...}.
        texts = sorted(r.json["text"] for r in slack)
        assert all(set(r.json) == {"text"} for r in slack)
        assert any(
            t.startswith("kubetally budget acme-month (tenant acme): spend 1509.30 USD reached 50 %") for t in texts
        )
        forecast_text = next(t for t in texts if ": forecast " in t)
        assert forecast_text.endswith(method_text(24))
    finally:
        receiver.close()


def test_corrections_never_resend_and_a_first_crossing_fires(tmp_path: Path, ledger_url: str) -> None:
    # Budget 10.00 USD. Hour 0: 1 GPU-h = 3.90 (39 %): nothing. Corrected to 2 GPU-h = 7.80 (78 %):
    # 50 % fires. Corrected back to 1 (39 %): nothing new, nothing resent. Corrected to 3 = 11.70
    # (117 %): 80 % and 100 % fire; 50 % is not sent again.
    receiver = start_receiver()
    environ = {"BUDGET_SECRET": SECRET, "SLACK_URL": f"{receiver.url}/slack"}
    budget = """
    - name: small
      tenant: acme
      amount: "10.00"
"""
    try:
        cfg = config(tmp_path, receiver.url, budget)
        pricebook = PriceBook.load(PRICES)
        # On SQLite and on the real PostgreSQL (insert-if-absent is each dialect's ON CONFLICT).
        with Ledger.open(ledger_url) as ledger:
            at = NOV + timedelta(hours=1)
            seen = []
            for gpus in ("1", "2", "1", "3"):
                ledger.write([gpu(0, gpus)])
                run = evaluate_and_notify(ledger, cfg, pricebook, environ, as_of=at)
                seen.append((run.statuses[0].spent, run.new_alerts))
        assert seen == [(Decimal("3.90"), 0), (Decimal("7.80"), 1), (Decimal("3.90"), 0), (Decimal("11.70"), 2)]
        hooks = [r.json for r in receiver.received if r.path == "/hook"]
        assert [(h["kind"], h["threshold"], h["value"]) for h in hooks] == [
            ("actual", "50", "7.80"),
            ("actual", "80", "11.70"),
            ("actual", "100", "11.70"),
        ]
    finally:
        receiver.close()


def test_quantity_budget_and_custom_period(tmp_path: Path) -> None:
    # 40 H100 GPU-hours from Nov 2 00:00 to Nov 4 00:00 (48 h). acme runs 1 GPU, plus a second
    # job of 1 GPU with another SKU (not counted). Usage up to Nov 2 12:00: 12 GPU-h spent; the
    # run rate over the 12 h since the period began is 1 GPU-h/h, 36 h left: 12 + 36 = 48 GPU-h.
    with Ledger.open(str(tmp_path / "ledger.db")) as ledger:
        ledger.write([gpu(24 + h, "1") for h in range(12)])
        a100 = gpu(24, "5", name="a100-0")
        ledger.write([a100.model_copy(update={"labels": {"gpu_sku": "nvidia-a100-80gb"}})])
        cfg = load_config([_yaml(tmp_path)])
        budget = cfg.settings.budgets.items[0]
        status = evaluate_budget(
            ledger, budget, NOV + timedelta(hours=36), PriceBook.load(PRICES), DisplayCatalog.from_config(cfg)
        )
    assert status.period == Period(NOV + timedelta(days=1), NOV + timedelta(days=3))
    assert (status.spent, status.forecast, status.due()) == (Decimal(12), Decimal(48), [("actual", Decimal(30))])


def _yaml(tmp_path: Path) -> Path:
    path = tmp_path / "q.yaml"
    path.write_text(
        """
budgets:
  items:
    - name: acme-h100
      tenant: acme
      quantity: 40
      item: gpu_hours
      labels: {gpu_sku: nvidia-h100-sxm-80gb}
      start: 2026-11-02
      end: 2026-11-04
      thresholds: [30, 100]
""",
        encoding="utf-8",
    )
    return path


def test_bad_budget_config_names_file_and_path(tmp_path: Path) -> None:
    path = tmp_path / "kubetally.yaml"
    path.write_text(
        "budgets:\n  items:\n    - name: x\n      tenant: acme\n      amount: 5\n      treshold: [50]\n"
        "    - name: y\n      tenant: acme\n",
        encoding="utf-8",
    )
    with pytest.raises(ConfigError) as caught:
        load_config([path])
    problems = caught.value.problems
    assert f"{path}: budgets: items[0].treshold: unknown key" in problems
    assert f"{path}: budgets: items[1]: give exactly one of amount (money) or quantity (with item)" in problems


def test_unreachable_target_leaves_the_alert_pending(tmp_path: Path) -> None:
    cfg = config(tmp_path, "http://127.0.0.1:9", MONTH_BUDGET.replace('"3000.00"', '"1.00"'))
    environ = {"BUDGET_SECRET": SECRET, "SLACK_URL": "http://127.0.0.1:9/slack"}
    with Ledger.open(str(tmp_path / "ledger.db")) as ledger:
        ledger.write([gpu(0, "1")])
        run = evaluate_and_notify(ledger, cfg, PriceBook.load(PRICES), environ)
        # 3.90 of 1.00: 50/80/100 % and the forecast; each to both targets, none acknowledged.
        assert (run.new_alerts, run.sends.sent, run.sends.failed) == (4, 0, 8)
        assert httpx is not None and os.environ is not None


def test_a_claimed_send_is_left_to_its_claimant_unless_it_died_or_expired(tmp_path: Path) -> None:
    # Budget 1.00, 3.90 spent: 50/80/100 % → 3 alerts, 3 webhook sends. One is claimed by a
    # live sender on another host (skipped), one by a dead process on this host (taken over),
    # one by a claim that expired (taken over): 2 sent, 1 still pending.
    receiver = start_receiver()
    budget = '    - name: tiny\n      tenant: acme\n      amount: "1.00"\n'
    cfg = config(tmp_path, receiver.url, budget)
    cfg.settings.budgets.notify.pop()  # the webhook only
    try:
        with Ledger.open(str(tmp_path / "ledger.db")) as ledger:
            ledger.write([gpu(0, "1")])
            run = evaluate_and_notify(ledger, cfg, PriceBook.load(PRICES), {}, send=False)
            assert run.new_alerts == 3
            ids = [alert_id("tiny", "actual", Decimal(t), NOV) for t in (50, 80, 100)]
            dead = subprocess.run(
                [sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True
            )
            claims = {
                ids[0]: ("elsewhere:1:abc", datetime.now(UTC) + timedelta(minutes=5)),
                ids[1]: (f"{socket.gethostname()}:{dead.stdout.strip()}:abc", datetime.now(UTC) + timedelta(minutes=5)),
                ids[2]: ("elsewhere:1:abc", datetime.now(UTC) - timedelta(seconds=1)),
            }
            with ledger.transaction() as conn:
                for ident, (owner, until) in claims.items():
                    conn.execute(
                        update(budget_alert_sends)
                        .where(budget_alert_sends.c.alert_id == ident)
                        .values(claimed_by=owner, claimed_until=until)
                    )
            summary = send_pending(ledger, cfg.settings.budgets.notify, {"BUDGET_SECRET": SECRET})
            assert (summary.sent, summary.failed) == (2, 0)
            with ledger.engine.connect() as conn:
                states = dict(conn.execute(select(budget_alert_sends.c.alert_id, budget_alert_sends.c.state)).all())
        assert states == {ids[0]: "pending", ids[1]: "sent", ids[2]: "sent"}
        assert sorted(r.headers["webhook-id"] for r in receiver.received) == sorted(ids[1:])
    finally:
        receiver.close()


def test_cli_quantity_budget_needs_no_price_book(tmp_path: Path) -> None:
    # As test_quantity_budget_and_custom_period, through `kubetally budgets` with no prices at all:
    # 12 H100 GPU-h spent by Nov 2 12:00, forecast 12 + 36 h × 1 GPU-h/h = 48 of 40 (120 %).
    db = str(tmp_path / "ledger.db")
    with Ledger.open(db) as ledger:
        ledger.write([gpu(24 + h, "1") for h in range(12)])
    done = cli("budgets", "--db", db, "-c", str(_yaml(tmp_path)), "--at", "2026-11-02T12:00:00Z", "--format", "json")
    assert done.returncode == 0, done.stderr
    (status,) = json.loads(done.stdout)["budgets"]
    assert (status["type"], status["spent"], status["forecast"], status["forecastPercent"], status["unit"]) == (
        "quantity",
        "12",
        "48",
        "120.0",
        "GPU-hours",  # the built-in display name of gpu_hours (rating/builtin_display.yaml, divisor 1)
    )
    assert [(c["kind"], c["threshold"]) for c in status["crossed"]] == []  # not --evaluate: nothing recorded


def test_a_month_budget_follows_the_billing_time_zone(tmp_path: Path) -> None:
    """With ``billing.timezone: Asia/Shanghai`` (UTC+8) November is [Oct 31 16:00Z, Nov 30 16:00Z).
    acme runs 1 H100 from Oct 31 08:00Z to Nov 1 00:00Z: 16 GPU-hours, of which the last 8
    (16:00Z–24:00Z, local Nov 1 00:00–08:00) are local November. At Nov 1 00:00Z the budget's
    month is local November with 8 GPU-h spent = 8 × 3.90 = 31.20 USD; in UTC the same instant
    closes October, which holds all 16 (62.40 USD)."""
    path = tmp_path / "kubetally.yaml"
    body = "budgets:\n  items:\n    - name: acme-month\n      tenant: acme\n      amount: '100.00'\n"
    path.write_text("billing:\n  timezone: Asia/Shanghai\n" + body, encoding="utf-8")
    utc = tmp_path / "utc.yaml"
    utc.write_text(body, encoding="utf-8")
    with Ledger.open(str(tmp_path / "ledger.db")) as ledger:
        ledger.write([gpu(h, "1") for h in range(-16, 0)])
        local = evaluate_and_notify(ledger, load_config([path]), PriceBook.load(PRICES), {}, as_of=NOV, send=False)
        plain = evaluate_and_notify(ledger, load_config([utc]), PriceBook.load(PRICES), {}, as_of=NOV, send=False)
    [mine] = local.statuses
    assert mine.period == Period(datetime(2026, 10, 31, 16, tzinfo=UTC), datetime(2026, 11, 30, 16, tzinfo=UTC))
    assert mine.spent == Decimal("31.20")
    [theirs] = plain.statuses
    assert theirs.period == Period(datetime(2026, 10, 1, tzinfo=UTC), NOV)
    assert theirs.spent == Decimal("62.40")
