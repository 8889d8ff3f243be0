"""URLs in messages never show a password: ``kubetally.redact`` for the ledger's ``--db`` URL and
the ``--prometheus`` URL alike."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from kubetally.errors import SourceError
from kubetally.ledger import store
from kubetally.redact import redact_text, redact_url
from kubetally.sources.prometheus.client import PrometheusClient
from kubetally.testing.net import free_port


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        ("http://admin:s3cret@127.0.0.1:1", "http://admin:***@127.0.0.1:1"),
        (
            "https://admin:s3cret@prom.example:9090/prometheus/?x=1#f",
            "https://admin:***@prom.example:9090/prometheus/?x=1#f",
        ),
        ("postgresql://kt:s3cret@db:5432/kubetally", "postgresql://kt:***@db:5432/kubetally"),
        ("postgresql://kt:@db/kubetally", "postgresql://kt:***@db/kubetally"),
        # an "@" in the password, raw: the userinfo ends at the authority's last "@"
        ("http://admin:p@ss@host:9090", "http://admin:***@host:9090"),
        # a raw "/" or "?" in the password (SQLAlchemy accepts those in database URLs)
        ("postgresql://kt:pa/ss@db/kubetally", "postgresql://kt:***@db/kubetally"),
        ("postgresql://kt:pa?ss@db/kubetally", "postgresql://kt:***@db/kubetally"),
        # nothing to hide
        ("http://127.0.0.1:9090", "http://127.0.0.1:9090"),
        ("http://user@host:9090", "http://user@host:9090"),
        ("http://host:9090/path@x?q=a@b", "http://host:9090/path@x?q=a@b"),
        ("sqlite:////var/lib/a@b/kubetally.db", "sqlite:////var/lib/a@b/kubetally.db"),
        ("kubetally.db", "kubetally.db"),
        ("", ""),
    ],
)
def test_redact_url(url: str, shown: str) -> None:
    assert redact_url(url) == shown


def test_the_ledger_keeps_its_redact() -> None:
    assert store.redact("postgresql://kt:s3cret@db/kubetally") == "postgresql://kt:***@db/kubetally"


def test_redact_text() -> None:
    url = "http://admin:s3cret@host:9090"
    assert (
        redact_text(f"cannot reach {url}/api/v1/query", url) == "cannot reach http://admin:***@host:9090/api/v1/query"
    )
    assert redact_text("no url here", url) == "no url here"


def test_prometheus_messages_hide_the_password() -> None:
    port = free_port()
    with PrometheusClient(f"http://admin:s3cret@127.0.0.1:{port}/", timeout=5) as client:
        assert client.shown_url == f"http://admin:***@127.0.0.1:{port}"
        with pytest.raises(SourceError) as caught:
            client.query("up", datetime(2026, 1, 1, tzinfo=UTC), what="check")
    assert str(caught.value) == (
        f"Prometheus http://admin:***@127.0.0.1:{port}: check: unreachable "
        "(ConnectError: [Errno 111] Connection refused) (query: up)"
    )
