"""Reports over priced usage: tables, CSV, JSON (``build``/``render``) and FOCUS (``focus``)."""

from kubetally.reports.buckets import Per
from kubetally.reports.build import GROUPABLE, Report, ReportError, ReportRow, build_report, parse_by
from kubetally.reports.render import render_csv, render_json, render_table, report_dict

__all__ = [
    "GROUPABLE",
    "Per",
    "Report",
    "ReportError",
    "ReportRow",
    "build_report",
    "parse_by",
    "render_csv",
    "render_json",
    "render_table",
    "report_dict",
]
