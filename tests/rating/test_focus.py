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

from kubetally.config.pricing import PriceBookConfig
from kubetally.ledger.store import Ledger
from kubetally.rating.pricebook import PriceBook
from kubetally.reports.focus import COLUMNS, SCHEMA, FocusError, export_focus, read_focus_json

from .conftest import hour, record

H100 = "nvidia-h100-sxm-80gb"
DAY_START = datetime(2026, 11, 15, tzinfo=UTC)
DAY_END = datetime(2026, 11, 16, tzinfo=UTC)
BOOK = PriceBook(
    PriceBookConfig.model_validate(
        yaml.safe_load("""
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
""")
    )
)


@pytest.fixture
def focus_ledger(ledger: Ledger) -> Ledger:
    shared = {"gpu_sku": H100, "capacity_type": "on-demand", "billing_mode": "shared"}
    ledger.write(
        [
            # Node n1 is shared: acme's pod holds 3 GPUs, beta's 1, for the 10:00 hour.
            record(
                "acme",
                "gpu_hours",
                hour(15, 10),
                "3",
                name="train-0",
                namespace="ml",
                project="research",
                dimensions=shared,
                labels={"node": "n1", "region": "eu-west"},
            ),
            record("beta", "gpu_hours", hour(15, 10), "1", name="infer-0", dimensions=shared, labels={"node": "n1"}),
            # acme CPU: 6 core-hours at 10:00 and 6 at 11:00; the month's tier 1 ends at 10.
            record("acme", "cpu_core_hours", hour(15, 10), "6", name="train-0", namespace="ml", project="research"),
            record("acme", "cpu_core_hours", hour(15, 11), "6", name="train-0", namespace="ml", project="research"),
            # acme's dedicated node, one hour.
            record(
                "acme",
                "node_hours",
                hour(15, 10),
                "1",
                name="gpu-h100-01",
                namespace="",
                kind="Node",
                project="research",
                dimensions={"node_sku": "hgx-h100", "billing_mode": "dedicated"},
            ),
        ]
    )
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
    result = export_focus(focus_ledger, BOOK, None, DAY_START, DAY_END, out, fmt="parquet", rows="resource")
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
        Decimal(10),
        Decimal("0.04"),
        Decimal("0.4"),
        Decimal("0.36"),
    )  # 10 × 0.04; × 0.9
    assert (tier2["ConsumedQuantity"], tier2["ListUnitPrice"], tier2["ListCost"], tier2["BilledCost"]) == (
        Decimal(2),
        Decimal("0.03"),
        Decimal("0.06"),
        Decimal("0.054"),
    )  # 2 × 0.03; × 0.9
    assert tier1["AllocatedMethodId"] is None and tier1["ResourceType"] == "Pod"
    node = rows[("acme", "node_hours", "c1/gpu-h100-01", 1)]
    assert (node["ResourceType"], node["x_NodeSku"], node["BilledCost"], node["SkuId"]) == (
        "Node",
        "hgx-h100",
        Decimal("0.09"),
        "compute/node_hours",
    )  # 1 × 0.10 × 0.9
    # 10.53 + 3.90 + 0.36 + 0.054 + 0.09 = 14.934
    assert sum(r["BilledCost"] for r in rows.values()) == Decimal("14.934")
    assert (result.rows, result.billed_micros) == (5, 14_934_000)
    # 11.70 + 3.90 + 0.40 + 0.06 + 0.10 = 16.16
    assert result.list_micros == 16_160_000


def test_csv_read_back_matches_parquet(focus_ledger: Ledger, tmp_path: Path) -> None:
    out = tmp_path / "focus.csv"
    export_focus(focus_ledger, BOOK, None, DAY_START, DAY_END, out, rows="resource")
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
    export_focus(focus_ledger, BOOK, None, DAY_START, DAY_END, stream, grain="hour", rows="resource")
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
    result = export_focus(
        focus_ledger, BOOK, None, DAY_START, DAY_END, out, fmt="parquet", skip_unpriced=True, rows="resource"
    )
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
    result = export_focus(focus_ledger, BOOK, None, DAY_START, DAY_END, stream, skip_unpriced=True, rows="resource")
    assert result.rows == 5
    assert len(stream.getvalue().splitlines()) == 1 + 5  # header + rows


