"""The billing customer id a tenant's object names (``kubernetes.tenancy.customer_key``).

Delivery maps a tenant to that customer when the destination's ``customers:`` table does not.
"""

import sqlalchemy as sa
from alembic import op

revision = "0008_tenant_customer"
down_revision = "0002_kubernetes"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("kubernetes_tenants") as batch:
        batch.add_column(sa.Column("customer", sa.String(253), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("kubernetes_tenants") as batch:
        batch.drop_column("customer")
