"""Runs one trial: the trainer trains, each epoch is reported, and the end is told to the service.

The work of the Celery task, testable without a broker. Idempotent: a trial the service already
considers finished is refused at the first report (409) and left alone.
"""

from __future__ import annotations

import logging
import traceback
from typing import Any

from client import HPOClient, TrialGone
from service.dispatch import TrialAssignment
from workers.trainer_loader import load_trainer
from workers.trainers.base import EpochReporter, TrialRun

logger = logging.getLogger(__name__)
MAX_REASON_CHARS = 1500


class TrialRunner:
    """Trains trials handed over by the queue and reports them over HTTP."""

    def __init__(self, client: HPOClient) -> None:
        self._client = client

    def run(self, message: dict[str, Any]) -> str:
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
        try:
            return self._train_and_complete(run, str(assignment.trainer["name"]))
        except TrialGone as gone:
            logger.info("trial %s is no longer running (%s): left alone", run.trial_id, gone)
            return "gone"

    def _train_and_complete(self, run: TrialRun, trainer_name: str) -> str:
        try:
            result = load_trainer(trainer_name).train(run, self._reporter(run.trial_id))
        except TrialGone:
            raise
        except Exception as error:
            reason = f"{type(error).__name__}: {error}\n{traceback.format_exc(limit=3)}"
            self._client.complete(run.trial_id, state="failed", reason=reason[:MAX_REASON_CHARS])
            return "failed"
        if result.pruned:
            # The service pruned it already, with the last reported value; this only confirms.
            self._client.complete(run.trial_id, state="pruned")
            return "pruned"
        self._client.complete(run.trial_id, value=result.value)
        return "complete"

    def _reporter(self, trial_id: int) -> EpochReporter:
        def report(epoch: int, value: float) -> bool:
            return self._client.report(trial_id, epoch, value)

        return report
