"""Runs one trial: claim it, train, report every epoch, tell the service how it ended.

The work of the Celery task, testable without a broker. Idempotent: a duplicate delivery of a
trial that another worker holds, or that already ended, is refused at the claim (409) and dropped.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import traceback
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from functools import partial
from typing import Any, TypeVar

from client import HPOError, HPOJSONClient, ServiceUnreachable, TrialGone
from service.dispatch import TrialAssignment
from service.epoch_metrics import MAX_EPOCH_RECORDS
from workers.provenance import trial_context
from workers.report_pipeline import UNKNOWN, ReportPipeline
from workers.trainer_loader import load_trainer
from workers.trainers.base import TrainingFailed, TrainResult, TrialRun
from workers.trial_records import open_records, upload_checkpoint

logger = logging.getLogger(__name__)
Statement = dict[str, Any] | None  # provenance fields a request brings (None: none)
Answer = TypeVar("Answer")
MAX_REASON_CHARS = 1500
HEARTBEATS_PER_LEASE = 4


class TrialRunner:
    """Trains trials handed over by the queue and reports them over HTTP."""

    def __init__(self, client: HPOJSONClient) -> None:
        self._client = client

    def run(self, message: dict[str, Any], delivery: str = "") -> str:
        """Run the trial in ``message``; returns how it ended (for the worker's log)."""
        assignment = TrialAssignment.model_validate(message)
        if assignment.trainer is None:
            raise ValueError(f"trial {assignment.trial_id} names no trainer")
        run = TrialRun(
            study_id=assignment.study_id,
            trial_id=assignment.trial_id,
            number=assignment.number,
            params=assignment.params,
            settings=assignment.trainer,
            seed=assignment.seed,
        )
        holder = f"{socket.gethostname()}:{os.getpid()}:{delivery}"
        try:
            claimed = self._client.claim(run.trial_id, holder)
            with self._heartbeats(run.trial_id, claimed["lease"], float(claimed["lease_ttl_s"])):
                return self._train_and_complete(run, str(assignment.trainer["name"]), claimed)
        except TrialGone as gone:
            logger.info("trial %s is not this worker's to run (%s): dropped", run.trial_id, gone)
            return "gone"

    def _train_and_complete(self, run: TrialRun, trainer_name: str, claimed: dict[str, Any]) -> str:
        lease = str(claimed["lease"])

        def send_reports(batch: list[tuple[int, float]], stated: Statement) -> dict[str, Any]:
            return self._stating(
                run.trial_id,
                lease,
                stated,
                lambda fields: self._client.report_many(run.trial_id, batch, lease, fields),
            )

        reports = ReportPipeline(
            send_reports,
            # An older service's claim names no step: the first report waits for its answer.
            first_decision_step=claimed.get("next_decision_step", UNKNOWN),
        )
        try:
            return self._train_and_finish(run, trainer_name, lease, reports)
        finally:
            reports.close()

    def _train_and_finish(
        self, run: TrialRun, trainer_name: str, lease: str, reports: ReportPipeline
    ) -> str:
        stating = partial(self._stating, run.trial_id, lease)
        try:
            records = open_records(self._client, run, trainer_name, reports.state)
            with trial_context(records):
                result = load_trainer(trainer_name).train(run, reports.report)
            # Every report sent is answered; those still held, and the provenance not sent yet,
            # go with the completion.
            last_reports, stated = reports.hand_over()
            pruned = reports.pruned or result.pruned
            if pruned and last_reports:  # the trainer stopped on its own: they go as reports
                stating(
                    stated,
                    lambda fields: self._client.report_many(
                        run.trial_id, last_reports, lease, fields
                    ),
                )
                stated = {}
        except (TrialGone, ServiceUnreachable):
            # Not the trainer's failure: the service is out of reach. The lease decides: it
            # expires and the trial runs again with the same parameters.
            raise
        except TrainingFailed as failed:
            # A failure the trainer names (a NaN or exploding loss): its reason, and its epochs.
            _settle(reports)
            records_sent = failed.epoch_metrics[:MAX_EPOCH_RECORDS]
            return self._fail(run, lease, failed.reason, reports.take_statement(), records_sent)
        except Exception as error:
            reason = f"{type(error).__name__}: {error}\n{traceback.format_exc(limit=3)}"
            _settle(reports)
            return self._fail(run, lease, reason, reports.take_statement())
        if pruned:
            # The service pruned it already, with the last reported value; this only confirms.
            stating(
                stated,
                lambda fields: self._client.complete(
                    run.trial_id, state="pruned", lease=lease, provenance=fields
                ),
            )
            return "pruned"
        upload_checkpoint(self._client, records, lease)
        try:
            stating(stated, lambda fields: self._complete(run, result, lease, last_reports, fields))
        except HPOError as refused:
            if refused.status != 422:
                raise
            # The result lacks what the study needs (an objective's or a constraint's figure),
            # or its last reports are refused. Those are recorded where they can be, as a failed
            # trial's are (none left after the older service's path below); so is its provenance,
            # which the refused completion brought.
            _report_quietly(self._client, run.trial_id, last_reports, lease)
            reason = f"the service refused the trial's result: {refused}"
            epochs = [dict(r) for r in result.epoch_metrics[:MAX_EPOCH_RECORDS]]
            return self._fail(run, lease, reason, stated, epochs)
        return "complete"

    def _fail(
        self,
        run: TrialRun,
        lease: str,
        reason: str,
        stated: Statement,
        epoch_metrics: list[dict[str, Any]] | None = None,
    ) -> str:
        """End the trial failed with ``reason``, its epoch records and the provenance ``stated``
        not recorded yet."""
        self._stating(
            run.trial_id,
            lease,
            stated,
            lambda fields: self._client.complete(
                run.trial_id,
                state="failed",
                reason=reason[:MAX_REASON_CHARS],
                lease=lease,
                epoch_metrics=epoch_metrics,
                provenance=fields,
            ),
        )
        return "failed"

    def _complete(
        self,
        run: TrialRun,
        result: TrainResult,
        lease: str,
        last_reports: list[tuple[int, float]],
        stated: Statement,
    ) -> None:
        """Complete the trial, bringing its last reports and the provenance ``stated`` not sent
        yet. A service that does not know the reports' field (one from before completions
        brought reports, during a rolling upgrade) gets them as reports first; ``last_reports``
        is emptied once they are recorded so."""
        fields: dict[str, Any] = {
            "value": result.value,
            "metrics": result.metrics,
            "lease": lease,
            "epoch_metrics": [dict(r) for r in result.epoch_metrics[:MAX_EPOCH_RECORDS]],
            "provenance": stated,
        }
        try:
            self._client.complete(run.trial_id, **fields, reports=last_reports)
        except HPOError as refused:
            if not last_reports or not _names_field(refused, "reports"):
                raise
        else:
            return
        logger.info("trial %s: the service took no reports with the completion", run.trial_id)
        self._client.report_many(run.trial_id, last_reports, lease)
        last_reports.clear()  # recorded: a refusal of the completion below sends them no more
        self._client.complete(run.trial_id, **fields)

    def _stating(
        self, trial_id: int, lease: str, stated: Statement, call: Callable[[Statement], Answer]
    ) -> Answer:
        """``call`` bringing the provenance ``stated``. A service that does not know the field
        (one from before requests brought provenance, during a rolling upgrade) gets it on its
        own first, then ``call`` without it."""
        if not stated:
            return call(None)
        try:
            return call(stated)
        except HPOError as refused:
            if not _names_field(refused, "provenance"):
                raise
        logger.info("trial %s: the service took no provenance with the request", trial_id)
        self._client.record_provenance(trial_id, stated, lease)
        return call(None)

    @contextmanager
    def _heartbeats(self, trial_id: int, lease: str, ttl_s: float) -> Iterator[None]:
        """Renew the lease in the background, so an epoch longer than the lease does not lose it."""
        stop = threading.Event()

        def beat() -> None:
            while not stop.wait(ttl_s / HEARTBEATS_PER_LEASE):
                try:
                    self._client.heartbeat(trial_id, lease)
                except Exception as error:  # the next report says whether the trial is still ours
                    logger.warning("heartbeat for trial %s failed: %s", trial_id, error)

        thread = threading.Thread(target=beat, name=f"heartbeat-{trial_id}", daemon=True)
        thread.start()
        try:
            yield
        finally:
            stop.set()
            thread.join(timeout=5)


def _settle(reports: ReportPipeline) -> None:
    """Before a failed trial's completion: wait for the reports still out."""
    _quietly(reports.flush, "a report of the failing trial")


def _names_field(refused: HPOError, field: str) -> bool:
    """Whether the refusal names ``field`` itself (not one of its parts) among its problems:
    an unknown field is named so, a bad value inside it by its place (``reports.0.value``)."""
    problems = refused.body.get("problems", []) if isinstance(refused.body, dict) else []
    return any(problem.get("field") == field for problem in problems)


def _report_quietly(
    client: HPOJSONClient, trial_id: int, reports: list[tuple[int, float]], lease: str
) -> None:
    """Before a failed trial's completion: send its last reports (none: nothing to send)."""
    if reports:
        _quietly(
            lambda: client.report_many(trial_id, reports, lease), "the failing trial's last reports"
        )


def _quietly(send: Callable[[], object], what: str) -> None:
    """Send ``what`` before a failed trial's completion. A refusal must not hide the trainer's
    failure (the completion carries it): it is logged; a trial taken away ends here."""
    try:
        send()
    except TrialGone:
        raise
    except HPOError as refused:
        logger.warning("%s: refused (%s)", what, refused)
