"""A trial's life: started (asked), claimed, reported each epoch, completed, pruned or failed.

The sampler is asked when a slot frees up, not when the study is submitted, so every new trial
learns from every finished one; the count-then-create step runs under the study's lock, so the
budget holds whatever the number of workers. Every running trial holds a lease (service.leases).
"""

from __future__ import annotations

import logging
import math
import warnings
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import datetime
from functools import partial
from typing import Any, NamedTuple, cast

import optuna
from optuna.trial import FrozenTrial, TrialState
from sqlalchemy import text
from sqlalchemy.orm import Session

from service import webhooks
from service.constraints import figure_attrs
from service.dispatch import QueueReader, TrialAssignment, TrialDispatcher
from service.epoch_metrics import EpochRecord, epoch_metrics_attrs
from service.errors import BudgetExhausted, Conflict, NotFound
from service.leases import EXTERNAL_HOLDER, LeaseStore
from service.policies import build_pruner, build_sampler, trial_seed
from service.report_path import ClaimedTrial, HyperbandReports, ReportAnswer
from service.spec.conditional import suggest
from service.spec.study_spec import StudySpec
from service.storage.database import Database
from service.storage.optuna_rows import FAIL_REASON_ATTR, OptunaTrialRows
from service.storage.study_lock import StudyLocks
from service.study_mirror import MirrorOutOfStep, StudyMirrors, mirrors
from service.study_store import StudyState, StudyStore
from service.trial_counts import (
    REPLACED_ATTR,
    StudyTallies,
    TrialCounts,
    is_done,
    why_no_trial_may_start,
)
from service.trial_outcomes import (
    CompleteEnding,
    check_failure_brings_no_result,
    check_last_reports,
    complete_values,
    final_values,
    finished_is_conflict,
    repeated_completion,
    require_finite,
    values_to_record,
)
from service.trial_provenance import PROVENANCE_ATTR, TrialProvenance, merged_provenance

SEED_ATTR = "hpo:seed"
RESEND_AFTER_S = 2.0
# A report only asks the pruner, which never samples: the study's own sampler (a grid sampler
# builds its whole grid) would be built for nothing on every epoch.
PRUNING_ONLY_SAMPLER = optuna.samplers.RandomSampler()
logger = logging.getLogger(__name__)
# How a trial ends: its values (none: failed, or pruned before a report) and system attributes.
TrialOutcome = tuple[list[float] | None, dict[str, Any]]
OutcomeOf = Callable[[Session], TrialOutcome]  # read in the end's own transaction
# A new trial: its database id, number, parameters, seed, and lease token once leased.
_Created = tuple[int, int, dict[str, Any], int, str | None]


_HELD_BACK = (StudyState.STOPPED, StudyState.PAUSED)  # a trial of theirs starts no more


class LeaseTerms(NamedTuple):
    """A new trial's lease: its run of the parameters, its holder (an external program's; none:
    it waits for a worker) and the ask's ``Idempotency-Key``."""

    attempt: int
    claim: str | None
    ask_key: str | None


class _LeaseNotExpired(Exception):
    """The lease was renewed (or ended) after it was found expired: the end is rolled back."""


