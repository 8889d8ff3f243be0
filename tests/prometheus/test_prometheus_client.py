"""The PromQL client against a real Prometheus: exact values and clear errors."""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path

import pytest
from prom_helpers import H10

from kubetally.errors import SourceError
from kubetally.sources.prometheus.client import PrometheusClient, PrometheusUnreachable, QueryFailed
from kubetally.testing.net import free_port

SEED_CORE = 'sum by (deviceuuid, podnamespace) (rate(vgpu_core_usage_seconds_total{podnamespace="yulin-2"}[5m]))'


def test_query_range_returns_exact_decimals_on_the_grid(client: PrometheusClient) -> None:
    from datetime import timedelta

    step = timedelta(minutes=5)
    result = client.query_range(SEED_CORE, H10.start + step, H10.end, step, what="test")
    assert len(result.series) == 1
    series = result.series[0]
    assert series.labels == {"deviceuuid": "GPU-2eec4202-80dc-870f-3ca5-25879d96eca7", "podnamespace": "yulin-2"}
    # 10:05, 10:10 … 11:00: twelve points, each the counter's constant 0.5 core-seconds/s
    # (the restart right after the 10:32:00 scrape loses nothing).
    assert [at for at, _ in series.points] == [H10.start + step * i for i in range(1, 13)]
    assert all(isinstance(v, Decimal) for _, v in series.points)
    assert [v for _, v in series.points] == [Decimal("0.5")] * 12


def test_instant_query(client: PrometheusClient) -> None:
    result = client.query('kube_namespace_labels{namespace="team-a"}', H10.end, what="test")
    assert [s.labels["label_cpaas_io_project"] for s in result.series] == ["proj-a"]
    assert result.series[0].points[0][1] == Decimal(1)


def test_bad_promql_names_what_and_query(client: PrometheusClient) -> None:
    with pytest.raises(QueryFailed) as caught:
        client.query_range("sum by (x (up)", H10.start, H10.end, H10.length / 12, what="item 'X' usage.query")
    message = str(caught.value)
    assert message.startswith(f"Prometheus {client.url}: item 'X' usage.query: HTTP 400 bad_data: ")
    assert "(query: sum by (x (up))" in message
    assert caught.value.reason.startswith("HTTP 400 bad_data: ")


def test_range_vector_is_not_accepted_as_usage(client: PrometheusClient) -> None:
    # A range query refuses a range vector itself (Prometheus' own message).
    with pytest.raises(QueryFailed, match="range vector"):
        client.query_range("test_zero[5m]", H10.start, H10.end, H10.length / 12, what="t")
    # An instant query answering a scalar is refused by us: series need labels.
    with pytest.raises(QueryFailed, match="returns a scalar, not an instant vector"):
        client.query("1 + 1", H10.end, what="t")


def test_unreachable_server() -> None:
    port = free_port()  # nothing listens there
    with (
        PrometheusClient(f"http://127.0.0.1:{port}", timeout=5) as closed,
        pytest.raises(PrometheusUnreachable) as caught,
    ):
        closed.query("up", H10.end, what="item 'X' usage.query")
    assert str(caught.value).startswith(f"Prometheus http://127.0.0.1:{port}: item 'X' usage.query: unreachable (")
    assert isinstance(caught.value, SourceError)


def test_an_answer_that_is_not_the_prometheus_api(prometheus) -> None:  # type: ignore[no-untyped-def]
    # A wrong base URL (here: a path Prometheus does not serve) answers 404 with text.
    with (
        PrometheusClient(prometheus.url + "/not-prometheus", timeout=10) as wrong,
        pytest.raises(QueryFailed, match=r"HTTP 404"),
    ):
        wrong.query("up", H10.end, what="t")


def test_bearer_token_file_is_read_and_never_shown(prometheus, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    token = tmp_path / "token"
    token.write_text("s3cr3t-token\n")
    with PrometheusClient(prometheus.url, bearer_token_file=token) as authed:
        # Prometheus without auth ignores the header; the request must still work.
        assert authed.query("test_zero", H10.end, what="t").series
    with (
        PrometheusClient(prometheus.url, bearer_token_file=tmp_path / "missing") as broken,
        pytest.raises(SourceError, match="cannot read bearer_token_file") as caught,
    ):
        broken.query("up", H10.end, what="t")
    assert "s3cr3t" not in str(caught.value)


def test_long_grids_are_asked_in_chunks(client: PrometheusClient, monkeypatch: pytest.MonkeyPatch) -> None:
    from datetime import timedelta

    from kubetally.sources.prometheus import client as client_module

    step = timedelta(minutes=5)
    whole = client.query_range(SEED_CORE, H10.start + step, H10.end, step, what="test")
    monkeypatch.setattr(client_module, "MAX_POINTS", 5)  # 12 points → chunks of 5, 5 and 2
    chunked = client.query_range(SEED_CORE, H10.start + step, H10.end, step, what="test")
    assert chunked.series == whole.series
    assert len(chunked.series[0].points) == 12
