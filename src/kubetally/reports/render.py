"""Render a :class:`~kubetally.reports.build.Report` as a rich table, CSV or JSON.

Money is shown exactly: every micro-unit that is there is printed (``12.345678``; ``12.50``
when the micro-units are zero), so the lines of a table visibly add up to its totals.
Usage is exact in raw units; display units (after the divisor) are shown to 9 decimal places.
"""

from __future__ import annotations

import csv
import io
import json
from decimal import ROUND_HALF_EVEN, Decimal
from typing import Any

from rich import box
from rich.console import Console
from rich.table import Table

from kubetally.periods import format_time
from kubetally.rating.money import format_money, format_money_fixed
from kubetally.record import normalize
from kubetally.reports.buckets import bucket_label
from kubetally.reports.build import Report, ReportRow

_NINE = Decimal("0.000000001")

HEADERS = {
    "en": {
        "period": "Period", "tenant": "Tenant", "project": "Project", "namespace": "Namespace",
        "cluster": "Cluster", "item": "Item", "usage": "Usage", "unit": "Unit", "list": "List",
        "cost": "Cost", "total": "Total", "subtotal": "Subtotal", "title": "Cost report",
        "unpriced": "unpriced", "mixed": "(mixed)",
    },
    "zh": {
        "period": "周期", "tenant": "租户", "project": "项目", "namespace": "命名空间",
        "cluster": "集群", "item": "计费项", "usage": "用量", "unit": "单位", "list": "标价",
        "cost": "费用", "total": "合计", "subtotal": "小计", "title": "费用报表",
        "unpriced": "未定价", "mixed": "(多项)",
    },
}


def format_quantity(value: Decimal) -> str:
    """Exact decimal text without exponent or trailing zeros."""
    return format(normalize(value), "f")


def _display_quantity(value: Decimal) -> str:
    return format_quantity(value.quantize(_NINE, rounding=ROUND_HALF_EVEN))


def _usage_cells(report: Report, row: ReportRow) -> tuple[str, str]:
    single = row.single_item
    if single is None:
        return "", ""
    _category, item, raw_unit = single
    if report.unit == "display":
        shown = report.display_usage(row)
        assert shown is not None
        return _display_quantity(shown), report.display.unit_name(item, raw_unit, report.lang)
    usage = row.usage
    assert usage is not None
    return format_quantity(usage), raw_unit


def _group_cell(report: Report, name: str, value: str) -> str:
    if name == "item" and report.unit == "display":
        category, item = value.split("/", 1)
        return report.display.item_name(category, item, report.lang)
    return value


def render_table(report: Report, console: Console) -> None:
    """Print the report as a table with per-bucket subtotals and a grand total."""
    words = HEADERS[report.lang]
    show_list = any(row.list_cost != row.cost for row in report.rows)
    show_usage = "item" in report.by
    table = Table(
        title=f"{words['title']} {report.start:%Y-%m-%d} – {report.end:%Y-%m-%d} ({report.currency})",
        box=box.SIMPLE_HEAVY,
        show_footer=False,
    )
    table.add_column(words["period"], no_wrap=True)
    for name in report.by:
        table.add_column(words[name])
    if show_usage:
        table.add_column(words["usage"], justify="right")
        table.add_column(words["unit"])
    if show_list:
        table.add_column(words["list"], justify="right")
    table.add_column(words["cost"], justify="right")
    width = 1 + len(report.by) + (2 if show_usage else 0)
    subtotals = report.subtotals()
    for index, (period, subtotal) in enumerate(subtotals):
        rows = [row for row in report.rows if row.period == period]
        for row in rows:
            cells = [bucket_label(period, report.per)]
            cells += [_group_cell(report, name, row.group[name]) for name in report.by]
            if show_usage:
                cells += list(_usage_cells(report, row))
            if show_list:
                cells.append(format_money(row.list_cost))
            cost = format_money(row.cost)
            if row.unpriced_usage:
                cost = f"{cost} (+ {words['unpriced']})" if row.status == "partly unpriced" else words["unpriced"]
            cells.append(cost)
            table.add_row(*cells)
        if len(subtotals) > 1:
            cells = [f"{words['subtotal']} {bucket_label(period, report.per)}"] + [""] * (width - 1)
            if show_list:
                cells.append(format_money(sum(r.list_cost for r in rows)))
            cells.append(format_money(subtotal))
            table.add_row(*cells, style="italic", end_section=index < len(subtotals) - 1)
    table.add_section()
    cells = [words["total"]] + [""] * (width - 1)
    if show_list:
        cells.append(format_money(report.list_total))
    cells.append(format_money(report.total))
    table.add_row(*cells, style="bold")
    console.print(table)
    for summary in report.unpriced:
        console.print(
            f"[yellow]unpriced[/]: {' '.join(filter(None, [format_quantity(summary.usage), summary.unit]))} of "
            f"{summary.category}/{summary.item} in {summary.lines} line(s), not in the totals: {summary.reason}",
            highlight=False,
            soft_wrap=True,
        )


