"""The service's own tables, beside Optuna's schema in the same database."""

from __future__ import annotations

from datetime import UTC, datetime

from sqlalchemy import DateTime, MetaData, String, Text
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column


def utc_now() -> datetime:
    """Timezone-aware now, the one clock of the service's tables."""
    return datetime.now(UTC)


class ServiceTable(DeclarativeBase):
    """Base of the service's tables; a metadata of their own, apart from Optuna's."""

    metadata = MetaData(
        naming_convention={
            "pk": "pk_%(table_name)s",
            "uq": "uq_%(table_name)s_%(column_0_name)s",
            "ix": "ix_%(table_name)s_%(column_0_name)s",
        }
    )


class StudyRecord(ServiceTable):
    """One submitted study: its spec as submitted (resolved), its lifecycle state, and its budget
    of trials (the spec's, or larger once extended).

    ``study_id`` is Optuna's study id for the same study.
    """

    __tablename__ = "hpo_studies"

    study_id: Mapped[int] = mapped_column(primary_key=True, autoincrement=False)
    study_name: Mapped[str] = mapped_column(String(128), unique=True)
    tenant: Mapped[str] = mapped_column(String(64), index=True, default="default")
    n_trials: Mapped[int | None] = mapped_column(nullable=True)
    spec_json: Mapped[str] = mapped_column(Text)
    state: Mapped[str] = mapped_column(String(16))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utc_now)
    finished_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)


class TrialLeaseRecord(ServiceTable):
    """The lease of a running trial: who holds it, and until when.

    Granted when the trial is created (unclaimed: it waits in the queue), claimed by the worker
    that runs it, renewed by every report and heartbeat, removed when the trial ends.
    ``attempt`` counts the runs of the same parameters (0 for the first); ``sent`` is false while
    the broker could not take the trial's message (it is sent again, not failed).
    """

    __tablename__ = "hpo_trial_leases"

    trial_id: Mapped[int] = mapped_column(primary_key=True, autoincrement=False)
    study_id: Mapped[int] = mapped_column(index=True)
    token: Mapped[str | None] = mapped_column(String(64), nullable=True)
    holder: Mapped[str | None] = mapped_column(String(200), nullable=True)
    expires_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), index=True)
    attempt: Mapped[int] = mapped_column(default=0)
    sent: Mapped[bool] = mapped_column(default=True)


class TokenRecord(ServiceTable):
    """An API token, stored as its SHA-256 hash: the token itself is shown once, at creation.

    A user token belongs to a tenant and sees that tenant's studies only; a worker token has no
    tenant (workers serve every tenant's queue) and may only claim, report and complete trials.
    """

    __tablename__ = "hpo_tokens"

    token_id: Mapped[int] = mapped_column(primary_key=True, autoincrement=True)
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    tenant: Mapped[str | None] = mapped_column(String(64), nullable=True)
    role: Mapped[str] = mapped_column(String(16))
    name: Mapped[str] = mapped_column(String(128), default="")
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utc_now)
    revoked: Mapped[bool] = mapped_column(default=False)
