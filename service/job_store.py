"""The study jobs' table: what a worker runs for a study beside its trials, and what it found.

A job is one row of ``hpo_study_jobs``, one per study, kind and model (so a model's test split is
scored once). States: ``queued`` (sent), ``running`` (a worker started it), ``done`` (its result
is stored), ``failed`` (the worker said why, or no worker finished it in time).
"""

from __future__ import annotations

import enum
import json
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, cast

from sqlalchemy import Table, func, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from service.errors import Conflict, NotFound
from service.storage.database import Database
from service.storage.tables import StudyJobRecord, as_utc, utc_now


class JobKind(enum.StrEnum):
    """What a job does; each kind is its own Celery task (``service.queue_contract``)."""

    PREFLIGHT = "preflight"
    EVALUATE = "evaluate"
    ENSEMBLE = "ensemble"


class JobState(enum.StrEnum):
    """Where a job is."""

    QUEUED = "queued"
    RUNNING = "running"
    DONE = "done"
    FAILED = "failed"


LIVE_STATES = (JobState.QUEUED.value, JobState.RUNNING.value)
JOBS = cast(Table, StudyJobRecord.__table__)


@dataclass(frozen=True)
class StoredJob:
    """A job row as plain data."""

    job_id: int
    study_id: int
    kind: JobKind
    model_key: str
    state: JobState
    request: dict[str, Any]
    result: dict[str, Any] | None
    reason: str | None
    created_at: datetime
    finished_at: datetime | None

    @classmethod
    def of(cls, record: StudyJobRecord) -> StoredJob:
        return cls(
            job_id=record.job_id,
            study_id=record.study_id,
            kind=JobKind(record.kind),
            model_key=record.model_key,
            state=JobState(record.state),
            request=json.loads(record.request_json),
            result=json.loads(record.result_json) if record.result_json else None,
            reason=record.reason,
            created_at=as_utc(record.created_at),
            finished_at=as_utc(record.finished_at) if record.finished_at else None,
        )


