"""Load kubetally configuration from files, reporting every problem with its location.

Accepted files, in any combination:

* ``kubetally.yaml`` — a mapping with the sections of :class:`KubetallyConfig`;
* Alauda collection ConfigMaps (label ``cpaas.io/slark.collection.config: "true"``);
* Alauda display ConfigMaps (label ``cpaas.io/slark.display.config: "true"``);
* several of the above as documents of one multi-document YAML file.

Every message names the file, the item and the field, so an operator can fix a config
without reading our code.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field, replace
from datetime import timedelta, tzinfo
from importlib import resources
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, Field, ValidationError, field_validator

from kubetally import yamlfile
from kubetally.config.agent import AgentConfig
from kubetally.config.budgets import BudgetsConfig
from kubetally.config.costmodel import CollectionItem, DisplayEntry, DisplayItem, Strict, raw_step_problem
from kubetally.config.destinations import DestinationsConfig
from kubetally.config.kubernetes import KubernetesConfig
from kubetally.config.pricing import PriceBookConfig
from kubetally.config.server import ServerConfig
from kubetally.config.types import Duration
from kubetally.errors import ConfigError
from kubetally.periods import billing_zone, zone_name

COLLECTION_LABEL = "cpaas.io/slark.collection.config"
DISPLAY_LABEL = "cpaas.io/slark.display.config"

#: Sections whose problems are reported as ``file: section: path`` (their own models' paths).
SECTIONS = ("kubernetes", "pricing", "destinations", "budgets", "agent")


class PrometheusSettings(Strict):
    """How to reach Prometheus, Thanos, Mimir, Cortex or VictoriaMetrics. Secrets only from files
    or the environment, never inline."""

    url: str | None = None
    timeout: Duration = timedelta(seconds=60)
    #: File holding a bearer token (e.g. a projected service-account token); never inline.
    bearer_token_file: str | None = None
    #: Basic auth user; the password from ``password_file``, else the variable ``password_env``.
    username: str | None = None
    password_file: str | None = None
    password_env: str = "PROMETHEUS_PASSWORD"
    #: PEM bundle of the CA(s) that signed the server's certificate (a private CA).
    ca_file: str | None = None
    #: Client certificate and key (PEM) for servers that require mutual TLS.
    cert_file: str | None = None
    key_file: str | None = None
    #: Extra request headers, e.g. ``X-Scope-OrgID: tenant-1`` for Mimir/Cortex/Thanos tenants.
    headers: dict[str, str] = Field(default_factory=dict)
    #: How many item-periods are queried at once (each asks its usage and label queries in
    #: turn): Prometheus evaluates one while kubetally parses and writes another. 1 = one query
    #: at a time.
    max_concurrent_queries: int = Field(default=4, ge=1, le=64)


class CollectionSettings(Strict):
    #: How long after a period closes before it is collected (scrape lag, rule evaluation).
    settle_delay: Duration = timedelta(minutes=2)
    #: How far back a resumed collector backfills missed periods.
    max_backfill: Duration = timedelta(days=7)
    #: Namespace label whose value is a namespace's project (``mappers.project: ""``).
    project_label: str = "cpaas.io/project"
    #: Built-in item sets to include (see ``kubetally/config/presets``).
    presets: list[str] = Field(default_factory=list)


class BillingSettings(Strict):
    """Where billing days and months start (the ledger and its hourly records stay in UTC)."""

    #: IANA time zone (``Asia/Shanghai``, ``Europe/Berlin``): report days, weeks and months,
    #: tier months and FOCUS billing periods start at local midnight there. DST days are 23 or
    #: 25 hours long.
    timezone: str = "UTC"

    @field_validator("timezone")
    @classmethod
    def _known_zone(cls, value: str) -> str:
        return zone_name(billing_zone(value))

    @property
    def zone(self) -> tzinfo:
        return billing_zone(self.timezone)


class KubetallyConfig(Strict):
    """``kubetally.yaml``: the one typed root of kubetally's configuration.

    Every section has its own model in :mod:`kubetally.config`; every unknown key, at any depth,
    is an error naming the file and the path. ``items``/``display`` stay raw here: the loader
    validates them entry by entry, so each problem names its item."""

    cluster: str | None = None
    db: str | None = None
    prometheus: PrometheusSettings = Field(default_factory=PrometheusSettings)
    collection: CollectionSettings = Field(default_factory=CollectionSettings)
    items: list[dict[str, Any]] = Field(default_factory=list)
    display: list[dict[str, Any]] = Field(default_factory=list)
    #: The Kubernetes source (defaults fit a vCluster GPU cloud, so the section is optional).
    kubernetes: KubernetesConfig = Field(default_factory=KubernetesConfig)
    #: The price book; ``None``: none configured (commands then need ``--prices``).
    pricing: PriceBookConfig | None = None
    #: Billing backends; ``None``: none configured (the agent then reads vBilling's variables).
    destinations: DestinationsConfig | None = None
    #: ``kubetally server`` (listen address, its ledger and price book, dashboard sessions).
    server: ServerConfig = Field(default_factory=ServerConfig)
    #: The billing time zone.
    billing: BillingSettings = Field(default_factory=BillingSettings)
    #: Budgets, forecasts and their alerts (see :mod:`kubetally.config.budgets`).
    budgets: BudgetsConfig = Field(default_factory=BudgetsConfig)
    #: ``kubetally agent`` in a cluster: leader election, live ConfigMaps, the probe listener.
    agent: AgentConfig = Field(default_factory=AgentConfig)


#: The former name of :class:`KubetallyConfig`.
Settings = KubetallyConfig


@dataclass
class Config:
    """Everything loaded from a set of files, cross-checked."""

    settings: KubetallyConfig = field(default_factory=KubetallyConfig)
    items: list[CollectionItem] = field(default_factory=list)
    display: list[DisplayItem] = field(default_factory=list)
    sources: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    #: Collection item name → the file (or preset) that defined it, for located messages.
    origins: dict[str, str] = field(default_factory=dict)

    def item(self, name: str) -> CollectionItem:
        for item in self.items:
            if item.item == name:
                return item
        raise KeyError(name)

    def display_for(self, item: str) -> DisplayEntry | None:
        for entry in self.display:
            for method in entry.methods:
                if method.item == item:
                    return DisplayEntry(category=entry, method=method)
        return None

    @property
    def kubernetes(self) -> KubernetesConfig:
        return self.settings.kubernetes

    @property
    def pricing(self) -> PriceBookConfig | None:
        return self.settings.pricing

    @property
    def destinations(self) -> DestinationsConfig | None:
        return self.settings.destinations

    def with_settings(self, **updates: Any) -> Config:
        """A copy whose settings have these fields replaced (e.g. the agent's resolved
        ``kubernetes``), validated like the file was."""
        settings = self.settings.model_validate({**dict(self.settings), **updates})
        return replace(self, settings=settings)


def _loc(loc: Sequence[Any]) -> str:
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += f".{part}" if out else str(part)
    return out or "(top level)"


def pydantic_problems(where: str, exc: ValidationError) -> list[str]:
    """One message per pydantic error, prefixed with ``where`` (file and item)."""
    problems = []
    for err in exc.errors():
        msg = err["msg"].removeprefix("Value error, ")
        if err["type"] == "extra_forbidden":
            msg = "unknown key"
            if tuple(err["loc"]) == ("tenancy",):
                msg += " (tenancy is configured under kubernetes.tenancy)"
        elif err["type"] == "missing":
            msg = "required field is missing"
        loc = err["loc"]
        if len(loc) >= 1 and loc[0] in SECTIONS:
            # A section's problems read as that section's own paths: ``file: pricing: prices[0]``.
            section, loc = f"{where}: {loc[0]}", loc[1:]
            problems.append(f"{section}: {_loc(loc)}: {msg}" if loc else f"{section}: {msg}")
            continue
        # Whole-model checks (e.g. a step that does not divide the period) name their fields
        # in the message itself.
        problems.append(f"{where}: {_loc(loc)}: {msg}" if loc else f"{where}: {msg}")
    return problems


def _item_label(raw: Any, index: int, key: str) -> str:
    name = raw.get(key) if isinstance(raw, dict) else None
    return f"{key} {name!r}" if name else f"entry [{index}]"


def _raw_text(raw: Any, key: str) -> str | None:
    """``raw[key]`` when it is a non-blank string (what the model would accept), else None."""
    value = raw.get(key) if isinstance(raw, dict) else None
    return value if isinstance(value, str) and value.strip() else None


def _parse_items(
    source: str,
    raw: Any,
    kind: type[BaseModel],
    key: str,
    problems: list[str],
    whole_check: Callable[[dict[str, Any]], str | None] | None = None,
) -> Iterator[tuple[dict[str, Any], Any]]:
    """Every mapping entry with its model, ``None`` for an entry that failed validation (its
    problems reported), so cross-checks can still use its raw name. ``whole_check`` repeats a
    whole-model check on the raw mapping: pydantic skips those when a field is invalid.
    A generator, so the caller's problems about an entry follow the entry's own."""
    if raw is None:
        return
    if not isinstance(raw, list):
        problems.append(f"{source}: expected a YAML list of items, got {type(raw).__name__}")
        return
    for index, entry in enumerate(raw):
        where = f"{source}: {_item_label(entry, index, key)}"
        if not isinstance(entry, dict):
            problems.append(f"{where}: expected a mapping, got {type(entry).__name__}")
            continue
        try:
            model = kind.model_validate(entry)
        except ValidationError as exc:
            problems.extend(pydantic_problems(where, exc))
            # A whole-model error (empty loc) means the model checks ran: no second report.
            if whole_check is not None and all(err["loc"] for err in exc.errors()):
                problem = whole_check(entry)
                if problem:
                    problems.append(f"{where}: {problem}")
            model = None
        yield entry, model


def _configmap_payload(source: str, doc: dict[str, Any], problems: list[str]) -> Any:
    data = doc.get("data")
    if not isinstance(data, dict) or "config" not in data:
        problems.append(f"{source}: ConfigMap has no data.config")
        return None
    text = data["config"]
    if not isinstance(text, str):
        return text
    try:
        return yamlfile.load(text)
    except yaml.YAMLError as exc:
        problems.append(f"{source}: data.config is not valid YAML: {yamlfile.describe(exc)}")
        return None


def preset_names() -> list[str]:
    folder = resources.files("kubetally.config") / "presets"
    return sorted(p.name.removesuffix(".yaml") for p in folder.iterdir() if p.name.endswith(".yaml"))


def _load_preset(name: str, problems: list[str]) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    path = resources.files("kubetally.config") / "presets" / f"{name}.yaml"
    if not path.is_file():
        problems.append(f"collection.presets: unknown preset {name!r} (known: {', '.join(preset_names())})")
        return [], []
    doc = yaml.safe_load(path.read_text()) or {}
    return doc.get("items", []), doc.get("display", [])


class _Builder:
    def __init__(self) -> None:
        self.config = Config()
        self.problems: list[str] = []
        self.item_origin: dict[str, str] = {}
        #: Item name → category of every item, valid or not, for the display cross-check.
        self.item_category: dict[str, str] = {}
        self.display_origin: dict[str, str] = {}
        #: Collection item → name of the display item with a method for it (None: unnamed),
        #: from every display entry, valid or not.
        self.display_of_item: dict[str, str | None] = {}
        self.settings_from: str | None = None
        self.saw_display = False

    def add_items(self, source: str, raw: Any) -> None:
        # Items that failed validation still take part in the duplicate and display checks
        # (by their raw name and category), so one run reports every problem.
        for entry, item in _parse_items(source, raw, CollectionItem, "item", self.problems, raw_step_problem):
            name = item.item if item is not None else _raw_text(entry, "item")
            if name is None:
                continue
            if name in self.item_origin:
                self.problems.append(
                    f"{source}: item {name!r}: item: duplicate (already defined in {self.item_origin[name]})"
                )
                continue
            self.item_origin[name] = source
            category = item.category if item is not None else _raw_text(entry, "category")
            if category is not None:
                self.item_category[name] = category
            if item is not None:
                self.config.origins[name] = source
                self.config.items.append(item)

    def add_display(self, source: str, raw: Any) -> None:
        self.saw_display = True
        for entry, display in _parse_items(source, raw, DisplayItem, "name", self.problems):
            name = display.name if display is not None else _raw_text(entry, "name")
            if name is not None and name in self.display_origin:
                self.problems.append(
                    f"{source}: name {name!r}: name: duplicate display item (already defined in "
                    f"{self.display_origin[name]})"
                )
                continue
            if name is not None:
                self.display_origin[name] = source
            methods = entry.get("methods")
            for method in methods if isinstance(methods, list) else []:
                item = _raw_text(method, "item")
                if item is not None:
                    self.display_of_item.setdefault(item, name)
            if display is not None:
                self.config.display.append(display)

    def add_settings(self, source: str, doc: dict[str, Any]) -> None:
        if self.settings_from is not None:
            self.problems.append(f"{source}: a second kubetally settings file (first: {self.settings_from})")
            return
        self.settings_from = source
        failed: set[str] = set()
        settings: KubetallyConfig | None
        try:
            settings = KubetallyConfig.model_validate(doc)
        except ValidationError as exc:
            self.problems.extend(pydantic_problems(source, exc))
            # Keep checking the sections that are fine, so one run reports every problem.
            failed = {str(err["loc"][0]) for err in exc.errors() if err["loc"]}
            settings = None
        else:
            self.config.settings = settings
        presets = (
            settings.collection.presets
            if settings is not None
            else ([] if "collection" in failed else list((doc.get("collection") or {}).get("presets") or []))
        )
        for name in presets:
            items, display = _load_preset(str(name), self.problems)
            self.add_items(f"preset {name}", items)
            self.add_display(f"preset {name}", display)
        if "items" not in failed:
            self.add_items(source, doc.get("items") or [])
        if "display" not in failed and doc.get("display"):
            self.add_display(source, doc["display"])

    def add_document(self, source: str, doc: Any) -> None:
        if doc is None:
            return
        if isinstance(doc, list):
            # A bare list: collection items if they look like them, else display items.
            if doc and isinstance(doc[0], dict) and "methods" in doc[0]:
                self.add_display(source, doc)
            else:
                self.add_items(source, doc)
            return
        if not isinstance(doc, dict):
            self.problems.append(f"{source}: expected a mapping or list, got {type(doc).__name__}")
            return
        if doc.get("kind") == "ConfigMap":
            name = (doc.get("metadata") or {}).get("name", "?")
            where = f"{source} (ConfigMap {name})"
            labels = (doc.get("metadata") or {}).get("labels") or {}
            if str(labels.get(COLLECTION_LABEL, "")).lower() == "true":
                self.add_items(where, _configmap_payload(where, doc, self.problems))
            elif str(labels.get(DISPLAY_LABEL, "")).lower() == "true":
                self.add_display(where, _configmap_payload(where, doc, self.problems))
            else:
                self.problems.append(
                    f'{where}: metadata.labels: neither {COLLECTION_LABEL} nor {DISPLAY_LABEL} is "true"'
                )
            return
        if doc.get("kind") == "List" and isinstance(doc.get("items"), list) and "apiVersion" in doc:
            for sub in doc["items"]:
                self.add_document(source, sub)
            return
        self.add_settings(source, doc)

    def finish(self) -> Config:
        config = self.config
        if self.saw_display:
            for name, category in self.item_category.items():
                where = f"{self.item_origin[name]}: item {name!r}"
                if name not in self.display_of_item:
                    self.problems.append(
                        f"{where}: category: no display entry has a method with item {name!r} "
                        f"(expected under display item {category!r})"
                    )
                    continue
                under = self.display_of_item[name]
                if under is not None and under != category:
                    self.problems.append(
                        f"{where}: category: is {category!r} but the display method for this item is under {under!r}"
                    )
        elif config.items:
            config.warnings.append("no display config loaded: items show raw units (divisor 1)")
        if self.problems:
            raise ConfigError(self.problems)
        return config


def load_config(paths: Iterable[str | Path], *, extra_documents: Iterable[tuple[str, Any]] = ()) -> Config:
    """Load and cross-check configuration files. Raises :class:`ConfigError` with every problem."""
    builder = _Builder()
    for path in paths:
        path = Path(path)
        source = str(path)
        builder.config.sources.append(source)
        try:
            text = path.read_text(encoding="utf-8")
        except OSError as exc:
            builder.problems.append(f"{source}: cannot read: {exc.strerror or exc}")
            continue
        try:
            documents = yamlfile.load_all(text)
        except yaml.YAMLError as exc:
            builder.problems.append(f"{source}: not valid YAML: {yamlfile.describe(exc)}")
            continue
        for doc in documents:
            builder.add_document(source, doc)
    for source, doc in extra_documents:
        builder.add_document(source, doc)
    return builder.finish()


#: The file every command reads when neither ``-c`` nor ``$KUBETALLY_CONFIG`` names one.
DEFAULT_CONFIG = "kubetally.yaml"
CONFIG_VARIABLE = "KUBETALLY_CONFIG"


def discover_config_files(given: Sequence[str | Path] | None, cwd: Path | None = None) -> list[str]:
    """Which configuration files a command reads: ``-c`` (repeatable), else ``$KUBETALLY_CONFIG``
    (one path, or several separated by ``os.pathsep``), else ``./kubetally.yaml`` when it exists,
    else none. A file named by the variable must exist: a typo there must not fall back silently."""
    if given:
        return [str(p) for p in given]
    variable = os.environ.get(CONFIG_VARIABLE, "").strip()
    if variable:
        paths = [p for p in variable.split(os.pathsep) if p.strip()]
        missing = [p for p in paths if not Path(p).is_file()]
        if missing:
            raise ConfigError([f"${CONFIG_VARIABLE}: {', '.join(missing)}: no such file"])
        return paths
    default = (cwd or Path.cwd()) / DEFAULT_CONFIG
    return [DEFAULT_CONFIG] if default.is_file() else []
