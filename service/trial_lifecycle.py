"""A trial's life: started (asked), reported each epoch, completed, pruned or failed.

The sampler is asked when a slot frees up, not when the study is submitted, so every new trial
learns from every finished one; the count-then-create step runs under the study's lock, so the
budget holds whatever the number of workers.
"""

from __future__ import annotations

import logging
import math
import warnings

import optuna
from optuna.trial import FrozenTrial, TrialState
from sqlalchemy import text

from service.dispatch import TrialAssignment, TrialDispatcher
from service.errors import BudgetExhausted, Conflict, InvalidSpec, NotFound
from service.policies import build_pruner, build_sampler, trial_seed
from service.spec.study_spec import StudySpec
from service.storage.database import Database
from service.storage.study_lock import StudyLocks
from service.study_store import StudyState, StudyStore
from service.trial_counts import TrialCounts, is_done, why_no_trial_may_start

FAIL_REASON_ATTR = "hpo:fail_reason"
SEED_ATTR = "hpo:seed"
logger = logging.getLogger(__name__)


class TrialLifecycle:
    """Starts, reports and finishes trials; sends new ones to the dispatcher as slots free up."""

    def __init__(self, database: Database, store: StudyStore, dispatcher: TrialDispatcher) -> None:
        self._database = database
        self._storage = database.optuna
        self._store = store
        self._dispatcher = dispatcher
        self._locks = StudyLocks(database.engine)
        self._study_of_trial: dict[int, int] = {}

    def ask(self, study_id: int) -> TrialAssignment:
        """Start one trial for an external program; ``BudgetExhausted`` when none may start."""
        with self._locks.hold(study_id):
            record = self._store.get(study_id)
            if record.state != StudyState.RUNNING:
                raise BudgetExhausted(f"the study is {record.state}", field="study_id")
            spec = self._store.spec(study_id)
            counts = self.counts(study_id)
            reason = why_no_trial_may_start(spec, counts, record.created_at)
            if reason is not None:
                raise BudgetExhausted(f"no trial may start: {reason}", field="study_id")
            return self._create_trial(study_id, spec, counts.total)

    def fill_slots(self, study_id: int) -> list[TrialAssignment]:
        """Start and dispatch trials while the budget allows; mark the study complete when done."""
        with self._locks.hold(study_id):
            record = self._store.get(study_id)
            if record.state != StudyState.RUNNING:
                return []
            spec = self._store.spec(study_id)
            counts = self.counts(study_id)
            started: list[TrialAssignment] = []
            while spec.trainer is not None and not why_no_trial_may_start(
                spec, counts, record.created_at
            ):
                assignment = self._create_trial(study_id, spec, counts.total)
                counts = counts.with_one_started()
                if not self._send(assignment):
                    break
                started.append(assignment)
            if is_done(spec, self.counts(study_id), record.created_at):
                self._store.set_state(study_id, StudyState.COMPLETE)
            return started

    def report(self, trial_id: int, step: int, value: float) -> bool:
        """Record an epoch's value; answer whether to prune. A pruned trial is finished here."""
        _require_finite(value, "value")
        trial = self._running_trial(trial_id)
        study_id = self.study_of(trial_id)
        self._storage.set_trial_intermediate_value(trial_id, step, value)
        spec = self._store.spec(study_id)
        study = self._optuna_study(spec, n_trials_so_far=0)
        updated = self._storage.get_trial(trial_id)
        if not study.pruner.prune(study, updated):
            return False
        self._storage.set_trial_state_values(trial_id, TrialState.PRUNED, [value])
        logger.info("trial %s of study %s pruned at step %s", trial.number, study_id, step)
        self.fill_slots(study_id)
        return True

    def complete(
        self, trial_id: int, state: TrialState, value: float | None, reason: str | None
    ) -> FrozenTrial:
        """Finish a trial as complete (with its value), pruned or failed (with a reason)."""
        trial = self._trial(trial_id)
        if trial.state.is_finished():
            return self._repeated_completion(trial, state, value)
        values = self._final_values(trial, state, value)
        if state == TrialState.FAIL:
            self._storage.set_trial_system_attr(trial_id, FAIL_REASON_ATTR, reason or "failed")
        self._storage.set_trial_state_values(trial_id, state, values)
        self.fill_slots(self.study_of(trial_id))
        return self._storage.get_trial(trial_id)

    def counts(self, study_id: int) -> TrialCounts:
        """The study's trials counted by state."""
        return TrialCounts.of(self._storage.get_all_trials(study_id, deepcopy=False))

    def study_of(self, trial_id: int) -> int:
        """The id of the study a trial belongs to (a fixed fact, kept in memory once read)."""
        cached = self._study_of_trial.get(trial_id)
        if cached is not None:
            return cached
        with self._database.engine.connect() as connection:
            row = connection.execute(
                text("SELECT study_id FROM trials WHERE trial_id = :trial_id"),
                {"trial_id": trial_id},
            ).first()
        if row is None:
            raise NotFound(f"no trial with id {trial_id}", field="trial_id")
        self._study_of_trial[trial_id] = int(row[0])
        return int(row[0])

    def _create_trial(
        self, study_id: int, spec: StudySpec, n_trials_so_far: int
    ) -> TrialAssignment:
        study = self._optuna_study(spec, n_trials_so_far)
        distributions = {name: param.distribution() for name, param in spec.space.items()}
        trial = study.ask(fixed_distributions=distributions)
        trial_id = (
            trial._trial_id
        )  # Optuna keeps the storage id private; it is the trial's key here.
        seed = trial_seed(spec, trial.number)
        self._storage.set_trial_system_attr(trial_id, SEED_ATTR, seed)
        self._study_of_trial[trial_id] = study_id
        trainer = spec.trainer.model_dump() if spec.trainer else None
        return TrialAssignment(
            study_id=study_id,
            trial_id=trial_id,
            number=trial.number,
            params=trial.params,
            trainer=trainer,
            seed=seed,
        )

    def _send(self, assignment: TrialAssignment) -> bool:
        try:
            self._dispatcher.dispatch(assignment)
        except Exception as error:  # any broker failure: the trial must not stay RUNNING unsent
            logger.error("could not dispatch trial %s: %s", assignment.trial_id, error)
            reason = f"could not be sent to the workers: {error}"
            self._storage.set_trial_system_attr(assignment.trial_id, FAIL_REASON_ATTR, reason)
            self._storage.set_trial_state_values(assignment.trial_id, TrialState.FAIL)
            return False
        return True

    def _optuna_study(self, spec: StudySpec, n_trials_so_far: int) -> optuna.Study:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            return optuna.Study(
                study_name=spec.name,
                storage=self._storage,
                sampler=build_sampler(spec, n_trials_so_far),
                pruner=build_pruner(spec),
            )

    def _trial(self, trial_id: int) -> FrozenTrial:
        self.study_of(trial_id)
        return self._storage.get_trial(trial_id)

    def _running_trial(self, trial_id: int) -> FrozenTrial:
        trial = self._trial(trial_id)
        if trial.state != TrialState.RUNNING:
            raise Conflict(
                f"trial {trial_id} is {trial.state.name.lower()}, not running", field="trial_id"
            )
        return trial

    def _final_values(
        self, trial: FrozenTrial, state: TrialState, value: float | None
    ) -> list[float] | None:
        if state == TrialState.COMPLETE:
            if value is None:
                raise InvalidSpec("a complete trial needs its value", field="value")
            _require_finite(value, "value")
            return [value]
        if state == TrialState.PRUNED:
            if value is not None:
                _require_finite(value, "value")
                return [value]
            last = trial.last_step
            return [trial.intermediate_values[last]] if last is not None else None
        return None

    def _repeated_completion(
        self, trial: FrozenTrial, state: TrialState, value: float | None
    ) -> FrozenTrial:
        """A repeat of the completion already recorded is answered as before (duplicate deliveries)."""
        same_value = value is None or trial.values == [value]
        if trial.state == state and same_value:
            return trial
        raise Conflict(
            f"trial {trial._trial_id} is already {trial.state.name.lower()}", field="trial_id"
        )


def _require_finite(value: float, field: str) -> None:
    if not math.isfinite(value):
        raise InvalidSpec(f"{field} must be a finite number, got {value}", field=field)