class JobStore:
    """Reads and writes ``hpo_study_jobs``."""

    def __init__(self, database: Database) -> None:
        self._database = database

    def add(
        self, study_id: int, kind: JobKind, model_key: str, request: dict[str, Any], wait_s: float
    ) -> tuple[StoredJob, bool]:
        """The job for this study, kind and model: a new one (``True``), or the one there is."""
        record = StudyJobRecord(
            study_id=study_id,
            kind=kind.value,
            model_key=model_key,
            state=JobState.QUEUED.value,
            request_json=json.dumps(request),
            expires_at=utc_now() + timedelta(seconds=wait_s),
        )
        try:
            with self._database.session() as session:
                session.add(record)
                session.flush()
                return StoredJob.of(record), True
        except IntegrityError:  # a concurrent request made it first
            return self.find(study_id, kind, model_key), False

    def find(self, study_id: int, kind: JobKind, model_key: str) -> StoredJob:
        """The job of this study, kind and model; ``NotFound`` if there is none."""
        query = select(StudyJobRecord).where(
            StudyJobRecord.study_id == study_id,
            StudyJobRecord.kind == kind.value,
            StudyJobRecord.model_key == model_key,
        )
        with self._database.session() as session:
            record = session.scalars(query).first()
            if record is None:
                raise NotFound(f"study {study_id} has no {kind} job for {model_key}")
            return StoredJob.of(record)

    def get(self, job_id: int) -> StoredJob:
        """One job; ``NotFound`` if there is none."""
        with self._database.session() as session:
            record = session.get(StudyJobRecord, job_id)
            if record is None:
                raise NotFound(f"no job with id {job_id}", field="job_id")
            return StoredJob.of(record)

    def of_study(self, study_id: int, kind: JobKind | None = None) -> list[StoredJob]:
        """A study's jobs (of one kind), oldest first."""
        query = select(StudyJobRecord).where(StudyJobRecord.study_id == study_id)
        if kind is not None:
            query = query.where(StudyJobRecord.kind == kind.value)
        with self._database.session() as session:
            return [StoredJob.of(r) for r in session.scalars(query.order_by(StudyJobRecord.job_id))]

    def count(self, study_id: int, kind: JobKind) -> int:
        """How many jobs of ``kind`` a study has (one per model)."""
        query = select(func.count()).where(
            StudyJobRecord.study_id == study_id, StudyJobRecord.kind == kind.value
        )
        with self._database.session() as session:
            return int(session.scalar(query) or 0)

    def start(self, job_id: int, lease_s: float) -> StoredJob:
        """A worker starts the job (again: after a redelivery, or to renew its time while it
        runs); ``Conflict`` once it is done."""
        started = {
            "state": JobState.RUNNING.value,
            "expires_at": utc_now() + timedelta(seconds=lease_s),
        }
        with self._database.session() as session:
            if not _update_if_live(session, job_id, started):
                record = self._locked(session, job_id)
                raise Conflict(f"job {job_id} is {record.state}", field="job_id")
            return StoredJob.of(self._locked(session, job_id))

    def finish(
        self,
        job_id: int,
        result: dict[str, Any] | None,
        reason: str | None,
        expired_before: datetime | None = None,
    ) -> tuple[StoredJob, bool]:
        """Store the outcome once; ``False`` when the job had ended already (a repeat), or, with
        ``expired_before`` (a timeout's outcome), when its time runs past that moment: a worker
        renewed it since it was found expired."""
        outcome = {
            "state": (JobState.DONE if result is not None else JobState.FAILED).value,
            "result_json": json.dumps(result) if result is not None else None,
            "reason": reason,
            "finished_at": utc_now(),
        }
        with self._database.session() as session:
            first = _update_if_live(session, job_id, outcome, expired_before)
            return StoredJob.of(self._locked(session, job_id)), first

    def requeue(self, job_id: int, wait_s: float) -> StoredJob:
        """Send a failed job again: queued, its old outcome cleared."""
        with self._database.session() as session:
            record = self._locked(session, job_id)
            record.state, record.result_json, record.reason = JobState.QUEUED.value, None, None
            record.finished_at = None
            record.expires_at = utc_now() + timedelta(seconds=wait_s)
            return StoredJob.of(record)

    def expired(self, now: datetime) -> list[int]:
        """The live jobs past their time."""
        query = select(StudyJobRecord.job_id).where(
            StudyJobRecord.state.in_(LIVE_STATES), StudyJobRecord.expires_at < now
        )
        with self._database.session() as session:
            return list(session.scalars(query))

    def delete_study(self, study_id: int) -> None:
        """Forget a deleted study's jobs."""
        with self._database.session() as session:
            for record in session.scalars(
                select(StudyJobRecord).where(StudyJobRecord.study_id == study_id)
            ):
                session.delete(record)

    @staticmethod
    def _locked(session: Any, job_id: int) -> StudyJobRecord:
        query = select(StudyJobRecord).where(StudyJobRecord.job_id == job_id).with_for_update()
        record = session.scalars(query).first()
        if record is None:
            raise NotFound(f"no job with id {job_id}", field="job_id")
        found: StudyJobRecord = record
        return found


def _update_if_live(
    session: Session,
    job_id: int,
    values: dict[str, Any],
    expired_before: datetime | None = None,
) -> bool:
    """Write ``values`` to the job if it is queued or running (and, with ``expired_before``, its
    time ran out before that moment); whether it was. One conditional UPDATE, so two outcomes at
    once (a worker's and the timeout's) cannot both count as the first, nor a timeout overtake a
    renewal: SQLite ignores ``FOR UPDATE``, and its reads take no lock."""
    found = [JOBS.c.job_id == job_id, JOBS.c.state.in_(LIVE_STATES)]
    if expired_before is not None:
        found.append(JOBS.c.expires_at < expired_before)
    statement = update(JOBS).where(*found).values(**values)
    return bool(session.connection().execute(statement).rowcount)
