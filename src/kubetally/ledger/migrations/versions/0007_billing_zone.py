"""The billing time zone the usage rollups are kept in (``billing.timezone``).

Rollup days and months start at local midnight of that zone; a report in another zone rebuilds
them. Existing ledgers were kept in UTC, which is the column's default.
"""

import sqlalchemy as sa
from alembic import op

revision = "0007_billing_zone"
down_revision = "0004_rating"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("rating_rollup_state") as batch:
        batch.add_column(sa.Column("timezone", sa.String(64), nullable=False, server_default="UTC"))


def downgrade() -> None:
    with op.batch_alter_table("rating_rollup_state") as batch:
        batch.drop_column("timezone")
