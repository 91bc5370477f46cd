"""Expiring leases: a trial whose worker went silent is failed, with the reason, and run again.

The API runs :meth:`LeaseReaper.expire` on a timer in every process (``api/reaper.py``), so leases
expire even when no worker is alive. It cannot act twice on one trial: each expiry re-reads the
trial and its lease under the study's lock (an advisory lock on PostgreSQL) and does nothing to a
trial that finished or was renewed meanwhile; and on PostgreSQL only one process reaps at a time.
Each tick also refills the studies whose trials it failed, and the running studies of a trainer
that hold no lease at all (a refill that failed once is made again, so no study stalls), and
hands on the studies still preparing ``STALLED_CREATION`` after they were made (a creation whose
API process was killed) to be taken back.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

from optuna.trial import TrialState

from service.dispatch import TrialAssignment
from service.leases import ExpiredLease
from service.study_store import StudyState, StudyStore
from service.trial_counts import REPLACED_ATTR, RETRIED_BY_ATTR, UNNEEDED_RETRY_OF_ATTR
from service.trial_lifecycle import RESEND_AFTER_S, SEED_ATTR, TrialLifecycle

logger = logging.getLogger(__name__)
REAPER_LOCK_KEY = 0  # study ids start at 1: key 0 of the namespace is the reaper's own
# A study preparing this long after it was made, not waiting on its pre-flight checks, is one
# whose creation stopped part way (its API process was killed): far beyond a creation's time,
# a warm start's copy of thousands of trials included.
STALLED_CREATION = timedelta(minutes=10)


class LeaseReaper:
    """Fails the trials whose lease expired and retries them up to the study's ``max_retries``."""

    def __init__(
        self,
        lifecycle: TrialLifecycle,
        store: StudyStore,
        take_back_stalled: Callable[[int], None] = lambda study_id: None,
    ) -> None:
        self._lifecycle = lifecycle
        self._store = store
        self._take_back_stalled = take_back_stalled

    def expire(self, now: datetime | None = None) -> list[int]:
        """Expire every lease past its time; the ids of the trials failed."""
        now = now or datetime.now(UTC)
        with self._lifecycle.locks.try_hold(REAPER_LOCK_KEY) as mine:
            if not mine:
                return []
            self._stalled_creations(now)
            running = self._store.running_ids()
            for study_id in running:
                self._adopt_orphans(study_id)
            expired = self._expire_all(self._lifecycle.leases.expired(now), now)
            idle = self._idle_trainer_studies(running)
        for study_id in sorted({lease.study_id for lease in expired} | idle):
            self._refill(study_id)
        return [lease.trial_id for lease in expired]

    def _stalled_creations(self, now: datetime) -> None:
        for study_id in self._store.preparing_before(now - STALLED_CREATION):
            try:
                self._take_back_stalled(study_id)
            except Exception:
                logger.exception("study %s: its stalled creation left for the next tick", study_id)

    def _idle_trainer_studies(self, running: list[int]) -> set[int]:
        """Running studies of a trainer with no trial leased: their refill is due. One whose
        refill failed after a trial's end (a database error after the end's commit, a refill of
        this reaper's) would otherwise wait for ever: no trial of it is left to end. A study
        being made, or held for its pre-flight checks, is preparing, not running: none of its
        trials starts here."""
        leased = self._lifecycle.leases.studies_holding_leases()
        return {
            study_id for study_id in running if study_id not in leased and self._trains(study_id)
        }

    def _trains(self, study_id: int) -> bool:
        try:
            return self._store.spec(study_id).trainer is not None
        except Exception:  # deleted meanwhile, or unreadable: not this tick's to refill
            logger.exception("study %s: its refill left for the next tick", study_id)
            return False

    # One study or lease that cannot be handled (deleted meanwhile, a delete cut short, a
    # database error) is logged and left for the next tick: the others' leases expire all the same.

    def _adopt_orphans(self, study_id: int) -> None:
        try:
            if self._lifecycle.adopt_orphans(study_id):
                logger.warning("study %s: running trials without a lease adopted", study_id)
        except Exception:
            logger.exception(
                "study %s: its trials without a lease left for the next tick", study_id
            )

    def _expire_all(self, leases: list[ExpiredLease], now: datetime) -> list[ExpiredLease]:
        """Send again what the broker refused, fail the lost trials and send their retries; the
        leases whose trials failed. Once the broker refuses a message, no other is sent this
        tick (each refusal costs seconds, under the reaper's lock): they wait, leased as unsent."""
        failed_leases, sending = [], True
        unclaimed = [lease.trial_id for lease in leases if lease.sent and not lease.claimed]
        queued = self._queued(unclaimed, now)
        for lease in leases:
            try:
                if not lease.sent:
                    sending = sending and self._resend(lease)
                    continue
                if lease.trial_id in queued:
                    self._wait_in_the_queue(lease)
                    continue
                failed, retry = self._fail_expired(lease, now)
                if retry is not None and sending:  # after the study's lock: it holds up no one
                    sending = self._lifecycle.send(retry)
                elif retry is not None:
                    self._lifecycle.leases.mark_unsent(retry.trial_id, RESEND_AFTER_S)
            except Exception:
                logger.exception(
                    "trial %s: its expired lease left for the next tick", lease.trial_id
                )
                continue
            if failed:
                failed_leases.append(lease)
        return failed_leases

    def _refill(self, study_id: int) -> None:
        try:
            self._lifecycle.fill_slots(study_id)
        except Exception:
            logger.exception("study %s: its refill left for the next tick", study_id)

    def _fail_expired(
        self, lease: ExpiredLease, now: datetime
    ) -> tuple[bool, TrialAssignment | None]:
        """Under the study's lock: fail the trial if its lease is still expired, with a retry
        where one is due; whether it failed, and the retry to send."""
        with self._lifecycle.locks.hold(lease.study_id):
            trial = self._lifecycle.storage.get_trial(lease.trial_id)
            if trial.state != TrialState.RUNNING:
                self._lifecycle.leases.release(lease.trial_id)
                return False, None
            if not self._lifecycle.leases.is_expired(lease.trial_id, now):
                return False, None
            retry: TrialAssignment | None = None
            marked: dict[str, object] | None = None
            if self._may_retry(lease):
                if self._store.get(lease.study_id).state == StudyState.RUNNING:
                    seed = trial.system_attrs.get(SEED_ATTR)
                    retry = self._lifecycle.retry(lease.study_id, trial, lease.attempt + 1, seed)
                    marked = {RETRIED_BY_ATTR: retry.trial_id}
                else:  # paused: nothing starts now; a fresh trial takes its place on resume
                    marked = {REPLACED_ATTR: "lost while the study was paused"}
            # The failing, with the retry's mark, only while the lease is still expired: a
            # heartbeat or report since then keeps the trial its worker's.
            reason = self._reason(lease) + self._what_follows(lease, marked)
            failed = self._lifecycle.fail(lease.trial_id, reason, marked, expired_before=now)
            if failed:
                logger.warning(
                    "trial %s (number %s of study %s) failed: %s",
                    lease.trial_id,
                    trial.number,
                    lease.study_id,
                    reason,
                )
                return True, retry
            logger.warning(
                "trial %s (number %s of study %s) completed or was renewed as its lease expired",
                lease.trial_id,
                trial.number,
                lease.study_id,
            )
            if retry is not None:  # not needed: failed unrun, outside the budget
                self._lifecycle.fail(
                    retry.trial_id,
                    f"not needed: trial {trial.number} completed or was renewed meanwhile",
                    {UNNEEDED_RETRY_OF_ATTR: lease.trial_id},
                )
            return False, None

    def _queued(self, trial_ids: list[int], now: datetime) -> set[int]:
        """Those of the unclaimed trials whose message still waits in the broker's queue while
        a worker is busy: behind its trial. None where no worker holds a claim (no one takes
        from the queue: a cluster scaled to zero, workers on another queue), where the queue
        cannot be read, or without a reader: those are failed at their wait's end, as before."""
        queue = self._lifecycle.queue
        if not trial_ids or queue is None:
            return set()
        try:
            if not self._lifecycle.leases.workers_busy(now):
                return set()
            return queue.queued_trials(trial_ids) or set()
        except Exception:  # the tick goes on: its other leases expire all the same
            logger.exception("the queue could not be read: unclaimed trials expire as before")
            return set()

    def _wait_in_the_queue(self, lease: ExpiredLease) -> None:
        """A trial no worker claimed in time whose message still waits in the queue while
        workers are busy: behind their trials (a study sends up to ``max_concurrent_trials`` at
        once, more than the workers may run), not lost; its wait for a claim starts again. A
        message gone from the queue unclaimed (lost, or taken by a worker that never claimed
        it) fails the trial at the wait's end, as before; a trial that ended meanwhile gives its
        lease up."""
        trial = self._lifecycle.storage.get_trial(lease.trial_id)
        if trial.state != TrialState.RUNNING:
            self._lifecycle.leases.release(lease.trial_id)
            return
        self._lifecycle.leases.mark_sent(lease.trial_id)
        logger.info(
            "trial %s of study %s still waits in the queue: its wait for a claim starts again",
            lease.trial_id,
            lease.study_id,
        )

    def _resend(self, lease: ExpiredLease) -> bool:
        """A message the broker refused earlier goes out again (the trial is not failed for it);
        ``False`` where the broker refuses it again."""
        trial = self._lifecycle.storage.get_trial(lease.trial_id)
        if trial.state != TrialState.RUNNING:
            self._lifecycle.leases.release(lease.trial_id)
            return True
        if not self._lifecycle.send(self._lifecycle.assignment_of(trial, lease.study_id)):
            return False
        logger.info(
            "trial %s of study %s sent again: its first sending did not finish",
            lease.trial_id,
            lease.study_id,
        )
        return True

    def _may_retry(self, lease: ExpiredLease) -> bool:
        """A trial of a study that may still start trials, run by workers, with runs left."""
        spec = self._store.spec(lease.study_id)
        live = self._store.get(lease.study_id).state in (StudyState.RUNNING, StudyState.PAUSED)
        return live and spec.trainer is not None and lease.attempt < spec.budget.max_retries

    def _what_follows(self, lease: ExpiredLease, marked: dict[str, object] | None) -> str:
        """What the failed trial's reason adds: the retry that runs it again, the fresh trial
        that will take its place, or that a trainer's study has no retry left for it."""
        if marked is not None and RETRIED_BY_ATTR in marked:
            return f"; run again as trial_id {marked[RETRIED_BY_ATTR]}"
        if marked is not None:
            return "; a fresh trial takes its place when the study resumes"
        spec = self._store.spec(lease.study_id)
        retries = spec.budget.max_retries
        if spec.trainer is None or lease.attempt < retries:
            return ""  # a program's trial, or a study stopped: its state says why
        if retries == 0:
            return "; not run again: the study has no retries (budget.max_retries is 0)"
        return f"; not run again: budget.max_retries ({retries}) reached"

    def _reason(self, lease: ExpiredLease) -> str:
        times = self._lifecycle.leases.times
        if lease.claimed:
            lost = "the program that asked for it" if lease.asked else "worker"
            silent = f"no report or heartbeat for {times.ttl_s:g} s"
            return f"lease expired: {silent} ({lost} lost, or the API out of its reach)"
        return f"no worker claimed the trial within {times.dispatch_timeout_s:g} s of dispatch"
