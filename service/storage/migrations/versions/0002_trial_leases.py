"""Trial leases: who runs a trial, and until when.

Revision ID: 0002_trial_leases
Revises: 0001_first_release
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision: str = "0002_trial_leases"
down_revision: str | None = "0001_first_release"
branch_labels: str | None = None
depends_on: str | None = None


def upgrade() -> None:
    """Create ``hpo_trial_leases`` (without ``sent``, which came later)."""
    op.create_table(
        "hpo_trial_leases",
        sa.Column("trial_id", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column("study_id", sa.Integer(), nullable=False),
        sa.Column("token", sa.String(64), nullable=True),
        sa.Column("holder", sa.String(200), nullable=True),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("attempt", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("trial_id", name="pk_hpo_trial_leases"),
    )
    op.create_index("ix_hpo_trial_leases_study_id", "hpo_trial_leases", ["study_id"])
    op.create_index("ix_hpo_trial_leases_expires_at", "hpo_trial_leases", ["expires_at"])


def downgrade() -> None:
    """Drop ``hpo_trial_leases``."""
    op.drop_index("ix_hpo_trial_leases_expires_at", table_name="hpo_trial_leases")
    op.drop_index("ix_hpo_trial_leases_study_id", table_name="hpo_trial_leases")
    op.drop_table("hpo_trial_leases")
