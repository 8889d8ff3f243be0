"""FOCUS 1.3 export written as CSV and Parquet, read back and checked column by column."""

from __future__ import annotations

import csv
import io
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path

import pyarrow.parquet as pq
import pytest
import yaml

from kubetally.ledger.store import Ledger
from kubetally.rating.config import PriceBookConfig
from kubetally.rating.pricebook import PriceBook
from kubetally.reports.focus import COLUMNS, SCHEMA, FocusError, export_focus, read_focus_json

from .conftest import hour, record

H100 = "nvidia-h100-sxm-80gb"
DAY_START = datetime(2026, 11, 15, tzinfo=UTC)
DAY_END = datetime(2026, 11, 16, tzinfo=UTC)
BOOK = PriceBook(PriceBookConfig.model_validate(yaml.safe_load("""
currency: USD
prices:
  - category: compute
    item: gpu_hours
    labels: [gpu_sku, capacity_type]
    groups: [{name: h100, match: {gpu_sku: nvidia-h100-sxm-80gb}, price: "3.90"}]
  - category: compute
    item: cpu_core_hours
    tiers: [{upto: 10, price: "0.04"}, {price: "0.03"}]
  - {category: compute, item: node_hours, price: "0.10"}
tenants:
  acme: {discount_percent: 10}
focus:
  provider: GPU Cloud Inc
""")))


@pytest.fixture
def focus_ledger(ledger: Ledger) -> Ledger:
    shared = {"gpu_sku": H100, "capacity_type": "on-demand", "billing_mode": "shared"}
    ledger.write([
        # Node n1 is shared: acme's pod holds 3 GPUs, beta's 1, for the 10:00 hour.
        record("acme", "gpu_hours", hour(15, 10), "3", name="train-0", namespace="ml", project="research",
               dimensions=shared, labels={"node": "n1", "region": "eu-west"}),
        record("beta", "gpu_hours", hour(15, 10), "1", name="infer-0", dimensions=shared, labels={"node": "n1"}),
        # acme CPU: 6 core-hours at 10:00 and 6 at 11:00; the month's tier 1 ends at 10.
        record("acme", "cpu_core_hours", hour(15, 10), "6", name="train-0", namespace="ml", project="research"),
        record("acme", "cpu_core_hours", hour(15, 11), "6", name="train-0", namespace="ml", project="research"),
        # acme's dedicated node, one hour.
        record("acme", "node_hours", hour(15, 10), "1", name="gpu-h100-01", namespace="", kind="Node",
               project="research", dimensions={"node_sku": "hgx-h100", "billing_mode": "dedicated"}),
    ])
    return ledger


def by_key(rows: list[dict[str, object]]) -> dict[tuple[object, ...], dict[str, object]]:
    return {(r["SubAccountId"], r["x_Item"], r["ResourceId"], r["x_PricingTier"]): r for r in rows}