class TrialLifecycle:
    """Starts, reports and finishes trials; sends new ones to the dispatcher as slots free up."""

    def __init__(
        self, database: Database, store: StudyStore, dispatcher: TrialDispatcher, leases: LeaseStore
    ) -> None:
        self._database = database
        self.storage = database.optuna
        self._storage = self.storage
        self._store = store
        self._dispatcher = dispatcher
        # The queue's reader, where the dispatcher reads its broker (the API's does).
        self.queue = cast(QueueReader, dispatcher) if hasattr(dispatcher, "queued_trials") else None
        self.leases = leases
        self.locks = StudyLocks(database.engine)
        self.hyperband_reports = HyperbandReports(database, leases)
        self.mirrors = StudyMirrors()
        self.tallies = StudyTallies()
        self._trial_rows = OptunaTrialRows()
        self._study_of_trial: dict[int, int] = {}

    def ask(self, study_id: int, ask_key: str | None = None) -> TrialAssignment:
        """Start one trial for an external program, leased to it; ``BudgetExhausted`` if none may
        start. An ask with the ``Idempotency-Key`` ``ask_key`` of one whose trial still holds its
        lease is answered with that trial (an ask sent again after its answer was lost), not a
        second one."""
        with self.locks.hold(study_id):
            if ask_key is not None and (asked := self.leases.asked_with(study_id, ask_key)):
                return self._asked_before(study_id, *asked)
            record = self._store.get(study_id)
            if record.state != StudyState.RUNNING:
                self.mirrors.forget(study_id)
                raise BudgetExhausted(f"the study is {record.state}", field="study_id")
            spec = self._store.spec_of(record)
            trials = self._storage.get_all_trials(study_id, deepcopy=False)
            counts = self.tallies.counts(study_id, trials)
            reason = why_no_trial_may_start(spec, counts, record.created_at)
            if reason is not None:
                raise BudgetExhausted(f"no trial may start: {reason}", field="study_id")
            try:
                return self.create_trial(
                    study_id,
                    spec,
                    counts.started,
                    claim=EXTERNAL_HOLDER,
                    history=trials,
                    ask_key=ask_key,
                )
            except Exception:
                # Optuna's path writes the trial before sampling: one whose sampling failed is
                # failed, and may have been the budget's last (a trial's end that came meanwhile
                # refilled without the lock: the study short of its trials then).
                self._complete_if_done(study_id, spec, record.created_at)
                raise

    def _asked_before(self, study_id: int, trial_id: int, token: str | None) -> TrialAssignment:
        """The answer an earlier ask gave: the trial it started, with its lease."""
        trial = self._storage.get_trial(trial_id)
        return self.assignment_of(trial, study_id).model_copy(update={"lease": token})

    def fill_slots(self, study_id: int) -> list[TrialAssignment]:
        """Start trials while the budget allows, then dispatch them; mark the study complete when
        done. A study without a trainer that is short of its trials has nothing to start and is
        not done: known without its lock (``_short_of_its_trials``). The trials are sent after
        the study's lock is given back: a broker slow to answer or out of reach holds up no
        other request of the study, nor the reaper. A trial the broker refuses stays leased as
        unsent (as the ones after it) and the reaper sends it again."""
        if self._short_of_its_trials(study_id):
            return []
        started = self._start_trials(study_id)
        for index, assignment in enumerate(started):
            if not self.send(assignment):
                for unsent in started[index + 1 :]:  # the broker is out of reach: not now
                    self.leases.mark_unsent(unsent.trial_id, RESEND_AFTER_S)
                return started[:index]
        return started

    def _start_trials(self, study_id: int) -> list[TrialAssignment]:
        """Under the study's lock: create and lease the trials the budget allows."""
        with self.locks.hold(study_id):
            record = self._store.get(study_id)
            if record.state != StudyState.RUNNING:
                self.mirrors.forget(study_id)  # no trial starts until it runs again
                return []
            spec = self._store.spec_of(record)
            trials = self._storage.get_all_trials(study_id, deepcopy=False)
            counts = self.tallies.counts(study_id, trials)
            started: list[TrialAssignment] = []
            if self._target_reached(study_id, spec):
                self._complete_study(study_id)
                return []
            history: list[FrozenTrial] | None = trials
            while spec.trainer is not None and not why_no_trial_may_start(
                spec, counts, record.created_at
            ):
                started.append(self.create_trial(study_id, spec, counts.started, history=history))
                history = None  # out of date now: a further trial reads the study afresh
                if counts.by_state.get("waiting", 0):  # an enqueued trial is popped, not added
                    trials = self._storage.get_all_trials(study_id, deepcopy=False)
                    counts = self.tallies.counts(study_id, trials)
                else:
                    counts = counts.with_one_started()
            if is_done(spec, counts, record.created_at):
                self._complete_study(study_id)
            return started

    def _short_of_its_trials(self, study_id: int) -> bool:
        """Whether the study is running, has no trainer (its trials are asked for: none is ever
        sent), no time budget nor target value, and fewer trials in all than its budget: then a
        refill would start nothing and find it not done. Known from its record and a count of its
        trials, without its lock (an ask may hold it for milliseconds) or reading its trials. The
        count takes in retried and copied trials, which the budget does not: never below it."""
        spec = self._store.spec(study_id)
        budget = spec.budget
        timed_or_targeted = budget.timeout_seconds is not None or budget.target_value is not None
        if spec.trainer is not None or timed_or_targeted:
            return False
        record = self._store.get(study_id)
        if record.state != StudyState.RUNNING:
            return False
        with self._database.reading() as connection:
            trials = self._trial_rows.count(connection, study_id)
        return trials < self._store.spec_of(record).budget.n_trials

    def _complete_if_done(self, study_id: int, spec: StudySpec, created_at: datetime) -> None:
        """Mark the study complete if it is done (call under its lock); a failure to tell is
        logged, not raised (the caller has an error of its own to raise)."""
        try:
            trials = self._storage.get_all_trials(study_id, deepcopy=False)
            if is_done(spec, self.tallies.counts(study_id, trials), created_at):
                self._complete_study(study_id)
        except Exception as error:  # the database may be what failed the caller
            logger.error("could not tell whether study %s is done: %s", study_id, error)

    def _complete_study(self, study_id: int) -> None:
        self._store.set_state(study_id, StudyState.COMPLETE, when=[StudyState.RUNNING])
        self.mirrors.forget(study_id)

    def _target_reached(self, study_id: int, spec: StudySpec) -> bool:
        target = spec.budget.target_value
        if target is None:
            return False
        try:
            best = self._optuna_study(study_id, spec, PRUNING_ONLY_SAMPLER).best_trial.value
        except ValueError:  # no complete (feasible) trial yet
            return False
        assert best is not None
        return best <= target if spec.direction == "minimize" else best >= target

    def claim(self, trial_id: int, holder: str) -> ClaimedTrial:
        """A worker starts the trial it was sent; the lease token it must show from now on, and
        the first step whose report can prune the trial."""
        number = self._running_trial(trial_id)
        study_id = self.study_of(trial_id)
        self._refuse_held_back(study_id, trial_id)
        lease = self.leases.claim(trial_id, holder)
        spec = self._store.spec(study_id)
        first = self.hyperband_reports.first_decision_step(study_id, spec, number)
        assignment = self.assignment_of(self._storage.get_trial(trial_id), study_id)
        return ClaimedTrial(lease, first, assignment)

    def _refuse_held_back(self, study_id: int, trial_id: int) -> None:
        """``Conflict`` for a trial sent before its study was stopped or paused: it starts no
        more, and fails (a paused study's outside the budget: a fresh trial takes its place on
        resume). A stopped study's 1,024 trials waiting in the queue all ran, 70 s of the
        workers another study waited for."""
        if self._store.get(study_id).state not in _HELD_BACK:
            return
        with self.locks.hold(study_id):  # after a resume under way
            state = self._store.get(study_id).state
            if state not in _HELD_BACK:
                return
            reason = f"not started: the study was {state} before a worker claimed it"
            if state == StudyState.PAUSED:
                reason += "; a fresh trial takes its place when it resumes"
            self.fail(
                trial_id, reason, {REPLACED_ATTR: reason} if state == StudyState.PAUSED else None
            )
        raise Conflict(f"trial {trial_id} is {reason}", field="trial_id")

    def heartbeat(self, trial_id: int, lease: str | None) -> None:
        """The holder is alive (an epoch runs long): renew the running trial's lease."""
        with self.running_trial_transaction(trial_id, lease):
            pass  # the transaction's start is the renewal

    @contextmanager
    def running_trial_transaction(self, trial_id: int, lease: str | None) -> Iterator[Session]:
        """A transaction for what a worker writes about its running trial: it starts by holding
        the trial's row (PostgreSQL; ``Conflict`` once the trial has ended) and renewing its
        lease (``Conflict`` with another lease), the first write, which takes SQLite's lock."""
        self.study_of(trial_id)
        with self._database.session() as session:
            self._trial_rows.running_number(session, trial_id, hold=True)
            self.leases.renew_in(session, trial_id, lease)
            yield session

    def record_provenance(self, trial_id: int, update: TrialProvenance, lease: str | None) -> None:
        """Merge what the worker states about the running trial (seed, trainer, data) into its
        record and renew its lease: one transaction (Optuna's path takes one for the attribute
        after reading the trial, beside the lease's)."""
        with self.running_trial_transaction(trial_id, lease) as session:
            self._merge_provenance(session, trial_id, update)

    def _merge_provenance(
        self, session: Session, trial_id: int, update: TrialProvenance | None
    ) -> None:
        """Merge ``update`` into the trial's provenance, in the caller's transaction (nothing
        is written for an update that sets no field)."""
        if update is None or not update.model_dump(exclude_none=True):
            return
        recorded = self._trial_rows.system_attr(session, trial_id, PROVENANCE_ATTR)
        merged = merged_provenance(recorded, update)
        self._trial_rows.set_system_attrs(session, trial_id, {PROVENANCE_ATTR: merged})

    def report(
        self, trial_id: int, step: int, value: float, lease: str | None = None
    ) -> ReportAnswer:
        """Record an epoch's value and renew the lease; answer whether to prune (then it is
        finished), and the next step whose report can prune it."""
        return self.report_many(trial_id, [(step, value)], lease)

    def report_many(
        self,
        trial_id: int,
        reports: list[tuple[int, float]],
        lease: str | None = None,
        provenance: TrialProvenance | None = None,
    ) -> ReportAnswer:
        """Record epochs' values ((step, value), steps rising) in order, as many reports; the
        last recorded one's answer. A prune finishes the trial there: later values are dropped.
        ``provenance``: what the worker states about the trial, merged into its record first
        (in the reports' transaction where they take one)."""
        for _, value in reports:
            require_finite(value, "value")
        study_id = self.study_of(trial_id)
        spec = self._store.spec(study_id)
        # Hyperband, or no pruner: one transaction for them all, decided from the in-memory
        # rung book (service.report_path). Otherwise Optuna's path, one report at a time.
        first = (  # without provenance, the report path as it was
            partial(self._merge_provenance, trial_id=trial_id, update=provenance)
            if provenance is not None
            else None
        )
        decided = self.hyperband_reports.report(study_id, spec, trial_id, reports, lease, first)
        if decided is None:
            if provenance is not None:
                self.record_provenance(trial_id, provenance, lease)
            answer, value = self._reports_through_optuna(trial_id, spec, reports, lease)
            if answer.prune:
                pruned: TrialOutcome = ([value], {})
                ended = self._end_in_one_transaction(
                    trial_id, TrialState.PRUNED, lambda _: pruned, None
                )
                if not ended:
                    raise Conflict(f"trial {trial_id} has already finished", field="trial_id")
        else:  # a prune ended the trial in the reports' own transaction
            decision, _ = decided
            answer = ReportAnswer(decision.prune, decision.next_rung_step)
        if not answer.prune:
            return answer
        logger.info("trial %s of study %s pruned", trial_id, study_id)
        self.fill_slots(study_id)
        return answer

    def _reports_through_optuna(
        self, trial_id: int, spec: StudySpec, reports: list[tuple[int, float]], lease: str | None
    ) -> tuple[ReportAnswer, float]:
        """Each report through Optuna's general path until one prunes; its answer and value."""
        answer, value = ReportAnswer(False, None), math.nan
        for step, value in reports:
            answer = self._report_through_optuna(trial_id, spec, step, value, lease)
            if answer.prune:
                break
        return answer, value

    def _report_through_optuna(
        self, trial_id: int, spec: StudySpec, step: int, value: float, lease: str | None
    ) -> ReportAnswer:
        """Optuna's general path: any pruner, read back through its storage. Any later report
        may be pruned, none under the ``none`` pruner."""
        self.heartbeat(trial_id, lease)
        with finished_is_conflict(trial_id):
            self._storage.set_trial_intermediate_value(trial_id, step, value)
        study = self._optuna_study(self.study_of(trial_id), spec, sampler=PRUNING_ONLY_SAMPLER)
        prune = bool(study.pruner.prune(study, self._storage.get_trial(trial_id)))
        never = isinstance(study.pruner, optuna.pruners.NopPruner)
        return ReportAnswer(prune, None if never else step + 1)

    def complete(
        self,
        trial_id: int,
        state: TrialState,
        value: float | None,
        reason: str | None,
        lease: str | None = None,
        *,
        values: list[float] | None = None,
        figures: dict[str, float] | None = None,
        epoch_metrics: list[EpochRecord] | None = None,
        last_reports: list[tuple[int, float]] | None = None,
        provenance: TrialProvenance | None = None,
    ) -> FrozenTrial:
        """Finish a trial as complete (with its value, or one per objective), pruned or failed
        (with a reason). ``figures`` are the trainer's named results: objectives and constraints
        read theirs from them; ``epoch_metrics``, its per-epoch records, are kept on the trial.
        ``last_reports``: a complete trial's epochs' values not reported yet ((step, value),
        steps rising), recorded in the completion's transaction; they decide nothing.
        ``provenance``: what the worker states about the trial, merged into its record in the
        same transaction."""
        check_last_reports(state, last_reports or [])
        check_failure_brings_no_result(state, value, values, figures)
        study_id = self.study_of(trial_id)
        spec = self._store.spec(study_id)
        stated = partial(self._merge_provenance, trial_id=trial_id, update=provenance)
        if state == TrialState.COMPLETE:
            ending = CompleteEnding(value, values, figures or {}, epoch_metrics, last_reports or [])
            ended = self._complete_in_one_transaction(trial_id, spec, ending, lease, stated)
        else:
            ended = self._end_otherwise(
                trial_id, spec, state, value, reason, lease, epoch_metrics, stated
            )
        if not ended:  # it had ended already: a repeat is answered as the first completion
            recorded = values_to_record(spec, state, value, values, figures)
            repeated = repeated_completion(self._trial(trial_id), state, recorded)
            # The first completion's refill may have failed (a database outage): refill now.
            self.fill_slots(study_id)
            return repeated
        webhooks.trial_finished(self._storage, spec, study_id, trial_id, state)
        self.fill_slots(study_id)
        return self._storage.get_trial(trial_id)

    def _complete_in_one_transaction(
        self,
        trial_id: int,
        spec: StudySpec,
        ending: CompleteEnding,
        lease: str | None,
        stated: Callable[[Session], None],
    ) -> bool:
        """The trial's state, last reports, values, figures, constraints, epoch records and
        what ``stated`` writes (its provenance), and the end of its lease, in one transaction
        (service.storage.optuna_rows); ``False`` if it had ended."""

        def outcome(session: Session) -> TrialOutcome:  # checked once the lease is the caller's
            stated(session)
            final = complete_values(spec, ending.value, ending.values, ending.figures)
            figures = figure_attrs(spec, ending.figures, ending.value, ending.values)
            return final, {**figures, **epoch_metrics_attrs(ending.epoch_metrics)}

        return self._end_in_one_transaction(
            trial_id, TrialState.COMPLETE, outcome, lease, ending.last_reports
        )

    def _end_in_one_transaction(
        self,
        trial_id: int,
        state: TrialState,
        outcome: OutcomeOf,
        lease: str | None,
        last_reports: list[tuple[int, float]] | None = None,
        *,
        expired_before: datetime | None = None,
    ) -> bool:
        """End the trial in ``state`` with its last reports and the values (none: failed, or
        pruned before any report) and system attributes of its ``outcome``, and end its lease
        (``Conflict`` if ``lease`` is given and is not the lease's; it is checked before the
        outcome), all in one transaction: nothing lands between the end and the lease's.
        ``expired_before``: only a lease that expired before then ends, and with it the trial.
        ``False`` if it had ended, or its lease did not qualify (nothing is written then)."""
        try:
            with self._database.session() as session:
                if not self._trial_rows.mark_ended(session, trial_id, state):
                    if self._trial_rows.state_of(session, trial_id) is None:  # study deleted
                        raise NotFound(f"no trial with id {trial_id}", field="trial_id")
                    return False
                # Any refusal from here rolls the whole end back.
                if expired_before is None:
                    self.leases.release_in(session, trial_id, lease)
                elif not self.leases.release_expired_in(session, trial_id, expired_before):
                    raise _LeaseNotExpired
                if last_reports:
                    self._trial_rows.record_last_reports(session, trial_id, last_reports)
                values, attrs = outcome(session)
                self._trial_rows.record_completion(session, trial_id, values or [], attrs)
        except _LeaseNotExpired:
            return False
        return True

    def _end_otherwise(
        self,
        trial_id: int,
        spec: StudySpec,
        state: TrialState,
        value: float | None,
        reason: str | None,
        lease: str | None,
        epoch_metrics: list[EpochRecord] | None,
        stated: Callable[[Session], None],
    ) -> bool:
        """A pruned or failed end (its values, reason and epoch records, what ``stated`` writes,
        and the end of its lease) in one transaction; ``False`` if it had ended."""

        def outcome(session: Session) -> TrialOutcome:
            stated(session)
            attrs: dict[str, Any] = dict(epoch_metrics_attrs(epoch_metrics))
            if state == TrialState.FAIL:
                attrs[FAIL_REASON_ATTR] = reason or "failed"
            last = value
            if state == TrialState.PRUNED and value is None:  # its last report, read as it ends
                last = self._trial_rows.last_intermediate_value(session, trial_id)
            return final_values(state, last, spec), attrs

        return self._end_in_one_transaction(trial_id, state, outcome, lease)

    def fail(
        self,
        trial_id: int,
        reason: str,
        attrs: dict[str, Any] | None = None,
        *,
        expired_before: datetime | None = None,
    ) -> bool:
        """Mark a running trial failed, with the reason (and system attributes ``attrs``), and
        end its lease, in one transaction (the reaper's and the dispatcher's way out); ``False``
        if it had ended meanwhile (a completion came first): then nothing is written.
        ``expired_before`` (the reaper's): only while its lease is still expired then; a lease
        renewed meanwhile keeps the trial running (``False``)."""
        failed: TrialOutcome = (None, {**(attrs or {}), FAIL_REASON_ATTR: reason})
        return self._end_in_one_transaction(
            trial_id, TrialState.FAIL, lambda _: failed, None, expired_before=expired_before
        )

    def retry(
        self, study_id: int, failed: FrozenTrial, attempt: int, seed: int | None
    ) -> TrialAssignment:
        """Run a failing trial's parameters (and seed) again as a new trial, in its place in the
        budget once the failed one carries its mark (``RETRIED_BY_ATTR``, written by the caller
        in the transaction that fails it: Optuna's cached storage reads a finished trial once)."""
        spec = self._store.spec(study_id)
        total = self.counts(study_id).total
        return self.create_trial(study_id, spec, total, retry_of=failed, attempt=attempt, seed=seed)

    def counts(self, study_id: int) -> TrialCounts:
        """The study's trials counted by state."""
        trials = self._storage.get_all_trials(study_id, deepcopy=False)
        return self.tallies.counts(study_id, trials)

    def study_of(self, trial_id: int) -> int:
        """The id of the study a trial belongs to (a fixed fact, kept in memory once read)."""
        cached = self._study_of_trial.get(trial_id)
        if cached is not None:
            return cached
        with self._database.reading() as connection:
            row = connection.execute(
                text("SELECT study_id FROM trials WHERE trial_id = :trial_id"),
                {"trial_id": trial_id},
            ).first()
        if row is None:
            raise NotFound(f"no trial with id {trial_id}", field="trial_id")
        self._study_of_trial[trial_id] = int(row[0])
        return int(row[0])

    def create_trial(
        self,
        study_id: int,
        spec: StudySpec,
        n_trials_so_far: int,
        *,
        retry_of: FrozenTrial | None = None,
        attempt: int = 0,
        claim: str | None = None,
        seed: int | None = None,
        history: list[FrozenTrial] | None = None,
        ask_key: str | None = None,
    ) -> TrialAssignment:
        """Ask the sampler (or take ``retry_of``'s parameters) for a new trial and lease it. Call
        under the study lock. ``history``: the study's trials as just read, where the caller has
        them; ``ask_key``: the ask's ``Idempotency-Key``, kept on the lease."""
        created = None
        if retry_of is None and seed is None and mirrors(spec):
            sampler = build_sampler(spec, n_trials_so_far)
            terms = LeaseTerms(attempt, claim, ask_key)
            created = self._create_from_mirror(study_id, spec, sampler, history, terms)
        if created is None:  # a sampler of its own: the mirror's may have drawn already
            if retry_of is not None:
                created = self._create_retry(study_id, spec, retry_of, seed)
            else:
                sampler = build_sampler(spec, n_trials_so_far)
                created = self._create_through_optuna(study_id, spec, sampler, seed)
            token = self.leases.grant(created[0], study_id, attempt, claim=claim, ask_key=ask_key)
            created = (*created[:4], token)
        trial_id, number, chosen, seed, token = created
        self._study_of_trial[trial_id] = study_id
        trainer = spec.trainer.model_dump() if spec.trainer else None
        return TrialAssignment(
            study_id=study_id,
            trial_id=trial_id,
            number=number,
            params=chosen,
            trainer=trainer,
            seed=seed,
            lease=token,
        )

    def _create_from_mirror(
        self,
        study_id: int,
        spec: StudySpec,
        sampler: optuna.samplers.BaseSampler,
        history: list[FrozenTrial] | None,
        lease: LeaseTerms,
    ) -> _Created | None:
        """Sample against the study's in-memory mirror, then write the trial and its lease (its
        attempt, holder and ask's key: ``lease``) in one transaction (service.study_mirror). ``None`` where
        a trial waits with fixed parameters, or another writer added a trial the mirror missed."""
        if history is None:
            history = self._storage.get_all_trials(study_id, deepcopy=False)
        try:
            mirror = self.mirrors.synced(study_id, self._storage, history)
        except Exception:  # whatever the mirror could not take: Optuna's own path answers
            logger.exception("study %s: its mirror could not be brought up to date", study_id)
            self.mirrors.forget(study_id)
            return None
        if mirror.waiting:
            return None
        try:
            sampled = mirror.sample(sampler, spec.space)
            seed = trial_seed(spec, sampled.number)
            sampled = mirror.set_system_attr(sampled.number, SEED_ATTR, seed)
            with self._database.session() as session:
                trial_id, number = self._trial_rows.insert_running(session, study_id, sampled)
                if number != sampled.number:  # created outside the study lock: sample again
                    raise MirrorOutOfStep(f"trial number {number}, mirror {sampled.number}")
                token = self.leases.grant_in(
                    session, trial_id, study_id, lease.attempt, claim=lease.claim,
                    ask_key=lease.ask_key,
                )  # fmt: skip
        except MirrorOutOfStep:
            logger.warning("study %s: its mirror was out of step; asking Optuna", study_id)
            self.mirrors.forget(study_id)
            return None
        except Exception:
            self.mirrors.forget(study_id)  # it holds a trial the database does not
            raise
        return trial_id, number, sampled.params, seed, token

    def _create_through_optuna(
        self,
        study_id: int,
        spec: StudySpec,
        sampler: optuna.samplers.BaseSampler,
        seed: int | None,
    ) -> _Created:
        """Optuna's own ask on the database: any sampler, enqueued parameters."""
        study = self._optuna_study(study_id, spec, sampler)
        try:
            trial = suggest(study, spec.space)  # define-by-run where the space is conditional
        except Exception:
            self._fail_unleased(study_id, "the sampler failed while choosing its parameters")
            raise
        # Optuna keeps the storage id private; it is the trial's key here.
        trial_id = trial._trial_id
        seed = trial_seed(spec, trial.number) if seed is None else seed
        self._storage.set_trial_system_attr(trial_id, SEED_ATTR, seed)
        return trial_id, trial.number, trial.params, seed, None

    def _create_retry(
        self, study_id: int, spec: StudySpec, failed: FrozenTrial, seed: int | None
    ) -> _Created:
        """A running trial of ``failed``'s parameters, written as it is: not through Optuna's
        queue of enqueued trials, whose ask takes the oldest waiting one (a user's enqueued
        parameters would run under the retry's seed and attempt, and the retry's wait)."""
        template = optuna.trial.create_trial(
            state=TrialState.RUNNING, params=failed.params, distributions=failed.distributions
        )
        trial_id = self._storage.create_new_trial(study_id, template_trial=template)
        number = self._storage.get_trial_number_from_id(trial_id)
        seed = trial_seed(spec, number) if seed is None else seed
        self._storage.set_trial_system_attr(trial_id, SEED_ATTR, seed)
        return trial_id, number, dict(failed.params), seed, None

    def send(self, assignment: TrialAssignment) -> bool:
        """Dispatch; a trial the broker refuses stays leased as unsent and is sent again later."""
        try:
            self._dispatcher.dispatch(assignment)
        except Exception as error:  # any broker failure: the reaper sends it again
            logger.warning(  # an outage the reaper recovers from: not an error of the service
                "could not dispatch trial %s (sent again later): %s", assignment.trial_id, error
            )
            self.leases.mark_unsent(assignment.trial_id, RESEND_AFTER_S)
            return False
        self.leases.mark_sent(assignment.trial_id)
        return True

    def assignment_of(self, trial: FrozenTrial, study_id: int) -> TrialAssignment:
        """The task message of an existing trial (to send it again)."""
        spec = self._store.spec(study_id)
        return TrialAssignment(
            study_id=study_id,
            trial_id=trial._trial_id,
            number=trial.number,
            params=trial.params,
            trainer=spec.trainer.model_dump() if spec.trainer else None,
            seed=trial.system_attrs.get(SEED_ATTR, trial_seed(spec, trial.number)),
        )

    def adopt_orphans(self, study_id: int) -> int:
        """Running trials that hold no lease (their creation was cut short by a database outage):
        one with all its parameters is leased as unsent, so the reaper sends it; any other is
        failed and replaced, outside the budget, by a fresh trial. Returns how many were found."""
        with self.locks.hold(study_id):
            spec = self._store.spec(study_id)
            orphans = self._unleased_running(study_id)
            for trial in orphans:
                if set(trial.params) == set(spec.space) and spec.trainer is not None:
                    self.leases.grant(trial._trial_id, study_id, attempt=0)
                    self.leases.mark_unsent(trial._trial_id, retry_in_s=0)
                else:
                    reason = "its creation was cut short (database outage) before it was leased"
                    self.fail(trial._trial_id, reason, {REPLACED_ATTR: reason})
            return len(orphans)

    def _unleased_running(self, study_id: int) -> list[FrozenTrial]:
        leased = self.leases.leased_trials(study_id)
        running = self._storage.get_all_trials(
            study_id, deepcopy=False, states=(TrialState.RUNNING,)
        )
        return [trial for trial in running if trial._trial_id not in leased]

    def _fail_unleased(self, study_id: int, reason: str) -> None:
        """Optuna creates the trial before sampling: one whose sampling failed must not stay running."""
        for trial in self._unleased_running(study_id):
            self.fail(trial._trial_id, reason)

    def _optuna_study(
        self, study_id: int, spec: StudySpec, sampler: optuna.samplers.BaseSampler
    ) -> optuna.Study:
        """The study as Optuna loads it, by its name in Optuna's tables (not always its
        name: ``service.study_names``), with ``sampler`` and the spec's pruner."""
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            return optuna.Study(
                study_name=self._store.optuna_name(study_id),
                storage=self._storage,
                sampler=sampler,
                pruner=build_pruner(spec),
            )

    def _trial(self, trial_id: int) -> FrozenTrial:
        self.study_of(trial_id)
        try:
            return self._storage.get_trial(trial_id)
        except KeyError:  # its study was deleted
            raise NotFound(f"no trial with id {trial_id}", field="trial_id") from None

    def _running_trial(self, trial_id: int) -> int:
        """The running trial's number; ``Conflict`` once it finished. One plain read (the claim,
        heartbeats and uploads need no more than the state: not Optuna's whole trial)."""
        self.study_of(trial_id)
        with self._database.reading() as connection:
            return self._trial_rows.running_number(connection, trial_id, hold=False)
