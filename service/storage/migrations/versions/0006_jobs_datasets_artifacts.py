"""Study jobs (pre-flight, vault, ensembles), registered data sets, and stored artifacts.

Revision ID: 0006_jobs_datasets_artifacts
Revises: 0005_study_budget
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision: str = "0006_jobs_datasets_artifacts"
down_revision: str | None = "0005_study_budget"
branch_labels: str | None = None
depends_on: str | None = None


def _timestamp(name: str, *, nullable: bool = False) -> sa.Column[object]:
    return sa.Column(name, sa.DateTime(timezone=True), nullable=nullable)


def upgrade() -> None:
    """Create ``hpo_study_jobs``, ``hpo_datasets`` and ``hpo_artifacts``."""
    op.create_table(
        "hpo_study_jobs",
        sa.Column("job_id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("study_id", sa.Integer(), nullable=False),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("model_key", sa.String(200), nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("request_json", sa.Text(), nullable=False),
        sa.Column("result_json", sa.Text(), nullable=True),
        sa.Column("reason", sa.Text(), nullable=True),
        _timestamp("created_at"),
        _timestamp("finished_at", nullable=True),
        _timestamp("expires_at"),
        sa.PrimaryKeyConstraint("job_id", name="pk_hpo_study_jobs"),
        sa.UniqueConstraint("study_id", "kind", "model_key", name="uq_hpo_study_jobs_study_id"),
    )
    op.create_index("ix_hpo_study_jobs_study_id", "hpo_study_jobs", ["study_id"])
    op.create_index("ix_hpo_study_jobs_expires_at", "hpo_study_jobs", ["expires_at"])
    op.create_table(
        "hpo_datasets",
        sa.Column("dataset_id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("name", sa.String(128), nullable=False),
        sa.Column("tenant", sa.String(64), nullable=False),
        sa.Column("file_format", sa.String(8), nullable=False),
        sa.Column("label_column", sa.String(200), nullable=True),
        sa.Column("sha256", sa.String(64), nullable=False),
        sa.Column("size_bytes", sa.Integer(), nullable=False),
        sa.Column("meta_json", sa.Text(), nullable=False),
        sa.Column("content", sa.LargeBinary(), nullable=False),
        _timestamp("created_at"),
        sa.PrimaryKeyConstraint("dataset_id", name="pk_hpo_datasets"),
        sa.UniqueConstraint("name", name="uq_hpo_datasets_name"),
    )
    op.create_index("ix_hpo_datasets_tenant", "hpo_datasets", ["tenant"])
    op.create_table(
        "hpo_artifacts",
        sa.Column("artifact_id", sa.String(64), nullable=False),
        sa.Column("study_id", sa.Integer(), nullable=True),
        sa.Column("trial_id", sa.Integer(), nullable=True),
        sa.Column("kind", sa.String(32), nullable=False),
        sa.Column("sha256", sa.String(64), nullable=False),
        sa.Column("content", sa.LargeBinary(), nullable=False),
        _timestamp("created_at"),
        sa.PrimaryKeyConstraint("artifact_id", name="pk_hpo_artifacts"),
    )
    op.create_index("ix_hpo_artifacts_study_id", "hpo_artifacts", ["study_id"])
    op.create_index("ix_hpo_artifacts_trial_id", "hpo_artifacts", ["trial_id"])


def downgrade() -> None:
    """Drop the three tables (their indexes go with them)."""
    for table in ("hpo_artifacts", "hpo_datasets", "hpo_study_jobs"):
        op.drop_table(table)
