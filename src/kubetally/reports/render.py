"""Render a :class:`~kubetally.reports.build.Report` as a rich table, CSV or JSON.

CSV and JSON are exact: every micro-unit of money and every digit of usage. The table is for
people at 80 columns: money to the currency's minor unit (CLDR: USD 2 places, JPY 0), rounded
ROUND_HALF_UP like the rating, with the exact total printed under the table when it differs;
usage to a fixed number of decimals per unit (4; byte units 0). Item names are never broken
mid-word: when the table is too wide the units move below their numbers, display names wrap at
spaces and identifier columns wrap.

Usage with no price is never shown at zero: a row with none of its usage priced (status
``unpriced``) has an empty cost and list cost in CSV, ``null`` ones in JSON and ``unpriced``
in the table; a ``partly unpriced`` row's cost is that of its priced part. Subtotals and totals
are integer sums of the priced usage only, and the unpriced usage they leave out is listed
(JSON ``unpriced``, and a line under the table).
"""

from __future__ import annotations

import csv
import io
import json
from decimal import ROUND_HALF_EVEN, Decimal
from typing import Any

from rich import box
from rich.cells import cell_len
from rich.console import Console
from rich.table import Table

from kubetally.periods import format_time, zone_name
from kubetally.rating.money import WIDE, format_money, format_money_fixed, format_money_minor, money_places
from kubetally.record import normalize
from kubetally.reports.buckets import bucket_label
from kubetally.reports.build import Report, ReportRow
from kubetally.reports.csvsafe import neutralise

_NINE = Decimal("0.000000001")

HEADERS = {
    "en": {
        "period": "Period",
        "tenant": "Tenant",
        "project": "Project",
        "namespace": "Namespace",
        "cluster": "Cluster",
        "item": "Item",
        "usage": "Usage",
        "unit": "Unit",
        "list": "List",
        "cost": "Cost",
        "total": "Total",
        "subtotal": "Subtotal",
        "title": "Cost report",
        "unpriced": "unpriced",
        "mixed": "(mixed)",
        "partly": "part of this row's usage has no price (listed below); the cost is of the priced part",
        "exact": "exact total (every micro-unit; CSV and JSON carry them all)",
    },
    "zh": {
        "period": "周期",
        "tenant": "租户",
        "project": "项目",
        "namespace": "命名空间",
        "cluster": "集群",
        "item": "计费项",
        "usage": "用量",
        "unit": "单位",
        "list": "标价",
        "cost": "费用",
        "total": "合计",
        "subtotal": "小计",
        "title": "费用报表",
        "unpriced": "未定价",
        "mixed": "(多项)",
        "partly": "该行部分用量未定价（见下），费用仅含已定价部分",
        "exact": "精确合计（含全部微单位；CSV 与 JSON 中均保留）",
    },
}


def format_quantity(value: Decimal) -> str:
    """Exact decimal text without exponent or trailing zeros."""
    return format(normalize(value), "f")


def _display_quantity(value: Decimal) -> str:
    return format_quantity(value.quantize(_NINE, rounding=ROUND_HALF_EVEN, context=WIDE))


def unit_decimals(unit: str) -> int:
    """Decimals a table shows for a unit: whole bytes (and byte-hours), four places otherwise
    (GPU-hours, core-hours, GiB-hours…). CSV and JSON keep every digit."""
    return 0 if "byte" in unit.lower() or unit in ("B", "b") else 4


def fixed_quantity(value: Decimal, unit: str) -> str:
    """``value`` with the unit's fixed number of decimals (ROUND_HALF_EVEN, as display units)."""
    exponent = Decimal(1).scaleb(-unit_decimals(unit))
    return f"{value.quantize(exponent, rounding=ROUND_HALF_EVEN, context=WIDE):f}"


def _usage_cells(report: Report, row: ReportRow, *, fixed: bool = False) -> tuple[str, str]:
    """Usage and unit cells; ``fixed``: the table's fixed decimals per unit, else exact."""
    single = row.single_item
    if single is None:
        return "", ""
    _category, item, raw_unit = single
    if report.unit == "display":
        shown = report.display_usage(row)
        assert shown is not None
        name = report.display.unit_name(item, raw_unit, report.lang)
        return (fixed_quantity(shown, name) if fixed else _display_quantity(shown)), name
    usage = row.usage
    assert usage is not None
    return (fixed_quantity(usage, raw_unit) if fixed else format_quantity(usage)), raw_unit


def _group_cell(report: Report, name: str, value: str) -> str:
    if name == "item" and report.unit == "display":
        category, item = value.split("/", 1)
        return report.display.item_name(category, item, report.lang)
    return value


def _widest(
    columns: list[tuple[str, str, bool]], lines: list[tuple[list[str], str | None, bool]], total: list[str]
) -> list[int]:
    """The widest cell (or header) of each column, in terminal cells."""
    widths = [cell_len(header) for header, _, _ in columns]
    for cells in [*(c for c, _, _ in lines), total]:
        widths = [max(w, *(cell_len(line) for line in c.split("\n"))) for w, c in zip(widths, cells, strict=True)]
    return widths