def test_bad_ranges(focus_ledger: Ledger) -> None:
    with pytest.raises(FocusError, match="UTC midnight"):
        export_focus(focus_ledger, BOOK, None, datetime(2026, 11, 15, 10, tzinfo=UTC), DAY_END, io.StringIO())
    with pytest.raises(FocusError, match="--per must be one of"):
        export_focus(focus_ledger, BOOK, None, DAY_START, DAY_END, io.StringIO(), grain="week")
    with pytest.raises(FocusError, match="--rows must be one of sku, resource"):
        export_focus(focus_ledger, BOOK, None, DAY_START, DAY_END, io.StringIO(), rows="pod")


# --- The default grain: one row per tenant × item × SKU × charge period -----------------------------------

CPU_SKU = "compute/cpu_core_hours"
GPU_SKU = "compute/gpu_hours/nvidia-h100-sxm-80gb/on-demand"
#: Columns that name one resource or its share of a node: null at SKU grain.
RESOURCE_COLUMNS = (
    "AllocatedMethodDetails",
    "AllocatedMethodId",
    "AllocatedResourceId",
    "AllocatedResourceName",
    "AllocatedTags",
    "ResourceId",
    "ResourceName",
    "ResourceType",
)

#: acme's H100 row at SKU grain merges a single resource row (ACME_GPU, its share of n1): every
#: value is that row's, except the resource and allocation columns, which are null.
ACME_GPU_SKU = ACME_GPU | dict.fromkeys(RESOURCE_COLUMNS)

#: acme's CPU row at SKU grain merges the two tier rows of c1/ml/train-0 checked in
#: test_parquet_read_back_column_by_column: tier 1 (10 core-h × 0.04, × 0.9) and tier 2 (2 × 0.03, × 0.9).
ACME_CPU_SKU = {
    **dict.fromkeys(RESOURCE_COLUMNS),
    "AvailabilityZone": None,
    "BilledCost": Decimal("0.414000"),  # 0.360000 + 0.054000
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
    # 10 + 2 core-hours; tier 1 at 0.036 (list 0.04), tier 2 at 0.027 (list 0.03): two unit prices.
    "ChargeDescription": "12 core-hours of Compute / CPU at 2 unit prices, tiers 1, 2",
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
    "ConsumedQuantity": Decimal("12.000000000"),  # 10 + 2
    "ConsumedUnit": "core-hours",
    "ContractedCost": Decimal("0.414000"),  # 0.360000 + 0.054000
    "ContractedUnitPrice": None,  # 0.036 ≠ 0.027
    "EffectiveCost": Decimal("0.414000"),
    "HostProviderName": "GPU Cloud Inc",
    "InvoiceId": None,
    "InvoiceIssuerName": "kubetally",
    "ListCost": Decimal("0.460000"),  # 0.400000 + 0.060000
    "ListUnitPrice": None,  # 0.04 ≠ 0.03
    "PricingCategory": "Standard",
    "PricingCurrency": "USD",
    "PricingCurrencyContractedUnitPrice": None,
    "PricingCurrencyEffectiveCost": Decimal("0.414000"),
    "PricingCurrencyListUnitPrice": None,
    "PricingQuantity": Decimal("12.000000000"),
    "PricingUnit": "core-hours",
    "ProviderName": "GPU Cloud Inc",
    "PublisherName": "kubetally",
    "RegionId": None,
    "RegionName": None,
    "ServiceCategory": "Compute",
    "ServiceName": "Compute",
    "ServiceProviderName": "GPU Cloud Inc",
    "SkuId": CPU_SKU,
    "SkuMeter": "CPU",
    "SkuPriceId": None,  # compute/cpu_core_hours@base:default:1 ≠ …:2
    "SubAccountId": "acme",
    "SubAccountName": "acme",
    "SubAccountType": "Tenant",
    "Tags": "{}",  # the CPU records have no labels
    "x_Cluster": "c1",
    "x_Namespace": "ml",  # both tier rows are train-0's: its namespace, project and kind stay
    "x_Project": "research",
    "x_Category": "compute",
    "x_Item": "cpu_core_hours",
    "x_Kind": "Pod",
    "x_GpuSku": None,
    "x_GpuProfile": None,
    "x_CapacityType": None,
    "x_BillingMode": None,
    "x_NodeSku": None,
    "x_StorageClass": None,
    "x_PriceGroup": "default",
    "x_PricingTier": None,  # 1 ≠ 2
    "x_PriceEffectiveFrom": None,
    "x_RawQuantity": Decimal("12.000000000"),
    "x_RawUnit": "h",
}
#: Deterministic order: tenant, then category, item, SKU.
SKU_ORDER = [("acme", CPU_SKU), ("acme", GPU_SKU), ("acme", "compute/node_hours"), ("beta", GPU_SKU)]


