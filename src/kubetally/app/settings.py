"""The one place that decides how kubetally runs: flag > file > environment.

Every command used to pick its cluster, ledger, Prometheus URL and destinations on its own, with
slightly different fallbacks. :class:`SettingsResolver` holds the loaded configuration and the
environment, and answers each question the same way for every use case (the CLI, the demo and
the coming server):

* a command-line flag wins;
* then ``kubetally.yaml`` (and the Alauda ConfigMaps loaded with it);
* then the environment: ``KUBETALLY_CLUSTER``, ``KUBETALLY_DB``, ``PROMETHEUS_URL`` and vBilling's
  variables (``LAGO_API_KEY``/``LAGO_API_URL``/``DEFAULT_PLAN_CODE``/``BILLING_CURRENCY`` for a
  Lago destination, ``COLLECTION_INTERVAL``/``RECONCILE_INTERVAL`` for the agent's intervals).
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from kubetally.config import Config, load_config
from kubetally.config.destinations import DestinationsConfig, destinations_from_env
from kubetally.config.kubernetes import KubernetesConfig
from kubetally.errors import ConfigError
from kubetally.periods import parse_duration

CLUSTER_VARIABLE = "KUBETALLY_CLUSTER"
DB_VARIABLE = "KUBETALLY_DB"
PROMETHEUS_VARIABLE = "PROMETHEUS_URL"

#: vBilling's variables the agent understands; the Lago ones configure delivery.
VBILLING_VARIABLES = (
    "ADAPTER",
    "LAGO_API_URL",
    "LAGO_API_KEY",
    "COLLECTION_INTERVAL",
    "RECONCILE_INTERVAL",
    "DEFAULT_PLAN_CODE",
    "BILLING_CURRENCY",
    "PROMETHEUS_URL",
    "SPOT_DISCOUNT_PERCENT",
)


@dataclass
class AgentEnvironment:
    """What vBilling's environment variables mean for this agent."""

    kubernetes: KubernetesConfig
    prometheus_url: str | None = None
    notes: list[str] = field(default_factory=list)


def vbilling_environment(environ: Mapping[str, str], settings: KubernetesConfig) -> AgentEnvironment:
    """Apply vBilling's variables: ``COLLECTION_INTERVAL`` → tick interval, ``RECONCILE_INTERVAL``
    → tenant discovery interval, ``PROMETHEUS_URL`` → Prometheus step. ``SPOT_DISCOUNT_PERCENT``
    is accepted and ignored: spot is a price dimension (``capacity_type``), never a discount on
    usage. ``ADAPTER``/``LAGO_*``/``DEFAULT_PLAN_CODE``/``BILLING_CURRENCY`` configure delivery.
    Raises ValueError naming the variable when a value cannot be parsed."""
    updates: dict[str, Any] = {}
    notes: list[str] = []
    for variable, key in (("COLLECTION_INTERVAL", "tick_interval"), ("RECONCILE_INTERVAL", "reconcile_interval")):
        raw = environ.get(variable, "").strip()
        if not raw:
            continue
        try:
            value = parse_duration(raw)
        except ValueError as exc:
            raise ValueError(f"{variable}={raw!r}: {exc}") from None
        if value.total_seconds() < 1:
            raise ValueError(f"{variable}={raw!r}: must be at least 1s")
        updates[key] = value
        notes.append(f"{variable}={raw}: {key.replace('_', ' ')} {raw}")
    if environ.get("SPOT_DISCOUNT_PERCENT", "").strip():
        notes.append(
            f"SPOT_DISCOUNT_PERCENT={environ['SPOT_DISCOUNT_PERCENT']} is ignored: spot usage is recorded "
            "with capacity_type=spot and priced by the price book, never discounted in quantity"
        )
    adapter = environ.get("ADAPTER", "").strip().lower()
    if adapter and adapter != "lago":
        notes.append(
            f"ADAPTER={adapter}: only the Lago destination is configured from the environment; configure "
            f"{adapter} under destinations: in kubetally.yaml"
        )
    merged = settings.model_copy(update=updates) if updates else settings
    url = environ.get("PROMETHEUS_URL", "").strip() or None
    return AgentEnvironment(merged, url, notes)


class SettingsResolver:
    """Flag > file > environment, for every setting more than one use case needs."""

    def __init__(
        self,
        config: Config | None = None,
        environ: Mapping[str, str] | None = None,
        files: Iterable[str | Path] = (),
    ):
        self.config = config if config is not None else Config()
        self.environ: Mapping[str, str] = os.environ if environ is None else environ
        #: The files ``config`` was loaded from (to reload them with extra documents).
        self.files = list(files)

    @classmethod
    def load(cls, files: Iterable[str | Path] | None, environ: Mapping[str, str] | None = None) -> SettingsResolver:
        """Load and cross-check the configuration files (:class:`ConfigError` with every problem)."""
        from kubetally.config.loader import discover_config_files

        paths: list[str | Path] = list(discover_config_files(list(files) if files else None))
        return cls(load_config(paths), environ, paths)

    @property
    def warnings(self) -> list[str]:
        return self.config.warnings

    def _env(self, name: str) -> str | None:
        return self.environ.get(name, "").strip() or None

    def cluster(self, flag: str | None) -> str:
        """The metered cluster's name; a :class:`ConfigError` when nothing names it."""
        name = flag or self.config.settings.cluster or self._env(CLUSTER_VARIABLE)
        if not name:
            raise ConfigError(
                [f"no cluster name: pass --cluster, set `cluster:` in kubetally.yaml or {CLUSTER_VARIABLE}"]
            )
        return name

    def db(self, flag: str | None) -> str | None:
        """The ledger (``None``: the ledger's own default, ``./kubetally.db``)."""
        return flag or self.config.settings.db or self._env(DB_VARIABLE)

    def prometheus_url(self, flag: str | None) -> str | None:
        return flag or self.config.settings.prometheus.url or self._env(PROMETHEUS_VARIABLE)

    def destinations(self) -> DestinationsConfig | None:
        """``destinations:`` of kubetally.yaml, else a Lago destination from vBilling's variables."""
        if self.config.destinations is not None:
            return self.config.destinations
        return destinations_from_env(dict(self.environ))

    def agent_environment(self) -> AgentEnvironment:
        """The agent's Kubernetes settings with vBilling's interval variables applied, the
        Prometheus URL they name, and notes on what was applied or ignored.

        A :class:`ConfigError` names the variable whose value cannot be used."""
        try:
            return vbilling_environment(self.environ, self.config.kubernetes)
        except ValueError as exc:
            raise ConfigError([str(exc)]) from None
