"""API tokens: random, shown once, stored only as a SHA-256, revocable, optionally expiring.

A token is ``kt_<id>_<secret>``: ``id`` (12 hex) names it in ``token list`` / ``token revoke``
without revealing it; the secret is 32 random bytes. Tokens carry 256 bits of entropy, so a
plain SHA-256 is enough to store them (a slow password hash protects guessable secrets only).
"""

from __future__ import annotations

import hashlib
import secrets
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.engine import RowMapping

from kubetally.errors import KubetallyError
from kubetally.ledger.store import Ledger
from kubetally.server.tables import tokens

PREFIX = "kt_"


class Role(StrEnum):
    #: everything
    admin = "admin"
    #: one tenant's rows, on every read endpoint
    tenant = "tenant"
    #: ingest for one cluster, nothing else
    agent = "agent"


class TokenError(KubetallyError):
    """A token cannot be created or revoked as asked."""


@dataclass(frozen=True)
class Token:
    id: str
    role: Role
    tenant: str | None
    cluster: str | None
    name: str
    created_at: datetime
    expires_at: datetime | None
    revoked_at: datetime | None

    def active(self, now: datetime) -> bool:
        return self.revoked_at is None and (self.expires_at is None or self.expires_at > now)


def token_hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def _token(m: Mapping[str, Any] | RowMapping) -> Token:
    return Token(
        id=m["id"],
        role=Role(m["role"]),
        tenant=m["tenant"],
        cluster=m["cluster"],
        name=m["name"],
        created_at=m["created_at"],
        expires_at=m["expires_at"],
        revoked_at=m["revoked_at"],
    )


def create_token(
    ledger: Ledger,
    role: Role | str,
    *,
    tenant: str | None = None,
    cluster: str | None = None,
    expires: timedelta | None = None,
    name: str = "",
    now: datetime | None = None,
) -> tuple[str, Token]:
    """A new token (returned once, in clear) and its stored description."""
    try:
        role = Role(role)
    except ValueError:
        raise TokenError(f"--role must be admin, tenant or agent, not {role!r}") from None
    if role is Role.tenant and not tenant:
        raise TokenError("--role tenant needs --tenant TENANT (the one tenant it may read)")
    if role is Role.agent and not cluster:
        raise TokenError("--role agent needs --cluster CLUSTER (the one cluster it may report)")
    if role is not Role.tenant and tenant:
        raise TokenError(f"--tenant only applies to --role tenant, not {role}")
    if role is not Role.agent and cluster:
        raise TokenError(f"--cluster only applies to --role agent, not {role}")
    if expires is not None and expires <= timedelta(0):
        raise TokenError("--expires must be positive")
    now = now or datetime.now(UTC)
    token_id = secrets.token_hex(6)
    secret = f"{PREFIX}{token_id}_{secrets.token_urlsafe(32)}"
    values = {
        "id": token_id,
        "hash": token_hash(secret),
        "role": str(role),
        "tenant": tenant if role is Role.tenant else None,
        "cluster": cluster if role is Role.agent else None,
        "name": name,
        "created_at": now,
        "expires_at": now + expires if expires is not None else None,
        "revoked_at": None,
    }
    with ledger.transaction() as conn:
        conn.execute(tokens.insert().values(**values))
    return secret, _token(values)


def list_tokens(ledger: Ledger) -> list[Token]:
    with ledger.engine.connect() as conn:
        return [_token(r._mapping) for r in conn.execute(select(tokens).order_by(tokens.c.created_at, tokens.c.id))]


def revoke_token(ledger: Ledger, token_id: str, *, now: datetime | None = None) -> Token:
    """Revoke by id (the ``kt_<id>_…`` part, as ``token list`` shows it) or by the token itself."""
    key = token_id.strip()
    where = tokens.c.hash == token_hash(key) if key.startswith(PREFIX) else tokens.c.id == key
    with ledger.transaction() as conn:
        row = conn.execute(select(tokens).where(where)).one_or_none()
        if row is None:
            raise TokenError(f"token {key if not key.startswith(PREFIX) else '(given)'}: no such token")
        if row.revoked_at is None:
            conn.execute(update(tokens).where(where).values(revoked_at=now or datetime.now(UTC)))
        row = conn.execute(select(tokens).where(where)).one()
    return _token(row._mapping)


def verify_token(ledger: Ledger, secret: str, *, now: datetime | None = None) -> Token | None:
    """The active token for a presented secret, or None (unknown, revoked or expired)."""
    if not secret.startswith(PREFIX):
        return None
    with ledger.engine.connect() as conn:
        row = conn.execute(select(tokens).where(tokens.c.hash == token_hash(secret))).one_or_none()
    if row is None:
        return None
    token = _token(row._mapping)
    return token if token.active(now or datetime.now(UTC)) else None
