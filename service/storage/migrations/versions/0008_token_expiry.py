"""A token may expire.

Revision ID: 0008_token_expiry
Revises: 0007_ask_keys
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision: str = "0008_token_expiry"
down_revision: str | None = "0007_ask_keys"
branch_labels: str | None = None
depends_on: str | None = None


def upgrade() -> None:
    """Add ``hpo_tokens.expires_at``: the tokens already there never expire (null)."""
    with op.batch_alter_table("hpo_tokens") as batch:
        batch.add_column(sa.Column("expires_at", sa.DateTime(timezone=True), nullable=True))


def downgrade() -> None:
    """Drop ``hpo_tokens.expires_at``."""
    with op.batch_alter_table("hpo_tokens") as batch:
        batch.drop_column("expires_at")
