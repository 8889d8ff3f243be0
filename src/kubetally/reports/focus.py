"""FinOps FOCUS 1.3 cost-and-usage export (CSV and Parquet).

**Grain** (``rows``, ``--rows``). Charge periods come from ``--per``: ``hour`` keeps each
record's own period, ``day`` and ``month`` sum the records in them.

* ``resource``: one row per charge period × tenant × resource × item × SKU: ledger records of
  one resource (cluster, namespace, ``name``) with the same labels are summed per charge
  period. A row whose usage crosses a graduated-tier boundary is split into one row per tier,
  each with its own ``ListUnitPrice`` (``x_PricingTier`` says which).
* ``sku`` (the default): one row per charge period × tenant (``SubAccountId``) × item ×
  ``SkuId`` (× unit), merging the ``resource`` rows of that key — every resource and every
  tier. ``ListCost``, ``ContractedCost``, ``EffectiveCost``, ``BilledCost`` and
  ``PricingCurrencyEffectiveCost`` are the exact sums of the merged rows' micro-units, and
  ``ConsumedQuantity``, ``PricingQuantity`` and ``x_RawQuantity`` their exact sums, so both
  grains bill the same total. ``ResourceId``, ``ResourceName`` and ``ResourceType`` are null
  (the row covers many resources; the tenant is ``SubAccountId``), and so is every
  ``Allocated*`` column (they describe one resource's split). ``Tags`` holds the labels common
  to all merged rows (same key and value). Every other column keeps its value when all merged
  rows agree and is null otherwise: in particular ``ListUnitPrice``, ``ContractedUnitPrice``
  (and their ``PricingCurrency*`` twins), ``SkuPriceId`` and ``x_PricingTier`` are null when
  the merged rows have more than one unit price, e.g. usage that crossed a tier boundary.
  ``ChargeDescription`` states the summed quantity, the unit price when there is one (else
  how many) and the tiers. Rows are ordered by charge period, then tenant, category, item,
  ``SkuId`` and unit.

**Money.** Prices come from the price book exactly as in ``kubetally report``:
``ListCost`` = pricing quantity × list unit price; ``ContractedCost`` = ``EffectiveCost`` =
``BilledCost`` = the same after the tenant's discount or markup (there are no commitments, so
the three agree). Each is rounded once per ``resource`` row, ROUND_HALF_UP to the micro-unit
(a ``sku`` row adds those up). Usage that has no price is never exported at zero: the export
fails, naming it, unless ``skip_unpriced``.

**Split nodes** (``resource`` rows only). A record labelled ``billing_mode=shared`` with a
``node`` label is a tenant's share of a shared node (what it requested, integrated over time
by the Kubernetes source). Its row names the node as ``ResourceId`` and the tenant's workload as
``AllocatedResourceId``; ``AllocatedMethodDetails.Elements[0].AllocatedRatio`` is the row's
share of everything allocated on that node for the same item and charge period in this
export (the ratios of one node add up to exactly 1). Every other row has null ``Allocated*``.

**The provider's records** (``kubernetes.capacity``). A node's idle remainder (``NodeIdle``) is
exported like usage, with no ``SubAccountId`` and null ``Allocated*`` columns: it is the
unallocated part of a split node. Capacity, down, cordoned and over-commit records are not
exported: they restate what allocated + idle already cost.

**Types.** Costs are ``decimal128(38, 6)`` (micro-units, exact), unit prices
``decimal128(38, 12)`` and quantities ``decimal128(38, 9)``; a value with more places is
rounded half-even to that scale (the 9-place hours of the ledger never are). Times are UTC
instants; every ``*PeriodEnd`` is exclusive.

**Billing time zone** (``billing.timezone``). ``BillingPeriodStart``/``End`` are the local
calendar month (for ``Asia/Shanghai``, November 2026 is ``2026-10-31T16:00:00Z`` to
``2026-11-30T16:00:00Z``), and ``--per day``/``month`` charge periods are local days and months
(a DST day is 23 or 25 hours), as the days and months of ``kubetally report``; graduated tiers
restart at the local month. ``--per hour`` keeps each record's own UTC hour.
"""

