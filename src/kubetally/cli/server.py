"""``kubetally server`` (the HTTP API) and ``kubetally token`` (its access tokens)."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Annotated

import typer
from rich.markup import escape
from rich.table import Table

from kubetally.cli.common import ConfigOption, DbOption, console, console_err, fail
from kubetally.cli.report import PricesOption
from kubetally.periods import format_time, parse_duration

if TYPE_CHECKING:
    from kubetally.config.loader import Config
    from kubetally.config.server import ServerConfig

token_app = typer.Typer(help="Create, list and revoke the server's access tokens.", no_args_is_help=True)


def _server_settings(config: Config | None) -> ServerConfig:
    from kubetally.config.server import ServerConfig

    return config.settings.server if config is not None else ServerConfig()


def register(app: typer.Typer) -> None:
    @app.command("server")
    def server(
        db: DbOption = None,
        config_files: ConfigOption = None,
        prices: PricesOption = None,
        host: Annotated[str | None, typer.Option("--host", help="Address to listen on (default 127.0.0.1).")] = None,
        port: Annotated[int | None, typer.Option("--port", help="Port to listen on (default 8080).")] = None,
        lang: Annotated[
            str | None, typer.Option("--lang", help="The dashboard's language: en or zh (default en).")
        ] = None,
    ) -> None:
        """The cost API and the ingest endpoint for agents (`--to kubetally`), over the ledger in --db.

        Use PostgreSQL for a central server (several agents, several replicas); SQLite serves a single box. The dashboard is at /, OpenAPI at /openapi.json, docs at /docs, health at /healthz and /readyz, Prometheus metrics at /metrics.
        """  # noqa: E501 - one line per paragraph, so --help wraps it to the terminal
        from kubetally.config import load_config
        from kubetally.rating.resolve import EXAMPLE_WARNING, resolve_pricebook
        from kubetally.server.commands import serve

        config = load_config(config_files) if config_files else None
        settings = _server_settings(config)
        if lang is not None:
            if lang not in ("en", "zh"):
                fail(f"--lang must be en or zh, not {lang!r}")
            settings = settings.model_copy(update={"lang": lang})
        pricebook, is_example = resolve_pricebook(prices or settings.prices, config)
        if is_example:
            console_err.print(f"[yellow]warning[/]: {EXAMPLE_WARNING}", highlight=False, soft_wrap=True)
        db = db or settings.db or (config.settings.db if config is not None else None)
        serve(db, pricebook, config, settings, host=host or settings.host, port=port or settings.port)

    app.add_typer(token_app, name="token")


@token_app.command("create")
def create(
    role: Annotated[str, typer.Option("--role", help="admin, tenant or agent.")],
    tenant: Annotated[str | None, typer.Option("--tenant", help="The one tenant a tenant token may read.")] = None,
    cluster: Annotated[str | None, typer.Option("--cluster", help="The one cluster an agent token may report.")] = None,
    expires: Annotated[str | None, typer.Option("--expires", help="Lifetime, e.g. 90d or 12h (default: none).")] = None,
    name: Annotated[str, typer.Option("--name", help="A note shown by `token list`.")] = "",
    db: DbOption = None,
    config_files: ConfigOption = None,
) -> None:
    """Create a token and print it once (only its hash is stored)."""
    from kubetally.server.commands import create_token

    lifetime = None
    if expires is not None:
        try:
            lifetime = parse_duration(expires)
        except ValueError as exc:
            fail(f"--expires: {exc}")
    db = _ledger_db(config_files, db)
    secret, token = create_token(db, role, tenant=tenant, cluster=cluster, expires=lifetime, name=name)
    # The token alone on stdout (scripts capture it); the description on stderr.
    print(secret)
    scope = token.tenant or token.cluster or "everything"
    until = f", expires {format_time(token.expires_at)}" if token.expires_at else ""
    typer.echo(f"token {token.id}: {token.role} ({scope}){until}; shown once, store it now", err=True)


@token_app.command("list")
def list_(
    db: DbOption = None,
    config_files: ConfigOption = None,
    as_json: Annotated[bool, typer.Option("--json", help="JSON lines instead of a table.")] = False,
) -> None:
    """Tokens (never the secrets): id, role, scope, created, expires, revoked."""
    from datetime import UTC, datetime

    from kubetally.server.commands import list_tokens

    db = _ledger_db(config_files, db)
    tokens = list_tokens(db)
    now = datetime.now(UTC)

    def when(value: datetime | None) -> str:
        return format_time(value) if value else ""

    if as_json:
        for t in tokens:
            print(
                json.dumps(
                    {
                        "id": t.id,
                        "role": str(t.role),
                        "tenant": t.tenant,
                        "cluster": t.cluster,
                        "name": t.name,
                        "created": when(t.created_at),
                        "expires": when(t.expires_at) or None,
                        "revoked": when(t.revoked_at) or None,
                        "active": t.active(now),
                    }
                )
            )
        return
    table = Table(title="tokens", title_justify="left")
    for column in ("id", "role", "scope", "name", "created", "expires", "state"):
        table.add_column(column, overflow="fold")
    for t in tokens:
        state = "revoked" if t.revoked_at else ("expired" if not t.active(now) else "active")
        table.add_row(
            t.id,
            str(t.role),
            escape(t.tenant or t.cluster or "*"),
            escape(t.name),
            when(t.created_at),
            when(t.expires_at),
            state,
        )
    console.print(table)


@token_app.command("revoke")
def revoke(
    token_id: Annotated[str, typer.Argument(help="The token's id (from `token list`) or the token itself.")],
    db: DbOption = None,
    config_files: ConfigOption = None,
) -> None:
    """Revoke a token: it stops working at once."""
    from kubetally.server.commands import revoke_token

    db = _ledger_db(config_files, db)
    token = revoke_token(db, token_id)
    console.print(f"token {token.id} ({token.role}) revoked")


def _ledger_db(config_files: list[str] | None, db: str | None) -> str | None:
    """The server's ledger for the token commands: ``--db``, else ``server.db``, else ``db:``."""
    if db or not config_files:
        return db
    from kubetally.config import load_config

    config = load_config(config_files)
    return _server_settings(config).db or config.settings.db