def csv_text(value: object) -> str:
    """A Parquet value as the CSV writes it."""
    if value is None:
        return ""
    if isinstance(value, datetime):
        return value.strftime("%Y-%m-%dT%H:%M:%SZ")
    return format(value, "f") if isinstance(value, Decimal) else str(value)


def test_sku_grain_parquet_read_back_column_by_column(focus_ledger: Ledger, tmp_path: Path) -> None:
    out = tmp_path / "focus.parquet"
    result = export_focus(focus_ledger, BOOK, None, DAY_START, DAY_END, out, fmt="parquet")  # rows="sku"
    table = pq.read_table(out)
    assert table.schema.equals(SCHEMA, check_metadata=False)
    rows = table.to_pylist()
    assert [(r["SubAccountId"], r["SkuId"]) for r in rows] == SKU_ORDER
    acme_cpu, acme_gpu, acme_node, beta_gpu = rows
    for column in COLUMNS:
        assert acme_cpu[column] == ACME_CPU_SKU[column], column
        assert acme_gpu[column] == ACME_GPU_SKU[column], column
    # acme's node and beta's GPUs are single resource rows: the same values, without the resource.
    export_focus(focus_ledger, BOOK, None, DAY_START, DAY_END, tmp_path / "r.parquet", fmt="parquet", rows="resource")
    resource = by_key(pq.read_table(tmp_path / "r.parquet").to_pylist())
    for sku_row, key in (
        (acme_node, ("acme", "node_hours", "c1/gpu-h100-01", 1)),
        (beta_gpu, ("beta", "gpu_hours", "c1/n1", 1)),
    ):
        for column in COLUMNS:
            expected = None if column in RESOURCE_COLUMNS else resource[key][column]
            assert sku_row[column] == expected, column
    assert (acme_node["BilledCost"], acme_node["ListUnitPrice"], acme_node["x_NodeSku"]) == (
        Decimal("0.09"),
        Decimal("0.1"),
        "hgx-h100",
    )  # 1 × 0.10 × 0.9
    assert (beta_gpu["BilledCost"], beta_gpu["Tags"]) == (
        Decimal("3.9"),
        '{"billing_mode":"shared","capacity_type":"on-demand","gpu_sku":"nvidia-h100-sxm-80gb","node":"n1"}',
    )  # 1 × 3.90; no region label on beta's record
    # Same money as the resource grain: 0.414 + 10.53 + 0.09 + 3.90 = 14.934 (= 10.53 + 3.90 + 0.36 + 0.054 + 0.09).
    assert sum(r["BilledCost"] for r in rows) == sum(r["BilledCost"] for r in resource.values()) == Decimal("14.934")
    assert (result.rows, result.billed_micros, result.list_micros) == (4, 14_934_000, 16_160_000)


def test_sku_grain_csv_read_back_column_by_column(focus_ledger: Ledger, tmp_path: Path) -> None:
    out = tmp_path / "focus.csv"
    export_focus(focus_ledger, BOOK, None, DAY_START, DAY_END, out)  # rows="sku" by default
    with out.open(encoding="utf-8", newline="") as stream:
        reader = csv.DictReader(stream)
        assert reader.fieldnames == COLUMNS
        rows = list(reader)
    assert [(r["SubAccountId"], r["SkuId"]) for r in rows] == SKU_ORDER
    for column in COLUMNS:
        assert rows[0][column] == csv_text(ACME_CPU_SKU[column]), column
        assert rows[1][column] == csv_text(ACME_GPU_SKU[column]), column
    assert (rows[0]["BilledCost"], rows[0]["ListUnitPrice"], rows[0]["ResourceId"]) == ("0.414000", "", "")
    stream = io.StringIO()
    export_focus(focus_ledger, BOOK, None, DAY_START, DAY_END, stream, rows="resource")
    resource = list(csv.DictReader(io.StringIO(stream.getvalue())))
    assert len(resource) == 5
    assert sum(Decimal(r["BilledCost"]) for r in rows) == sum(Decimal(r["BilledCost"]) for r in resource)
    assert sum(Decimal(r["BilledCost"]) for r in rows) == Decimal("14.934")