from __future__ import annotations

import csv
import io
import json
import shutil
import tempfile
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta, tzinfo
from decimal import ROUND_HALF_EVEN, Decimal
from pathlib import Path
from typing import IO, Any

import pyarrow as pa
import pyarrow.parquet as pq

from kubetally.config.loader import Config
from kubetally.errors import KubetallyError
from kubetally.ledger.store import Ledger
from kubetally.periods import Period, format_time, local_midnight, next_local_midnight, zone_name
from kubetally.rating.display import DisplayCatalog
from kubetally.rating.money import EXACT, from_micros
from kubetally.rating.pricebook import PriceBook
from kubetally.rating.rate import Charge, Rater, UsageLine
from kubetally.record import UsageRecord, dumps_exact, normalize
from kubetally.reports.buckets import is_midnight, month_start, next_month
from kubetally.reports.csvsafe import neutralise
from kubetally.sources.kubernetes.provider import CAPACITY, CORDONED, DOWN, OVERCOMMIT

FOCUS_VERSION = "1.3"
#: Labels that mark a record as a tenant's share of a shared node.
SHARED_NODE_LABEL = "node"
SHARED_MODE_LABEL = "billing_mode"
SHARED_MODE_VALUE = "shared"
#: How the Kubernetes source splits a shared node: requested resources × seconds held.
ALLOCATED_METHOD_ID = "kubetally.requests-time"

DEFAULT_SERVICE_CATEGORIES = {
    "compute": "Compute",
    "storage": "Storage",
    "network": "Networking",
    "networking": "Networking",
    "platform": "Compute",
}
#: Record label → extension column.
LABEL_COLUMNS = {
    "gpu_sku": "x_GpuSku",
    "gpu_profile": "x_GpuProfile",
    "capacity_type": "x_CapacityType",
    "billing_mode": "x_BillingMode",
    "node_sku": "x_NodeSku",
    "storage_class": "x_StorageClass",
}

_COST = pa.decimal128(38, 6)
_PRICE = pa.decimal128(38, 12)
_QTY = pa.decimal128(38, 9)
_TIME = pa.timestamp("us", tz="UTC")
_STR = pa.string()

