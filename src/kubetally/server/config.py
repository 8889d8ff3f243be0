"""The ``server:`` section of kubetally.yaml (``kubetally server``)."""

from __future__ import annotations

from pydantic import Field

from kubetally.config.costmodel import Strict


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
    #: Serve ``/metrics`` without a token (Prometheus scrapes usually carry none). When false,
    #: an admin token is needed.
    public_metrics: bool = True
