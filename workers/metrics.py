"""A worker node's Prometheus metrics on ``HPO_WORKER_METRICS_PORT`` (0: off).

- ``hpo_worker_trials_total{outcome}``: trial tasks run, by how they ended (complete, pruned,
  failed, gone);
- ``hpo_worker_epochs_total``: epochs trained (reports sent);
- ``hpo_worker_gpu_utilization_ratio{gpu}``, ``hpo_worker_gpu_memory_used_bytes{gpu}``,
  ``hpo_worker_gpu_memory_total_bytes{gpu}``: per GPU of the node, read through NVML (the
  ``nvidia-ml-py`` package) at scrape time; absent on a node without NVIDIA GPUs.

Trials run in Celery's child processes; the node's main process serves the figures of all of them
through prometheus_client's multiprocess mode (a directory of per-process files). NVML is read in
the main process, which never starts CUDA itself (it would not survive the fork).
"""

from __future__ import annotations

import logging
import os
import tempfile
from collections.abc import Iterator
from functools import cache
from typing import Any

from celery.signals import task_postrun
from prometheus_client import CollectorRegistry, Counter, start_http_server, values
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.multiprocess import MultiProcessCollector
from prometheus_client.registry import Collector

from client import HPOJSONClient
from service.queue_contract import RUN_TRIAL_TASK

logger = logging.getLogger(__name__)
MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"
TRIAL_OUTCOMES = frozenset({"complete", "pruned", "failed", "gone"})  # TrialRunner.run's answers


class WorkerCounters:
    """The counters the trial tasks update (made after the multiprocess mode is chosen)."""

    def __init__(self) -> None:
        self.trials = Counter(
            "hpo_worker_trials", "Trial tasks run, by outcome.", ["outcome"], registry=None
        )
        self.epochs = Counter("hpo_worker_epochs", "Epochs trained (reports sent).", registry=None)


@cache
def counters() -> WorkerCounters:
    """This process's counters."""
    return WorkerCounters()


class MeteredClient(HPOJSONClient):
    """The HTTP client of the trial runner, counting each epoch it reports."""

    def report_decision(self, *args: Any, **kwargs: Any) -> dict[str, Any]:
        answer = super().report_decision(*args, **kwargs)
        counters().epochs.inc()
        return answer

    def report_many(
        self,
        trial_id: int,
        reports: list[tuple[int, float]],
        lease: str | None = None,
        provenance: dict[str, Any] | None = None,
    ) -> dict[str, Any]:
        answer = super().report_many(trial_id, reports, lease, provenance)
        counters().epochs.inc(len(reports))
        return answer

    def complete(self, *args: Any, **kwargs: Any) -> dict[str, Any]:
        answer = super().complete(*args, **kwargs)
        counters().epochs.inc(len(kwargs.get("reports") or []))  # the last epochs' reports
        return answer


class GpuCollector(Collector):
    """Utilisation and memory of each NVIDIA GPU of the node, read through NVML at scrape time."""

    def collect(self) -> Iterator[Metric]:
        try:
            import pynvml
        except ImportError:  # nvidia-ml-py is not installed: no GPU figures
            return
        try:
            pynvml.nvmlInit()
        except pynvml.NVMLError as error:  # no driver or no GPU: no GPU figures
            logger.debug("no GPU metrics: %s", error)
            return
        try:
            yield from self._families(pynvml)
        finally:
            pynvml.nvmlShutdown()

    def _families(self, nvml: Any) -> Iterator[Metric]:
        used = GaugeMetricFamily(
            "hpo_worker_gpu_memory_used_bytes", "GPU memory in use.", labels=["gpu"]
        )
        total = GaugeMetricFamily(
            "hpo_worker_gpu_memory_total_bytes", "GPU memory.", labels=["gpu"]
        )
        busy = GaugeMetricFamily(
            "hpo_worker_gpu_utilization_ratio",
            "Share of the last sample period a kernel ran on the GPU.",
            labels=["gpu"],
        )
        for index in range(nvml.nvmlDeviceGetCount()):
            handle = nvml.nvmlDeviceGetHandleByIndex(index)
            memory = nvml.nvmlDeviceGetMemoryInfo(handle)
            used.add_metric([str(index)], float(memory.used))
            total.add_metric([str(index)], float(memory.total))
            busy.add_metric([str(index)], nvml.nvmlDeviceGetUtilizationRates(handle).gpu / 100)
        yield from (busy, used, total)


def serve_worker_metrics(port: int) -> CollectorRegistry | None:
    """In the node's main process, before Celery forks: choose the multiprocess mode and serve
    the metrics on ``port`` (0: nothing)."""
    if port == 0:
        return None
    if not os.environ.get(MULTIPROC_ENV):  # the operator's directory, or an empty one of ours
        os.environ[MULTIPROC_ENV] = tempfile.mkdtemp(prefix="hpo-worker-metrics-")
    # prometheus_client reads the variable when first imported, which may have been earlier.
    values.ValueClass = values.get_value_class()
    registry = CollectorRegistry()
    MultiProcessCollector(registry)
    registry.register(GpuCollector())
    task_postrun.connect(_count_trial, weak=False, dispatch_uid="hpo-worker-trial-count")
    start_http_server(port, registry=registry)
    logger.info("worker metrics on port %s", port)
    return registry


def _count_trial(task: Any = None, retval: Any = None, **_: Any) -> None:
    if task is not None and task.name == RUN_TRIAL_TASK:
        outcome = retval if retval in TRIAL_OUTCOMES else "error"
        counters().trials.labels(outcome=outcome).inc()
