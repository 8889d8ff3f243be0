"""The agent's configuration assembled from its files plus ConfigMaps read from the cluster.

Three kinds of ConfigMap take part, told apart by label:

* Alauda's collection ConfigMaps (``cpaas.io/slark.collection.config: "true"``) and display
  ConfigMaps (``cpaas.io/slark.display.config: "true"``), read exactly as from a file;
* kubetally's own (``kubetally.io/config: "true"``): ``data["kubetally.yaml"]`` holds the pieces
  of kubetally.yaml that may change while the agent runs — ``pricing`` (the price book, replacing
  the file's), ``items`` and ``display`` (added to the cost model).

A ConfigMap that does not validate is left out — its last good version is used instead, or none
— so one bad ``kubectl apply`` never stops metering; :class:`Invalid` says which and why, for the
log line, the Event and the metric.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from kubetally import yamlfile
from kubetally.config.agent import KUBETALLY_CONFIG_LABEL
from kubetally.config.loader import COLLECTION_LABEL, DISPLAY_LABEL, Config, load_config, pydantic_problems
from kubetally.errors import ConfigError

#: The data key of a kubetally ConfigMap.
DATA_KEY = "kubetally.yaml"
#: What a kubetally ConfigMap may set (the rest of kubetally.yaml needs a restart).
LIVE_SECTIONS = ("pricing", "items", "display")

Key = tuple[str, str]  # (namespace, name)


def key_of(configmap: Mapping[str, Any]) -> Key:
    meta = configmap.get("metadata") or {}
    return (str(meta.get("namespace") or ""), str(meta.get("name") or ""))


def describe(key: Key) -> str:
    return f"ConfigMap {key[0]}/{key[1]}"


@dataclass
class Invalid:
    """A ConfigMap left out, with every problem (each names the ConfigMap and the field)."""

    key: Key
    configmap: dict[str, Any]
    problems: list[str]

    @property
    def resource_version(self) -> str:
        return str((self.configmap.get("metadata") or {}).get("resourceVersion") or "")


@dataclass
class Assembled:
    config: Config
    #: The ConfigMaps in use (the given ones, or the last good version of a broken one).
    used: dict[Key, dict[str, Any]]
    invalid: list[Invalid] = field(default_factory=list)


def _labelled(configmap: Mapping[str, Any], label: str) -> bool:
    labels = (configmap.get("metadata") or {}).get("labels") or {}
    return str(labels.get(label, "")).lower() == "true"


def _kubetally_pieces(key: Key, configmap: Mapping[str, Any], problems: list[str]) -> dict[str, Any]:
    where = describe(key)
    data = configmap.get("data") or {}
    if DATA_KEY not in data:
        problems.append(f"{where}: data: has no key {DATA_KEY!r}")
        return {}
    try:
        doc = yamlfile.load(str(data[DATA_KEY]))
    except yaml.YAMLError as exc:
        problems.append(f"{where}: data.{DATA_KEY}: not valid YAML: {yamlfile.describe(exc)}")
        return {}
    if doc is None:
        return {}
    if not isinstance(doc, dict):
        problems.append(f"{where}: data.{DATA_KEY}: expected a mapping, got {type(doc).__name__}")
        return {}
    for section in doc:
        if section not in LIVE_SECTIONS:
            problems.append(
                f"{where}: data.{DATA_KEY}: {section}: not reloadable from a ConfigMap "
                f"(allowed: {', '.join(LIVE_SECTIONS)}; set it in the agent's kubetally.yaml)"
            )
    return {k: v for k, v in doc.items() if k in LIVE_SECTIONS}


def _assemble(paths: Sequence[str | Path], configmaps: Mapping[Key, dict[str, Any]]) -> Config:
    problems: list[str] = []
    documents: list[tuple[str, Any]] = []
    pricing: tuple[Key, Any] | None = None
    for key, configmap in configmaps.items():
        source = describe(key)
        if _labelled(configmap, COLLECTION_LABEL) or _labelled(configmap, DISPLAY_LABEL):
            documents.append((source, configmap))
        elif _labelled(configmap, KUBETALLY_CONFIG_LABEL):
            pieces = _kubetally_pieces(key, configmap, problems)
            if pieces.get("items"):
                documents.append((f"{source}: data.{DATA_KEY}: items", list(pieces["items"])))
            if pieces.get("display"):
                documents.append((f"{source}: data.{DATA_KEY}: display", list(pieces["display"])))
            if "pricing" in pieces:
                if pricing is not None:
                    problems.append(f"{source}: data.{DATA_KEY}: pricing: also set by {describe(pricing[0])}")
                else:
                    pricing = (key, pieces["pricing"])
    if problems:
        raise ConfigError(problems)
    config = load_config(paths, extra_documents=documents)
    if pricing is not None:
        try:
            config = config.with_settings(pricing=pricing[1])
        except ValidationError as exc:
            raise ConfigError(pydantic_problems(f"{describe(pricing[0])}: data.{DATA_KEY}", exc)) from None
    return config


def _names(problem: str, key: Key) -> bool:
    """Whether ``problem`` is about that ConfigMap (messages start with their source)."""
    return problem.startswith((f"{describe(key)}:", f"{describe(key)} ("))


def assemble(
    paths: Sequence[str | Path],
    configmaps: Iterable[dict[str, Any]],
    last_good: Mapping[Key, dict[str, Any]] | None = None,
) -> Assembled:
    """The files plus ``configmaps``; a ConfigMap named by a problem is replaced by its
    ``last_good`` version (or left out) and reported. Raises :class:`ConfigError` only when the
    files themselves are invalid."""
    last_good = last_good or {}
    given = {key_of(cm): cm for cm in configmaps}
    used = dict(given)
    invalid: dict[Key, Invalid] = {}
    for _ in range(len(given) + 2):
        try:
            return Assembled(_assemble(paths, used), used, list(invalid.values()))
        except ConfigError as exc:
            blamed = {key for key in used if any(_names(p, key) for p in exc.problems)}
            if not blamed:
                raise
            for key in blamed:
                mine = [p for p in exc.problems if _names(p, key)]
                bad = given.get(key, used[key])
                if key in invalid:
                    used.pop(key)  # its last good version fails too (with the new others): drop it
                    continue
                invalid[key] = Invalid(key, bad, mine)
                good = last_good.get(key)
                if good is not None and good is not bad:
                    used[key] = good
                else:
                    used.pop(key)
    raise ConfigError(["live configuration: could not find a valid combination of ConfigMaps"])
