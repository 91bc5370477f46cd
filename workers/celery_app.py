"""The worker's Celery app, built from the settings: one task, ``hpo.run_trial``, kept thin."""

from __future__ import annotations

import logging
import os
from collections.abc import Callable
from typing import Any

from celery import Celery
from celery.signals import worker_process_init

from client import HPOJSONClient
from client.http_client import retries_lasting
from service.errors import RETRY_AFTER_S
from service.long_lived import freeze_startup_objects
from service.queue_contract import JOB_TASKS, RUN_TRIAL_TASK, celery_config, soft_time_limit_s
from service.settings import Settings
from workers.jobs import JobRunner
from workers.metrics import MeteredClient
from workers.process_retirement import retire_after_this_task
from workers.trial_claim import ClaimNotMade, claim_retry_delay_s
from workers.trial_runner import TrialRunner
from workers.worker_logs import connect_log_signals

logger = logging.getLogger(__name__)
# How long past a lease the worker's calls retry: an expired lease is failed within the API's
# reaper interval (HPO_REAPER_INTERVAL_S, 5 s by default), once the API is back.
LEASE_MARGIN_S = 30.0


def create_celery(settings: Settings) -> Celery:
    """A Celery app whose task runs trials and reports to ``settings.service_url``."""
    app = Celery("hpo-worker")
    app.conf.update(celery_config(settings))
    connect_log_signals()
    clients: dict[int, HPOJSONClient] = {}

    def client() -> HPOJSONClient:
        # One HTTP session per worker process, made after the fork.
        pid = os.getpid()
        if pid not in clients:
            clients[pid] = worker_client(settings)
        return clients[pid]

    def runner() -> TrialRunner:
        # A trial that leaves the GPU unusable (a sticky CUDA error) is failed with its reason,
        # then this process exits and the pool starts a fresh one in its place.
        time_limit_s = soft_time_limit_s(settings.task_time_limit_s)
        return TrialRunner(
            client(),
            time_limit_s,
            on_device_unusable=retire_after_this_task,
            dataset_cache_bytes=settings.worker_dataset_cache_bytes,
        )

    # No limit on the times a message goes back: the trial's lease ends its wait (a message of
    # a trial the service retried meanwhile is refused as gone at its next claim).
    @app.task(name=RUN_TRIAL_TASK, bind=True, max_retries=None)
    def run_trial(task: Any, assignment: dict[str, Any]) -> str:
        try:
            return runner().run(assignment, delivery=str(task.request.id))
        except ClaimNotMade as not_made:
            # The trial has not started: its message goes back to the queue, for later, instead
            # of being acknowledged with the error (acks_late acknowledges a failed task).
            delay_s = claim_retry_delay_s(int(task.request.retries or 0))
            raise task.retry(exc=not_made, countdown=delay_s) from not_made

    def job_runner() -> JobRunner:
        return JobRunner(client(), settings.worker_dataset_cache_bytes)

    for task_name in JOB_TASKS.values():  # pre-flight, evaluate, ensemble: one runner
        _register_job_task(app, task_name, job_runner)
    return app


def worker_client(settings: Settings) -> HPOJSONClient:
    """The worker's HTTP client (one per worker process). Its calls retry for longer than a
    trial's lease, ``HPO_LEASE_TTL_S``, which the worker and the API must therefore be given
    alike: an API restarting, or its database, for less than three quarters of the lease (a
    heartbeat renews it every quarter) leaves the running trials running; for longer, the lease
    may have expired, and the next answer says the trial is gone (the client's default retries
    last about a minute)."""
    outage_s = settings.lease_ttl_s + LEASE_MARGIN_S
    retries = retries_lasting(outage_s, longest_wait_s=RETRY_AFTER_S)
    return MeteredClient(settings.service_url, settings.bearer_token(), retries=retries)


def _register_job_task(app: Celery, task_name: str, runner: Callable[[], JobRunner]) -> None:
    """A thin task that hands a study job's message to the job runner."""

    @app.task(name=task_name)
    def run_job(message: dict[str, Any]) -> str:
        return runner().run(message)


@worker_process_init.connect
def _prepare_process(**_: Any) -> None:
    """Runs in each worker process before its first trial: shares out the devices, then freezes
    what start-up made (``service/long_lived.py``: a full garbage collection in a worker with
    PyTorch loaded took about 210 ms, once every 20 or so small trials, in the middle of an
    epoch; 25 ms frozen)."""
    _share_out_devices(Settings())
    freeze_startup_objects()


def _warn_without_cuda(index: int) -> None:
    """A process pinned to a GPU that CUDA does not see (no driver, a wrong index in
    ``HPO_GPUS``) trains on the CPU under ``device: auto``, hours slower: say so at start."""
    import torch

    if not torch.cuda.is_available():
        logger.warning(
            "worker process %s: HPO_GPUS pins it to GPU %s, and CUDA sees no GPU there: trials "
            "of device 'auto' train on the CPU",
            index,
            os.environ["CUDA_VISIBLE_DEVICES"],
        )


def _share_out_devices(settings: Settings) -> None:
    """With GPUs, process i sees GPU i only. The CPU's threads (the data's preparation, and the
    training on the CPU) are ``HPO_WORKER_TORCH_THREADS``, or without it the cores shared out
    between the processes on the CPU (PyTorch's own default, every core, with GPUs). PyTorch
    came with the parent process; CUDA starts lazily, at a trial's first use of it, after this."""
    from billiard.process import current_process

    gpus = settings.gpu_list()
    index = getattr(current_process(), "index", None)
    threads = settings.worker_torch_threads
    if gpus and index is not None:
        os.environ["CUDA_VISIBLE_DEVICES"] = gpus[index % len(gpus)]
        logger.info("worker process %s pinned to GPU %s", index, os.environ["CUDA_VISIBLE_DEVICES"])
        _warn_without_cuda(index)
    elif not threads:
        threads = max(1, (os.cpu_count() or 1) // settings.worker_concurrency)
    if threads:
        import torch

        torch.set_num_threads(threads)
