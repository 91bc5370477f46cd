"""A lease remembers whether the broker took its trial's message.

Revision ID: 0003_lease_sent
Revises: 0002_trial_leases
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision: str = "0003_lease_sent"
down_revision: str | None = "0002_trial_leases"
branch_labels: str | None = None
depends_on: str | None = None


def upgrade() -> None:
    """Add ``hpo_trial_leases.sent``: the leases already there were sent (true)."""
    with op.batch_alter_table("hpo_trial_leases") as batch:
        batch.add_column(sa.Column("sent", sa.Boolean(), nullable=False, server_default=sa.true()))


def downgrade() -> None:
    """Drop ``hpo_trial_leases.sent``."""
    with op.batch_alter_table("hpo_trial_leases") as batch:
        batch.drop_column("sent")