#: Every column, in order, with its Parquet type.
SCHEMA = pa.schema(
    [
        ("AllocatedMethodDetails", _STR),
        ("AllocatedMethodId", _STR),
        ("AllocatedResourceId", _STR),
        ("AllocatedResourceName", _STR),
        ("AllocatedTags", _STR),
        ("AvailabilityZone", _STR),
        ("BilledCost", _COST),
        ("BillingAccountId", _STR),
        ("BillingAccountName", _STR),
        ("BillingAccountType", _STR),
        ("BillingCurrency", _STR),
        ("BillingPeriodEnd", _TIME),
        ("BillingPeriodStart", _TIME),
        ("CapacityReservationId", _STR),
        ("CapacityReservationStatus", _STR),
        ("ChargeCategory", _STR),
        ("ChargeClass", _STR),
        ("ChargeDescription", _STR),
        ("ChargeFrequency", _STR),
        ("ChargePeriodEnd", _TIME),
        ("ChargePeriodStart", _TIME),
        ("CommitmentDiscountCategory", _STR),
        ("CommitmentDiscountId", _STR),
        ("CommitmentDiscountName", _STR),
        ("CommitmentDiscountQuantity", _QTY),
        ("CommitmentDiscountStatus", _STR),
        ("CommitmentDiscountType", _STR),
        ("CommitmentDiscountUnit", _STR),
        ("ConsumedQuantity", _QTY),
        ("ConsumedUnit", _STR),
        ("ContractedCost", _COST),
        ("ContractedUnitPrice", _PRICE),
        ("EffectiveCost", _COST),
        ("HostProviderName", _STR),
        ("InvoiceId", _STR),
        ("InvoiceIssuerName", _STR),
        ("ListCost", _COST),
        ("ListUnitPrice", _PRICE),
        ("PricingCategory", _STR),
        ("PricingCurrency", _STR),
        ("PricingCurrencyContractedUnitPrice", _PRICE),
        ("PricingCurrencyEffectiveCost", _COST),
        ("PricingCurrencyListUnitPrice", _PRICE),
        ("PricingQuantity", _QTY),
        ("PricingUnit", _STR),
        ("ProviderName", _STR),
        ("PublisherName", _STR),
        ("RegionId", _STR),
        ("RegionName", _STR),
        ("ResourceId", _STR),
        ("ResourceName", _STR),
        ("ResourceType", _STR),
        ("ServiceCategory", _STR),
        ("ServiceName", _STR),
        ("ServiceProviderName", _STR),
        ("SkuId", _STR),
        ("SkuMeter", _STR),
        ("SkuPriceId", _STR),
        ("SubAccountId", _STR),
        ("SubAccountName", _STR),
        ("SubAccountType", _STR),
        ("Tags", _STR),
        ("x_Cluster", _STR),
        ("x_Namespace", _STR),
        ("x_Project", _STR),
        ("x_Category", _STR),
        ("x_Item", _STR),
        ("x_Kind", _STR),
        *[(column, _STR) for column in LABEL_COLUMNS.values()],
        ("x_PriceGroup", _STR),
        ("x_PricingTier", pa.int32()),
        ("x_PriceEffectiveFrom", _TIME),
        ("x_RawQuantity", _QTY),
        ("x_RawUnit", _STR),
    ],
    metadata={"focus_version": FOCUS_VERSION, "generator": "kubetally"},
)
COLUMNS = SCHEMA.names
_SCALES = {f.name: -f.type.scale for f in SCHEMA if pa.types.is_decimal(f.type)}


#: Provider records that describe the node rather than cost anything on their own.
NOT_A_COST = frozenset({CAPACITY, DOWN, CORDONED, OVERCOMMIT})


class FocusError(KubetallyError):
    """The export cannot be produced as asked (bad range, unpriced usage)."""


GRAINS = ("hour", "day", "month")
#: Row grains (``--rows``); the first is the default.
ROW_GRAINS = ("sku", "resource")
#: Columns summed when resource rows merge into a SKU row (costs from their micro-units).
_SUMMED_COSTS = ("BilledCost", "ContractedCost", "EffectiveCost", "PricingCurrencyEffectiveCost")
_SUMMED_QUANTITIES = ("ConsumedQuantity", "PricingQuantity", "x_RawQuantity")
#: Columns that name one resource, or one resource's split: null at SKU grain.
_RESOURCE_COLUMNS = (
    "AllocatedMethodDetails",
    "AllocatedMethodId",
    "AllocatedResourceId",
    "AllocatedResourceName",
    "AllocatedTags",
    "ResourceId",
    "ResourceName",
    "ResourceType",
)
#: CSV bound for a stream is held in memory up to this size, then in a temporary file.
SPOOL_BYTES = 8 * 1024 * 1024


@dataclass
class FocusResult:
    rows: int = 0
    billed_micros: int = 0
    list_micros: int = 0
    #: ``category/item: reason`` → raw usage left out (only with ``skip_unpriced``).
    skipped: dict[str, Decimal] = field(default_factory=dict)


def _json(value: dict[str, Any]) -> str:
    return dumps_exact(value)


def _scaled(value: Decimal | None, column: str) -> Decimal | None:
    if value is None:
        return None
    return value.quantize(Decimal(1).scaleb(_SCALES[column]), rounding=ROUND_HALF_EVEN)


def _resource_id(cluster: str, namespace: str, name: str) -> str:
    return f"{cluster}/{namespace}/{name}" if namespace else f"{cluster}/{name}"


