"""A pool process whose GPU a trial left unusable exits after that trial's task; Celery's prefork
pool starts a fresh one in its place before it takes another trial.

How: :func:`retire_after_this_task` connects, in this process only, a ``task_postrun`` receiver
that raises ``SystemExit``. Connected while the task runs, it is the last receiver, so the task's
own (its log line, its count in the metrics) have run with the trial's outcome. ``SystemExit``
leaves Celery's tracer; billiard's pool process sends it to the node as the job's result, then
exits instead of taking the next job; the node's pool supervisor starts a new process with the
same index (so with ``HPO_GPUS``, the same GPU), which runs ``worker_process_init`` afresh.
``worker_max_tasks_per_child`` would recycle every process after every trial; killing the
process (``os._exit``) would leave billiard without the job's result.

The message: Celery takes the exit as a lost worker (``WorkerLostError``), so with
``task_acks_late`` and ``task_reject_on_worker_lost`` it is not acknowledged but sent back to the
queue. Its trial was failed first: its next claim is refused as gone (409) and the message is
dropped and acknowledged then, unrun. Had the failure not been recorded (the service out of
reach), the trial's lease decides, as for any worker lost.
"""

from __future__ import annotations

import logging
from typing import Any

from celery.signals import task_postrun

logger = logging.getLogger(__name__)
RETIREMENT_RECEIVER = "hpo-retire-process"


def retire_after_this_task() -> None:
    """Have this pool process exit once the task it runs has ended (idempotent)."""
    task_postrun.connect(_exit_process, weak=False, dispatch_uid=RETIREMENT_RECEIVER)


def _exit_process(**_: Any) -> None:
    """After the task's other receivers: leave, for the pool to start a fresh process."""
    logger.error("this worker process's GPU is unusable: it exits, the pool starts a fresh one")
    raise SystemExit(0)
