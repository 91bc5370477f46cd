"""Study jobs: work a worker does for a study beside its trials, sent as Celery tasks by name.

- ``preflight``: the sanity checks, once, before the first trial. With ``refuse_on_failure``
  the study is held (``preparing``) until they finish: passed, it runs; failed (or unable to run),
  it is stopped before its first trial, the reason in ``GET /studies/{id}``. Without it, the
  trials start at once and the checks run beside them. A job no worker finishes in time (its
  worker died, say) is failed with ``timed out`` by the lease reaper, and a held study runs.
- ``evaluate``: the vault: the test split scored for one model (a trial's, or an ensemble's),
  once per model; a repeated request returns the stored figure.
- ``ensemble``: the top-k trials' averaged predictions, scored on the validation split.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime
from typing import Any, Protocol

from optuna.trial import FrozenTrial
from pydantic import BaseModel, ValidationError

from service.errors import Conflict, InvalidSpec, NotFound
from service.job_store import JobKind, JobState, JobStore, StoredJob
from service.leases import LeaseTimes
from service.preflight import (
    JOB_NOT_SENT,
    JOB_TIMED_OUT,
    NEVER_RAN,
    PreflightReport,
    PreflightSpec,
    PreflightView,
    preflight_view,
)
from service.preflight_spec import check_preflight, checked_preflight
from service.spec.study_spec import StudySpec
from service.storage.database import Database
from service.study_store import StudyState, StudyStore
from service.trainer_catalog import TrainerCatalog
from service.trial_lifecycle import TrialLifecycle
from service.vault import (
    EnsembleFigures,
    EvaluationFigures,
    chosen_trial,
    model_key,
    ranked_trials,
    top_trials,
)

logger = logging.getLogger(__name__)
# The states of a study its pre-flight checks hold: preparing, or paused (as the release before
# made a held study; this one makes it preparing, which a user's pause leaves alone).
HELD = (StudyState.PREPARING, StudyState.PAUSED)
PREFLIGHT_KEY = "study"
_RESULT_MODELS: dict[JobKind, type[BaseModel]] = {
    JobKind.PREFLIGHT: PreflightReport,
    JobKind.EVALUATE: EvaluationFigures,
    JobKind.ENSEMBLE: EnsembleFigures,
}


class JobTrial(BaseModel):
    """A trial whose model a job scores."""

    trial_id: int
    number: int
    params: dict[str, Any]
    value: float | None


class JobMessage(BaseModel):
    """The body of a job's task message, and what ``POST /jobs/{id}/start`` answers."""

    job_id: int
    study_id: int
    kind: JobKind
    trainer: dict[str, Any] | None
    trials: list[JobTrial] = []
    preflight: PreflightSpec | None = None
    # Set in the start's answer: the job times out this long after its (re)start, so a worker
    # starts it again (a renewal) more often than that while it runs.
    lease_ttl_s: float | None = None


class JobView(BaseModel):
    """A job as the API shows it. ``vault_opened``: for an evaluation, how many models' test
    figures the study has asked for, this one included."""

    job_id: int
    study_id: int
    kind: JobKind
    state: JobState
    model_key: str
    trial_ids: list[int]
    result: dict[str, Any] | None
    reason: str | None
    created_at: datetime
    finished_at: datetime | None
    vault_opened: int | None = None
    url: str


class JobDispatcher(Protocol):
    """Sends a job's message to the workers (the API's implementation sends a Celery task)."""

    def dispatch_job(self, message: JobMessage) -> None: ...


