"""Field types shared by every configuration section, so each is parsed one way everywhere."""

from __future__ import annotations

from datetime import timedelta
from typing import Annotated, Any

from pydantic import BeforeValidator

from kubetally.periods import parse_duration


def as_timedelta(value: Any) -> Any:
    """Durations are written as in PromQL (``30s``, ``5m``, ``1h30m``, ``7d``); numbers are seconds."""
    if value is None or isinstance(value, timedelta):
        return value
    return parse_duration(value)


#: A duration field: ``settle_delay: 2m``.
Duration = Annotated[timedelta, BeforeValidator(as_timedelta)]
