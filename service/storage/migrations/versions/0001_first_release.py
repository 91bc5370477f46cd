"""The first release: submitted studies.

Revision ID: 0001_first_release
Revises:
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision: str = "0001_first_release"
down_revision: str | None = None
branch_labels: str | None = None
depends_on: str | None = None


def upgrade() -> None:
    """Create ``hpo_studies`` as the first release had it."""
    op.create_table(
        "hpo_studies",
        sa.Column("study_id", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column("study_name", sa.String(128), nullable=False),
        sa.Column("spec_json", sa.Text(), nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("finished_at", sa.DateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("study_id", name="pk_hpo_studies"),
        sa.UniqueConstraint("study_name", name="uq_hpo_studies_study_name"),
    )


def downgrade() -> None:
    """Drop ``hpo_studies``."""
    op.drop_table("hpo_studies")