#: acme's share of shared node n1, as Parquet gives it back.
ACME_GPU = {
    # AllocatedRatio: acme 3 of the 4 GPU-hours allocated on n1 in this hour → 0.75
    "AllocatedMethodDetails": '{"Elements":[{"AllocatedRatio":0.75,"UsageUnit":"GPU-hours","UsageQuantity":3}]}',
    "AllocatedMethodId": "kubetally.requests-time",
    "AllocatedResourceId": "c1/ml/train-0",
    "AllocatedResourceName": "train-0",
    "AllocatedTags": '{"billing_mode":"shared","capacity_type":"on-demand","gpu_sku":"nvidia-h100-sxm-80gb",'
                     '"node":"n1","region":"eu-west"}',
    "AvailabilityZone": None,
    "BilledCost": Decimal("10.530000"),  # 3 GPU-h × 3.90 × 0.9 (acme's 10 % discount) = 10.53
    "BillingAccountId": "kubetally",
    "BillingAccountName": "kubetally",
    "BillingAccountType": "Billing Account",
    "BillingCurrency": "USD",
    "BillingPeriodEnd": datetime(2026, 12, 1, tzinfo=UTC),
    "BillingPeriodStart": datetime(2026, 11, 1, tzinfo=UTC),
    "CapacityReservationId": None,
    "CapacityReservationStatus": None,
    "ChargeCategory": "Usage",
    "ChargeClass": None,
    "ChargeDescription": "3 GPU-hours of Compute / GPU (nvidia-h100-sxm-80gb, on-demand) at 3.51 USD per "
                         "GPU-hours (list 3.9)",
    "ChargeFrequency": "Usage-Based",
    "ChargePeriodEnd": DAY_END,
    "ChargePeriodStart": DAY_START,
    "CommitmentDiscountCategory": None,
    "CommitmentDiscountId": None,
    "CommitmentDiscountName": None,
    "CommitmentDiscountQuantity": None,
    "CommitmentDiscountStatus": None,
    "CommitmentDiscountType": None,
    "CommitmentDiscountUnit": None,
    "ConsumedQuantity": Decimal("3.000000000"),
    "ConsumedUnit": "GPU-hours",
    "ContractedCost": Decimal("10.530000"),
    "ContractedUnitPrice": Decimal("3.510000000000"),  # 3.90 × 0.9
    "EffectiveCost": Decimal("10.530000"),
    "HostProviderName": "GPU Cloud Inc",
    "InvoiceId": None,
    "InvoiceIssuerName": "kubetally",
    "ListCost": Decimal("11.700000"),  # 3 × 3.90
    "ListUnitPrice": Decimal("3.900000000000"),
    "PricingCategory": "Standard",
    "PricingCurrency": "USD",
    "PricingCurrencyContractedUnitPrice": Decimal("3.510000000000"),
    "PricingCurrencyEffectiveCost": Decimal("10.530000"),
    "PricingCurrencyListUnitPrice": Decimal("3.900000000000"),
    "PricingQuantity": Decimal("3.000000000"),
    "PricingUnit": "GPU-hours",
    "ProviderName": "GPU Cloud Inc",
    "PublisherName": "kubetally",
    "RegionId": "eu-west",
    "RegionName": "eu-west",
    "ResourceId": "c1/n1",
    "ResourceName": "n1",
    "ResourceType": "Node",
    "ServiceCategory": "Compute",
    "ServiceName": "Compute",
    "ServiceProviderName": "GPU Cloud Inc",
    "SkuId": "compute/gpu_hours/nvidia-h100-sxm-80gb/on-demand",
    "SkuMeter": "GPU",
    "SkuPriceId": "compute/gpu_hours/nvidia-h100-sxm-80gb/on-demand@base:h100:1",
    "SubAccountId": "acme",
    "SubAccountName": "acme",
    "SubAccountType": "Tenant",
    "Tags": '{"billing_mode":"shared","capacity_type":"on-demand","gpu_sku":"nvidia-h100-sxm-80gb","node":"n1",'
            '"region":"eu-west"}',
    "x_Cluster": "c1",
    "x_Namespace": "ml",
    "x_Project": "research",
    "x_Category": "compute",
    "x_Item": "gpu_hours",
    "x_Kind": "Pod",
    "x_GpuSku": H100,
    "x_GpuProfile": None,
    "x_CapacityType": "on-demand",
    "x_BillingMode": "shared",
    "x_NodeSku": None,
    "x_StorageClass": None,
    "x_PriceGroup": "h100",
    "x_PricingTier": 1,
    "x_PriceEffectiveFrom": None,
    "x_RawQuantity": Decimal("3.000000000"),
    "x_RawUnit": "h",
}


def test_parquet_read_back_column_by_column(focus_ledger: Ledger, tmp_path: Path) -> None:
    out = tmp_path / "focus.parquet"
    result = export_focus(focus_ledger, BOOK, None, DAY_START, DAY_END, out, fmt="parquet")
    table = pq.read_table(out)
    assert table.schema.equals(SCHEMA, check_metadata=False)
    assert table.schema.metadata[b"focus_version"] == b"1.3"
    rows = by_key(table.to_pylist())
    assert set(rows) == {
        ("acme", "gpu_hours", "c1/n1", 1),
        ("beta", "gpu_hours", "c1/n1", 1),
        ("acme", "cpu_core_hours", "c1/ml/train-0", 1),
        ("acme", "cpu_core_hours", "c1/ml/train-0", 2),
        ("acme", "node_hours", "c1/gpu-h100-01", 1),
    }
    acme_gpu = rows[("acme", "gpu_hours", "c1/n1", 1)]
    for column in COLUMNS:
        assert acme_gpu[column] == ACME_GPU[column], column
    beta_gpu = rows[("beta", "gpu_hours", "c1/n1", 1)]
    assert read_focus_json(beta_gpu["AllocatedMethodDetails"]) == {
        "Elements": [{"AllocatedRatio": Decimal("0.25"), "UsageUnit": "GPU-hours", "UsageQuantity": 1}]  # 1 of 4
    }
    assert (beta_gpu["BilledCost"], beta_gpu["ListCost"]) == (Decimal("3.9"), Decimal("3.9"))  # 1 × 3.90
    # The day's 12 core-hours cross the 10 core-hour tier: two rows.
    tier1 = rows[("acme", "cpu_core_hours", "c1/ml/train-0", 1)]
    tier2 = rows[("acme", "cpu_core_hours", "c1/ml/train-0", 2)]
    assert (tier1["ConsumedQuantity"], tier1["ListUnitPrice"], tier1["ListCost"], tier1["BilledCost"]) == (
        Decimal(10), Decimal("0.04"), Decimal("0.4"), Decimal("0.36"))  # 10 × 0.04; × 0.9
    assert (tier2["ConsumedQuantity"], tier2["ListUnitPrice"], tier2["ListCost"], tier2["BilledCost"]) == (
        Decimal(2), Decimal("0.03"), Decimal("0.06"), Decimal("0.054"))  # 2 × 0.03; × 0.9
    assert tier1["AllocatedMethodId"] is None and tier1["ResourceType"] == "Pod"
    node = rows[("acme", "node_hours", "c1/gpu-h100-01", 1)]
    assert (node["ResourceType"], node["x_NodeSku"], node["BilledCost"], node["SkuId"]) == (
        "Node", "hgx-h100", Decimal("0.09"), "compute/node_hours")  # 1 × 0.10 × 0.9
    # 10.53 + 3.90 + 0.36 + 0.054 + 0.09 = 14.934
    assert sum(r["BilledCost"] for r in rows.values()) == Decimal("14.934")
    assert (result.rows, result.billed_micros) == (5, 14_934_000)
    # 11.70 + 3.90 + 0.40 + 0.06 + 0.10 = 16.16
    assert result.list_micros == 16_160_000


