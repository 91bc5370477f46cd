"""Study names are unique per tenant; each study keeps its name in Optuna's tables apart.

Revision ID: 0009_tenant_study_names
Revises: 0008_token_expiry
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision: str = "0009_tenant_study_names"
down_revision: str | None = "0008_token_expiry"
branch_labels: str | None = None
depends_on: str | None = None


def upgrade() -> None:
    """Add ``hpo_studies.optuna_name``, unique, filled for the studies already there with the
    name they have in Optuna (their own: names were unique across tenants), and make
    ``study_name`` unique per tenant instead of across tenants."""
    with op.batch_alter_table("hpo_studies") as batch:
        batch.add_column(sa.Column("optuna_name", sa.String(200), nullable=True))
    op.execute(sa.text("UPDATE hpo_studies SET optuna_name = study_name"))
    with op.batch_alter_table("hpo_studies") as batch:
        batch.alter_column("optuna_name", existing_type=sa.String(200), nullable=False)
        batch.drop_constraint("uq_hpo_studies_study_name", type_="unique")
        batch.create_unique_constraint("uq_hpo_studies_tenant", ["tenant", "study_name"])
        batch.create_unique_constraint("uq_hpo_studies_optuna_name", ["optuna_name"])


def downgrade() -> None:
    """Drop ``hpo_studies.optuna_name`` and make ``study_name`` unique across tenants again
    (which fails where two tenants hold a study of one name: delete one of them first). Refused
    where a study's Optuna name is not its name (a tenant's ``tenant/name``): the release before
    loads Optuna studies by their name, and would not find it."""
    renamed = (
        op.get_bind()
        .execute(sa.text("SELECT study_name FROM hpo_studies WHERE optuna_name <> study_name"))
        .first()
    )
    if renamed is not None:
        raise RuntimeError(
            f"study {renamed[0]!r} has another name in Optuna's tables, which the release "
            "before cannot load: delete the tenants' studies made since the upgrade first"
        )
    with op.batch_alter_table("hpo_studies") as batch:
        batch.drop_constraint("uq_hpo_studies_optuna_name", type_="unique")
        batch.drop_constraint("uq_hpo_studies_tenant", type_="unique")
        batch.create_unique_constraint("uq_hpo_studies_study_name", ["study_name"])
        batch.drop_column("optuna_name")
