"""Data set names are unique per tenant, as study names are.

Revision ID: 0010_tenant_dataset_names
Revises: 0009_tenant_study_names
"""

from __future__ import annotations

from alembic import op

revision: str = "0010_tenant_dataset_names"
down_revision: str | None = "0009_tenant_study_names"
branch_labels: str | None = None
depends_on: str | None = None


def upgrade() -> None:
    """Make ``hpo_datasets.name`` unique per tenant instead of across tenants (a worker reads a
    name in the tenant of the study it runs for)."""
    with op.batch_alter_table("hpo_datasets") as batch:
        batch.drop_constraint("uq_hpo_datasets_name", type_="unique")
        batch.create_unique_constraint("uq_hpo_datasets_tenant", ["tenant", "name"])


def downgrade() -> None:
    """Make data set names unique across tenants again (which fails where two tenants hold a data
    set of one name)."""
    with op.batch_alter_table("hpo_datasets") as batch:
        batch.drop_constraint("uq_hpo_datasets_tenant", type_="unique")
        batch.create_unique_constraint("uq_hpo_datasets_name", ["name"])