def test_csv_read_back_matches_parquet(focus_ledger: Ledger, tmp_path: Path) -> None:
    out = tmp_path / "focus.csv"
    export_focus(focus_ledger, BOOK, None, DAY_START, DAY_END, out)
    with out.open(encoding="utf-8", newline="") as stream:
        reader = csv.DictReader(stream)
        assert reader.fieldnames == COLUMNS
        rows = {(r["SubAccountId"], r["x_Item"], r["ResourceId"], int(r["x_PricingTier"])): r for r in reader}
    acme_gpu = rows[("acme", "gpu_hours", "c1/n1", 1)]
    for column in COLUMNS:
        value = ACME_GPU[column]
        if value is None:
            expected = ""
        elif isinstance(value, datetime):
            expected = value.strftime("%Y-%m-%dT%H:%M:%SZ")
        else:
            expected = format(value, "f") if isinstance(value, Decimal) else str(value)
        assert acme_gpu[column] == expected, column
    assert acme_gpu["BilledCost"] == "10.530000" and acme_gpu["ChargePeriodEnd"] == "2026-11-16T00:00:00Z"
    assert sum(Decimal(r["BilledCost"]) for r in rows.values()) == Decimal("14.934")


def test_hourly_charge_periods(focus_ledger: Ledger) -> None:
    stream = io.StringIO()
    export_focus(focus_ledger, BOOK, None, DAY_START, DAY_END, stream, grain="hour")
    rows = [r for r in csv.DictReader(io.StringIO(stream.getvalue())) if r["x_Item"] == "cpu_core_hours"]
    shown = [(r["ChargePeriodStart"][11:16], r["ConsumedQuantity"], r["x_PricingTier"], r["BilledCost"]) for r in rows]
    assert shown == [
        ("10:00", "6.000000000", "1", "0.216000"),  # 6 × 0.04 × 0.9
        ("11:00", "4.000000000", "1", "0.144000"),  # the 4 left in tier 1: 4 × 0.036
        ("11:00", "2.000000000", "2", "0.054000"),  # 2 × 0.03 × 0.9
    ]


def test_unpriced_usage_fails_the_export_and_leaves_no_file(focus_ledger: Ledger, tmp_path: Path) -> None:
    focus_ledger.write([record("beta", "lb_hours", hour(15, 12), "1", category="network", kind="Service")])
    out = tmp_path / "out" / "focus.parquet"
    out.parent.mkdir()
    with pytest.raises(FocusError, match="no price for network/lb_hours"):
        export_focus(focus_ledger, BOOK, None, DAY_START, DAY_END, out, fmt="parquet")
    assert list(out.parent.iterdir()) == []  # neither the file nor its .partial
    result = export_focus(focus_ledger, BOOK, None, DAY_START, DAY_END, out, fmt="parquet", skip_unpriced=True)
    assert result.rows == 5
    assert result.skipped == {"no price for network/lb_hours": Decimal(1)}


def test_failed_export_writes_nothing_to_a_stream_or_over_a_file(focus_ledger: Ledger, tmp_path: Path) -> None:
    # The unpriced record is in the last hour (12:00), after rows for 10:00 and 11:00 are rated.
    focus_ledger.write([record("beta", "lb_hours", hour(15, 12), "1", category="network", kind="Service")])
    stream = io.StringIO()
    with pytest.raises(FocusError, match="no price for network/lb_hours"):
        export_focus(focus_ledger, BOOK, None, DAY_START, DAY_END, stream)
    assert stream.getvalue() == ""  # not even the header
    out = tmp_path / "exports" / "focus.csv"
    out.parent.mkdir()
    out.write_text("previous export\n")
    with pytest.raises(FocusError, match="no price for network/lb_hours"):
        export_focus(focus_ledger, BOOK, None, DAY_START, DAY_END, out)
    assert [p.name for p in out.parent.iterdir()] == ["focus.csv"]  # no temporary file left
    assert out.read_text() == "previous export\n"  # an existing file is kept as it was
    result = export_focus(focus_ledger, BOOK, None, DAY_START, DAY_END, stream, skip_unpriced=True)
    assert result.rows == 5
    assert len(stream.getvalue().splitlines()) == 1 + 5  # header + rows


def test_bad_ranges(focus_ledger: Ledger) -> None:
    with pytest.raises(FocusError, match="UTC midnight"):
        export_focus(focus_ledger, BOOK, None, datetime(2026, 11, 15, 10, tzinfo=UTC), DAY_END, io.StringIO())
    with pytest.raises(FocusError, match="--per must be one of"):
        export_focus(focus_ledger, BOOK, None, DAY_START, DAY_END, io.StringIO(), grain="week")
