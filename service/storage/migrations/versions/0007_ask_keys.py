"""A lease remembers the Idempotency-Key of the ask that started its trial.

Revision ID: 0007_ask_keys
Revises: 0006_jobs_datasets_artifacts
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision: str = "0007_ask_keys"
down_revision: str | None = "0006_jobs_datasets_artifacts"
branch_labels: str | None = None
depends_on: str | None = None


def upgrade() -> None:
    """Add ``hpo_trial_leases.ask_key`` (none for the leases already there), unique per study."""
    with op.batch_alter_table("hpo_trial_leases") as batch:
        batch.add_column(sa.Column("ask_key", sa.String(200), nullable=True))
        batch.create_unique_constraint("uq_hpo_trial_leases_study_id", ["study_id", "ask_key"])


def downgrade() -> None:
    """Drop ``hpo_trial_leases.ask_key``."""
    with op.batch_alter_table("hpo_trial_leases") as batch:
        batch.drop_constraint("uq_hpo_trial_leases_study_id", type_="unique")
        batch.drop_column("ask_key")
