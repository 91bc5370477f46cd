"""Runs one study job handed over by the queue: start it, do the work, send the outcome over HTTP.

The work of the job tasks (``hpo.preflight``, ``hpo.evaluate``, ``hpo.ensemble``), testable
without a broker. Idempotent: a job that ended is refused at the start (409) and dropped, and
only the first outcome the service receives counts.
"""

from __future__ import annotations

import logging
from contextlib import AbstractContextManager, nullcontext
from functools import partial
from typing import Any

from pydantic import BaseModel

from client import HPOError, HPOJSONClient, ServiceUnreachable
from service.job_store import JobKind
from service.jobs import JobMessage
from service.preflight import PreflightSpec
from workers.dataset_cache import DEFAULT_CACHE_BYTES, DatasetCache
from workers.ensemble import score_ensemble
from workers.job_models import REGULARISERS_OFF, model_builder, seeded_factory, trainer_data
from workers.preflight import run_checks
from workers.provenance import DatasetFetcher, registered_datasets
from workers.renewals import renewed
from workers.vault import part_tensors, score_test_split, trial_models

logger = logging.getLogger(__name__)
MAX_REASON_CHARS = 1500


class JobRunner:
    """Runs study jobs and reports them over HTTP."""

    def __init__(
        self, client: HPOJSONClient, dataset_cache_bytes: int = DEFAULT_CACHE_BYTES
    ) -> None:
        self._client = client
        self._dataset_cache_bytes = dataset_cache_bytes

    def run(self, message: dict[str, Any]) -> str:
        """Run the job in ``message``; returns how it ended (for the worker's log)."""
        job_id = int(message["job_id"])
        try:
            job = JobMessage.model_validate(self._client.start_job(job_id))
        except HPOError as refused:
            if refused.status not in (404, 409):
                raise
            logger.info("job %s is not to run (%s): dropped", job_id, refused)
            return "gone"
        try:
            with (
                _renewals(self._client, job_id, job.lease_ttl_s),
                registered_datasets(self._datasets(job.study_id)),
            ):
                result = self._work(job)
        except ServiceUnreachable:
            raise  # the service is out of reach: the message is redelivered, or the job times out
        except Exception as error:
            # The study's owner reads the reason; the traceback (the service's own code, the
            # worker's paths) goes to the worker's log.
            logger.exception("job %s failed", job_id)
            reason = f"{type(error).__name__}: {error}"
            return self._finish(job_id, None, reason[:MAX_REASON_CHARS]) or "failed"
        return self._finish(job_id, result.model_dump(mode="json"), None) or "done"

    def _datasets(self, study_id: int) -> DatasetFetcher:
        cache = DatasetCache(self._client, study_id=study_id, limit_bytes=self._dataset_cache_bytes)
        return cache.fetch

    def _finish(self, job_id: int, result: dict[str, Any] | None, reason: str | None) -> str:
        """Send the outcome; ``"gone"`` when the study was deleted meanwhile, else ``""``."""
        try:
            self._client.finish_job(job_id, result=result, reason=reason)
        except HPOError as refused:
            if refused.status != 404:
                raise
            logger.info("job %s was deleted with its study: its outcome is dropped", job_id)
            return "gone"
        return ""

    def _work(self, job: JobMessage) -> BaseModel:
        if job.trainer is None:
            raise ValueError(f"study {job.study_id} has no trainer to build models with")
        data = trainer_data(job.trainer)
        if job.kind is JobKind.PREFLIGHT:
            return self._preflight(job, job.preflight or PreflightSpec(), data)
        models = trial_models(self._client, [trial.trial_id for trial in job.trials])
        if job.kind is JobKind.EVALUATE:
            return score_test_split(models, data.test)
        return score_ensemble(models, data.validation)

    @staticmethod
    def _preflight(job: JobMessage, spec: PreflightSpec, data: Any) -> BaseModel:
        assert job.trainer is not None
        build = model_builder(str(job.trainer["name"]))
        params = {**spec.params, **REGULARISERS_OFF}
        factory = seeded_factory(build, job.trainer, params, data.num_features, data.num_classes)
        features, labels = part_tensors(data.train)
        return run_checks(factory, features, labels, data.num_classes, spec)


def _renewals(
    client: HPOJSONClient, job_id: int, lease_ttl_s: float | None
) -> AbstractContextManager[None]:
    """The job started again in the background while it runs, which renews its time, so a job
    longer than ``lease_ttl_s`` is not timed out under its worker (an older service: none)."""
    if lease_ttl_s is None:
        return nullcontext()
    return renewed(f"job {job_id}", partial(client.start_job, job_id), lease_ttl_s)
