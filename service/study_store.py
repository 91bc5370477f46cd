"""The service's record of each study: its resolved spec and its lifecycle state."""

from __future__ import annotations

import enum
import threading
from collections.abc import Collection
from datetime import datetime
from typing import cast

from sqlalchemy import Table, bindparam, exists, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from service import webhooks
from service.errors import NotFound
from service.spec.study_spec import StudySpec
from service.spec.webhook import STORED_SPEC_CONTEXT
from service.storage.database import Database
from service.storage.tables import StudyRecord, utc_now
from service.study_names import name_taken


class StudyState(enum.StrEnum):
    """Where a study is in its life. ``preparing``: being made (its warm start and enqueued
    trials written), or held until its pre-flight checks pass; none of its trials starts, and
    only a stop or a delete changes it from outside."""

    PREPARING = "preparing"
    RUNNING = "running"
    PAUSED = "paused"
    STOPPED = "stopped"
    COMPLETE = "complete"


STUDIES = cast(Table, StudyRecord.__table__)
_STUDY_ROW = select(StudyRecord.__table__).where(
    StudyRecord.__table__.c.study_id == bindparam("study_id")
)  # built once: read on every ask and every refill


class StudyStore:
    """Reads and writes ``hpo_studies``; keeps each (immutable) spec, tenant and Optuna name in
    memory once read."""

    def __init__(self, database: Database) -> None:
        self._database = database
        self._specs: dict[int, StudySpec] = {}
        self._tenants: dict[int, str] = {}
        self._optuna_names: dict[int, str] = {}
        self._specs_guard = threading.Lock()

    def add(
        self,
        study_id: int,
        spec: StudySpec,
        tenant: str,
        optuna_name: str,
        state: StudyState = StudyState.RUNNING,
    ) -> None:
        """Record a new study of ``tenant`` in ``state``, named ``optuna_name`` in Optuna's
        tables; ``Conflict`` where the tenant has a study of its name already (one made
        meanwhile, or one from before names were per tenant, whose Optuna name is not this one)."""
        record = StudyRecord(
            study_id=study_id,
            study_name=spec.name,
            optuna_name=optuna_name,
            tenant=tenant,
            n_trials=spec.budget.n_trials,
            spec_json=spec.model_dump_json(context=STORED_SPEC_CONTEXT),  # keeps secrets
            state=state.value,
        )
        try:
            with self._database.session() as session:
                session.add(record)
        except IntegrityError:
            raise name_taken(spec.name) from None

    def optuna_name_held_by_another(self, optuna_name: str, tenant: str) -> bool:
        """Whether a recorded study of a tenant other than ``tenant`` has ``optuna_name`` as its
        name in Optuna's tables (one from before names were per tenant)."""
        query = select(
            exists().where(StudyRecord.optuna_name == optuna_name, StudyRecord.tenant != tenant)
        )
        with self._database.reading() as connection:
            return bool(connection.execute(query).scalar())

    def get(self, study_id: int, tenant: str | None = None) -> StudyRecord:
        """The study's record (read as a row, no ORM session: a third of the cost); ``NotFound``
        when there is none, or it is another tenant's."""
        with self._database.reading() as connection:
            row = connection.execute(_STUDY_ROW, {"study_id": study_id}).first()
        if row is None or (tenant is not None and row.tenant != tenant):
            raise NotFound(f"no study with id {study_id}", field="study_id")
        record = StudyRecord(**row._mapping)
        with self._specs_guard:
            self._tenants[study_id] = record.tenant
            self._optuna_names[study_id] = record.optuna_name
        return record

    def tenant_of(self, study_id: int) -> str:
        """The tenant a study belongs to (a fixed fact, kept in memory once read)."""
        with self._specs_guard:
            known = self._tenants.get(study_id)
        return known if known is not None else self.get(study_id).tenant

    def optuna_name(self, study_id: int) -> str:
        """The study's name in Optuna's tables, by which Optuna loads it (``service.study_names``;
        a fixed fact, kept in memory once read)."""
        with self._specs_guard:
            known = self._optuna_names.get(study_id)
        return known if known is not None else self.get(study_id).optuna_name

    def spec(self, study_id: int) -> StudySpec:
        """The study's resolved spec (read once, then from memory: a spec never changes)."""
        with self._specs_guard:
            cached = self._specs.get(study_id)
        return cached if cached is not None else self._spec_in(self.get(study_id))

    def _spec_in(self, record: StudyRecord) -> StudySpec:
        """The spec ``record`` holds, kept in memory from now on."""
        with self._specs_guard:
            cached = self._specs.get(record.study_id)
        if cached is not None:
            return cached
        spec = StudySpec.model_validate_json(record.spec_json)
        with self._specs_guard:
            self._specs[record.study_id] = spec
        return spec

    def specs_holding(
        self, session: Session, tenant: str, text: str
    ) -> list[tuple[int, StudySpec]]:
        """The tenant's studies whose definition holds ``text`` (in any state), each with its
        spec, read in ``session``: a transaction of the caller's, nothing else taken."""
        query = select(StudyRecord).where(
            StudyRecord.tenant == tenant, StudyRecord.spec_json.contains(text, autoescape=True)
        )
        return [(record.study_id, self._spec_in(record)) for record in session.scalars(query)]

    def spec_of(self, record: StudyRecord) -> StudySpec:
        """The study's spec with its current budget of trials (which an extension may raise)."""
        spec = self.spec(record.study_id)
        if record.n_trials is None or record.n_trials == spec.budget.n_trials:
            return spec
        budget = spec.budget.model_copy(update={"n_trials": record.n_trials})
        return spec.model_copy(update={"budget": budget})

    def extend(self, study_id: int, n_trials: int) -> None:
        """Raise the study's budget; a study that had completed runs again."""
        with self._database.session() as session:
            record = session.get(StudyRecord, study_id)
            if record is None:
                raise NotFound(f"no study with id {study_id}", field="study_id")
            record.n_trials = n_trials
            if record.state == StudyState.COMPLETE.value:
                record.state, record.finished_at = StudyState.RUNNING.value, None

    def running_ids(self) -> list[int]:
        """The ids of the studies that may start trials."""
        query = select(StudyRecord.study_id).where(StudyRecord.state == StudyState.RUNNING.value)
        with self._database.session() as session:
            return list(session.scalars(query))

    def preparing_before(self, cutoff: datetime) -> list[int]:
        """The ids of the studies made before ``cutoff`` and preparing still."""
        query = select(StudyRecord.study_id).where(
            StudyRecord.state == StudyState.PREPARING.value, StudyRecord.created_at < cutoff
        )
        with self._database.reading() as connection:
            return list(connection.scalars(query))

    def all(self, tenant: str | None = None) -> list[StudyRecord]:
        """Every study (of ``tenant``, when given), newest first."""
        query = select(StudyRecord).order_by(StudyRecord.study_id.desc())
        if tenant is not None:
            query = query.where(StudyRecord.tenant == tenant)
        with self._database.session() as session:
            return list(session.scalars(query))

    def delete(self, study_id: int) -> None:
        """Forget the study's record (its trials and leases go with Optuna's study)."""
        with self._database.session() as session:
            record = session.get(StudyRecord, study_id)
            if record is not None:
                session.delete(record)
        with self._specs_guard:
            self._specs.pop(study_id, None)
            self._tenants.pop(study_id, None)
            self._optuna_names.pop(study_id, None)

    def set_state(
        self,
        study_id: int,
        state: StudyState,
        *,
        when: Collection[StudyState],
        quietly: bool = False,
    ) -> bool:
        """Move the study to ``state`` if it is in one of ``when``; whether it moved. One
        conditional UPDATE, not a read and a write: a change another request made meanwhile (a
        stop, a refill's completion) is not overwritten. A study that finishes gets its finish
        time, and its ``study_finished`` webhook once, after the commit (none ``quietly``: a
        study being deleted)."""
        table = STUDIES.c
        this_study = table.study_id == study_id
        with self._database.session() as session:
            moved = session.connection().execute(
                update(STUDIES)
                .where(this_study, table.state.in_([each.value for each in when]))
                .values(state=state.value)
            )
            if not moved.rowcount:
                if session.get(StudyRecord, study_id) is None:
                    raise NotFound(f"no study with id {study_id}", field="study_id")
                return False
            first_finish = state in (StudyState.STOPPED, StudyState.COMPLETE) and bool(
                session.connection()
                .execute(
                    update(STUDIES)
                    .where(this_study, table.finished_at.is_(None))
                    .values(finished_at=utc_now())
                )
                .rowcount
            )
        if first_finish and not quietly:
            webhooks.study_finished(self.spec(study_id), study_id, state, self._database.optuna)
        return True
