"""${message}

Revision ID: ${up_revision}
Revises: ${down_revision | comma,n}
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
${imports if imports else ""}

revision: str = ${repr(up_revision)}
down_revision: str | None = ${repr(down_revision)}
branch_labels: str | None = ${repr(branch_labels)}
depends_on: str | None = ${repr(depends_on)}


def upgrade() -> None:
    """Upgrade the service's tables."""
    ${upgrades if upgrades else "pass"}


def downgrade() -> None:
    """Undo :func:`upgrade`."""
    ${downgrades if downgrades else "pass"}
