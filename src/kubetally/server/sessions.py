"""Dashboard sessions: a token is exchanged once for a session cookie, so the browser never keeps
the token itself (not in storage, not in a URL).

The cookie holds a random session id (256 bits); the ledger keeps only its SHA-256, the token it
was opened with and when it expires. Every request re-checks that token, so revoking the token
ends its sessions at once; signing out deletes the row, so a copied cookie is dead afterwards.
Sessions live in the ledger rather than in the process so that every server replica honours
them and a restart signs nobody out.

Cookie attributes (``HttpOnly``, ``SameSite=Strict``, ``Secure`` over TLS, ``Max-Age``) are set
in :mod:`kubetally.server.dashboard`; a session only authenticates safe (read) requests and
its own sign-out, so a cookie can never be used to ingest records.
"""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from sqlalchemy import Column, Index, String, Table, delete, select

from kubetally.ledger.schema import metadata
from kubetally.ledger.store import Ledger
from kubetally.ledger.types import UTCDateTime
from kubetally.server.tables import tokens
from kubetally.server.tokens import Token, _token, verify_token

#: The session cookie's name.
COOKIE = "kubetally_session"

sessions = Table(
    "server_sessions",
    metadata,
    Column("hash", String(64), primary_key=True),
    Column("token_id", String(32), nullable=False),
    Column("created_at", UTCDateTime, nullable=False),
    Column("expires_at", UTCDateTime, nullable=False),
    # Expired sessions are swept by time (migration 0006_sessions creates it).
    Index("ix_server_sessions_expires_at", "expires_at"),
)


def _hash(session_id: str) -> str:
    return hashlib.sha256(session_id.encode()).hexdigest()


@dataclass(frozen=True)
class Session:
    token: Token
    expires_at: datetime


def open_session(
    ledger: Ledger, secret: str, lifetime: timedelta, *, now: datetime | None = None
) -> tuple[str, Session] | None:
    """A new session for a valid token (None for an unknown, revoked or expired one). It never
    outlives the token."""
    now = now or datetime.now(UTC)
    token = verify_token(ledger, secret, now=now)
    if token is None:
        return None
    expires = now + lifetime
    if token.expires_at is not None:
        expires = min(expires, token.expires_at)
    session_id = secrets.token_urlsafe(32)
    with ledger.transaction() as conn:
        conn.execute(delete(sessions).where(sessions.c.expires_at <= now))
        conn.execute(
            sessions.insert().values(hash=_hash(session_id), token_id=token.id, created_at=now, expires_at=expires)
        )
    return session_id, Session(token, expires)


def find_session(ledger: Ledger, session_id: str, *, now: datetime | None = None) -> Session | None:
    """The live session for a cookie value, with its token still active; else None."""
    if not session_id:
        return None
    now = now or datetime.now(UTC)
    query = (
        select(sessions.c.expires_at.label("session_expires"), tokens)
        .join(tokens, tokens.c.id == sessions.c.token_id)
        .where(sessions.c.hash == _hash(session_id))
    )
    with ledger.engine.connect() as conn:
        row = conn.execute(query).one_or_none()
    if row is None or row.session_expires <= now:
        return None
    token = _token(row._mapping)
    return Session(token, row.session_expires) if token.active(now) else None


def end_session(ledger: Ledger, session_id: str) -> bool:
    """Sign out: the session row is deleted, so its cookie no longer opens anything."""
    with ledger.transaction() as conn:
        return bool(conn.execute(delete(sessions).where(sessions.c.hash == _hash(session_id))).rowcount)
