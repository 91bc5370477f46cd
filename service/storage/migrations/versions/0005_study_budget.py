"""A study's budget of trials, larger than its spec's once extended.

Revision ID: 0005_study_budget
Revises: 0004_tenants_and_tokens
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision: str = "0005_study_budget"
down_revision: str | None = "0004_tenants_and_tokens"
branch_labels: str | None = None
depends_on: str | None = None


def upgrade() -> None:
    """Add ``hpo_studies.n_trials``: NULL (the spec's budget) for the studies already there."""
    with op.batch_alter_table("hpo_studies") as batch:
        batch.add_column(sa.Column("n_trials", sa.Integer(), nullable=True))


def downgrade() -> None:
    """Drop ``hpo_studies.n_trials``."""
    with op.batch_alter_table("hpo_studies") as batch:
        batch.drop_column("n_trials")
