"""A scenario: the objects a simulated cluster starts with and the changes replayed over time.

Scenarios are plain Kubernetes manifests so that a test or demo describes a cluster the same way
an operator would read it with ``kubectl get -o yaml``. Every problem is reported with the file and
the object's index and name, because a scenario with hundreds of objects is otherwise impossible
to debug; all problems are collected at once so one run shows them all.

Format (YAML)::

    now: "2026-11-02T10:00:00Z"          # the instant the API shows at start (required)
    objects:                             # served as given; any apiVersion/kind
      - {apiVersion: v1, kind: Node, metadata: {name: n1, labels: {...}}, status: {...}}
    events:                              # in time order; at <= now: applied at load (history)
      - at: "2026-11-02T10:17:23Z"
        type: ADDED                      # ADDED | MODIFIED | DELETED
        object: {apiVersion: v1, kind: Node, metadata: {name: n2}, ...}

The server assigns ``metadata.resourceVersion`` (one global counter: objects in order, then
events); ``uid`` (a hash of kind/namespace/name) and ``creationTimestamp`` (``now`` for objects,
``at`` for events) are filled in when absent. A DELETED event may give only the identity
(apiVersion, kind, metadata name/namespace); watchers then receive the object's last state.
Label and annotation values, and quantities, must be strings, as the apiserver serves them.
Kinds other than the built-in ones are custom resources, named from a CustomResourceDefinition in
the scenario if there is one (otherwise plural = lower-case kind + "s", namespaced if the objects
have a namespace).
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

import yaml

from kubetally.errors import ConfigError
from kubetally.periods import format_time, parse_time, utc
from kubetally.sim.models import model_problems
from kubetally.sim.resources import ResourceRegistry, ResourceType, guess_plural, split_api_version

EVENT_TYPES = ("ADDED", "MODIFIED", "DELETED")
TOP_LEVEL_KEYS = ("now", "objects", "events", "name", "description")
EVENT_KEYS = ("at", "type", "object")


class ScenarioError(ConfigError):
    """A scenario (or an injected event) that cannot be served; every problem names its object."""


_SafeLoader: type[yaml.SafeLoader] = getattr(yaml, "CSafeLoader", yaml.SafeLoader)  # C parser: big scenarios


class _NoTimestampLoader(_SafeLoader):  # type: ignore[valid-type,misc]
    """SafeLoader that keeps ``2026-11-01T10:00:00Z`` a string, as the apiserver would serve it."""


_NoTimestampLoader.yaml_implicit_resolvers = {
    first: [(tag, regexp) for tag, regexp in resolvers if tag != "tag:yaml.org,2002:timestamp"]
    for first, resolvers in _SafeLoader.yaml_implicit_resolvers.items()
}


def load_yaml(text: str) -> Any:
    return yaml.load(text, Loader=_NoTimestampLoader)


def _plain(value: Any) -> Any:
    """Turn datetimes handed to ``from_dict`` into the RFC 3339 strings Kubernetes uses."""
    if isinstance(value, datetime):
        return format_time(value)
    if isinstance(value, date):
        return value.isoformat()
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    return value


def describe(obj: Any) -> str:
    """``Pod team-a/trainer-0`` (or as much of it as the object has) for error messages."""
    if not isinstance(obj, Mapping):
        return "object"
    raw_meta = obj.get("metadata")
    meta: Mapping[str, Any] = raw_meta if isinstance(raw_meta, Mapping) else {}
    name = meta.get("name") if isinstance(meta.get("name"), str) else "?"
    ns = meta.get("namespace")
    kind = obj.get("kind") if isinstance(obj.get("kind"), str) else "object"
    return f"{kind} {ns}/{name}" if isinstance(ns, str) and ns else f"{kind} {name}"


def check_object(obj: Any) -> list[str]:
    """Problems with one manifest (relative field paths); empty when it can be served."""
    if not isinstance(obj, Mapping):
        return [f"must be a mapping (a Kubernetes manifest), not {type(obj).__name__}"]
    problems = []
    for key in ("apiVersion", "kind"):
        if not isinstance(obj.get(key), str) or not obj.get(key):
            problems.append(f"{key} is required (a non-empty string)")
    meta = obj.get("metadata")
    if not isinstance(meta, Mapping):
        return [*problems, "metadata is required (a mapping with at least name)"]
    if not isinstance(meta.get("name"), str) or not meta.get("name"):
        problems.append("metadata.name is required (a non-empty string)")
    if "namespace" in meta and (not isinstance(meta["namespace"], str) or not meta["namespace"]):
        problems.append("metadata.namespace must be a non-empty string")
    for section in ("labels", "annotations"):
        values = meta.get(section)
        if values is None:
            continue
        if not isinstance(values, Mapping):
            problems.append(f"metadata.{section} must be a mapping of strings")
            continue
        for key, value in values.items():
            if not isinstance(value, str):
                problems.append(
                    f"metadata.{section}[{key!r}] must be a string, not {type(value).__name__} "
                    f"{value!r} (quote it in YAML)"
                )
    for key in ("resourceVersion", "uid", "creationTimestamp", "deletionTimestamp"):
        if key in meta and meta[key] is not None and not isinstance(meta[key], str):
            problems.append(f"metadata.{key} must be a string")
    for key in ("creationTimestamp", "deletionTimestamp"):
        if isinstance(meta.get(key), str):
            try:
                parse_time(meta[key])
            except ValueError as exc:
                problems.append(f"metadata.{key}: {exc}")
    return problems


@dataclass(frozen=True)
class ScenarioEvent:
    """One change replayed when the virtual clock reaches ``at``."""

    at: datetime
    type: str
    object: dict[str, Any]
    index: int = 0


@dataclass
class Scenario:
    """Start instant, initial objects and timed events of a simulated cluster."""

    now: datetime
    objects: list[dict[str, Any]] = field(default_factory=list)
    events: list[ScenarioEvent] = field(default_factory=list)
    source: str = "<scenario>"
    name: str = ""
    description: str = ""

    @classmethod
    def load(cls, path: str | Path) -> Scenario:
        """Read a scenario YAML file; every problem names the file and the object."""
        path = Path(path)
        try:
            text = path.read_text(encoding="utf-8")
        except OSError as exc:
            raise ScenarioError([f"{path}: cannot read scenario: {exc.strerror or exc}"]) from None
        try:
            data = load_yaml(text)
        except yaml.YAMLError as exc:
            mark = getattr(exc, "problem_mark", None)
            where = f" line {mark.line + 1} column {mark.column + 1}" if mark is not None else ""
            problem = getattr(exc, "problem", None) or str(exc)
            raise ScenarioError([f"{path}:{where}: not valid YAML: {problem}"]) from None
        return cls.from_dict(data, source=str(path))

    @classmethod
    def packaged(cls, name: str) -> Scenario:
        """A scenario shipped with kubetally, by name (``Scenario.packaged("gpu-cloud")``)."""
        return cls.load(resolve_scenario_path(name))

    @classmethod
    def from_dict(cls, data: Any, source: str = "<scenario>") -> Scenario:
        """Build from a mapping of ``now``, ``objects`` and ``events`` (as in the YAML file)."""
        if not isinstance(data, Mapping):
            raise ScenarioError([f"{source}: a scenario must be a mapping with now, objects and events"])
        problems: list[str] = []
        unknown = [str(k) for k in data if k not in TOP_LEVEL_KEYS]
        if unknown:
            problems.append(
                f"{source}: unknown top-level key(s) {', '.join(unknown)} (allowed: {', '.join(TOP_LEVEL_KEYS)})"
            )
        now = _time(data.get("now"), f"{source}: now", problems)

        raw_objects = data.get("objects") or []
        objects: list[dict[str, Any]] = []
        if not isinstance(raw_objects, list):
            problems.append(f"{source}: objects must be a list of Kubernetes manifests")
            raw_objects = []
        for index, raw in enumerate(raw_objects):
            obj = _plain(raw)
            where = f"{source}: objects[{index}] ({describe(obj)})"
            found = check_object(obj) or model_problems(obj)
            problems.extend(f"{where}: {p}" for p in found)
            if not found:
                objects.append(obj)

        raw_events = data.get("events") or []
        events: list[ScenarioEvent] = []
        if not isinstance(raw_events, list):
            problems.append(f"{source}: events must be a list of {{at, type, object}}")
            raw_events = []
        latest: tuple[datetime, int] | None = None
        for index, raw in enumerate(raw_events):
            event, at = _event(raw, index, source, problems)
            if at is not None:
                if latest is not None and at < latest[0]:
                    obj = raw.get("object") if isinstance(raw, Mapping) else None
                    problems.append(
                        f"{source}: events[{index}] ({describe(obj)}): at {format_time(at)} is before "
                        f"events[{latest[1]}] at {format_time(latest[0])}; list events in time order"
                    )
                else:
                    latest = (at, index)
            if event is not None:
                events.append(event)

        scenario = cls(
            now=now or datetime(1970, 1, 1, tzinfo=UTC),
            objects=objects,
            events=events,
            source=source,
            name=str(data.get("name") or ""),
            description=str(data.get("description") or ""),
        )
        if not problems:
            problems.extend(scenario._check_consistency())
        if problems:
            raise ScenarioError(problems)
        return scenario

    def registry(self) -> ResourceRegistry:
        """The resources this scenario needs served: the standard kinds, its CRDs and its CR kinds."""
        registry = ResourceRegistry()
        everything = [*self.objects, *(e.object for e in self.events)]
        for obj in everything:
            if obj.get("kind") == "CustomResourceDefinition":
                registry.add_crd(obj)
        for obj in everything:
            if registry.by_kind(obj["apiVersion"], obj["kind"]) is None:
                group, version = split_api_version(obj["apiVersion"])
                namespaced = bool((obj.get("metadata") or {}).get("namespace"))
                registry.add(ResourceType(group, version, obj["kind"], guess_plural(obj["kind"]), namespaced))
        return registry

    def _check_consistency(self) -> list[str]:
        """Dry-run the objects and events so a bad scenario fails at load, not mid-demo."""
        problems: list[str] = []
        try:
            registry = self.registry()
        except ValueError as exc:
            return [f"{self.source}: {exc}"]
        present: set[tuple[ResourceType, str, str]] = set()

        def key_of(obj: dict[str, Any], where: str) -> tuple[ResourceType, str, str] | None:
            rtype = registry.by_kind(obj["apiVersion"], obj["kind"])
            assert rtype is not None
            ns = obj["metadata"].get("namespace") or ""
            if rtype.namespaced and not ns:
                problems.append(f"{where}: {rtype.kind} is namespaced; metadata.namespace is required")
                return None
            if not rtype.namespaced and ns:
                problems.append(f"{where}: {rtype.kind} is cluster-scoped; remove metadata.namespace")
                return None
            return rtype, ns, obj["metadata"]["name"]

        for index, obj in enumerate(self.objects):
            where = f"{self.source}: objects[{index}] ({describe(obj)})"
            key = key_of(obj, where)
            if key is None:
                continue
            if key in present:
                problems.append(f"{where}: duplicate object (same apiVersion, kind, namespace and name)")
            present.add(key)
        for event in self.events:
            where = f"{self.source}: events[{event.index}] ({event.type} {describe(event.object)})"
            key = key_of(event.object, where)
            if key is None:
                continue
            if event.type == "ADDED":
                if key in present:
                    problems.append(f"{where}: already exists at {format_time(event.at)}; use MODIFIED")
                present.add(key)
            elif key not in present:
                problems.append(f"{where}: no such object exists at {format_time(event.at)}")
            elif event.type == "DELETED":
                present.discard(key)
        return problems


def _time(value: Any, where: str, problems: list[str]) -> datetime | None:
    if isinstance(value, datetime):
        return utc(value)
    if not isinstance(value, str):
        problems.append(f"{where} is required (RFC 3339, e.g. 2026-11-01T10:00:00Z)")
        return None
    try:
        return parse_time(value)
    except ValueError as exc:
        problems.append(f"{where}: {exc}")
        return None


def _event(raw: Any, index: int, source: str, problems: list[str]) -> tuple[ScenarioEvent | None, datetime | None]:
    """The event (None if it has problems) and its ``at`` (None if unreadable), for the order check."""
    base = f"{source}: events[{index}]"
    if not isinstance(raw, Mapping):
        problems.append(f"{base}: must be a mapping with at, type and object")
        return None, None
    obj = _plain(raw.get("object"))
    where = f"{base} ({describe(obj)})"
    before = len(problems)
    unknown = [str(k) for k in raw if k not in EVENT_KEYS]
    if unknown:
        problems.append(f"{where}: unknown key(s) {', '.join(unknown)} (allowed: {', '.join(EVENT_KEYS)})")
    at = _time(raw.get("at"), f"{where}: at", problems)
    kind = raw.get("type")
    if kind not in EVENT_TYPES:
        problems.append(f"{where}: type must be one of {', '.join(EVENT_TYPES)}, not {kind!r}")
    if "object" not in raw:
        problems.append(f"{where}: object is required")
    else:
        found = check_object(obj)
        if not found and (raw.get("type") != "DELETED" or set(obj) - {"apiVersion", "kind", "metadata"}):
            found = model_problems(obj)
        problems.extend(f"{where}: object: {p}" for p in found)
    if len(problems) > before or at is None:
        return None, at
    return ScenarioEvent(at=at, type=str(kind), object=copy.deepcopy(obj), index=index), at


def packaged_scenarios() -> dict[str, Path]:
    """Scenarios shipped as package data (``sim/scenarios/*.yaml``), by name."""
    folder = Path(__file__).resolve().parent / "scenarios"
    return {p.stem: p for p in sorted(folder.glob("*.yaml"))}


def resolve_scenario_path(name_or_path: str | Path) -> Path:
    """A file path as given, or a packaged scenario's path when only its name (``gpu-cloud``) is given."""
    path = Path(name_or_path)
    if path.exists() or path.suffix in (".yaml", ".yml") or len(path.parts) > 1:
        return path
    packaged = packaged_scenarios()
    if str(name_or_path) in packaged:
        return packaged[str(name_or_path)]
    names = ", ".join(packaged) or "none"
    raise ScenarioError(
        [f"{name_or_path}: no such scenario file, and no packaged scenario of that name (packaged: {names})"]
    )
