"""The service's one entry point: everything the API (or a test) may ask of it."""

from __future__ import annotations

import warnings

import optuna
from optuna.exceptions import DuplicatedStudyError
from optuna.study import StudyDirection
from optuna.trial import TrialState
from sqlalchemy import text

from service.dispatch import TrialAssignment, TrialDispatcher
from service.errors import Conflict, NotFound
from service.lease_reaper import LeaseReaper
from service.leases import LeaseStore, LeaseTimes
from service.spec.study_spec import StudySpec
from service.spec.validation import check_study_spec
from service.storage.database import Database
from service.study_store import StudyState, StudyStore
from service.trainer_catalog import TrainerCatalog
from service.trial_lifecycle import FAIL_REASON_ATTR, SEED_ATTR, TrialLifecycle
from service.views import BestView, StudyView, TrialView, best_view, study_view, trial_view

DEFAULT_LEASE_TIMES = LeaseTimes(ttl_s=120, dispatch_timeout_s=3600)


class Tuner:
    """Creates and stops studies, starts and finishes trials, and reads them back."""

    def __init__(
        self,
        database: Database,
        dispatcher: TrialDispatcher,
        catalog: TrainerCatalog,
        lease_times: LeaseTimes = DEFAULT_LEASE_TIMES,
    ) -> None:
        self._database = database
        self._storage = database.optuna
        self._store = StudyStore(database)
        self._catalog = catalog
        leases = LeaseStore(database, lease_times)
        self.lease_ttl_s = lease_times.ttl_s
        self.trials = TrialLifecycle(database, self._store, dispatcher, leases)
        self._reaper = LeaseReaper(self.trials, self._store)

    def create_study(self, spec: StudySpec) -> StudyView:
        """Check, record and start a study: its first trials are dispatched at once."""
        spec = check_study_spec(spec, self._catalog)
        study_id = self._create_optuna_study(spec)
        self._store.add(study_id, spec)
        self.trials.fill_slots(study_id)
        return self.study(study_id)

    def studies(self) -> list[StudyView]:
        """Every study, newest first."""
        return [self.study(record.study_id) for record in self._store.all()]

    def study(self, study_id: int) -> StudyView:
        """A study's state, counts and best so far."""
        record = self._store.get(study_id)
        spec = self._store.spec(study_id)
        counts = self.trials.counts(study_id).by_state
        return study_view(record, spec, counts, self._best_or_none(study_id))

    def study_trials(self, study_id: int) -> list[TrialView]:
        """Every trial of a study, in order."""
        self._store.get(study_id)
        trials = self._storage.get_all_trials(study_id, deepcopy=False)
        return [trial_view(trial, FAIL_REASON_ATTR, SEED_ATTR) for trial in trials]

    def best(self, study_id: int) -> BestView:
        """The best complete trial; ``NotFound`` while there is none."""
        self._store.get(study_id)
        best = self._best_or_none(study_id)
        if best is None:
            raise NotFound(f"study {study_id} has no complete trial yet", field="study_id")
        return best

    def stop(self, study_id: int) -> StudyView:
        """Start no new trial; running trials finish and are kept."""
        record = self._store.get(study_id)
        if record.state == StudyState.RUNNING:
            self._store.set_state(study_id, StudyState.STOPPED)
        return self.study(study_id)

    def ask(self, study_id: int) -> TrialAssignment:
        """Start a trial for a program that trains its own models."""
        return self.trials.ask(study_id)

    def claim(self, trial_id: int, holder: str) -> str:
        """A worker starts a trial it was sent; returns the lease token it reports with."""
        return self.trials.claim(trial_id, holder)

    def heartbeat(self, trial_id: int, lease: str | None) -> None:
        """Renew a running trial's lease between reports."""
        self.trials.heartbeat(trial_id, lease)

    def report(self, trial_id: int, step: int, value: float, lease: str | None = None) -> bool:
        """Record an epoch's validation value; ``True`` means prune."""
        return self.trials.report(trial_id, step, value, lease)

    def complete(
        self,
        trial_id: int,
        state: TrialState,
        value: float | None,
        reason: str | None,
        lease: str | None = None,
    ) -> TrialView:
        """Finish a trial."""
        trial = self.trials.complete(trial_id, state, value, reason, lease)
        return trial_view(trial, FAIL_REASON_ATTR, SEED_ATTR)

    def expire_leases(self) -> list[int]:
        """Fail (and retry) the trials whose lease ran out; their ids."""
        return self._reaper.expire()

    def check_database(self) -> None:
        """Raise ``Unavailable`` when the database does not answer."""
        with self._database.session() as session:
            session.execute(text("SELECT 1"))

    def _create_optuna_study(self, spec: StudySpec) -> int:
        direction = StudyDirection[spec.direction.upper()]
        try:
            study_id = self._storage.create_new_study([direction], spec.name)
        except DuplicatedStudyError:
            raise Conflict(f"a study named '{spec.name}' already exists", field="name") from None
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            optuna.load_study(study_name=spec.name, storage=self._storage).set_metric_names(
                [spec.metric]
            )
        return study_id

    def _best_or_none(self, study_id: int) -> BestView | None:
        try:
            trial = self._storage.get_best_trial(study_id)
        except ValueError:
            return None
        return best_view(study_id, trial)
