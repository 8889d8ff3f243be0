"""What ``kubetally server`` and ``kubetally token`` do, with the ledger opened here.

The command line only parses and renders (its layer contract forbids it to open a ledger), so
the server's own use cases — serve, and manage tokens — live beside the server they belong to."""

from __future__ import annotations

from datetime import timedelta

from kubetally.config.loader import Config
from kubetally.config.server import ServerConfig
from kubetally.ledger.store import Ledger
from kubetally.rating.pricebook import PriceBook
from kubetally.server import tokens
from kubetally.server.tokens import Role, Token


def serve(
    db: str | None, pricebook: PriceBook, config: Config | None, settings: ServerConfig, *, host: str, port: int
) -> None:
    """Serve the API (and the dashboard) on ``host:port`` until interrupted; the ledger is closed after."""
    import uvicorn

    from kubetally.server.app import create_app

    with Ledger.open(db) as ledger:
        application = create_app(ledger, pricebook, config, settings)
        uvicorn.run(application, host=host, port=port, log_level="warning", access_log=False)


def create_token(
    db: str | None,
    role: Role | str,
    *,
    tenant: str | None = None,
    cluster: str | None = None,
    expires: timedelta | None = None,
    name: str = "",
) -> tuple[str, Token]:
    """A new token: the secret (shown once) and what is stored of it."""
    with Ledger.open(db) as ledger:
        return tokens.create_token(ledger, role, tenant=tenant, cluster=cluster, expires=expires, name=name)


def list_tokens(db: str | None) -> list[Token]:
    with Ledger.open(db) as ledger:
        return tokens.list_tokens(ledger)


def revoke_token(db: str | None, token_id: str) -> Token:
    with Ledger.open(db) as ledger:
        return tokens.revoke_token(ledger, token_id)
