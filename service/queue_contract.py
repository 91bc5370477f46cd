"""What the API (the sender) and the workers (the consumer) agree on about the queue.

Both sides build their Celery app from :func:`celery_config`; neither imports the other.
"""

from __future__ import annotations

from typing import Any

from service.settings import Settings

RUN_TRIAL_TASK = "hpo.run_trial"
# Study jobs (service/jobs.py): one task per job kind, on the same queue as the trials.
JOB_TASKS = {"preflight": "hpo.preflight", "evaluate": "hpo.evaluate", "ensemble": "hpo.ensemble"}
TRIALS_QUEUE = "hpo.trials"


def celery_config(settings: Settings) -> dict[str, Any]:
    """Celery settings shared by the API's sender and the workers."""
    return {
        "broker_url": settings.broker_url,
        # No result backend: outcomes travel over HTTP to the service, not through Celery.
        "task_ignore_result": True,
        # JSON only: nothing a message carries is ever unpickled.
        "task_serializer": "json",
        "accept_content": ["json"],
        "task_default_queue": TRIALS_QUEUE,
        # A message is acknowledged after the trial ran, so it is never lost with a worker...
        "task_acks_late": True,
        # ...and re-queued when the worker process dies under it.
        "task_reject_on_worker_lost": True,
        # A trial runs for minutes: one message per process, so no trial waits behind another.
        "worker_prefetch_multiplier": 1,
        "task_time_limit": settings.task_time_limit_s,
        # Redis re-delivers an unacknowledged message after this; it must outlast any task.
        "broker_transport_options": {"visibility_timeout": settings.broker_visibility_timeout_s},
        "broker_connection_retry_on_startup": True,
    }
