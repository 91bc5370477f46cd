"""The service's one entry point: everything the API (or a test) may ask of it.

``tenant`` scopes a call to one tenant's studies (another tenant's objects are not found);
``None`` means no scope: the workers, which serve every tenant, and the service itself.
"""

from __future__ import annotations

import contextlib
import logging
import warnings
from datetime import datetime
from typing import cast

import optuna
from optuna.exceptions import DuplicatedStudyError
from optuna.study import StudyDirection
from optuna.trial import TrialState
from sqlalchemy import text

from service import webhooks
from service.artifacts import CheckpointStore
from service.datasets import REGISTERED_PREFIX, DatasetStore
from service.datasets.splits import check_image_model, check_split
from service.datasets.usage import studies_using
from service.dispatch import TrialAssignment, TrialDispatcher
from service.epoch_metrics import EpochRecord
from service.errors import Conflict, InvalidSpec, NotFound
from service.jobs import JobDispatcher, StudyJobs
from service.lease_reaper import STALLED_CREATION, LeaseReaper
from service.leases import LeaseStore, LeaseTimes
from service.report_path import ClaimedTrial, ReportAnswer
from service.spec.study_spec import StudySpec
from service.spec.validation import check_budget_extension, check_study_spec
from service.storage.database import Database
from service.storage.optuna_rows import FAIL_REASON_ATTR
from service.study_names import fallback_optuna_name, name_taken, optuna_study_name
from service.study_store import StudyState, StudyStore
from service.tokens import DEFAULT_TENANT
from service.trainer_catalog import TrainerCatalog
from service.trial_lifecycle import SEED_ATTR, TrialLifecycle
from service.trial_provenance import TrialProvenance
from service.views import (
    BestView,
    ParetoView,
    StudyView,
    TrialView,
    best_view,
    study_view,
    trial_view,
)
from service.warm_start import WARM_START_ATTR, WarmStartView, check_source, copy_trials

