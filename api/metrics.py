"""``GET /metrics``: the service's figures in Prometheus' text format.

Studies and trials by state, leases expired and busy workers are read from the database at scrape
time, so every API process answers the same. The queue depth is the length of the trials queue's
Redis lists. The report latency is a histogram observed by this process, the webhook events'
outcomes a counter of it (no ``_created`` series beside them); with several gunicorn processes
set ``PROMETHEUS_MULTIPROC_DIR`` (prometheus_client's multiprocess mode) and each scrape sums
every process's observations.

Open when ``HPO_METRICS_TOKEN`` is unset (the figures are counts: no names, ids or tenants); with
it set, a scraper sends ``Authorization: Bearer <that token>``.
"""

from __future__ import annotations

import hmac
import logging
import os
import time
from collections.abc import Iterator

import redis
from flask import Blueprint, Flask, Response, g, request
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Histogram,
    disable_created_metrics,
    generate_latest,
)
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.multiprocess import MultiProcessCollector
from prometheus_client.registry import Collector

from api.errors import error_response
from service.metrics_figures import read_figures
from service.queue_contract import QUEUE_LISTS
from service.settings import Settings
from service.spec.webhook import WEBHOOK_EVENTS
from service.storage.database import Database
from service.webhooks import OUTCOMES, sender

logger = logging.getLogger(__name__)
# One report, and several epochs' reports in one request (what the workers send).
REPORT_ENDPOINTS = frozenset({"trials.report", "trials.report_many"})
METRICS_ENDPOINT = "metrics.metrics"
REPORT_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)


class ServiceCollector(Collector):
    """Yields the database's figures and the queue depth at each scrape."""

    def __init__(self, database: Database, broker_url: str) -> None:
        self._database = database
        self._broker_url = broker_url

    def collect(self) -> Iterator[Metric]:
        figures = read_figures(self._database)
        yield _by_state("hpo_studies", "Studies by state.", figures.studies_by_state)
        yield _by_state("hpo_trials", "Trials by state.", figures.trials_by_state)
        yield CounterMetricFamily(
            "hpo_leases_expired",
            "Trials failed because their lease expired (worker lost, or message never claimed).",
            value=figures.leases_expired,
        )
        yield GaugeMetricFamily(
            "hpo_jobs_running",
            "Study jobs (the vault's evaluations, ensembles) a worker runs now.",
            value=figures.jobs_running,
        )
        yield GaugeMetricFamily(
            "hpo_workers_busy",
            "Worker processes holding a live lease on a trial now (host:pid of the claims).",
            value=figures.busy_workers,
        )
        depth = self._queue_depth()
        if depth is not None:
            yield GaugeMetricFamily(
                "hpo_queue_depth", "Trial messages waiting in the broker's queue.", value=depth
            )
            yield GaugeMetricFamily(
                "hpo_workers_wanted",
                "Worker processes the work in hand asks for: those training a trial or running a "
                "study job, and one per message waiting (what an autoscaler scales on; the queue "
                "alone leaves out the busy).",
                value=figures.busy_workers + figures.jobs_running + depth,
            )

    def _queue_depth(self) -> int | None:
        try:
            client = redis.Redis.from_url(self._broker_url, socket_timeout=1)
            with client.pipeline() as pipe:
                for name in QUEUE_LISTS:
                    pipe.llen(name)
                return sum(int(length) for length in pipe.execute())
        except redis.RedisError as error:  # a scrape still shows the database's figures
            logger.warning("queue depth unknown: %s", error)
            return None


def register_metrics(app: Flask, database: Database, settings: Settings) -> None:
    """Serve ``/metrics``, time every report request and count the webhook events' outcomes."""
    disable_created_metrics()  # a counter's or histogram's start time, as a gauge of its own
    report_seconds = Histogram(
        "hpo_report_seconds",
        "Time to serve a report request, POST /trials/{id}/report or /reports (the prune "
        "decision included).",
        buckets=REPORT_BUCKETS,
        registry=None,
    )
    webhook_outcomes = Counter(
        "hpo_webhook_deliveries",
        "Webhook events by outcome: delivered, given_up (every attempt failed), refused (the "
        "receiver's address is not allowed) or dropped (its queue was full).",
        ["event", "outcome"],
        registry=None,
    )
    for event in WEBHOOK_EVENTS:
        for outcome in OUTCOMES:
            webhook_outcomes.labels(event, outcome)  # every series shown from the start, at 0
    sender().on_outcome = lambda event, outcome: webhook_outcomes.labels(event, outcome).inc()
    registry = CollectorRegistry()
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        MultiProcessCollector(registry)
    else:
        registry.register(report_seconds)
        registry.register(webhook_outcomes)
    registry.register(ServiceCollector(database, settings.broker_url))
    token = settings.metrics_token.get_secret_value() if settings.metrics_token else None
    blueprint = Blueprint("metrics", __name__)

    @blueprint.get("/metrics")
    def metrics() -> Response:
        if token is not None and not _bearer_matches(token):
            problem = "missing or wrong bearer token (HPO_METRICS_TOKEN)"
            return error_response(401, problem, [{"field": "Authorization", "problem": problem}])
        return Response(generate_latest(registry), content_type=CONTENT_TYPE_LATEST)

    @app.before_request
    def _start_clock() -> None:
        if request.endpoint in REPORT_ENDPOINTS:
            g.hpo_report_started = time.perf_counter()

    @app.teardown_request
    def _observe(_: BaseException | None) -> None:
        started = g.pop("hpo_report_started", None)
        if started is not None:
            report_seconds.observe(time.perf_counter() - started)

    app.register_blueprint(blueprint)


def _by_state(name: str, documentation: str, counts: dict[str, int]) -> GaugeMetricFamily:
    family = GaugeMetricFamily(name, documentation, labels=["state"])
    for state, count in sorted(counts.items()):
        family.add_metric([state], count)
    return family


def _bearer_matches(token: str) -> bool:
    scheme, _, given = request.headers.get("Authorization", "").partition(" ")
    return scheme.lower() == "bearer" and hmac.compare_digest(
        given.strip().encode(), token.encode()
    )
