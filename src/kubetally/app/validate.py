"""Check configuration files (``kubetally validate``)."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

from kubetally.config import Config, load_config


@dataclass
class Validation:
    config: Config
    #: Problems found beyond the files themselves (PromQL a Prometheus refused to parse).
    problems: list[str] = field(default_factory=list)


def validate(files: Iterable[str | Path], *, prometheus: str | None = None) -> Validation:
    """Load and cross-check ``files`` (a :class:`~kubetally.errors.ConfigError` lists every
    problem in them); with ``prometheus``, also have that server parse every query."""
    config = load_config(files)
    if prometheus is None:
        return Validation(config)
    from kubetally.sources.prometheus.check import check_queries

    return Validation(config, check_queries(config, prometheus))