class StudyJobs:
    """Starts study jobs, takes their results, and acts on them (a held study runs or stops)."""

    def __init__(
        self,
        database: Database,
        store: StudyStore,
        lifecycle: TrialLifecycle,
        dispatcher: JobDispatcher | None,
        catalog: TrainerCatalog,
        lease_times: LeaseTimes,
    ) -> None:
        self._jobs = JobStore(database)
        self._store = store
        self._lifecycle = lifecycle
        self._dispatcher = dispatcher
        self._catalog = catalog
        self._times = lease_times

    def check_spec(self, spec: StudySpec) -> None:
        """``InvalidSpec`` for pre-flight settings that cannot run."""
        check_preflight(spec, self._catalog)

    def start_preflight(self, study_id: int, spec: StudySpec) -> bool:
        """Send a new study's checks; whether they hold its trials back until they pass (the
        study, made preparing, then stays so: the checks' end sets it running)."""
        wanted = checked_preflight(spec, self._catalog)
        if wanted is None:
            return False
        request = {"preflight": wanted.model_dump(mode="json")}
        job, _ = self._jobs.add(
            study_id, JobKind.PREFLIGHT, PREFLIGHT_KEY, request, self._times.dispatch_timeout_s
        )
        self._send(job, spec)
        return wanted.refuse_on_failure

    def waits_on_preflight(self, study_id: int) -> bool:
        """Whether a preparing study waits on pre-flight checks that hold its trials (as their
        job, stored, says: not as this process's trainers would): their end moves it, not its
        creation. Checks that ended without moving it (an error after their end was written) are
        acted on here, on a study still preparing only (not one a user paused since)."""
        try:
            job = self._jobs.find(study_id, JobKind.PREFLIGHT, PREFLIGHT_KEY)
        except NotFound:
            return False
        if not PreflightSpec.model_validate(job.request["preflight"]).refuse_on_failure:
            return False
        if job.state not in (JobState.QUEUED, JobState.RUNNING):
            self._after_preflight(job, held=(StudyState.PREPARING,))
        return True

    def preflight(self, study_id: int) -> PreflightView | None:
        """The study's pre-flight checks, where it has them (the study view shows them)."""
        try:
            job = self._jobs.find(study_id, JobKind.PREFLIGHT, PREFLIGHT_KEY)
        except NotFound:
            return None
        spec = PreflightSpec.model_validate(job.request["preflight"])
        return preflight_view(job.job_id, spec, job.state.value, job.result, job.reason)

    def evaluate(
        self,
        study_id: int,
        trial_id: int | None = None,
        ensemble_k: int | None = None,
        tenant: str | None = None,
    ) -> tuple[JobView, bool]:
        """Score one model's test split, once: the job (``True`` when this request made it).
        The model: trial ``trial_id``'s, the top ``ensemble_k`` trials' ensemble, or the best's."""
        spec = self._store.spec_of(self._store.get(study_id, tenant))
        trials = self._trials(study_id)
        if ensemble_k is not None and trial_id is not None:
            raise InvalidSpec("give trial_id or ensemble_k, not both", field="ensemble_k")
        if trial_id is not None:  # no ranking needed: a study of several objectives too
            return self._run_once(
                study_id, spec, JobKind.EVALUATE, [chosen_trial(trials, trial_id)]
            )
        ranked = ranked_trials(spec, trials)
        if ensemble_k is not None:
            chosen = top_trials(ranked, ensemble_k, "ensemble_k")
        elif ranked:
            chosen = ranked[:1]
        else:
            raise Conflict(f"study {study_id} has no complete trial to evaluate", field="study_id")
        return self._run_once(study_id, spec, JobKind.EVALUATE, chosen)

    def ensemble(self, study_id: int, k: int, tenant: str | None = None) -> tuple[JobView, bool]:
        """Score the top-k trials' averaged predictions on the validation split, once per set."""
        spec = self._store.spec_of(self._store.get(study_id, tenant))
        chosen = top_trials(ranked_trials(spec, self._trials(study_id)), k, "k")
        return self._run_once(study_id, spec, JobKind.ENSEMBLE, chosen)

    def job(self, job_id: int, tenant: str | None = None) -> JobView:
        """One job (of ``tenant``'s studies)."""
        return self._view(self._visible(job_id, tenant))

    def jobs(self, study_id: int, tenant: str | None = None) -> list[JobView]:
        """Every job of the study, oldest first."""
        self._store.get(study_id, tenant)
        return [self._view(job) for job in self._jobs.of_study(study_id)]

    def start(self, job_id: int, tenant: str | None = None) -> JobMessage:
        """A worker starts a job (``Conflict`` once it ended): what it needs to run it. Started
        again while it runs, its time is renewed: a job past ``lease_ttl_s`` without a
        (re)start is its worker's lost, and times out."""
        self._visible(job_id, tenant)
        job = self._jobs.start(job_id, self._times.ttl_s)
        message = self._message(job, self._store.spec(job.study_id))
        return message.model_copy(update={"lease_ttl_s": self._times.ttl_s})

    def finish(
        self,
        job_id: int,
        result: dict[str, Any] | None,
        reason: str | None,
        tenant: str | None = None,
    ) -> JobView:
        """A worker's outcome: the result, checked against its kind, or why there is none."""
        job = self._visible(job_id, tenant)
        if result is not None:
            result = self._checked(job.kind, result)
        job, first = self._jobs.finish(job_id, result, reason)
        if first and job.kind is JobKind.PREFLIGHT:
            self._after_preflight(job)
        return self._view(job)

    def expire(self, now: datetime | None = None) -> list[int]:
        """Fail the jobs no worker finished in time; a held study's trials start anyway."""
        now = now or datetime.now(UTC)
        expired = []
        for job_id in self._jobs.expired(now):
            try:  # one job deleted meanwhile (its study was) leaves the others to expire
                if self._time_out(job_id, now):
                    expired.append(job_id)
            except Exception:
                logger.exception("job %s: its expiry left for the next tick", job_id)
        return expired

    def _time_out(self, job_id: int, now: datetime) -> bool:
        """Fail the job as timed out if its time still ran out before ``now`` (its worker may
        have renewed it since it was found expired: then it runs on); whether it was failed."""
        reason = f"{JOB_TIMED_OUT}: no worker finished the job in time"
        job, first = self._jobs.finish(job_id, None, reason, expired_before=now)
        if first and job.kind is JobKind.PREFLIGHT:
            self._after_preflight(job)
        return first

    def delete_study(self, study_id: int) -> None:
        """Forget a deleted study's jobs."""
        self._jobs.delete_study(study_id)

    def _visible(self, job_id: int, tenant: str | None) -> StoredJob:
        job = self._jobs.get(job_id)
        if tenant is not None and self._store.tenant_of(job.study_id) != tenant:
            raise NotFound(f"no job with id {job_id}", field="job_id")
        return job

    def _trials(self, study_id: int) -> list[FrozenTrial]:
        return self._lifecycle.storage.get_all_trials(study_id, deepcopy=False)

    def _run_once(
        self, study_id: int, spec: StudySpec, kind: JobKind, chosen: list[FrozenTrial]
    ) -> tuple[JobView, bool]:
        if spec.trainer is None:
            raise Conflict(
                f"study {study_id} has no trainer: no worker can rebuild its models or load its "
                "data",
                field="study_id",
            )
        request = {"trials": [self._job_trial(t).model_dump(mode="json") for t in chosen]}
        with self._lifecycle.locks.hold(study_id):
            job, created = self._jobs.add(
                study_id, kind, model_key(chosen), request, self._times.dispatch_timeout_s
            )
            if not created and job.state is JobState.FAILED:
                job, created = self._jobs.requeue(job.job_id, self._times.dispatch_timeout_s), True
        if created:
            self._send(job, spec)
        return self._view(self._jobs.get(job.job_id)), created

    def _send(self, job: StoredJob, spec: StudySpec) -> None:
        if self._dispatcher is None:
            logger.warning("no job dispatcher: job %s waits until it times out", job.job_id)
            return
        try:
            self._dispatcher.dispatch_job(self._message(job, spec))
        except Exception as error:  # the broker is out of reach: say so on the job
            logger.warning("job %s could not be sent: %s", job.job_id, error)
            # The tenant reads the reason: the broker's address stays in the operator's log.
            reason = f"{JOB_NOT_SENT}: the queue's broker did not take it ({type(error).__name__})"
            self.finish(job.job_id, None, reason)

    def _after_preflight(self, job: StoredJob, held: tuple[StudyState, ...] = HELD) -> None:
        """A held study runs once its checks passed (or could not run), stops where they failed;
        one in none of the ``held`` states (a user stopped it meanwhile) is left as it is."""
        spec = PreflightSpec.model_validate(job.request["preflight"])
        if not spec.refuse_on_failure:
            return
        passed = job.result is not None and PreflightReport.model_validate(job.result).passed
        never_ran = job.reason is not None and job.reason.startswith(NEVER_RAN)
        if passed or never_ran:
            if self._store.set_state(job.study_id, StudyState.RUNNING, when=held):
                self._lifecycle.fill_slots(job.study_id)
        elif self._store.set_state(job.study_id, StudyState.STOPPED, when=held):
            logger.warning("study %s refused: its pre-flight checks failed", job.study_id)

    def _checked(self, kind: JobKind, result: dict[str, Any]) -> dict[str, Any]:
        try:
            return _RESULT_MODELS[kind].model_validate(result).model_dump(mode="json")
        except ValidationError as error:
            first = error.errors()[0]
            where = ".".join(str(part) for part in ("result", *first["loc"]))
            raise InvalidSpec(f"not a {kind} result: {first['msg']}", field=where) from None

    def _message(self, job: StoredJob, spec: StudySpec) -> JobMessage:
        return JobMessage(
            job_id=job.job_id,
            study_id=job.study_id,
            kind=job.kind,
            trainer=spec.trainer.model_dump(mode="json") if spec.trainer else None,
            trials=[JobTrial.model_validate(t) for t in job.request.get("trials", [])],
            preflight=job.request.get("preflight"),
        )

    def _view(self, job: StoredJob) -> JobView:
        opened = self._jobs.count(job.study_id, JobKind.EVALUATE)
        return JobView(
            job_id=job.job_id,
            study_id=job.study_id,
            kind=job.kind,
            state=job.state,
            model_key=job.model_key,
            trial_ids=[t["trial_id"] for t in job.request.get("trials", [])],
            result=job.result,
            reason=job.reason,
            created_at=job.created_at,
            finished_at=job.finished_at,
            vault_opened=opened if job.kind is JobKind.EVALUATE else None,
            url=f"/jobs/{job.job_id}",
        )

    @staticmethod
    def _job_trial(trial: FrozenTrial) -> JobTrial:
        values = trial.values or []
        value = values[0] if len(values) == 1 else None  # none single: several objectives
        return JobTrial(
            trial_id=trial._trial_id, number=trial.number, params=trial.params, value=value
        )
