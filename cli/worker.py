"""``hpo worker``: a Celery worker node, one process per GPU (or ``worker_concurrency`` on the CPU)."""

from __future__ import annotations

from service.queue_contract import TRIALS_QUEUE
from service.settings import Settings
from workers.celery_app import create_celery


def run_worker(settings: Settings) -> None:
    """Consume trial tasks until stopped."""
    concurrency = len(settings.gpu_list()) or settings.worker_concurrency
    app = create_celery(settings)
    app.worker_main(
        argv=[
            "worker",
            f"--loglevel={settings.log_level}",
            f"--concurrency={concurrency}",
            "--pool=prefork",
            f"--queues={TRIALS_QUEUE}",
            "--without-gossip",
            "--without-mingle",
        ]
    )
