"""Dashboard sign-in sessions (hashes only), on top of the server's tokens.

Described also by :mod:`kubetally.server.sessions`.
"""

import sqlalchemy as sa
from alembic import op

from kubetally.ledger.types import UTCDateTime

revision = "0006_sessions"
down_revision = "0001_core"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "server_sessions",
        sa.Column("hash", sa.String(64), primary_key=True),
        sa.Column("token_id", sa.String(32), nullable=False),
        sa.Column("created_at", UTCDateTime, nullable=False),
        sa.Column("expires_at", UTCDateTime, nullable=False),
    )
    op.create_index("ix_server_sessions_expires_at", "server_sessions", ["expires_at"])


def downgrade() -> None:
    op.drop_index("ix_server_sessions_expires_at", "server_sessions")
    op.drop_table("server_sessions")
