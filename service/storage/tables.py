"""The service's own tables, beside Optuna's schema in the same database."""

from __future__ import annotations

from datetime import UTC, datetime

from sqlalchemy import DateTime, LargeBinary, MetaData, String, Text, UniqueConstraint
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column


def utc_now() -> datetime:
    """Timezone-aware now, the one clock of the service's tables."""
    return datetime.now(UTC)


def as_utc(moment: datetime) -> datetime:
    """A timestamp read back from the tables, timezone-aware: SQLite hands them back naive even
    for timezone-aware columns, and they were stored in UTC."""
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)


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

    ``study_id`` is Optuna's study id for the same study. ``study_name`` is the name its tenant
    gave it, unique per tenant; ``optuna_name`` is the study's name in Optuna's tables, unique
    across tenants as Optuna's own column is (``service.study_names``).
    """

    __tablename__ = "hpo_studies"
    __table_args__ = (UniqueConstraint("tenant", "study_name"),)

    study_id: Mapped[int] = mapped_column(primary_key=True, autoincrement=False)
    study_name: Mapped[str] = mapped_column(String(128))
    # tenant (64) + "/" + study name (128): service.study_names
    optuna_name: Mapped[str] = mapped_column(String(200), unique=True)
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
    the broker could not take the trial's message (it is sent again, not failed). ``ask_key``: the
    ``Idempotency-Key`` of the ask that started the trial, unique in its study while it runs (an
    ask repeated with it is answered with the same trial).
    """

    __tablename__ = "hpo_trial_leases"
    __table_args__ = (UniqueConstraint("study_id", "ask_key"),)

    trial_id: Mapped[int] = mapped_column(primary_key=True, autoincrement=False)
    study_id: Mapped[int] = mapped_column(index=True)
    token: Mapped[str | None] = mapped_column(String(64), nullable=True)
    holder: Mapped[str | None] = mapped_column(String(200), nullable=True)
    expires_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), index=True)
    attempt: Mapped[int] = mapped_column(default=0)
    sent: Mapped[bool] = mapped_column(default=True)
    ask_key: Mapped[str | None] = mapped_column(String(200), nullable=True)


class TokenRecord(ServiceTable):
    """An API token, stored as its SHA-256 hash: the token itself is shown once, at creation.

    A user token belongs to a tenant and sees that tenant's studies only; a worker token has no
    tenant (workers serve every tenant's queue) and may only claim, report and complete trials.
    ``expires_at``: when it stops working (``None``: when revoked).
    """

    __tablename__ = "hpo_tokens"

    token_id: Mapped[int] = mapped_column(primary_key=True, autoincrement=True)
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    tenant: Mapped[str | None] = mapped_column(String(64), nullable=True)
    role: Mapped[str] = mapped_column(String(16))
    name: Mapped[str] = mapped_column(String(128), default="")
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utc_now)
    revoked: Mapped[bool] = mapped_column(default=False)
    expires_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)


class StudyJobRecord(ServiceTable):
    """A job a worker runs for a study beside its trials: pre-flight checks, a test-split
    evaluation (the vault), an ensemble's validation figure.

    ``model_key`` names what the job scores (``trial:12``, ``ensemble:3,7,9``): one job per study,
    kind and model, so the vault is opened once per model. ``state``: queued, running, done,
    failed; ``expires_at``: when the reaper gives up on it (queued or running).
    """

    __tablename__ = "hpo_study_jobs"
    __table_args__ = (UniqueConstraint("study_id", "kind", "model_key"),)

    job_id: Mapped[int] = mapped_column(primary_key=True, autoincrement=True)
    study_id: Mapped[int] = mapped_column(index=True)
    kind: Mapped[str] = mapped_column(String(16))
    model_key: Mapped[str] = mapped_column(String(200))
    state: Mapped[str] = mapped_column(String(16))
    request_json: Mapped[str] = mapped_column(Text)
    result_json: Mapped[str | None] = mapped_column(Text, nullable=True)
    reason: Mapped[str | None] = mapped_column(Text, nullable=True)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utc_now)
    finished_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    expires_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), index=True)


class DatasetRecord(ServiceTable):
    """A data set a user registered: the file's bytes as uploaded, their SHA-256, and what the
    check on registration read from them (shape, class names). Names are unique per tenant, as
    study names are: a worker, which serves every tenant, reads ``registered:<name>`` in the
    tenant of the study it runs for."""

    __tablename__ = "hpo_datasets"
    __table_args__ = (UniqueConstraint("tenant", "name"),)

    dataset_id: Mapped[int] = mapped_column(primary_key=True, autoincrement=True)
    name: Mapped[str] = mapped_column(String(128))
    tenant: Mapped[str] = mapped_column(String(64), index=True)
    file_format: Mapped[str] = mapped_column(String(8))
    label_column: Mapped[str | None] = mapped_column(String(200), nullable=True)
    sha256: Mapped[str] = mapped_column(String(64))
    size_bytes: Mapped[int] = mapped_column()
    meta_json: Mapped[str] = mapped_column(Text)
    content: Mapped[bytes] = mapped_column(LargeBinary)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utc_now)


class ArtifactRecord(ServiceTable):
    """One artifact of Optuna's artifact store kept in the database (a trial's best checkpoint):
    its bytes, and the study and trial it belongs to (deleted with the study)."""

    __tablename__ = "hpo_artifacts"

    artifact_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    study_id: Mapped[int | None] = mapped_column(index=True, nullable=True)
    trial_id: Mapped[int | None] = mapped_column(index=True, nullable=True)
    kind: Mapped[str] = mapped_column(String(32), default="")
    sha256: Mapped[str] = mapped_column(String(64))
    content: Mapped[bytes] = mapped_column(LargeBinary)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utc_now)