def test_sku_grain_merges_resources(focus_ledger: Ledger) -> None:
    """Rows of several resources merge: one unit price is kept, labels they share stay in Tags."""
    focus_ledger.write(
        [
            # A second acme pod, on node n2 (no region label), 1 GPU-hour at 11:00.
            record(
                "acme",
                "gpu_hours",
                hour(15, 11),
                "1",
                name="train-1",
                namespace="ml",
                project="research",
                dimensions={"gpu_sku": H100, "capacity_type": "on-demand", "billing_mode": "shared"},
                labels={"node": "n2"},
            ),
            # A second acme CPU pod in another namespace, 3 core-hours at 12:00.
            record("acme", "cpu_core_hours", hour(15, 12), "3", name="etl-0", namespace="etl", project="research"),
        ]
    )
    stream = io.StringIO()
    export_focus(focus_ledger, BOOK, None, DAY_START, DAY_END, stream, rows="resource")
    resource = list(csv.DictReader(io.StringIO(stream.getvalue())))
    shown = [
        (r["SubAccountId"], r["x_Item"], r["ResourceId"], r["x_PricingTier"], r["PricingQuantity"], r["BilledCost"])
        for r in resource
    ]
    # Resource rows come in (tenant, cluster, project, namespace, …, name) order: the node (no namespace)
    # first, then etl-0 (etl < ml), rated first against the month's 10 core-hour tier 1.
    assert shown == [
        ("acme", "node_hours", "c1/gpu-h100-01", "1", "1.000000000", "0.090000"),  # 1 × 0.10 × 0.9
        ("acme", "cpu_core_hours", "c1/etl/etl-0", "1", "3.000000000", "0.108000"),  # 3 × 0.04 × 0.9
        ("acme", "cpu_core_hours", "c1/ml/train-0", "1", "7.000000000", "0.252000"),  # the 7 left: 7 × 0.036
        ("acme", "cpu_core_hours", "c1/ml/train-0", "2", "5.000000000", "0.135000"),  # 5 × 0.03 × 0.9
        ("acme", "gpu_hours", "c1/n1", "1", "3.000000000", "10.530000"),  # 3 × 3.90 × 0.9
        ("acme", "gpu_hours", "c1/n2", "1", "1.000000000", "3.510000"),  # 1 × 3.90 × 0.9
        ("beta", "gpu_hours", "c1/n1", "1", "1.000000000", "3.900000"),  # 1 × 3.90
    ]
    stream = io.StringIO()
    result = export_focus(focus_ledger, BOOK, None, DAY_START, DAY_END, stream)
    rows = {(r["SubAccountId"], r["SkuId"]): r for r in csv.DictReader(io.StringIO(stream.getvalue()))}
    assert list(rows) == SKU_ORDER
    cpu = rows[("acme", CPU_SKU)]
    picked = (
        "PricingQuantity",
        "ListCost",
        "BilledCost",
        "ListUnitPrice",
        "x_PricingTier",
        "x_Namespace",
        "x_Project",
        "ResourceId",
        "ChargeDescription",
    )
    assert [cpu[c] for c in picked] == [
        "15.000000000",  # 3 + 7 + 5
        "0.550000",  # 0.12 + 0.28 + 0.15
        "0.495000",  # 0.108 + 0.252 + 0.135
        "",
        "",  # two tiers, two unit prices
        "",  # etl ≠ ml
        "research",
        "",
        "15 core-hours of Compute / CPU at 2 unit prices, tiers 1, 2",
    ]
    gpu = rows[("acme", GPU_SKU)]
    picked = (
        "PricingQuantity",
        "ListCost",
        "BilledCost",
        "ListUnitPrice",
        "ContractedUnitPrice",
        "SkuPriceId",
        "x_PricingTier",
        "RegionId",
        "x_Namespace",
        "AllocatedMethodDetails",
        "Tags",
        "ChargeDescription",
    )
    assert [gpu[c] for c in picked] == [
        "4.000000000",  # 3 + 1
        "15.600000",  # 11.70 + 3.90
        "14.040000",  # 10.53 + 3.51
        "3.900000000000",
        "3.510000000000",  # one unit price for both pods: kept
        "compute/gpu_hours/nvidia-h100-sxm-80gb/on-demand@base:h100:1",
        "1",
        "",  # only train-0's record has region eu-west
        "ml",
        "",
        '{"billing_mode":"shared","capacity_type":"on-demand","gpu_sku":"nvidia-h100-sxm-80gb"}',  # node differs
        "4 GPU-hours of Compute / GPU (nvidia-h100-sxm-80gb, on-demand) at 3.51 USD per GPU-hours (list 3.9)",
    ]
    # 0.495 + 14.04 + 0.09 + 3.90 = 18.525, the resource rows' sum.
    assert sum(Decimal(r["BilledCost"]) for r in resource) == Decimal("18.525")
    assert (result.rows, result.billed_micros) == (4, 18_525_000)