#: Identifier columns that may wrap (down to :data:`_MIN_ID` cells) when a table is too wide.
_ID_HEADERS = {lang: {w[name] for name in ("tenant", "project", "namespace", "cluster")} for lang, w in HEADERS.items()}
_MIN_ID = 8


def _index(columns: list[tuple[str, str, bool]], header: str) -> int | None:
    return next((i for i, (h, _, _) in enumerate(columns) if h == header), None)


def _compact_width(columns: list[tuple[str, str, bool]], widths: list[int], wrapping: int) -> int:
    """Width of a compact table whose whole columns are ``widths`` wide and others ``wrapping``."""
    cells = sum(w if whole else min(w, wrapping) for w, (_, _, whole) in zip(widths, columns, strict=True))
    return cells + 2 * (len(columns) - 1)


def render_table(report: Report, console: Console) -> None:
    """Print the report as a table with per-bucket subtotals and a grand total.

    Nothing is ever cut off: identifiers (tenant, project, namespace, cluster), the period and
    the amounts stay on one line, and the item names and units wrap (or fold) instead: when
    the table is wider than the console, the padding tightens and each unit moves into its
    usage cell, on a line below the number. Only if even that cannot fit does every column
    fold. A report of a single bucket names it in the title rather than in a Period column.
    """
    words = HEADERS[report.lang]
    show_list = any(row.list_cost != row.cost for row in report.rows if not _unpriced(row))
    show_usage = "item" in report.by
    subtotals = report.subtotals()
    local_start, local_end = report.start.astimezone(report.zone), report.end.astimezone(report.zone)
    zone = zone_name(report.zone)
    where = report.currency if zone == "UTC" else f"{report.currency}, {zone}"
    title = f"{words['title']} {local_start:%Y-%m-%d} – {local_end:%Y-%m-%d} ({where})"
    show_period = len(subtotals) > 1 or not report.by
    if len(subtotals) == 1 and not show_period:
        title += f" · {words['period']} {bucket_label(subtotals[0][0], report.per, report.zone)}"
    # (header, justify, keeps whole) per column, in order.
    columns: list[tuple[str, str, bool]] = []
    if show_period:
        columns.append((words["period"], "left", True))
    columns += [(words[name], "left", False) for name in report.by]
    if show_usage:
        columns += [(words["usage"], "right", True), (words["unit"], "left", False)]
    if show_list:
        columns.append((words["list"], "right", True))
    columns.append((words["cost"], "right", True))
    labels = len(columns) - (2 if show_list else 1)  # the columns before the amounts

    places = money_places(report.currency)

    def money(micros: int) -> str:
        return format_money_minor(micros, places)

    lines: list[tuple[list[str], str | None, bool]] = []  # cells, style, end of section
    partly = False
    for index, (period, subtotal) in enumerate(subtotals):
        rows = [row for row in report.rows if row.period == period]
        for row in rows:
            cells = [bucket_label(period, report.per, report.zone)] if show_period else []
            cells += [_group_cell(report, name, row.group[name]) for name in report.by]
            if show_usage:
                cells += list(_usage_cells(report, row, fixed=True))
            if show_list:
                cells.append("" if _unpriced(row) else money(row.list_cost))
            if _unpriced(row):
                cost = words["unpriced"]
            elif row.unpriced_usage:
                # The marker goes on the row's name (the item, else the last group cell), not on
                # the amount, so the decimal points of the cost column stay aligned.
                cost = money(row.cost)
                mark = (1 if show_period else 0) + (
                    report.by.index("item") if "item" in report.by else len(report.by) - 1
                )
                cells[max(mark, 0)] += "*"
                partly = True
            else:
                cost = money(row.cost)
            cells.append(cost)
            lines.append((cells, None, False))
        if len(subtotals) > 1:
            label = bucket_label(period, report.per, report.zone)
            if show_period and labels > 1:
                # The word goes into the item column when there is one: it is the widest.
                cells = [label] + [""] * (labels - 1)
                cells[1 + report.by.index("item") if "item" in report.by else 1] = words["subtotal"]
            else:
                cells = [f"{words['subtotal']} {label}"] + [""] * (labels - 1)
            if show_list:
                cells.append(money(sum(r.list_cost for r in rows)))
            cells.append(money(subtotal))
            lines.append((cells, "italic", index < len(subtotals) - 1))
    cells = [words["total"]] + [""] * (labels - 1)
    if show_list:
        cells.append(money(report.list_total))
    cells.append(money(report.total))
    total_line = cells

    width = console.width
    widths = _widest(columns, lines, total_line)
    roomy = sum(widths) + 3 * len(columns) - 1 + 2  # padding 1 each side, a divider between, the edges
    compact = roomy > width
    # Compact: one space each side of a divider, no edges. Then, in order of preference:
    # 1. the unit moves below its number in the usage cell;
    # 2. the item names wrap at spaces (never narrower than their longest word: no name is
    #    ever broken mid-word);
    # 3. identifier columns (tenant, project, namespace, cluster) wrap, down to 8 cells.
    # Period, usage and amounts never wrap.
    unit_index = columns.index((words["unit"], "left", False)) if show_usage else None
    if compact and unit_index is not None and _compact_width(columns, widths, 10**6) > width:
        del columns[unit_index]
        for cells in [*(c for c, _, _ in lines), total_line]:
            cells[unit_index - 1] = "\n".join(filter(None, [cells[unit_index - 1], cells.pop(unit_index)]))
        columns[unit_index - 1] = (words["usage"], "right", True)
        widths = _widest(columns, lines, total_line)
    item_index = _index(columns, words["item"])
    if compact:
        excess = _compact_width(columns, widths, 10**6) - width
        if excess > 0 and item_index is not None:
            item_words = max((cell_len(word) for cells, _, _ in lines for word in cells[item_index].split()), default=0)
            item_words = max(item_words, cell_len(words["item"]))
            cut = min(excess, widths[item_index] - item_words)
            widths[item_index] -= max(cut, 0)
            excess -= max(cut, 0)
        ids = [i for i, (h, _, _) in enumerate(columns) if h in _ID_HEADERS[report.lang]]
        for floor in (_MIN_ID, 4):  # 8 cells each if that is enough, else down to 4
            while excess > 0 and any(widths[i] > floor for i in ids):
                widest = max(ids, key=lambda i: widths[i])
                widths[widest] -= 1
                excess -= 1

    table = Table(
        title=title,
        box=box.SIMPLE_HEAVY,
        show_footer=False,
        show_edge=not compact,
        pad_edge=not compact,
        collapse_padding=compact,
    )
    for (header, justify, whole), column_width in zip(columns, widths, strict=True):
        table.add_column(
            header,
            justify=justify,  # type: ignore[arg-type]
            no_wrap=whole,
            overflow="fold",
            width=column_width if compact else None,
        )
    for cells, style, end_section in lines:
        table.add_row(*cells, style=style, end_section=end_section)
    table.add_section()
    table.add_row(*total_line, style="bold")
    console.print(table)
    if partly:
        console.print(f"* {words['partly']}", highlight=False, soft_wrap=True)
    if format_money_minor(report.total, places) != format_money(report.total):
        console.print(
            f"{words['exact']}: {format_money(report.total)} {report.currency}", highlight=False, soft_wrap=True
        )
    for summary in report.unpriced:
        console.print(
            f"[yellow]unpriced[/]: {' '.join(filter(None, [format_quantity(summary.usage), summary.unit]))} of "
            f"{summary.category}/{summary.item} in {summary.lines} line(s), not in the totals: {summary.reason}",
            highlight=False,
            soft_wrap=True,
        )


