"""The ``server:`` section of kubetally.yaml (``kubetally server``)."""

from __future__ import annotations

from datetime import timedelta
from typing import Literal

from pydantic import Field

from kubetally.config.costmodel import Strict
from kubetally.config.types import Duration


class ServerConfig(Strict):
    """Where ``kubetally server`` listens and how it answers; the command line wins."""

    host: str = "127.0.0.1"
    port: int = Field(default=8080, ge=1, le=65535)
    #: Ledger of the server (default: ``db:`` of the settings, then ``$KUBETALLY_DB``).
    db: str | None = None
    #: Price book file (default: the ``pricing:`` section).
    prices: str | None = None
    #: Largest ``pageSize`` a client may ask for.
    max_page_size: int = Field(default=1000, ge=1)
    #: Reports kept for reuse while the ledger does not change (0: none).
    report_cache: int = Field(default=64, ge=0)
    #: Keep rated report buckets in the ledger database too (``server_report_buckets``): a
    #: restarted server and every replica reuse them instead of rating the month again.
    #: Off with ``report_cache: 0``.
    report_store: bool = True
    #: Serve ``/metrics`` without a token (Prometheus scrapes usually carry none). When false,
    #: an admin token is needed.
    public_metrics: bool = True
    #: How long a dashboard sign-in lasts (never longer than its token).
    session_lifetime: Duration = timedelta(hours=8)
    #: The dashboard's language: en or zh (as ``kubetally report --lang``).
    lang: Literal["en", "zh"] = "en"
