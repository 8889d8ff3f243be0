"""``kubetally demo --serve``: the dashboard over the demo's ledger, with a fresh admin token."""

from __future__ import annotations

from datetime import datetime, timedelta
from pathlib import Path

from rich.console import Console

from kubetally.ledger.store import Ledger
from kubetally.rating.pricebook import example_pricebook
from kubetally.server.config import ServerConfig
from kubetally.server.tokens import create_token


def dashboard_url(host: str, port: int, day: datetime) -> str:
    """The dashboard opened on the demo's day (the period is in the fragment: it never reaches a log)."""
    shown = "localhost" if host in ("127.0.0.1", "0.0.0.0", "::") else host
    return f"http://{shown}:{port}/#view=overview&period=day&start={day:%Y-%m-%d}"


def serve_demo(ledger_path: Path, day: datetime, console: Console, *, host: str, port: int, lang: str) -> None:
    """Serve the dashboard over the demo's ledger and the example price book until interrupted.
    The admin token is made for this run (it expires in a day) and printed once."""
    import uvicorn

    from kubetally.server.app import create_app

    with Ledger.open(str(ledger_path)) as ledger:
        secret, _token = create_token(ledger, "admin", expires=timedelta(days=1), name="kubetally demo --serve")
        settings = ServerConfig(host=host, port=port, lang=lang)
        app = create_app(ledger, example_pricebook(), None, settings)
        console.print(f"\n[bold]5.[/] Dashboard: {dashboard_url(host, port, day)}", highlight=False, soft_wrap=True)
        console.print(f"   Admin token (sign in with it; shown once): {secret}", highlight=False, soft_wrap=True)
        console.print("   Ctrl-C stops the server.", highlight=False)
        console.file.flush()  # shown now even when stdout is a pipe (uvicorn blocks from here on)
        uvicorn.run(app, host=host, port=port, log_level="warning", access_log=False)
