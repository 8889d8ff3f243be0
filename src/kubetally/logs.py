"""Diagnostics for operators and for log pipelines.

Every command logs through :mod:`logging` to **stderr** (data — tables, CSV, JSON — goes to
stdout, so ``kubetally report --format csv > bill.csv`` never holds a warning). ``--log-format
text`` (default) prints ``warning: message`` lines, never wrapped or padded when stderr is not a
terminal; ``--log-format json`` prints one JSON object per line with ``time``, ``level``,
``logger``, ``message`` and, when the message is about one, ``cluster``, ``tenant``, ``item`` and
``period`` — pass them as ``extra={...}`` to a logging call.
"""

from __future__ import annotations

import json
import logging
import sys
from datetime import UTC, datetime
from typing import Any

FORMATS = ("text", "json")
LEVELS = ("debug", "info", "warning", "error")
#: Context fields a log line may carry (``log.warning(..., extra={"item": ...})``).
CONTEXT = ("cluster", "tenant", "item", "period")
#: Libraries whose chatter (every HTTP request, every migration check) drowns kubetally's own.
NOISY = ("alembic", "httpx", "httpcore", "urllib3", "kubernetes", "uvicorn.access")


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC)
            .isoformat(timespec="milliseconds")
            .replace("+00:00", "Z"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        for key in CONTEXT:
            value = getattr(record, key, None)
            if value is None and record.name.startswith("kubetally"):
                value = context.get(key)
            if value is not None:
                entry[key] = str(value)
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return json.dumps(entry, ensure_ascii=False, sort_keys=False)


class TextFormatter(logging.Formatter):
    """``warning: message`` — one line per record, whatever the terminal width."""

    def format(self, record: logging.LogRecord) -> str:
        text = f"{record.levelname.lower()}: {record.getMessage()}"
        if record.exc_info:
            text += "\n" + self.formatException(record.exc_info)
        return text


class _StderrHandler(logging.StreamHandler):  # type: ignore[type-arg]
    """Writes to whatever ``sys.stderr`` is at the time of the record (a test runner may swap it)."""

    def __init__(self) -> None:
        super().__init__(sys.stderr)

    @property
    def stream(self) -> Any:
        return sys.stderr

    @stream.setter
    def stream(self, _value: Any) -> None:
        pass


def setup(level: str = "warning", fmt: str = "text") -> None:
    """Route every log record to stderr in ``fmt``; replaces handlers set before (idempotent)."""
    level = level.lower()
    if level not in LEVELS:
        raise ValueError(f"--log-level must be one of {', '.join(LEVELS)}, not {level!r}")
    if fmt not in FORMATS:
        raise ValueError(f"--log-format must be text or json, not {fmt!r}")
    handler = _StderrHandler()
    handler.setFormatter(JsonFormatter() if fmt == "json" else TextFormatter())
    handler.kubetally = True  # type: ignore[attr-defined]
    root = logging.getLogger()
    for old in list(root.handlers):
        if getattr(old, "kubetally", False):  # only our own: a host's (or pytest's) handlers stay
            root.removeHandler(old)
    root.addHandler(handler)
    numeric = logging.getLevelName(level.upper())
    root.setLevel(numeric)
    for noisy in NOISY:
        logging.getLogger(noisy).setLevel(max(logging.WARNING, numeric))


#: Fields every kubetally line carries unless the call gives its own (the agent sets ``cluster``:
#: one process meters one cluster, so each of its lines is about that cluster).
context: dict[str, str] = {}

#: What the global options chose, for commands (the agent) that set their own level later.
state: dict[str, str] = {"level": "warning", "format": "text"}
