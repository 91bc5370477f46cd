"""Reports under Hyperband in one transaction: renew the lease, record each epoch's value and the
rungs it completes, and decide from the in-memory :class:`~service.hyperband_book.HyperbandBook`.
A batch of reports (``POST /trials/{id}/reports``) is the same one transaction, and so is the
end of a trial a report prunes (pruned, its value the report's, its lease gone).

This is what ``trial.report()`` + ``should_prune()`` do through Optuna's storage, less the
re-reading of every trial: the reads are the trial's row (with its latest step) and the rung
attributes written since the last report; the writes go to Optuna's own tables and the lease
table (Core statements on Optuna's table definitions, built once), committed once. Without a
pruner a report is the same transaction with nothing to decide. Anything else (another pruner,
``max_resource`` unknown, a step reported out of order) answers ``None``: the caller takes
Optuna's general path.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass

from optuna.pruners import NopPruner
from optuna.storages._rdb import models
from optuna.study import StudyDirection
from optuna.trial import TrialState
from sqlalchemy import Executable, bindparam, func, select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from service.dispatch import TrialAssignment
from service.errors import Conflict, Unavailable
from service.hyperband_book import RUNG_PREFIX, Decision, HyperbandBook, window_for
from service.leases import LeaseStore
from service.policies import build_pruner
from service.seeded_hyperband import SeededHyperbandPruner
from service.spec.study_spec import StudySpec
from service.storage.database import Database
from service.storage.optuna_rows import OptunaTrialRows, not_running
from service.storage.optuna_tables import INTERMEDIATE, SYSTEM_ATTRS, TRIALS

FINITE = models.TrialIntermediateValueModel.TrialIntermediateValueType.FINITE
NO_DECISION = Decision(False, {}, None)  # without a pruner: never pruned, no step decides
FIRST_STEP = 0  # the lowest step a report may carry

# A report's statements, built once: Core on the session's connection, no ORM objects or flush
# (the unit of work's flush of one row cost more than the row's SQL on every report).
_LAST_STEP = (
    select(func.max(INTERMEDIATE.c.step))
    .where(INTERMEDIATE.c.trial_id == bindparam("trial_id"))
    .scalar_subquery()
)
_RUNNING_TRIAL_STEPS = (
    select(TRIALS.c.number, TRIALS.c.state, _LAST_STEP.label("last_step"))
    .where(TRIALS.c.trial_id == bindparam("trial_id"))
    .with_for_update(of=TRIALS)
)


def _upsert_value(dialect: type[postgresql.Insert] | type[sqlite.Insert]) -> Executable:
    """An epoch's value, inserted, or replacing the one the trial has at that step: a report
    sent twice at once (a worker's retry of one it timed out on, served beside the first) reads
    the latest step before the first commits, and finds its row there when it writes."""
    statement = dialect(INTERMEDIATE).values(
        trial_id=bindparam("value_trial_id"),
        step=bindparam("value_step"),
        intermediate_value=bindparam("new_value"),
        intermediate_value_type=FINITE,
    )
    return statement.on_conflict_do_update(
        index_elements=[INTERMEDIATE.c.trial_id, INTERMEDIATE.c.step],
        set_={
            "intermediate_value": statement.excluded.intermediate_value,
            "intermediate_value_type": statement.excluded.intermediate_value_type,
        },
    )


_RECORD_VALUE = {
    "postgresql": _upsert_value(postgresql.Insert),
    "sqlite": _upsert_value(sqlite.Insert),
}
# A rung row the trial has already (the book had not read it: committed late on PostgreSQL, past
# the book's window) is not written again: the unique (trial_id, key) would refuse the report.
_INSERT_RUNG = {
    name: dialect.insert(SYSTEM_ATTRS)
    .on_conflict_do_nothing()
    .returning(SYSTEM_ATTRS.c.trial_system_attribute_id)  # no row back: the row was there
    for name, dialect in (("postgresql", postgresql), ("sqlite", sqlite))
}


@dataclass(frozen=True)
class ClaimedTrial:
    """A claim's answer: the lease to report with, the first step whose report can prune the
    trial (``None``: none can), so that no earlier report need wait for its answer, and the
    trial as the service holds it (parameters, seed, trainer): what the worker runs, whatever
    the queue's message said."""

    lease: str
    next_decision_step: int | None
    assignment: TrialAssignment


@dataclass(frozen=True)
class ReportAnswer:
    """A report's answer: prune now or not, and the first later step whose report can prune the
    trial (``None``: none can). Reports of earlier steps need not wait for their answers."""

    prune: bool
    next_decision_step: int | None


class HyperbandReports:
    """Records reports of Hyperband studies, deciding them from the rung book, and of studies
    without a pruner (nothing to decide), each in one transaction."""

    def __init__(
        self, database: Database, leases: LeaseStore, late_commit_window: int | None = None
    ) -> None:
        """``late_commit_window``: the book's (``window_for`` the database's by default)."""
        self._database = database
        self._leases = leases
        self._trial_rows = OptunaTrialRows()
        window = window_for(database.dialect) if late_commit_window is None else late_commit_window
        self._book = HyperbandBook(window)
        self._insert_rung = _INSERT_RUNG[database.dialect]
        self._record_value = _RECORD_VALUE[database.dialect]
        self._pruners: dict[int, SeededHyperbandPruner | NopPruner | None] = {}

    def report(
        self,
        study_id: int,
        spec: StudySpec,
        trial_id: int,
        reports: list[tuple[int, float]],
        lease: str | None,
        first: Callable[[Session], None] | None = None,
    ) -> tuple[Decision, int] | None:
        """Record ``reports`` ((step, value), steps rising) in one transaction, deciding each in
        turn: the last one's decision and how many were recorded (a prune ends the trial at its
        report; later ones are dropped). ``first``: what else the transaction writes, before the
        reports. ``None`` where this path does not apply (at most the lease was renewed;
        ``first`` was not called)."""
        pruner = self._pruner(study_id, spec)
        if pruner is None or not reports:
            return None
        with self._database.session() as session:
            # The trial's row first, locked as Optuna's own writes lock it (PostgreSQL): a finish
            # committed meanwhile is seen ("is complete", not a report recorded on a finished
            # trial). On SQLite the read takes no lock: a completion committed between it and
            # the lease's renewal (the first write) took the lease, and the renewal is refused.
            number, last_step = _running_trial_steps(session, trial_id)
            self._leases.renew_in(session, trial_id, lease)
            if last_step is not None and reports[0][0] < last_step:
                return None  # Optuna decides on the latest step: its general path
            if first is not None:
                first(session)
            decide = self._decider(session, study_id, spec, pruner, trial_id, number)
            decision, recorded = NO_DECISION, 0
            for step, value in reports:
                decision = decide(step, value)
                row = {"value_trial_id": trial_id, "value_step": step, "new_value": value}
                session.connection().execute(self._record_value, row)
                self._record_rungs(session, study_id, trial_id, decision.new_rungs)
                recorded += 1
                if decision.prune:
                    self._end_pruned(session, trial_id, value, lease)
                    break
        return decision, recorded

    def _record_rungs(
        self, session: Session, study_id: int, trial_id: int, new_rungs: dict[int, float]
    ) -> None:
        """Write the rungs the report completes. One the trial has already means the book
        missed a row (committed late, past its window): the decision may be wrong. The book is
        read afresh from the database, and the report is refused with 503 (the worker sends it
        again, and it is decided on every rung)."""
        for rung, value in new_rungs.items():
            row = {
                "trial_id": trial_id,
                "key": f"{RUNG_PREFIX}{rung}",
                "value_json": json.dumps(value),
            }
            if session.connection().execute(self._insert_rung, row).first() is None:
                self._book.forget(study_id)
                raise Unavailable(
                    f"trial {trial_id}: the pruning bookkeeping was behind; send the report again",
                    field="trial_id",
                )

    def _end_pruned(self, session: Session, trial_id: int, value: float, lease: str | None) -> None:
        """The trial ends pruned, its value the report's (as Optuna's ``tell`` records a pruned
        trial: its last intermediate value), and its lease goes: in the report's transaction,
        where Optuna's storage took one for the state and the lease's end another."""
        if not self._trial_rows.mark_ended(session, trial_id, TrialState.PRUNED):
            raise Conflict(f"trial {trial_id} ended meanwhile", field="trial_id")
        self._trial_rows.record_completion(session, trial_id, [value], {})
        self._leases.release_in(session, trial_id, lease)

    def first_decision_step(self, study_id: int, spec: StudySpec, number: int) -> int | None:
        """The first step whose report can prune trial ``number`` before it reports: its
        bracket's first rung under Hyperband, none without a pruner, and under any other pruner
        the first step there is (each report may be pruned)."""
        pruner = self._pruner(study_id, spec)
        if isinstance(pruner, NopPruner):
            return None
        if isinstance(pruner, SeededHyperbandPruner):
            return pruner.rung_step(pruner.bracket_of(number), 0)
        return FIRST_STEP

    def forget(self, study_id: int) -> None:
        """Drop what is kept of a deleted study."""
        self._book.forget(study_id)
        self._pruners.pop(study_id, None)

    def _decider(
        self,
        session: Session,
        study_id: int,
        spec: StudySpec,
        pruner: SeededHyperbandPruner | NopPruner,
        trial_id: int,
        number: int,
    ) -> Callable[[int, float], Decision]:
        """Decides the trial's reports in turn, from the rungs as they were read once: each
        report starts from the rungs the earlier ones of the same batch completed."""
        if not isinstance(pruner, SeededHyperbandPruner):
            return lambda step, value: NO_DECISION
        rungs = self._book.refresh(session.connection(), study_id, pruner)
        bracket = pruner.bracket_of(number)
        direction = StudyDirection[spec.direction.upper()]
        completed_here = 0

        def decide(step: int, value: float) -> Decision:
            nonlocal completed_here
            decision = self._book.decide(
                rungs, pruner, bracket, trial_id, step, value, direction, completed_here
            )
            completed_here += len(decision.new_rungs)
            return decision

        return decide

    def _pruner(self, study_id: int, spec: StudySpec) -> SeededHyperbandPruner | NopPruner | None:
        if study_id not in self._pruners:
            pruner = build_pruner(spec)
            usable = isinstance(pruner, NopPruner) or (
                isinstance(pruner, SeededHyperbandPruner) and pruner.ready()
            )
            self._pruners[study_id] = pruner if usable else None  # type: ignore[assignment]
        return self._pruners[study_id]


def _running_trial_steps(session: Session, trial_id: int) -> tuple[int, int | None]:
    """The trial's number and its latest reported step; ``Conflict`` unless it is running.
    One query of plain columns (no ORM objects: this runs on every report), holding the trial's
    row to the end of the transaction (PostgreSQL; SQLite has one writer at a time)."""
    row = session.connection().execute(_RUNNING_TRIAL_STEPS, {"trial_id": trial_id}).first()
    if row is None:
        raise Conflict(f"trial {trial_id} is deleted, not running", field="trial_id")
    if row.state != TrialState.RUNNING:
        raise not_running(session.connection(), trial_id, row.state)
    return int(row.number), row.last_step
