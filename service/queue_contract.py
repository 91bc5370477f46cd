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
# kombu's Redis transport keeps a queue's priorities 3, 6 and 9 in lists of their own.
QUEUE_LISTS = (TRIALS_QUEUE, *(f"{TRIALS_QUEUE}\x06\x16{p}" for p in (3, 6, 9)))
# The soft time limit comes this long before the hard one (a tenth of it, from 5 s to 5 min): time
# for the trial to send its failure before the hard limit kills the process.
SOFT_LIMIT_MARGIN_S = (5, 300)


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
        # A hung or overlong trial is stopped before it: SoftTimeLimitExceeded in the trial fails
        # it with the reason, for good. Killed by the hard limit, its message is acknowledged and
        # its lease expires: failed as "worker lost" and run again, as long, up to max_retries.
        "task_soft_time_limit": soft_time_limit_s(settings.task_time_limit_s),
        # Redis re-delivers an unacknowledged message after this; it must outlast any task.
        "broker_transport_options": {"visibility_timeout": settings.broker_visibility_timeout_s},
        "broker_connection_retry_on_startup": True,
        # A trial under way goes on through a broker restart (its lease is the service's, not
        # the broker's; its message, delivered again, is refused on claim). Said here, not left
        # to Celery's default, which Celery warns it may change.
        "worker_cancel_long_running_tasks_on_connection_loss": False,
    }


def soft_time_limit_s(time_limit_s: int) -> int | None:
    """The soft time limit before the hard ``time_limit_s`` (``None``: too short for one)."""
    low, high = SOFT_LIMIT_MARGIN_S
    soft = time_limit_s - min(high, max(low, time_limit_s // 10))
    return soft if soft >= 1 else None
