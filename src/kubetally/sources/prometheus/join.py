"""Joining label series onto usage series, and which series labels become record labels.

A label query (``labels.query``) returns series whose ``label_<k>`` labels enrich usage (e.g.
``label_modelName`` → record label ``modelName``, used for price-by-label). Rules:

* **Join key.** The mapped ``name`` always; the mapped ``namespace`` (and ``cluster``) too when
  *both* the usage and the label mappers name a label for it. A label query that maps no
  namespace (device-level facts such as a GPU's model) therefore enriches the device's usage
  in every namespace, and a label query that does map one never leaks labels across
  namespaces.
* **Which labels.** Only ``label_<k>`` labels are copied, as ``<k>``; the identity labels the
  join uses and scrape labels (``job``, ``instance``) are not usage attributes.
* **Several label series for one key** (a label changed during the period, or two exporters
  disagree): the series present at the most grid points wins — the value that held for most
  of the period; then the one seen last; then the smallest label set in sort order. The choice
  depends only on the data, so re-collecting a period gives the same labels.
* **Dimensions.** Usage-series labels listed in the item's ``dimensions`` are not joined but
  split records (they are part of the record id); ``label_<k>`` dimensions are renamed ``<k>``
  the same way.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime
from typing import Any

from kubetally.config.costmodel import Mappers
from kubetally.sources.prometheus.client import RawSeries, Series

LABEL_PREFIX = "label_"


def record_label_name(prometheus_label: str) -> str:
    """``label_modelName`` → ``modelName``; any other name unchanged."""
    if prometheus_label.startswith(LABEL_PREFIX) and len(prometheus_label) > len(LABEL_PREFIX):
        return prometheus_label[len(LABEL_PREFIX) :]
    return prometheus_label


def enrichment_labels(labels: Mapping[str, str]) -> dict[str, str]:
    """The record labels a label series carries: its ``label_<k>`` labels as ``<k>``."""
    return {
        record_label_name(key): value
        for key, value in labels.items()
        if key.startswith(LABEL_PREFIX) and len(key) > len(LABEL_PREFIX) and value != ""
    }


def dimension_labels(labels: Mapping[str, str], dimensions: Sequence[str]) -> dict[str, str]:
    """The listed usage-series labels that split records; absent ones are left out."""
    return {record_label_name(d): labels[d] for d in dimensions if labels.get(d, "") != ""}


def join_fields(usage: Mappers, label: Mappers) -> tuple[str, ...]:
    """Record fields besides ``name`` that both sides map to a series label."""
    return tuple(f for f in ("namespace", "cluster") if getattr(usage, f) and getattr(label, f))


JoinKey = tuple[str, ...]
LabelTuple = tuple[tuple[str, str], ...]


def _rank(labels: LabelTuple, seen: set[Any]) -> tuple[int, float, LabelTuple]:
    # Most grid points first, then seen last, then the smallest labels: sort ascending on this.
    # Instants are datetimes (parsed series) or the answer's unix seconds (raw series).
    latest = float("-inf")
    if seen:
        last = max(seen)
        latest = last.timestamp() if isinstance(last, datetime) else float(last)
    return (-len(seen), -latest, labels)


class LabelIndex:
    """Label series indexed by their join key, each key resolved to one set of labels.

    Series with the same enrichment labels (e.g. scraped from two instances) count as one
    candidate whose points are the union of theirs.
    """

    def __init__(self, series: Iterable[Series | RawSeries], mappers: Mappers, fields: tuple[str, ...]):
        self.mappers = mappers
        self.fields = fields
        candidates: dict[JoinKey, dict[LabelTuple, set[Any]]] = {}
        for one in series:
            name = one.labels.get(mappers.name, "")
            if not name:
                continue  # a label series that identifies nothing cannot enrich anything
            key = (name, *(one.labels.get(getattr(mappers, f), "") for f in fields))
            labels = tuple(sorted(enrichment_labels(one.labels).items()))
            seen = candidates.setdefault(key, {}).setdefault(labels, set())
            if isinstance(one, RawSeries):
                seen.update(ts for ts, _ in one.values)
            else:
                seen.update(at for at, _ in one.points)
        self._labels: dict[JoinKey, dict[str, str]] = {
            key: dict(min(found.items(), key=lambda c: _rank(*c))[0]) for key, found in candidates.items()
        }
        #: Join keys that had more than one distinct label set (reported as a warning).
        self.ambiguous: list[JoinKey] = sorted(key for key, found in candidates.items() if len(found) > 1)

    def lookup(self, name: str, **fields: str) -> dict[str, str]:
        key = (name, *(fields.get(f, "") for f in self.fields))
        return dict(self._labels.get(key, {}))