class _Bucketer:
    """Charge periods for records: their own period (hour), or the local day or month of the
    billing time zone the record starts in (a DST day is 23 or 25 hours)."""

    def __init__(self, grain: str, zone: tzinfo = UTC):
        self.grain = grain
        self.zone = zone

    def of(self, record: UsageRecord) -> Period:
        window = record.period_window
        if self.grain == "hour":
            return window
        if self.grain == "day":
            if window.length > timedelta(days=1):
                return window
            return Period(local_midnight(record.start, self.zone), next_local_midnight(record.start, self.zone))
        return Period(month_start(record.start, self.zone), next_month(record.start, self.zone))


@dataclass
class _Pending:
    period: Period
    context: bool
    usage: dict[tuple[Any, ...], Decimal] = field(default_factory=dict)


class FocusBuilder:
    """Streams ledger records → rated FOCUS rows, one charge period at a time."""

    def __init__(self, pricebook: PriceBook, config: Config | None, rows: str = ROW_GRAINS[0]):
        if rows not in ROW_GRAINS:
            raise FocusError(f"--rows must be one of {', '.join(ROW_GRAINS)}, not {rows!r}")
        self.row_grain = rows
        self.pricebook = pricebook
        self.display = DisplayCatalog.from_config(config)
        self.settings = pricebook.config.focus
        self.categories = DEFAULT_SERVICE_CATEGORIES | self.settings.service_categories
        #: ``billing.timezone``: day and month charge periods, billing periods and tier months
        #: are local to it, as in ``kubetally report`` (hourly charge periods stay the records').
        self.zone: tzinfo = config.settings.billing.zone if config is not None else UTC

    def rows(
        self,
        ledger: Ledger,
        start: datetime,
        end: datetime,
        grain: str = "day",
        *,
        skip_unpriced: bool = False,
        result: FocusResult | None = None,
        tenant: str | None = None,
    ) -> Iterator[list[dict[str, Any]]]:
        """Batches of rows (one batch per charge period), in period order. With ``tenant``, only
        that tenant's records are read: its rows are the same (prices, discounts and tiers are
        per tenant), except that shared-node ``AllocatedRatio`` counts only its own usage."""
        if grain not in GRAINS:
            raise FocusError(f"--per must be one of {', '.join(GRAINS)}, not {grain!r}")
        if end <= start:
            raise FocusError(f"--to {format_time(end)} must be after --from {format_time(start)}")
        for name, moment in (("--from", start), ("--to", end)):
            whole_hour = moment.minute == moment.second == moment.microsecond == 0
            aligned = whole_hour if grain == "hour" else is_midnight(moment, self.zone)
            if not aligned:
                unit = (
                    "a whole UTC hour" if grain == "hour" else f"a {zone_name(self.zone)} midnight (billing.timezone)"
                )
                raise FocusError(f"{name} {format_time(moment)}: must be {unit} for --per {grain}")
        result = result if result is not None else FocusResult()
        context_start = month_start(start, self.zone) if self.pricebook.has_tiers else start
        rater = Rater(self.pricebook, self.display.divisor, self.zone)
        bucketer = _Bucketer(grain, self.zone)
        price_cuts = self.pricebook.change_dates()
        pending: dict[tuple[datetime, datetime, bool], _Pending] = {}
        last_start: datetime | None = None

        def flush(upto: datetime | None) -> Iterator[list[dict[str, Any]]]:
            for slot in sorted(pending):
                bucket = pending[slot]
                if upto is not None and bucket.period.end > upto:
                    break  # an earlier-starting period is still open: keep period order
                del pending[slot]
                batch = self._rate_bucket(rater, bucket, skip_unpriced, result)
                if batch:
                    yield batch

        for record in ledger.records(start=context_start, end=end, tenant=tenant):
            if record.kind in NOT_A_COST:
                continue
            if record.start != last_start:
                yield from flush(record.start)
                last_start = record.start
            context = record.start < start
            window = bucketer.of(record)
            # A price change inside a charge period (only possible per month: changes fall on
            # UTC midnights) splits the period, so each part is rated at its own price.
            for cut in price_cuts:
                if window.start < cut < window.end:
                    window = Period(window.start, cut) if record.start < cut else Period(cut, window.end)
            low, high = (context_start, start) if context else (start, end)
            period = Period(max(window.start, low), min(window.end, high))
            slot = (period.start, period.end, context)
            bucket = pending.get(slot)
            if bucket is None:
                bucket = pending[slot] = _Pending(period, context)
            key = (
                record.tenant,
                record.cluster,
                record.project,
                record.namespace,
                record.category,
                record.item,
                record.unit,
                record.kind,
                record.name,
                tuple(sorted(record.labels.items())),
            )
            bucket.usage[key] = EXACT.add(bucket.usage.get(key, Decimal(0)), record.usage)
        yield from flush(None)

    def _rate_bucket(
        self, rater: Rater, bucket: _Pending, skip_unpriced: bool, result: FocusResult
    ) -> list[dict[str, Any]]:
        rows: list[dict[str, Any]] = []
        for key in sorted(bucket.usage):
            tenant, _cluster, _project, _namespace, category, item, unit, _kind, _name, labels = key
            line = UsageLine(
                start=bucket.period.start,
                end=bucket.period.end,
                tenant=tenant,
                category=category,
                item=item,
                unit=unit,
                labels=labels,
                usage=bucket.usage[key],
                key=key,
                context=bucket.context,
            )
            for charge in rater.rate_line(line):
                if not charge.priced:
                    where = charge.unpriced_reason
                    if not skip_unpriced:
                        raise FocusError(
                            f"unpriced usage in {format_time(bucket.period.start)}: tenant {tenant!r}, "
                            f"resource {_resource_id(key[1], key[3], key[8])}: {where} "
                            "(add a price, or pass --skip-unpriced to leave such rows out)"
                        )
                    result.skipped[where] = EXACT.add(result.skipped.get(where, Decimal(0)), charge.usage)
                    continue
                rows.append(self._row(charge))
        if self.row_grain == "sku":
            rows = self._merge_skus(rows)
        else:
            self._allocate(rows)
        result.rows += len(rows)
        result.billed_micros += sum(r["_cost"] for r in rows)
        result.list_micros += sum(r["_list"] for r in rows)
        return [{c: r[c] for c in COLUMNS} for r in rows]

    def _row(self, charge: Charge) -> dict[str, Any]:
        line = charge.line
        tenant, cluster, project, namespace, category, item, raw_unit, kind, name, _ = line.key
        labels = line.label_map
        match = charge.match
        assert match is not None
        currency = self.pricebook.currency
        shown = self.display.get(item)
        unit = self.display.unit_name(item, raw_unit, "en") or raw_unit
        item_name = self.display.item_name(category, item, "en")
        sku_parts = [labels[k] for k in match.entry.keys if labels.get(k)]
        sku_id = "/".join([category, item, *sku_parts])
        effective = match.effective.strftime("%Y-%m-%d") if match.effective else "base"
        billing_start = month_start(line.start, self.zone)
        quantity = _scaled(charge.quantity, "PricingQuantity")
        assert quantity is not None  # a charge always has a quantity
        split = labels.get(SHARED_MODE_LABEL) == SHARED_MODE_VALUE and bool(labels.get(SHARED_NODE_LABEL))
        own_id = _resource_id(cluster, namespace, name)
        tier_text = f", tier {charge.tier + 1}" if match.tiered else ""
        adjusted = "" if charge.unit_price == charge.list_unit_price else f" (list {normalize(charge.list_unit_price)})"
        what = f"{item_name}" + (f" ({', '.join(sku_parts)})" if sku_parts else "")
        at_price = f" at {normalize(charge.unit_price)} {currency} per {unit}{adjusted}"
        tags = _json(dict(sorted(labels.items())))
        cost = from_micros(charge.cost)
        unit_price = _scaled(charge.unit_price, "ContractedUnitPrice")
        list_price = _scaled(charge.list_unit_price, "ListUnitPrice")
        row: dict[str, Any] = {
            "AllocatedMethodDetails": None,
            "AllocatedMethodId": ALLOCATED_METHOD_ID if split else None,
            "AllocatedResourceId": own_id if split else None,
            "AllocatedResourceName": name if split else None,
            "AllocatedTags": tags if split else None,
            "AvailabilityZone": labels.get("zone") or None,
            "BilledCost": cost,
            "BillingAccountId": self.settings.billing_account_id,
            "BillingAccountName": self.settings.billing_account_name,
            "BillingAccountType": "Billing Account",
            "BillingCurrency": currency,
            "BillingPeriodEnd": next_month(billing_start, self.zone),
            "BillingPeriodStart": billing_start,
            "CapacityReservationId": None,
            "CapacityReservationStatus": None,
            "ChargeCategory": "Usage",
            "ChargeClass": None,
            "ChargeDescription": f"{normalize(quantity)} {unit} of {what}{at_price}{tier_text}",
            "ChargeFrequency": "Usage-Based",
            "ChargePeriodEnd": line.end,
            "ChargePeriodStart": line.start,
            "CommitmentDiscountCategory": None,
            "CommitmentDiscountId": None,
            "CommitmentDiscountName": None,
            "CommitmentDiscountQuantity": None,
            "CommitmentDiscountStatus": None,
            "CommitmentDiscountType": None,
            "CommitmentDiscountUnit": None,
            "ConsumedQuantity": quantity,
            "ConsumedUnit": unit,
            "ContractedCost": cost,
            "ContractedUnitPrice": unit_price,
            "EffectiveCost": cost,
            "HostProviderName": self.settings.provider,
            "InvoiceId": None,
            "InvoiceIssuerName": self.settings.invoice_issuer,
            "ListCost": from_micros(charge.list_cost),
            "ListUnitPrice": list_price,
            "PricingCategory": "Dynamic" if labels.get("capacity_type") in ("spot", "preemptible") else "Standard",
            "PricingCurrency": currency,
            "PricingCurrencyContractedUnitPrice": unit_price,
            "PricingCurrencyEffectiveCost": cost,
            "PricingCurrencyListUnitPrice": list_price,
            "PricingQuantity": quantity,
            "PricingUnit": unit,
            "ProviderName": self.settings.provider,
            "PublisherName": self.settings.publisher,
            "RegionId": labels.get("region") or None,
            "RegionName": labels.get("region") or None,
            "ResourceId": _resource_id(cluster, "", labels[SHARED_NODE_LABEL]) if split else own_id,
            "ResourceName": labels[SHARED_NODE_LABEL] if split else name,
            "ResourceType": "Node" if split else (kind or None),
            "ServiceCategory": self.categories.get(category, "Other"),
            "ServiceName": (shown.category_name.get("en") if shown else None) or category,
            "ServiceProviderName": self.settings.provider,
            "SkuId": sku_id,
            "SkuMeter": (shown.method_name.get("en") if shown else None) or item,
            "SkuPriceId": f"{sku_id}@{effective}:{match.group}:{charge.tier + 1}",
            "SubAccountId": tenant,
            "SubAccountName": tenant,
            "SubAccountType": "Tenant",
            "Tags": tags,
            "x_Cluster": cluster,
            "x_Namespace": namespace or None,
            "x_Project": project or None,
            "x_Category": category,
            "x_Item": item,
            "x_Kind": kind or None,
            **{column: labels.get(label) or None for label, column in LABEL_COLUMNS.items()},
            "x_PriceGroup": match.group,
            "x_PricingTier": charge.tier + 1,
            "x_PriceEffectiveFrom": match.effective,
            "x_RawQuantity": _scaled(charge.usage, "x_RawQuantity"),
            "x_RawUnit": raw_unit or None,
            "_cost": charge.cost,
            "_list": charge.list_cost,
            "_labels": labels,
            "_what": what,
            "_at_price": at_price,
            "_tier": charge.tier + 1 if match.tiered else None,
        }
        return row

    @staticmethod
    def _merge_skus(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """Resource rows of one charge period → one row per tenant × item × SKU (× unit)."""
        groups: dict[tuple[str, ...], list[dict[str, Any]]] = {}
        for row in rows:
            key: tuple[str, ...] = (
                row["SubAccountId"],
                row["x_Category"],
                row["x_Item"],
                row["SkuId"],
                row["PricingUnit"],
                row["x_RawUnit"] or "",
            )
            groups.setdefault(key, []).append(row)
        merged: list[dict[str, Any]] = []
        for key in sorted(groups):
            members = groups[key]
            first = members[0]
            row = {c: first[c] if all(m[c] == first[c] for m in members) else None for c in COLUMNS}
            row.update(dict.fromkeys(_RESOURCE_COLUMNS))
            cost = sum(m["_cost"] for m in members)
            list_cost = sum(m["_list"] for m in members)
            row.update(dict.fromkeys(_SUMMED_COSTS, from_micros(cost)))
            row["ListCost"] = from_micros(list_cost)
            for column in _SUMMED_QUANTITIES:
                total = Decimal(0)
                for member in members:
                    total = EXACT.add(total, member[column])
                row[column] = _scaled(total, column)
            common = {
                name: value
                for name, value in first["_labels"].items()
                if all(m["_labels"].get(name) == value for m in members)
            }
            row["Tags"] = _json(dict(sorted(common.items())))
            prices = {m["_at_price"] for m in members}
            at_price = first["_at_price"] if len(prices) == 1 else f" at {len(prices)} unit prices"
            tiers = sorted({m["_tier"] for m in members if m["_tier"] is not None})
            tier_text = f", tier{'s' if len(tiers) > 1 else ''} {', '.join(map(str, tiers))}" if tiers else ""
            row["ChargeDescription"] = (
                f"{normalize(row['PricingQuantity'])} {row['PricingUnit']} of {first['_what']}{at_price}{tier_text}"
            )
            row.update(_cost=cost, _list=list_cost)
            merged.append(row)
        return merged

    @staticmethod
    def _allocate(rows: list[dict[str, Any]]) -> None:
        """Fill ``AllocatedMethodDetails`` of split rows with each one's share of its node."""
        groups: dict[tuple[Any, ...], list[dict[str, Any]]] = {}
        for row in rows:
            if row["AllocatedMethodId"] is not None:
                key = (row["ChargePeriodStart"], row["ResourceId"], row["x_Category"], row["x_Item"])
                groups.setdefault(key, []).append(row)
        ninth = Decimal("0.000000001")
        for members in groups.values():
            total = sum((m["x_RawQuantity"] for m in members), Decimal(0))
            assigned = Decimal(0)
            for index, member in enumerate(members):
                if index == len(members) - 1:
                    ratio = Decimal(1) - assigned  # the last share takes the rounding remainder
                elif total == 0:
                    ratio = (Decimal(1) / len(members)).quantize(ninth)
                else:
                    ratio = (member["x_RawQuantity"] / total).quantize(ninth, rounding=ROUND_HALF_EVEN)
                assigned += ratio
                member["AllocatedMethodDetails"] = _json(
                    {
                        "Elements": [
                            {
                                "AllocatedRatio": normalize(ratio),
                                "UsageUnit": member["ConsumedUnit"],
                                "UsageQuantity": normalize(member["ConsumedQuantity"]),
                            }
                        ]
                    }
                )


def _csv_value(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, datetime):
        return format_time(value)
    if isinstance(value, Decimal):
        return format(value, "f")
    return neutralise(str(value))


class CsvWriter:
    """FOCUS rows as CSV (header = column ids; nulls empty; times RFC 3339 UTC)."""

    def __init__(self, stream: IO[str]):
        self.writer = csv.writer(stream, lineterminator="\n")
        self.writer.writerow(COLUMNS)

    def write(self, rows: list[dict[str, Any]]) -> None:
        self.writer.writerows([[_csv_value(row[c]) for c in COLUMNS] for row in rows])

    def close(self) -> None:
        pass


class ParquetWriter:
    """FOCUS rows as Parquet with the explicit :data:`SCHEMA` (one row group per batch)."""

    def __init__(self, sink: str | Path | IO[bytes]):
        self.writer = pq.ParquetWriter(sink if not isinstance(sink, Path) else str(sink), SCHEMA)

    def write(self, rows: list[dict[str, Any]]) -> None:
        columns = {c: [row[c] for row in rows] for c in COLUMNS}
        self.writer.write_table(pa.table(columns, schema=SCHEMA))

    def close(self) -> None:
        self.writer.close()


def export_focus(
    ledger: Ledger,
    pricebook: PriceBook,
    config: Config | None,
    start: datetime,
    end: datetime,
    output: str | Path | IO[str],
    *,
    fmt: str = "csv",
    grain: str = "day",
    rows: str = ROW_GRAINS[0],
    skip_unpriced: bool = False,
) -> FocusResult:
    """Write FOCUS rows for ``[start, end)`` to ``output`` (a path, or a text stream for CSV).

    ``grain`` is the charge period (``hour``, ``day``, ``month``); ``rows`` the row grain:
    ``sku`` (default, one row per tenant × item × SKU × charge period) or ``resource`` (one
    row per tenant × resource × item × SKU × tier × charge period); see the module docstring.

    Nothing reaches ``output`` unless the whole export succeeds: a stream gets the CSV only
    after every row has been rated (it is spooled first, in memory up to
    :data:`SPOOL_BYTES`, then in a temporary file); a path is written as a hidden temporary
    file in the same folder and renamed over it when complete, so a failed export (unpriced
    usage, a database error) leaves neither a truncated file nor the temporary one behind,
    and an existing file at ``output`` untouched.
    """
    if fmt not in ("csv", "parquet"):
        raise FocusError(f"--format must be csv or parquet, not {fmt!r}")
    builder = FocusBuilder(pricebook, config, rows)
    result = FocusResult()
    batches = builder.rows(
        ledger, start.astimezone(UTC), end.astimezone(UTC), grain, skip_unpriced=skip_unpriced, result=result
    )
    if isinstance(output, io.TextIOBase) or not isinstance(output, str | Path):
        if fmt != "csv":
            raise FocusError("Parquet needs an --output file")
        with tempfile.SpooledTemporaryFile(SPOOL_BYTES, mode="w+", encoding="utf-8", newline="") as spool:
            writer = CsvWriter(spool)
            for batch in batches:
                writer.write(batch)
            spool.seek(0)
            shutil.copyfileobj(spool, output)
        return result
    target = Path(output)
    if not target.parent.is_dir():
        raise FocusError(f"--output {target}: folder {target.parent} does not exist")
    if target.is_dir():
        raise FocusError(f"--output {target}: is a folder; give a file name")
    # A unique hidden name in the target's folder (so the rename is atomic and concurrent
    # exports to one folder never share it), created exclusively with the usual permissions.
    partial = target.with_name(f".{target.name}.{uuid.uuid4().hex[:12]}.partial")
    try:
        if fmt == "csv":
            with partial.open("x", encoding="utf-8", newline="") as stream:
                csv_writer = CsvWriter(stream)
                for batch in batches:
                    csv_writer.write(batch)
        else:
            with partial.open("xb") as binary:
                parquet_writer = ParquetWriter(binary)
                try:
                    for batch in batches:
                        parquet_writer.write(batch)
                finally:
                    parquet_writer.close()
        partial.replace(target)
    finally:
        partial.unlink(missing_ok=True)
    return result


def read_focus_json(value: str | None) -> Any:
    """Parse a JSON column value (``Tags``, ``AllocatedMethodDetails``) exactly."""
    return json.loads(value, parse_float=Decimal) if value else None
