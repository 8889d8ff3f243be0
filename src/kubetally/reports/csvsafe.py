"""Spreadsheet-safe CSV cells.

A tenant, namespace or pod name comes from whoever creates it; a name such as
``=HYPERLINK("http://…")`` or ``@SUM(A1)`` in a CSV opened in Excel, LibreOffice or Google Sheets
runs as a formula (CSV injection, OWASP). Text cells that start with a formula character are
prefixed with ``'`` (the spreadsheet convention for "this is text"); numbers, including negative
credits, are left alone. JSON and Parquet outputs keep every name unchanged.
"""

from __future__ import annotations

import re

_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")
_NUMBER = re.compile(r"[+-]?\d+(\.\d+)?([eE][+-]?\d+)?")


def neutralise(cell: str) -> str:
    if cell.startswith(_FORMULA_START) and not _NUMBER.fullmatch(cell):
        return "'" + cell
    return cell
