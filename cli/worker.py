"""``hpo worker``: a Celery worker node, one process per GPU (or ``worker_concurrency`` on the CPU)."""

from __future__ import annotations

from service.json_logs import configure_json_logging
from service.queue_contract import TRIALS_QUEUE
from service.settings import Settings
from workers.celery_app import create_celery
from workers.metrics import serve_worker_metrics


def run_worker(settings: Settings) -> None:
    """Consume trial tasks until stopped."""
    concurrency = len(settings.gpu_list()) or settings.worker_concurrency
    configure_json_logging(settings.log_level)  # before Celery's first warning
    app = create_celery(settings)
    serve_worker_metrics(settings.worker_metrics_port)
    app.worker_main(
        argv=[
            "--quiet",  # no banner: the output is JSON lines only
            "worker",
            f"--loglevel={settings.log_level}",
            f"--concurrency={concurrency}",
            "--pool=prefork",
            f"--queues={TRIALS_QUEUE}",
            "--without-gossip",
            "--without-mingle",
        ]
    )
