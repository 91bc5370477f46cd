"""``hpo worker``: a Celery worker node, one process per GPU (or ``worker_concurrency`` on the CPU)."""

from __future__ import annotations

from cli.errors import CLI_RETRIES, SettingError
from client import HPOJSONClient
from service.json_logs import configure_json_logging
from service.queue_contract import TRIALS_QUEUE
from service.settings import Settings
from workers.celery_app import create_celery
from workers.metrics import serve_worker_metrics
from workers.trial_claim import WorkerTokenRefused, check_worker_token


def run_worker(settings: Settings) -> None:
    """Consume trial tasks until stopped."""
    concurrency = len(settings.gpu_list()) or settings.worker_concurrency
    configure_json_logging(settings.log_level)  # before Celery's first warning
    _check_token(settings)
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


def _check_token(settings: Settings) -> None:
    """Refuse to start with a token the service refuses: the worker would take every trial's
    message and send it back, and look healthy doing it."""
    client = HPOJSONClient(settings.service_url, settings.bearer_token(), retries=CLI_RETRIES)
    try:
        check_worker_token(client)
    except WorkerTokenRefused as refused:
        raise SettingError(str(refused)) from None