def _unpriced(row: ReportRow) -> bool:
    """The row has usage but no price for any of it (``status`` ``unpriced``): it has no cost."""
    return row.status == "unpriced"


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
    # A row none of whose usage has a price has no cost (empty in CSV, null in JSON), never 0.
    fields["list_cost"] = None if _unpriced(row) else format_money_fixed(row.list_cost)
    fields["cost"] = None if _unpriced(row) else format_money_fixed(row.cost)
    fields["currency"] = report.currency
    fields["status"] = row.status
    return fields


def render_csv(report: Report) -> str:
    """One CSV line per report row; costs with six decimals (exact micro-units), empty when unpriced."""
    out = io.StringIO()
    rows = [
        {k: neutralise(v) if isinstance(v, str) else v for k, v in _row_fields(report, row).items()}
        for row in report.rows
    ]
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
            {
                **_row_fields(report, row),
                "list_cost_micros": None if _unpriced(row) else row.list_cost,
                "cost_micros": None if _unpriced(row) else row.cost,
            }
            for row in report.rows
        ],
        "subtotals": [
            {
                "period_start": format_time(period.start),
                "period_end": format_time(period.end),
                "cost": format_money_fixed(cost),
                "cost_micros": cost,
            }
            for period, cost in report.subtotals()
        ],
        "total": {
            "list_cost": format_money_fixed(report.list_total),
            "list_cost_micros": report.list_total,
            "cost": format_money_fixed(report.total),
            "cost_micros": report.total,
        },
        "unpriced": [
            {
                "category": u.category,
                "item": u.item,
                "unit": u.unit,
                "usage": format_quantity(u.usage),
                "lines": u.lines,
                "reason": u.reason,
            }
            for u in report.unpriced
        ],
    }


def render_json(report: Report) -> str:
    return json.dumps(report_dict(report), indent=2, ensure_ascii=False) + "\n"
