"""Runs one trial: claim it, train, report every epoch, tell the service how it ended.

The work of the Celery task, testable without a broker. Idempotent: a duplicate delivery of a
trial that another worker holds, or that already ended, is refused at the claim (409) and dropped.
A claim that did not happen otherwise (``ClaimNotMade``: the service out of reach, or this
worker's token refused) sends the message back to the queue (``workers/trial_claim.py``).
"""

from __future__ import annotations

import logging
import os
import socket
import traceback
from collections.abc import Callable
from functools import partial
from typing import Any, NamedTuple

from celery.exceptions import SoftTimeLimitExceeded

from client import HPOError, HPOJSONClient, ServiceUnreachable, TrialGone
from service.dispatch import TrialAssignment
from workers.dataset_cache import DEFAULT_CACHE_BYTES
from workers.device_errors import is_sticky_device_error
from workers.provenance import TrialContext, trial_context
from workers.renewals import renewed
from workers.report_pipeline import UNKNOWN, ReportPipeline
from workers.result_figures import completion_fields
from workers.trainer_loader import load_trainer
from workers.trainers.base import TrainingFailed, TrialRun
from workers.trial_claim import claim_trial
from workers.trial_ending import Statement, TrialEnding, quietly
from workers.trial_records import open_records, upload_checkpoint

logger = logging.getLogger(__name__)
# Celery's pool processes are daemonic, and a daemonic process may start no other: what Python's
# multiprocessing says when a trainer's DataLoader starts its worker processes in one.
DAEMONIC_PROCESS = "daemonic processes are not allowed to have children"
CHILD_PROCESS_HELP = (
    "the trainer started a process (a DataLoader with num_workers > 0, or multiprocessing), "
    "which a worker's pool process may not: load the data in the trial's own process "
    "(DataLoader num_workers=0; see docs/trainers.md)"
)


