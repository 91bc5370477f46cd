"""Sends trial assignments to the workers as Celery tasks, by task name.

``api/`` never imports ``workers/``: the task name in ``service.queue_contract`` is the contract.
"""

from __future__ import annotations

import logging
import re
import uuid
from collections.abc import Collection

import redis
from celery import Celery

from service.dispatch import TrialAssignment
from service.jobs import JobMessage
from service.queue_contract import (
    JOB_TASKS,
    QUEUE_LISTS,
    RUN_TRIAL_TASK,
    TRIALS_QUEUE,
    celery_config,
)
from service.settings import Settings

logger = logging.getLogger(__name__)
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
        self._broker_url = settings.broker_url

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

    def queued_trials(self, trial_ids: Collection[int]) -> set[int] | None:
        """Those of ``trial_ids`` whose message waits in the broker's queue, read from its Redis
        lists a page at a time until all are found (a message's ``id`` header is
        ``trial-<id>``); ``None`` where the queue cannot be read (the broker does not answer, or
        its URL is not one redis-py reads: a Sentinel's). A message a worker took is gone."""
        wanted = set(trial_ids)
        try:
            client = redis.Redis.from_url(
                self._broker_url,
                socket_timeout=SEND_SOCKET_TIMEOUT_S,
                socket_connect_timeout=SEND_SOCKET_TIMEOUT_S,
            )
            with client:
                return _found_in_lists(client, wanted)
        except Exception as error:  # any failure to read: the reaper does as it did without
            logger.warning("the queue cannot be read: %s", error)
            return None

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


# A trial message's task id in its headers, as kombu's Redis transport stores the message (JSON;
# the body is base64, so nothing in it matches).
_TRIAL_ID_HEADER = re.compile(rb'"id": "trial-(\d+)"')


QUEUE_PAGE = 500  # messages read at once: a long queue is read in pages, not in one reply


def _found_in_lists(client: redis.Redis, wanted: set[int]) -> set[int]:
    """Those of ``wanted`` whose message is in one of the queue's lists."""
    found: set[int] = set()
    for name in QUEUE_LISTS:
        start = 0
        while found != wanted and (page := client.lrange(name, start, start + QUEUE_PAGE - 1)):
            found |= {int(i) for raw in page for i in _TRIAL_ID_HEADER.findall(_bytes(raw))}
            found &= wanted
            start += QUEUE_PAGE
    return found


def _bytes(raw: bytes | str) -> bytes:
    return raw if isinstance(raw, bytes) else raw.encode()
