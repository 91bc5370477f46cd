"""A report under Hyperband in one transaction: renew the lease, record the epoch's value and the
rungs it completes, and decide from the in-memory :class:`~service.hyperband_book.HyperbandBook`.

This is what ``trial.report()`` + ``should_prune()`` do through Optuna's storage, less the
re-reading of every trial: the reads are the lease, the trial's row and the rung attributes
written since the last report; the writes go to Optuna's own tables (its SQLAlchemy models) and
the lease table, committed once. Without a pruner a report is the same transaction with nothing
to decide. Anything else (another pruner, ``max_resource``
unknown, a step reported out of order) answers ``None``: the caller takes Optuna's general path.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

from optuna.pruners import NopPruner
from optuna.storages._rdb import models
from optuna.study import StudyDirection
from optuna.trial import TrialState
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from service.errors import Conflict
from service.hyperband_book import RUNG_PREFIX, Decision, HyperbandBook
from service.leases import LeaseStore
from service.policies import build_pruner
from service.seeded_hyperband import SeededHyperbandPruner
from service.spec.study_spec import StudySpec
from service.storage.database import Database

FINITE = models.TrialIntermediateValueModel.TrialIntermediateValueType.FINITE
NO_DECISION = Decision(False, {}, None)  # without a pruner: never pruned, no step decides


@dataclass(frozen=True)
class ReportAnswer:
    """A report's answer: prune now or not, and the first later step whose report can prune the
    trial (``None``: none can). Reports of earlier steps need not wait for their answers."""

    prune: bool
    next_decision_step: int | None


class HyperbandReports:
    """Records reports of Hyperband studies, deciding them from the rung book, and of studies
    without a pruner (nothing to decide), each in one transaction."""

    def __init__(self, database: Database, leases: LeaseStore) -> None:
        self._database = database
        self._leases = leases
        self._book = HyperbandBook()
        self._pruners: dict[int, SeededHyperbandPruner | NopPruner | None] = {}

    def report(
        self,
        study_id: int,
        spec: StudySpec,
        trial_id: int,
        step: int,
        value: float,
        lease: str | None,
    ) -> Decision | None:
        """Whether to prune (and the next step that can); ``None`` where this path does not apply
        (at most the lease was renewed)."""
        pruner = self._pruner(study_id, spec)
        if pruner is None:
            return None
        with self._database.session() as session:
            # The trial's row first, locked as Optuna's own writes lock it: a finish committed
            # meanwhile is seen ("is complete", not a report recorded on a finished trial).
            number, last_step = _running_trial_steps(session, trial_id)
            self._leases.renew_in(session, trial_id, lease)
            if last_step is not None and step < last_step:
                return None  # Optuna decides on the latest step: its general path
            decision = NO_DECISION
            if isinstance(pruner, SeededHyperbandPruner):
                rungs = self._book.refresh(session.connection(), study_id, spec.name, pruner)
                bracket = pruner.bracket_of(spec.name, number)
                direction = StudyDirection[spec.direction.upper()]
                decision = self._book.decide(
                    rungs, pruner, bracket, trial_id, step, value, direction
                )
            _record_value(session, trial_id, step, value, replace=step == last_step)
            for rung, rung_value in decision.new_rungs.items():
                session.add(
                    models.TrialSystemAttributeModel(
                        trial_id=trial_id,
                        key=f"{RUNG_PREFIX}{rung}",
                        value_json=json.dumps(rung_value),
                    )
                )
        return decision

    def forget(self, study_id: int) -> None:
        """Drop what is kept of a deleted study."""
        self._book.forget(study_id)
        self._pruners.pop(study_id, None)

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
    steps = models.TrialIntermediateValueModel
    last_step = select(func.max(steps.step)).where(steps.trial_id == trial_id).scalar_subquery()
    query = select(models.TrialModel.number, models.TrialModel.state, last_step).where(
        models.TrialModel.trial_id == trial_id
    )
    query = query.with_for_update(of=models.TrialModel)
    row = session.execute(query).first()
    if row is None or row.state != TrialState.RUNNING:
        state = "deleted" if row is None else row.state.name.lower()
        raise Conflict(f"trial {trial_id} is {state}, not running", field="trial_id")
    return int(row.number), row[2]


def _record_value(
    session: Session, trial_id: int, step: int, value: float, *, replace: bool
) -> None:
    if replace:
        row = session.scalars(
            select(models.TrialIntermediateValueModel).where(
                models.TrialIntermediateValueModel.trial_id == trial_id,
                models.TrialIntermediateValueModel.step == step,
            )
        ).one()
        row.intermediate_value = value
        return
    session.add(
        models.TrialIntermediateValueModel(
            trial_id=trial_id, step=step, intermediate_value=value, intermediate_value_type=FINITE
        )
    )
