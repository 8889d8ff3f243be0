"""A namespace's project, from the namespace label kube-state-metrics exports.

``mappers.project: ""`` means "derived from the namespace" (docs/architecture.md). On Alauda ACP a
namespace belongs to a project through its label ``cpaas.io/project``; any platform with a
similar convention sets ``collection.project_label``. kube-state-metrics publishes namespace
labels as ``kube_namespace_labels{namespace, label_<sanitised key>}`` (the key must be in its
``--metric-labels-allowlist``; since v2.10 nothing is exported without one), sanitising the key
like this: every character outside ``[a-zA-Z0-9_]`` becomes ``_``, camelCase boundaries get an
``_``, everything is lower-cased — ``cpaas.io/project`` → ``label_cpaas_io_project``.

The label is read over the same period the usage covers. A namespace that moved between
projects during the period is attributed, for that whole period, to the project it belonged to
last; a namespace without the label (or an exporter without the allowlist) has no project, and
its records fall back to the namespace as tenant.
"""

from __future__ import annotations

import re
import threading
from datetime import datetime, timedelta

from kubetally.periods import Period
from kubetally.sources.prometheus.client import PrometheusClient
from kubetally.sources.prometheus.evaluate import range_window

_INVALID = re.compile(r"[^a-zA-Z0-9_]")
_CAMEL = re.compile(r"([a-z0-9])([A-Z])")
_PROMETHEUS_LABEL = re.compile(r"^label_[a-z0-9_]+$")


def kube_state_label(key: str) -> str:
    """The label kube-state-metrics gives a Kubernetes label key (``label_`` + sanitised key).

    A value that already is such a label name (``label_cpaas_io_project``) is kept as is.
    """
    if _PROMETHEUS_LABEL.match(key):
        return key
    return "label_" + _CAMEL.sub(r"\1_\2", _INVALID.sub("_", key)).lower()


def project_query(project_label: str) -> str:
    label = kube_state_label(project_label)
    return f'max by (namespace, {label}) (kube_namespace_labels{{{label}!=""}})'


class ProjectResolver:
    """Namespace → project for one period, from one range query per (period, step), cached.

    Thread-safe: items of one period collected at once share one query (the others wait)."""

    def __init__(self, client: PrometheusClient, project_label: str, *, cache_size: int = 8):
        self.client = client
        self.label = kube_state_label(project_label)
        self.query = project_query(project_label)
        self._cache: dict[tuple[datetime, datetime, timedelta], dict[str, str]] = {}
        self._cache_size = cache_size
        self._lock = threading.Lock()

    def projects(self, period: Period, step: timedelta) -> dict[str, str]:
        key = (period.start, period.end, step)
        with self._lock:
            found = self._cache.get(key)
            if found is None:
                found = self._load(period, step)
                if len(self._cache) >= self._cache_size:
                    self._cache.pop(next(iter(self._cache)))
                self._cache[key] = found
            return found

    def _load(self, period: Period, step: timedelta) -> dict[str, str]:
        start, end = range_window(period, step)
        result = self.client.query_range(
            self.query, start, end, step, what=f"project of each namespace (collection.project_label) for {period}"
        )
        candidates: dict[str, list[tuple[float, int, str]]] = {}
        for series in result.series:
            namespace = series.labels.get("namespace", "")
            project = series.labels.get(self.label, "")
            if not namespace or not project or not series.points:
                continue
            last = max(at for at, _ in series.points).timestamp()
            # Sorted ascending: latest first, then the project seen at more points, then by name.
            candidates.setdefault(namespace, []).append((-last, -len(series.points), project))
        return {namespace: min(found)[2] for namespace, found in candidates.items()}
