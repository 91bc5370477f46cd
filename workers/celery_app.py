"""The worker's Celery app, built from the settings: one task, ``hpo.run_trial``, kept thin."""

from __future__ import annotations

import logging
import os
from typing import Any

from celery import Celery
from celery.signals import worker_process_init

from client import HPOClient
from service.queue_contract import RUN_TRIAL_TASK, celery_config
from service.settings import Settings
from workers.trial_runner import TrialRunner

logger = logging.getLogger(__name__)


def create_celery(settings: Settings) -> Celery:
    """A Celery app whose task runs trials and reports to ``settings.service_url``."""
    app = Celery("hpo-worker")
    app.conf.update(celery_config(settings))
    runners: dict[int, TrialRunner] = {}

    def runner() -> TrialRunner:
        # One HTTP session per worker process, made after the fork.
        pid = os.getpid()
        if pid not in runners:
            runners[pid] = TrialRunner(HPOClient(settings.service_url, settings.bearer_token()))
        return runners[pid]

    @app.task(name=RUN_TRIAL_TASK, bind=True)
    def run_trial(task: Any, assignment: dict[str, Any]) -> str:
        return runner().run(assignment, delivery=str(task.request.id))

    return app


@worker_process_init.connect
def _prepare_process(**_: Any) -> None:
    """Runs in each worker process before its first trial, before CUDA or torch start.

    With GPUs, process i sees GPU i only. On the CPU, the cores are shared out between the
    processes, so that they do not oversubscribe the machine.
    """
    from billiard.process import current_process

    settings = Settings()
    gpus = settings.gpu_list()
    index = getattr(current_process(), "index", None)
    if gpus and index is not None:
        os.environ["CUDA_VISIBLE_DEVICES"] = gpus[index % len(gpus)]
        logger.info("worker process %s pinned to GPU %s", index, os.environ["CUDA_VISIBLE_DEVICES"])
        return
    threads = max(1, (os.cpu_count() or 1) // settings.worker_concurrency)
    import torch  # first import in this process: set before any work

    torch.set_num_threads(threads)
