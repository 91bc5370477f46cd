"""Sends trial assignments to the workers as Celery tasks, by task name.

``api/`` never imports ``workers/``: the task name in ``service.queue_contract`` is the contract.
"""

from __future__ import annotations

import uuid

from celery import Celery

from service.dispatch import TrialAssignment
from service.jobs import JobMessage
from service.queue_contract import JOB_TASKS, RUN_TRIAL_TASK, TRIALS_QUEUE, celery_config
from service.settings import Settings

SEND_SOCKET_TIMEOUT_S = 2.0
SEND_RETRY_POLICY = {
    "max_retries": 3,
    "interval_start": 0.2,
    "interval_step": 0.5,
    "interval_max": 2,
}


class CeleryDispatcher:
    """A sender-only Celery app configured from the same settings as the workers."""

    def __init__(self, settings: Settings) -> None:
        self._celery = Celery("hpo-api")
        config = celery_config(settings)
        # A broker that takes the connection and never answers would hold the request for ever
        # (Redis's client waits without a limit): each read and connect gives up after this.
        config["broker_transport_options"] = {
            **config["broker_transport_options"],
            "socket_timeout": SEND_SOCKET_TIMEOUT_S,
            "socket_connect_timeout": SEND_SOCKET_TIMEOUT_S,
        }
        self._celery.conf.update(config)

    def dispatch(self, assignment: TrialAssignment) -> None:
        """Queue one trial; the task id is the trial id, so a trial is one message."""
        self._celery.send_task(
            RUN_TRIAL_TASK,
            kwargs={"assignment": assignment.model_dump(mode="json")},
            queue=TRIALS_QUEUE,
            task_id=f"trial-{assignment.trial_id}",
            retry=True,
            retry_policy=SEND_RETRY_POLICY,
        )

    def dispatch_job(self, message: JobMessage) -> None:
        """Queue a study job (pre-flight, evaluation, ensemble) under its kind's task name."""
        self._celery.send_task(
            JOB_TASKS[message.kind.value],
            kwargs={"message": message.model_dump(mode="json")},
            queue=TRIALS_QUEUE,
            task_id=f"job-{message.job_id}-{uuid.uuid4().hex[:8]}",
            retry=True,
            retry_policy=SEND_RETRY_POLICY,
        )
