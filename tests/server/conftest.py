"""A real ``kubetally server`` (uvicorn process) over a real PostgreSQL ledger."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest

from kubetally.ledger.store import Ledger
from kubetally.server.tokens import create_token
from kubetally.testing.server import ServerProcess, cli

from .scenario import PRICES


@pytest.fixture
def server(pg_url: str) -> Iterator[ServerProcess]:
    process = ServerProcess(pg_url, ["--prices", str(PRICES)])
    process.start()
    try:
        yield process
    finally:
        process.stop()


def cli_token(db: str, *args: str) -> str:
    """A token made by ``kubetally token create`` (the secret is the only line on stdout)."""
    done = cli("token", "create", "--db", db, *args)
    assert done.returncode == 0, done.stderr
    return done.stdout.strip()


def api_token(db: str, role: str, **scope: str) -> str:
    with Ledger.open(db) as ledger:
        return create_token(ledger, role, **scope)[0]


def get(server: ServerProcess, token: str | None, path: str, **params: object) -> httpx.Response:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    return httpx.get(f"{server.url}{path}", params=params, headers=headers, timeout=60)