def _row_fields(report: Report, row: ReportRow) -> dict[str, Any]:
    fields: dict[str, Any] = {
        "period_start": format_time(row.period.start),
        "period_end": format_time(row.period.end),
    }
    for name in report.by:
        if name == "item":
            category, item = row.group["item"].split("/", 1)
            fields["category"], fields["item"] = category, item
            if report.unit == "display":
                fields["item_name"] = report.display.item_name(category, item, report.lang)
        else:
            fields[name] = row.group[name]
    single = row.single_item
    fields["usage"] = format_quantity(row.usage) if row.usage is not None else ""
    fields["unit"] = single[2] if single is not None else ""
    if report.unit == "display":
        shown = report.display_usage(row)
        fields["display_usage"] = _display_quantity(shown) if shown is not None else ""
        fields["display_unit"] = (
            report.display.unit_name(single[1], single[2], report.lang) if single is not None else ""
        )
    fields["list_cost"] = format_money_fixed(row.list_cost)
    fields["cost"] = format_money_fixed(row.cost)
    fields["currency"] = report.currency
    fields["status"] = row.status
    return fields


def render_csv(report: Report) -> str:
    """One CSV line per report row; costs with six decimals (exact micro-units)."""
    out = io.StringIO()
    rows = [_row_fields(report, row) for row in report.rows]
    writer = csv.DictWriter(out, fieldnames=csv_header(report), lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    return out.getvalue()


def csv_header(report: Report) -> list[str]:
    """The CSV columns (the same keys :func:`_row_fields` fills)."""
    names = ["period_start", "period_end"]
    for name in report.by:
        if name == "item":
            names += ["category", "item"] + (["item_name"] if report.unit == "display" else [])
        else:
            names.append(name)
    names += ["usage", "unit"]
    if report.unit == "display":
        names += ["display_usage", "display_unit"]
    return [*names, "list_cost", "cost", "currency", "status"]


def report_dict(report: Report) -> dict[str, Any]:
    """The JSON shape: amounts as exact strings plus integer micro-units."""
    return {
        "from": format_time(report.start),
        "to": format_time(report.end),
        "by": list(report.by),
        "per": str(report.per),
        "currency": report.currency,
        "rows": [
            {**_row_fields(report, row), "list_cost_micros": row.list_cost, "cost_micros": row.cost}
            for row in report.rows
        ],
        "subtotals": [
            {"period_start": format_time(period.start), "period_end": format_time(period.end),
             "cost": format_money_fixed(cost), "cost_micros": cost}
            for period, cost in report.subtotals()
        ],
        "total": {
            "list_cost": format_money_fixed(report.list_total),
            "list_cost_micros": report.list_total,
            "cost": format_money_fixed(report.total),
            "cost_micros": report.total,
        },
        "unpriced": [
            {"category": u.category, "item": u.item, "unit": u.unit, "usage": format_quantity(u.usage),
             "lines": u.lines, "reason": u.reason}
            for u in report.unpriced
        ],
    }


def render_json(report: Report) -> str:
    return json.dumps(report_dict(report), indent=2, ensure_ascii=False) + "\n"