logger = logging.getLogger(__name__)
# A study that may still start trials; of those, the ones a pause or a resume may change (a
# preparing study's state is its creation's, then its pre-flight checks', to change).
LIVE_STATES = (StudyState.PREPARING, StudyState.RUNNING, StudyState.PAUSED)
USER_STATES = (StudyState.RUNNING, StudyState.PAUSED)

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
        self.lease_ttl_s = lease_times.ttl_s
        leases = LeaseStore(database, lease_times)
        self.trials = TrialLifecycle(database, self._store, dispatcher, leases)
        self._reaper = LeaseReaper(self.trials, self._store, self._take_back_stalled)
        self.datasets = DatasetStore(database)
        self.checkpoints = CheckpointStore(database)
        job_dispatcher = dispatcher if hasattr(dispatcher, "dispatch_job") else None
        self.jobs = StudyJobs(
            database,
            self._store,
            self.trials,
            cast(JobDispatcher | None, job_dispatcher),
            catalog,
            lease_times,
        )

    def create_study(self, spec: StudySpec, tenant: str = DEFAULT_TENANT) -> StudyView:
        """Check, record and start a study of ``tenant``: its first trials are dispatched at once.
        It is recorded preparing, and runs once its warm start and enqueued trials are written:
        the reaper, which refills running studies that hold no lease, starts none of its trials
        before them (nor before its pre-flight checks, where they must pass first)."""
        spec = check_study_spec(spec, self._catalog)
        if spec.webhook is not None:
            webhooks.check_receiver(str(spec.webhook.url))
        source = self._warm_start_source(spec, tenant)
        dataset = self._checked_dataset(spec, tenant)
        self.jobs.check_spec(spec)
        study_id, optuna_name = self._create_optuna_study(spec, tenant)
        try:
            self._store.add(study_id, spec, tenant, optuna_name, state=StudyState.PREPARING)
        except BaseException:  # no Optuna study left without its record, holding the name
            self._storage.delete_study(study_id)
            raise
        try:
            # Again now that the study is recorded: a deletion of its data set that began
            # after the first look either finds the study, or is found here.
            self.datasets.confirm_reference(dataset, tenant, field="trainer.dataset")
            self._prepare_study(study_id, spec, source)
            self.trials.fill_slots(study_id)
        except BaseException:
            self._take_back(study_id)
            raise
        return self.study(study_id)

    def _checked_dataset(self, spec: StudySpec, tenant: str) -> object:
        """The trainer's ``dataset`` setting, once checked: the registered data set it names
        exists, and the trainer's split of the data can be made."""
        if spec.trainer is None:
            return None
        dataset = spec.trainer.settings().get("dataset")
        registered = self.datasets.check_reference(dataset, tenant, field="trainer.dataset")
        model = self._catalog.settings_model(spec.trainer.name)
        if model is not None:  # a built-in trainer's, with the defaults the study left out
            settings = model.model_validate(spec.trainer.settings()).model_dump()
            check_split(settings, registered.class_counts if registered else None)
            check_image_model(settings, registered.n_features if registered else None)
        return dataset

    def _prepare_study(self, study_id: int, spec: StudySpec, source: StudySpec | None) -> None:
        """A recorded study's warm start, enqueued trials and pre-flight checks; then it runs,
        unless its checks hold it until they pass. The checks go last: their job's end may set
        the study running (``StudyJobs``), which it must not before the rest is written."""
        if source is not None:
            self._warm_start(study_id, spec, source)
        for params in spec.enqueue:
            self._storage_study(study_id).enqueue_trial(params, skip_if_exists=False)
        if self.jobs.start_preflight(study_id, spec):
            return  # held until its checks pass
        held = [StudyState.PREPARING]  # not where it was stopped meanwhile
        if not self._store.set_state(study_id, StudyState.RUNNING, when=held, quietly=True):
            raise Conflict(
                f"study {study_id} was stopped while it was made (by a user, or by the lease "
                f"reaper: its creation took longer than {STALLED_CREATION}); make it again",
                field="name",
            )

    def _take_back(self, study_id: int) -> None:
        """A creation that failed part way (a database error in its warm start's copy, its
        enqueued trials or its first trials) is deleted, so that the error the client gets means
        that no study was made: a retry makes it anew instead of finding its name taken, and no
        study is left with part of its warm start. Where the delete fails too (the database is
        out of reach), the study stays as far as it got, and the log says so."""
        try:
            self.delete(study_id)
        except Exception:
            logger.exception("study %s: its creation failed and could not be taken back", study_id)

    def studies(self, tenant: str | None = None) -> list[StudyView]:
        """Every study, newest first (one deleted while the list is made is left out)."""
        views = []
        for record in self._store.all(tenant):
            try:
                views.append(self.study(record.study_id))
            except (NotFound, KeyError):
                logger.warning("study %s left out of the list: deleted meanwhile", record.study_id)
        return views

    def study(self, study_id: int, tenant: str | None = None) -> StudyView:
        """A study's state, counts and best so far."""
        record = self._store.get(study_id, tenant)
        spec = self._store.spec_of(record)
        counts = dict(self.trials.counts(study_id).by_state)  # not the tally's own
        counts["queued"] = min(self.trials.leases.queued(study_id), counts["running"])
        view = study_view(record, spec, counts, self._best_or_none(study_id, spec))
        view = view.model_copy(update={"preflight": self.jobs.preflight(study_id)})
        if spec.warm_start is None:
            return view
        attrs = self._storage.get_study_system_attrs(study_id)
        warm = attrs.get(WARM_START_ATTR)
        return view.model_copy(update={"warm_start": warm and WarmStartView(**warm)})

    def delete_dataset(self, reference: str, tenant: str) -> None:
        """Delete one of the tenant's data sets; ``Conflict`` naming the studies that use it
        (their trials and jobs read it: delete them first)."""
        dataset = self.datasets.get(reference, tenant)
        with self.datasets.deleting(dataset.dataset_id, tenant) as session:  # read after it
            named = self._store.specs_holding(session, tenant, REGISTERED_PREFIX)
            users = studies_using(dataset, named)
            if users:
                named_ids = ", ".join(str(study_id) for study_id in users[:10])
                problem = f"in use by the studies with ids {named_ids}: delete them first"
                raise Conflict(problem, field="reference")

    def study_tenant(self, study_id: int, tenant: str | None = None) -> str:
        """The tenant a study belongs to (``NotFound`` where ``tenant`` may not see it)."""
        return self._store.get(study_id, tenant).tenant

    def study_trials(self, study_id: int, tenant: str | None = None) -> list[TrialView]:
        """Every trial of a study, in order."""
        self._store.get(study_id, tenant)
        trials = self._storage.get_all_trials(study_id, deepcopy=False)
        return [trial_view(trial, FAIL_REASON_ATTR, SEED_ATTR) for trial in trials]

    def best(self, study_id: int, tenant: str | None = None) -> BestView:
        """The best complete (and feasible) trial; ``NotFound`` while there is none, ``Conflict``
        for a study of several objectives, which has a Pareto front instead."""
        spec = self._store.spec_of(self._store.get(study_id, tenant))
        if spec.multi_objective:
            raise Conflict(
                f"study {study_id} has {len(spec.objective_list())} objectives: no single trial "
                f"is best on all of them; GET /studies/{study_id}/pareto lists the trials that "
                "no other trial beats on every objective",
                field="study_id",
            )
        best = self._best_or_none(study_id, spec)
        if best is None:
            feasible = " feasible" if spec.constraints else ""
            raise NotFound(
                f"study {study_id} has no{feasible} complete trial yet", field="study_id"
            )
        return best

    def pareto(self, study_id: int, tenant: str | None = None) -> ParetoView:
        """The Pareto front: the feasible complete trials no other beats on every objective (for
        one objective, the best trial or trials)."""
        spec = self._store.spec_of(self._store.get(study_id, tenant))
        front = self._storage_study(study_id).best_trials
        front.sort(key=lambda trial: trial.number)
        return ParetoView(
            study_id=study_id,
            objectives=spec.objective_list(),
            trials=[trial_view(trial, FAIL_REASON_ATTR, SEED_ATTR) for trial in front],
        )

    def stop(self, study_id: int, tenant: str | None = None) -> StudyView:
        """Start no new trial; running trials finish and are kept."""
        self._store.get(study_id, tenant)
        with self.trials.locks.hold(study_id):  # after a refill in progress: none starts after
            self._store.set_state(study_id, StudyState.STOPPED, when=LIVE_STATES)
        self.trials.mirrors.forget(study_id)
        return self.study(study_id)

    def pause(self, study_id: int, tenant: str | None = None) -> StudyView:
        """Start no new trial until resumed; running trials finish."""
        self._store.get(study_id, tenant)
        with self.trials.locks.hold(study_id):
            if not self._store.set_state(study_id, StudyState.PAUSED, when=USER_STATES):
                raise self._unchanged(study_id, "paused")
        return self.study(study_id)

    def resume(self, study_id: int, tenant: str | None = None) -> StudyView:
        """Start trials again where the budget allows."""
        self._store.get(study_id, tenant)
        with self.trials.locks.hold(study_id):
            if not self._store.set_state(study_id, StudyState.RUNNING, when=USER_STATES):
                raise self._unchanged(study_id, "resumed")
        self.trials.fill_slots(study_id)
        return self.study(study_id)

    def _unchanged(self, study_id: int, change: str) -> Conflict:
        """Why a pause or a resume left the study as it was."""
        state = self._store.get(study_id).state
        if state == StudyState.PREPARING:
            return Conflict(
                f"study {study_id} is preparing: its trials start once it is made and its "
                f"pre-flight checks (where they must pass first) have passed; it cannot be {change} "
                "before then, but it can be stopped",
                field="study_id",
            )
        return Conflict(f"a {state} study cannot be {change}", field="study_id")

    def extend(self, study_id: int, n_trials: int, tenant: str | None = None) -> StudyView:
        """Raise the budget to ``n_trials`` in all; new trials start at once where slots allow."""
        with self.trials.locks.hold(study_id):
            record = self._store.get(study_id, tenant)
            spec = self._store.spec_of(record)
            if record.state == StudyState.STOPPED:
                raise Conflict("a stopped study cannot be extended", field="study_id")
            check_budget_extension(spec, n_trials)
            self._store.extend(study_id, n_trials)
        self.trials.fill_slots(study_id)
        return self.study(study_id)

    def delete(self, study_id: int, tenant: str | None = None) -> None:
        """Delete the study with its trials; a worker still running one is refused from then on.
        The study stops first (quietly: no webhook), so a delete that does not finish leaves it
        stopped, not running without its leases (the reaper would run its trials again). A
        delete cut short (the process stopped, the database lost) can be made again: the
        service's record, by which the study is found, goes last."""
        self._store.get(study_id, tenant)
        with self.trials.locks.hold(study_id):
            self._store.get(study_id, tenant)  # another delete held the lock first: 404
            self._store.set_state(study_id, StudyState.STOPPED, when=LIVE_STATES, quietly=True)
            self.trials.leases.release_study(study_id)
            self._delete_optuna_study(study_id)
            self.checkpoints.delete_study(study_id)
            self.jobs.delete_study(study_id)
            self._store.delete(study_id)
            self.trials.hyperband_reports.forget(study_id)
            self.trials.mirrors.forget(study_id)
            self.trials.tallies.forget(study_id)

    def _delete_optuna_study(self, study_id: int) -> None:
        """Optuna's rows of the study go. Optuna's delete swallows a failed one (a trial's row
        written meanwhile breaks its foreign key on PostgreSQL): the study found still there is
        a ``Conflict``, and the service's own record stays, so a second delete finishes it."""
        with contextlib.suppress(KeyError):  # gone already: an earlier delete got this far
            self._storage.delete_study(study_id)
        try:
            self._storage.get_study_name_from_id(study_id)
        except KeyError:
            return
        raise Conflict(
            f"study {study_id} was not deleted (stopped): one of its trials was written meanwhile; "
            "delete it again",
            field="study_id",
        )

    def ask(
        self, study_id: int, tenant: str | None = None, ask_key: str | None = None
    ) -> TrialAssignment:
        """Start a trial for a program that trains its own models; an ask with the
        ``Idempotency-Key`` (``ask_key``) of one whose trial still runs gets that trial again."""
        if tenant is not None and self._store.tenant_of(study_id) != tenant:
            raise NotFound(f"no study with id {study_id}", field="study_id")
        return self.trials.ask(study_id, ask_key)  # NotFound where the study has no record

    def claim(self, trial_id: int, holder: str, tenant: str | None = None) -> ClaimedTrial:
        """A worker starts a trial it was sent; the lease token it reports with, and the first
        step whose report can prune the trial."""
        self._visible(trial_id, tenant)
        return self.trials.claim(trial_id, holder)

    def heartbeat(self, trial_id: int, lease: str | None, tenant: str | None = None) -> None:
        """Renew a running trial's lease between reports."""
        self._writable(trial_id, tenant, lease)
        self.trials.heartbeat(trial_id, lease)

    def report(
        self,
        trial_id: int,
        step: int,
        value: float,
        lease: str | None = None,
        tenant: str | None = None,
    ) -> bool:
        """Record an epoch's validation value; ``True`` means prune."""
        return self.report_answer(trial_id, step, value, lease, tenant).prune

    def report_answer(
        self,
        trial_id: int,
        step: int,
        value: float,
        lease: str | None = None,
        tenant: str | None = None,
    ) -> ReportAnswer:
        """Record an epoch's validation value; whether to prune, and the next step that can."""
        return self.report_many(trial_id, [(step, value)], lease, tenant)

    def report_many(
        self,
        trial_id: int,
        reports: list[tuple[int, float]],
        lease: str | None = None,
        tenant: str | None = None,
        provenance: TrialProvenance | None = None,
    ) -> ReportAnswer:
        """Record several epochs' values (step, value) in order, each as :meth:`report_answer`
        does; the last one's answer. A prune ends the trial there: later values are dropped.
        ``provenance``: what the worker states about the trial, recorded with them. Reports sent
        again after they pruned the trial (their answer was lost) are answered the prune again."""
        self._writable(trial_id, tenant, lease)
        try:
            return self.trials.report_many(trial_id, reports, lease, provenance)
        except Conflict:
            if self._pruned_by(trial_id, reports):
                return ReportAnswer(prune=True, next_decision_step=None)
            raise

    def _pruned_by(self, trial_id: int, reports: list[tuple[int, float]]) -> bool:
        """Whether ``reports`` are those that pruned the trial, sent again: each recorded with
        its value, up to one whose value the pruned trial ended with (steps may come in any
        order: the pruning one need not be the highest recorded)."""
        try:
            trial = self._storage.get_trial(trial_id)
        except KeyError:  # deleted meanwhile
            return False
        if trial.state != TrialState.PRUNED or trial.value is None:
            return False
        for step, value in reports:
            if trial.intermediate_values.get(step) != value:
                return False
            if value == trial.value:
                return True
        return False

    def complete(
        self,
        trial_id: int,
        state: TrialState,
        value: float | None,
        reason: str | None,
        lease: str | None = None,
        tenant: str | None = None,
        *,
        values: list[float] | None = None,
        figures: dict[str, float] | None = None,
        epoch_metrics: list[EpochRecord] | None = None,
        last_reports: list[tuple[int, float]] | None = None,
        provenance: TrialProvenance | None = None,
    ) -> TrialView:
        """Finish a trial (``values``: one per objective; ``figures``: the trainer's named results;
        ``epoch_metrics``: its per-epoch records, kept on the trial; ``last_reports``: a complete
        trial's epochs' values not reported yet, recorded with it)."""
        self._writable(trial_id, tenant, lease)
        trial = self.trials.complete(
            trial_id,
            state,
            value,
            reason,
            lease,
            values=values,
            figures=figures,
            epoch_metrics=epoch_metrics,
            last_reports=last_reports,
            provenance=provenance,
        )
        return trial_view(trial, FAIL_REASON_ATTR, SEED_ATTR)

    def expire_leases(self, now: datetime | None = None) -> list[int]:
        """Fail (and retry) the trials whose lease ran out by ``now`` (default: now); their ids.
        Study jobs past their time fail too (a held study's trials start), and creations that
        stopped part way are taken back (``LeaseReaper``)."""
        self.jobs.expire(now)
        return self._reaper.expire(now)

    def _take_back_stalled(self, study_id: int) -> None:
        """Delete a study whose creation stopped part way, as a creation that fails is (its
        client got no answer, and a retry of the request finds the name free again), unless its
        checks hold it, or it left ``preparing`` since the reaper listed it (a slow creation set
        it running): it is stopped first, from preparing only."""
        if self.jobs.waits_on_preflight(study_id):
            return
        with self.trials.locks.hold(study_id):
            held = [StudyState.PREPARING]
            stopped = self._store.set_state(study_id, StudyState.STOPPED, when=held, quietly=True)
        if stopped:
            logger.warning("study %s: its creation stopped part way; deleted", study_id)
            self.delete(study_id)

    def record_provenance(
        self, trial_id: int, update: TrialProvenance, lease: str | None, tenant: str | None = None
    ) -> TrialView:
        """Merge what the worker states about a running trial (seed, trainer, data) into its record."""
        self._writable(trial_id, tenant, lease)
        self.trials.record_provenance(trial_id, update, lease)
        return trial_view(self._storage.get_trial(trial_id), FAIL_REASON_ATTR, SEED_ATTR)

    def put_checkpoint(
        self, trial_id: int, content: bytes, lease: str | None, tenant: str | None = None
    ) -> str:
        """Keep a running trial's best checkpoint (safetensors); its SHA-256."""
        self._writable(trial_id, tenant, lease)
        digest = self.checkpoints.checked(content)
        study_id = self.trials.study_of(trial_id)
        with self.trials.running_trial_transaction(trial_id, lease) as session:
            return self.checkpoints.put_in(session, study_id, trial_id, content, digest)

    def checkpoint(self, trial_id: int, tenant: str | None = None) -> bytes:
        """A trial's checkpoint; ``NotFound`` if it has none."""
        self._visible(trial_id, tenant)
        return self.checkpoints.get(trial_id)

    def best_model(self, study_id: int, tenant: str | None = None) -> tuple[BestView, bytes]:
        """The best trial and its checkpoint."""
        best = self.best(study_id, tenant)
        if best.copied_from is not None:
            raise NotFound(
                f"the best trial ({best.trial_id}) is a warm start's copy of trial "
                f"{best.copied_from} of the earlier study, and its checkpoint is there: GET "
                f"/trials/{best.copied_from}/checkpoint",
                field="trial_id",
            )
        return best, self.checkpoints.get(best.trial_id)

    def check_database(self) -> None:
        """Raise ``Unavailable`` when the database does not answer."""
        with self._database.session() as session:
            session.execute(text("SELECT 1"))

    def _writable(self, trial_id: int, tenant: str | None, lease: str | None) -> None:
        """A trial ``tenant`` sees (``None``: a worker, which sees all) and may write to: a
        user's write without a lease goes only to a trial a program asked for."""
        self._visible(trial_id, tenant)
        if tenant is not None and lease is None:
            self.trials.leases.check_unleased_write(trial_id)

    def _visible(self, trial_id: int, tenant: str | None) -> None:
        if tenant is not None and self._store.tenant_of(self.trials.study_of(trial_id)) != tenant:
            raise NotFound(f"no trial with id {trial_id}", field="trial_id")

    def _create_optuna_study(self, spec: StudySpec, tenant: str) -> tuple[int, str]:
        """A new Optuna study for ``tenant``'s ``spec``: its id and its Optuna name
        (``service.study_names``). ``Conflict`` where the tenant has a study of the name."""
        directions = [StudyDirection[direction.upper()] for direction in spec.directions()]
        optuna_name = optuna_study_name(tenant, spec.name)
        study_id = self._new_optuna_study(directions, optuna_name)
        if study_id is None:  # the tenant's own study of the name, or an older one holds it
            optuna_name = self._fallback_optuna_name(spec.name, tenant)
            study_id = self._new_optuna_study(directions, optuna_name)
        if study_id is None:
            raise name_taken(spec.name)
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
                optuna.load_study(study_name=optuna_name, storage=self._storage).set_metric_names(
                    [objective.metric for objective in spec.objective_list()]
                )
        except BaseException:  # no Optuna study left without its record, holding the name
            self._storage.delete_study(study_id)
            raise
        return study_id, optuna_name

    def _new_optuna_study(self, directions: list[StudyDirection], optuna_name: str) -> int | None:
        """The id of a new Optuna study named ``optuna_name``; ``None`` where the name is held."""
        try:
            return self._storage.create_new_study(directions, optuna_name)
        except DuplicatedStudyError:
            return None

    def _fallback_optuna_name(self, name: str, tenant: str) -> str:
        """The Optuna name to try once the first is held: only where another tenant's recorded
        study from before names were per tenant holds it (``Conflict`` otherwise: the tenant's own
        study of the name, one being made at this moment, or no other name to try)."""
        fallback = fallback_optuna_name(tenant, name)
        held_by_another = self._store.optuna_name_held_by_another(
            optuna_study_name(tenant, name), tenant
        )
        if fallback is None or not held_by_another:
            raise name_taken(name)
        return fallback

    def _warm_start_source(self, spec: StudySpec, tenant: str) -> StudySpec | None:
        """The earlier study a warm start copies from (of the same tenant), checked against ``spec``."""
        if spec.warm_start is None:
            return None
        try:
            source = self._store.spec_of(self._store.get(spec.warm_start.study_id, tenant))
        except NotFound:
            raise InvalidSpec(
                f"no study with id {spec.warm_start.study_id} to start from",
                field="warm_start.study_id",
            ) from None
        check_source(spec, source)
        return source

    def _warm_start(self, study_id: int, spec: StudySpec, source: StudySpec) -> None:
        assert spec.warm_start is not None
        source_id = spec.warm_start.study_id
        source_trials = self._storage.get_all_trials(source_id, deepcopy=False)
        report = copy_trials(spec, source_trials, source_id, self._storage_study(study_id))
        self._storage.set_study_system_attr(study_id, WARM_START_ATTR, report.model_dump())

    def optuna_study(self, study_id: int, tenant: str | None = None) -> optuna.Study:
        """The study as Optuna loads it (read it only: for plots and importances)."""
        self._store.get(study_id, tenant)
        return self._storage_study(study_id)

    def _storage_study(self, study_id: int) -> optuna.Study:
        """The study as Optuna loads it, by the name it has in Optuna's tables."""
        return optuna.load_study(
            study_name=self._store.optuna_name(study_id), storage=self._storage
        )

    def _best_or_none(self, study_id: int, spec: StudySpec) -> BestView | None:
        """The best complete trial, feasible where the study has constraints; none for several
        objectives."""
        if spec.multi_objective:
            return None
        try:
            if spec.constraints:
                trial = self._storage_study(study_id).best_trial
            else:
                trial = self._storage.get_best_trial(study_id)
        except ValueError:
            return None
        return best_view(study_id, trial)
