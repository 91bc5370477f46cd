"""Simulated workers against the service's HTTP API: ask, report every epoch, complete.

Each worker is a thread with its own keep-alive client, calling the endpoints an external
program (and, after its claim, a Celery worker) calls. Latencies are request-to-answer.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from typing import Any

from bench.common import SPACE, trial_value
from client import HPOJSONClient
from client.http_client import HPOError
from workers.report_pipeline import ReportPipeline


@dataclass
class DriveResult:
    """What one study run measured: each ask's and each report's latency, by trial number."""

    wall_s: float = 0.0
    ask_ms_by_trial: list[tuple[int, float]] = field(default_factory=list)
    report_ms_by_trial: list[tuple[int, float]] = field(default_factory=list)

    @property
    def trials(self) -> int:
        return len(self.ask_ms_by_trial)

    @property
    def reports(self) -> int:
        return len(self.report_ms_by_trial)

    @property
    def ask_ms(self) -> list[float]:
        return [ms for _, ms in self.ask_ms_by_trial]

    @property
    def report_ms(self) -> list[float]:
        return [ms for _, ms in self.report_ms_by_trial]

    def first_trials(self, count: int) -> tuple[list[float], list[float]]:
        """Ask and report latencies of the trials numbered below ``count`` (the same history
        another system reached)."""
        asks = [ms for number, ms in self.ask_ms_by_trial if number < count]
        reports = [ms for number, ms in self.report_ms_by_trial if number < count]
        return asks, reports


def study_spec(
    name: str, n_trials: int, epochs: int, workers: int, sampler: str = "tpe"
) -> dict[str, Any]:
    """A trainer-less study (TPE by default) + Hyperband of ``n_trials`` trials of ``epochs`` reports."""
    return {
        "name": name,
        "space": SPACE,
        "sampler": {"name": sampler, "seed": 0},
        "pruner": {"name": "hyperband", "min_resource": 1, "max_resource": epochs},
        "budget": {"n_trials": n_trials, "max_concurrent_trials": workers},
    }


def drive(
    url: str,
    n_trials: int,
    epochs: int,
    workers: int,
    sampler: str = "tpe",
    *,
    batched: bool = False,
) -> DriveResult:
    """Run one study with ``workers`` concurrent simulated workers until its budget is spent.
    ``batched``: each worker reports as the Celery workers do (``ReportPipeline``: reports before
    a decision step held and sent together, waiting only at decision steps); its report latencies
    are then the trainer's wait at each epoch, not request round trips, and are not kept."""
    setup = HPOJSONClient(url)
    spec = study_spec(f"bench-{time.time_ns()}", n_trials, epochs, workers, sampler)
    study_id = setup.create_study(spec)["study_id"]
    result = DriveResult()
    guard = threading.Lock()
    failures: list[BaseException] = []

    def work() -> None:
        try:
            _worker(url, study_id, epochs, result, guard, batched)
        except BaseException as failure:  # raised below: a broken run must not read as 0/s
            failures.append(failure)

    threads = [threading.Thread(target=work) for _ in range(workers)]
    started = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    result.wall_s = time.perf_counter() - started
    if failures:
        raise failures[0]
    return result


def _worker(
    url: str,
    study_id: int,
    epochs: int,
    result: DriveResult,
    guard: threading.Lock,
    batched: bool,
) -> None:
    client = HPOJSONClient(url)
    while True:
        started = time.perf_counter()
        try:
            trial = client.ask(study_id)
        except HPOError as error:
            if error.status == 409:  # the budget is spent
                return
            raise
        ask_ms = (time.perf_counter() - started) * 1000
        reports = (
            _run_batched_trial(client, trial, epochs)
            if batched
            else _run_trial(client, trial, epochs)
        )
        with guard:
            number = trial["number"]
            result.ask_ms_by_trial.append((number, ask_ms))
            result.report_ms_by_trial += [(number, latency) for latency in reports]


def _run_trial(client: HPOJSONClient, trial: dict[str, Any], epochs: int) -> list[float]:
    latencies: list[float] = []
    lease = trial.get("lease")
    value = 0.0
    for step in range(1, epochs + 1):
        value = trial_value(trial["params"], step)
        started = time.perf_counter()
        pruned = client.report(trial["trial_id"], step, value, lease)
        latencies.append((time.perf_counter() - started) * 1000)
        if pruned:
            return latencies
    client.complete(trial["trial_id"], value=value, lease=lease)
    return latencies


def _run_batched_trial(client: HPOJSONClient, trial: dict[str, Any], epochs: int) -> list[float]:
    """A trial reported as a Celery worker reports it (workers.report_pipeline); no latencies."""
    lease = trial.get("lease")
    pipeline = ReportPipeline(
        lambda batch, stated: client.report_many(trial["trial_id"], batch, lease, stated)
    )
    value = 0.0
    try:
        for step in range(1, epochs + 1):
            value = trial_value(trial["params"], step)
            if pipeline.report(step, value):
                return []
        last_reports, _ = pipeline.hand_over()  # no provenance: the driver states none
        if pipeline.pruned:
            return []
    finally:
        pipeline.close()
    client.complete(trial["trial_id"], value=value, lease=lease, reports=last_reports)
    return []
