"""``kubetally validate --prometheus URL``: have the real server parse every PromQL query.

Only the server knows its PromQL dialect (a Prometheus version, VictoriaMetrics' MetricsQL,
Thanos), so every ``usage.query`` and ``labels.query`` — and the namespace → project query
kubetally adds — is sent to it as an instant query. They are evaluated at a fixed instant in
2000, before any real data, so checking a config costs the server next to nothing however
heavy the queries are. Each problem names the file, the item and the field.
"""

from __future__ import annotations

from datetime import UTC, datetime

from kubetally.config import Config
from kubetally.sources.prometheus.client import PrometheusClient, PrometheusUnreachable, QueryFailed
from kubetally.sources.prometheus.project import project_query

#: An instant no real TSDB holds data for: parsing and type checks still happen in full.
CHECK_TIME = datetime(2000, 1, 1, tzinfo=UTC)


def check_queries(config: Config, url: str, *, client: PrometheusClient | None = None) -> list[str]:
    """Every PromQL problem of ``config`` as one located message each (empty: all good)."""
    settings = config.settings.prometheus
    own = client is None
    if client is None:
        client = PrometheusClient.from_settings(url, settings)
    problems: list[str] = []
    try:
        checks: list[tuple[str, str, str]] = []
        needs_project = False
        for item in config.items:
            origin = config.origins.get(item.item, "config")
            where = f"{origin}: item {item.item!r}"
            checks.append((where, "usage.query", item.usage.query))
            if item.labels is not None:
                checks.append((where, "labels.query", item.labels.query))
            needs_project |= not item.usage.mappers.project and bool(item.usage.mappers.namespace)
        if needs_project:
            checks.append(
                ("collection.project_label", "project query", project_query(config.settings.collection.project_label))
            )
        for where, field, query in checks:
            try:
                client.query(query, CHECK_TIME, what=f"{where} {field}")
            except PrometheusUnreachable as exc:
                return [str(exc)]
            except QueryFailed as exc:
                problems.append(f"{where}: {field}: Prometheus rejected the query: {exc.reason}")
    finally:
        if own:
            client.close()
    return problems