class TrialRunner:
    """Trains trials handed over by the queue and reports them over HTTP."""

    def __init__(
        self,
        client: HPOJSONClient,
        time_limit_s: float | None = None,
        on_device_unusable: Callable[[], None] = lambda: None,
        dataset_cache_bytes: int = DEFAULT_CACHE_BYTES,
    ) -> None:
        """``time_limit_s``: the task's soft time limit, which a trial's failure names.
        ``on_device_unusable``: called when a trial fails with an error that leaves the
        process's GPU unusable (a sticky CUDA error), before the failure is sent: the Celery
        task has the process replaced after the task (``workers/process_retirement.py``).
        ``dataset_cache_bytes``: what the node keeps of registered data sets' files."""
        self._client = client
        self._time_limit_s = time_limit_s
        self._on_device_unusable = on_device_unusable
        self._dataset_cache_bytes = dataset_cache_bytes

    def run(self, message: dict[str, Any], delivery: str = "") -> str:
        """Run the trial in ``message``; returns how it ended (for the worker's log)."""
        sent = TrialAssignment.model_validate(message)
        holder = f"{socket.gethostname()}:{os.getpid()}:{delivery}"
        claimed = claim_trial(self._client, sent.trial_id, holder)  # ClaimNotMade: not started
        if claimed is None:
            return "gone"
        # The trial as the service holds it, not as the message says: anyone who can write to
        # the broker could have sent the message (an older service's claim does not say).
        assignment = TrialAssignment.model_validate(claimed.get("assignment", message))
        if assignment.trainer is None:
            raise ValueError(f"trial {assignment.trial_id} names no trainer")
        run = TrialRun(
            study_id=assignment.study_id,
            trial_id=sent.trial_id,
            number=assignment.number,
            params=assignment.params,
            settings=assignment.trainer,
            seed=assignment.seed,
        )
        try:
            return self._train_and_complete(run, str(assignment.trainer["name"]), claimed)
        except TrialGone as gone:
            logger.info("trial %s is not this worker's to run (%s): dropped", run.trial_id, gone)
            return "gone"

    def _train_and_complete(self, run: TrialRun, trainer_name: str, claimed: dict[str, Any]) -> str:
        ending = TrialEnding(self._client, run.trial_id, str(claimed["lease"]))
        reports = ReportPipeline(
            ending.report,
            # An older service's claim names no step: the first report waits for its answer.
            first_decision_step=claimed.get("next_decision_step", UNKNOWN),
        )
        heartbeat = partial(_heartbeat, self._client, ending, reports)
        try:
            with renewed(f"trial {run.trial_id}", heartbeat, float(claimed["lease_ttl_s"])):
                return self._train_and_finish(run, trainer_name, ending, reports)
        finally:
            reports.close()

    def _train_and_finish(
        self, run: TrialRun, trainer_name: str, ending: TrialEnding, reports: ReportPipeline
    ) -> str:
        try:
            trained = self._train(run, trainer_name, ending, reports)
        except (TrialGone, ServiceUnreachable):
            # Not the trainer's failure: the service is out of reach. The lease decides: it
            # expires and the trial runs again with the same parameters.
            raise
        except TrainingFailed as failed:
            # A failure the trainer names (a NaN or exploding loss): its reason, and its epochs.
            self._check_device(run, failed)
            _settle(reports)
            return ending.fail(failed.reason, reports.take_statement(), failed.epoch_metrics)
        except Exception as error:
            self._check_device(run, error)
            _settle(reports)
            reason = self._reason_of(error)
            if reports.failure is not None:  # what the trainer did next with a NaN it reported
                reason = f"{reports.failure}; then {reason}"
            return ending.fail(reason, reports.take_statement())
        try:
            return self._end(ending, trained)
        except (TrialGone, ServiceUnreachable):
            raise
        except Exception as error:
            # Whatever goes wrong in the worker at the end, the trial ends failed with the
            # reason, not in the worker's log alone with the trial left to its lease.
            logger.exception("trial %s: the worker could not complete it", run.trial_id)
            self._check_device(run, error)
            reason = f"the worker could not complete the trial: {self._reason_of(error)}"
            return ending.fail(reason, reports.take_statement())

    def _train(
        self, run: TrialRun, trainer_name: str, ending: TrialEnding, reports: ReportPipeline
    ) -> Trained:
        """Train the trial and wait for its reports; what its end brings (``TrainingFailed``
        where its figures cannot end it complete)."""
        records = open_records(
            self._client, run, trainer_name, reports.state, self._dataset_cache_bytes
        )
        with trial_context(records):
            result = load_trainer(trainer_name).train(run, reports.report)
        if reports.failure is not None:  # a NaN report stopped it, whatever it returned
            raise TrainingFailed(reports.failure, getattr(result, "epoch_metrics", None))
        # Checked before the reports are handed over: a failure sends them as reports first.
        fields = None if result.pruned else completion_fields(result)
        # Every report sent is answered; those still held, and the provenance not sent yet,
        # go with the completion.
        last_reports, stated = reports.hand_over()
        if reports.pruned or fields is None:
            if last_reports:  # the trainer stopped on its own: they go as reports
                ending.report(last_reports, stated)
                stated = {}
            return Trained(records, None, [], stated)
        return Trained(records, fields, last_reports, stated)

    def _end(self, ending: TrialEnding, trained: Trained) -> str:
        """Tell the service how the trained trial ended."""
        if trained.fields is None:
            ending.pruned(trained.stated)
            return "pruned"
        upload_checkpoint(self._client, trained.records, ending.lease)
        try:
            ending.complete(trained.fields, trained.last_reports, trained.stated)
        except HPOError as refused:
            if isinstance(refused, TrialGone):
                raise
            # The result lacks what the study needs (an objective's or a constraint's figure),
            # or its last reports or records are refused. Those are recorded where they can be,
            # as a failed trial's are (none left after the older service's path), and so is its
            # provenance, which the refused completion brought.
            ending.report_quietly(trained.last_reports)
            reason = f"the service refused the trial's result: {refused}"
            return ending.fail(reason, trained.stated, trained.fields["epoch_metrics"])
        return "complete"

    def _check_device(self, run: TrialRun, error: BaseException) -> None:
        """Where ``error`` leaves this process's GPU unusable, say so: every later trial in this
        process would fail with it (the trial itself fails with its reason, as any other)."""
        if is_sticky_device_error(error):
            logger.error(
                "trial %s failed with an error that leaves the GPU unusable in this process: %s",
                run.trial_id,
                error,
            )
            self._on_device_unusable()

    def _reason_of(self, error: BaseException) -> str:
        if isinstance(error, SoftTimeLimitExceeded):  # Celery's soft limit: not retried
            after = "" if self._time_limit_s is None else f" after {self._time_limit_s:g} s"
            return (
                f"the trial ran past the time limit: stopped{after} (HPO_TASK_TIME_LIMIT_S, "
                "less the time to report it)"
            )
        stated = f"{type(error).__name__}: {error}\n{traceback.format_exc(limit=3)}"
        if isinstance(error, AssertionError) and DAEMONIC_PROCESS in str(error):
            return f"{CHILD_PROCESS_HELP}\n{stated}"
        return stated


class Trained(NamedTuple):
    """What a trained trial's end brings: its context (for the checkpoint), the completion's
    figures (``None``: it was pruned), its last reports and the provenance not sent yet."""

    records: TrialContext
    fields: dict[str, Any] | None
    last_reports: list[tuple[int, float]]
    stated: Statement


def _heartbeat(client: HPOJSONClient, ending: TrialEnding, reports: ReportPipeline) -> None:
    """Renew the trial's lease. One taken away (``TrialGone``) stops the trial at its next
    report, which raises it, rather than at the refusal of a report sent later. Once the
    trial's end is being sent (or a report's answer pruned it, which ended it) there is nothing
    to renew, and a heartbeat meeting the end finds the trial over, as expected."""
    if ending.ending or reports.pruned:
        return
    try:
        client.heartbeat(ending.trial_id, ending.lease)
    except TrialGone as gone:
        if ending.ending or reports.pruned:  # it ended as the heartbeat went: no loss, no warning
            return
        reports.taken_away(gone)
        raise


def _settle(reports: ReportPipeline) -> None:
    """Before a failed trial's completion: wait for the reports still out."""
    quietly(reports.flush, "a report of the failing trial")
