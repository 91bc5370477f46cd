"""Tenants and hashed API tokens.

Revision ID: 0004_tenants_and_tokens
Revises: 0003_lease_sent
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision: str = "0004_tenants_and_tokens"
down_revision: str | None = "0003_lease_sent"
branch_labels: str | None = None
depends_on: str | None = None


def upgrade() -> None:
    """Add ``hpo_studies.tenant`` (studies already there belong to ``default``) and create
    ``hpo_tokens``."""
    with op.batch_alter_table("hpo_studies") as batch:
        batch.add_column(
            sa.Column("tenant", sa.String(64), nullable=False, server_default="default")
        )
        batch.create_index("ix_hpo_studies_tenant", ["tenant"])
    op.create_table(
        "hpo_tokens",
        sa.Column("token_id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("token_hash", sa.String(64), nullable=False),
        sa.Column("tenant", sa.String(64), nullable=True),
        sa.Column("role", sa.String(16), nullable=False),
        sa.Column("name", sa.String(128), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("revoked", sa.Boolean(), nullable=False),
        sa.PrimaryKeyConstraint("token_id", name="pk_hpo_tokens"),
        sa.UniqueConstraint("token_hash", name="uq_hpo_tokens_token_hash"),
    )


def downgrade() -> None:
    """Drop ``hpo_tokens`` and ``hpo_studies.tenant``."""
    op.drop_table("hpo_tokens")
    with op.batch_alter_table("hpo_studies") as batch:
        batch.drop_index("ix_hpo_studies_tenant")
        batch.drop_column("tenant")
