"""``GET /metrics`` and the worker's metrics, scraped after a real study ran on the whole stack."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import uuid
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests
from prometheus_client.parser import text_string_to_metric_families

from cli.local_stack import LocalStack
from cli.processes import free_port, wait_until
from service.job_store import JobKind, JobStore
from service.metrics_figures import read_figures
from service.storage.database import Database
from tests.conftest import BACKENDS
from tests.integration.conftest import unique
from tests.support.studies import wait_for_end

pytestmark = [pytest.mark.integration, pytest.mark.slow]
LEASE_TTL_S = 5
N_TRIALS = 6
EPOCHS = 9
Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


@pytest.fixture(scope="module", params=BACKENDS)
def metered_stack(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[LocalStack]:
    """The stack with worker metrics on, and short leases (so that one expires within a test)."""
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path_factory.mktemp('metrics') / 'hpo.db'}"
    else:
        url = request.getfixturevalue("postgres_server").create_database(
            f"metrics_{uuid.uuid4().hex[:10]}"
        )
    settings = {
        "HPO_WORKER_METRICS_PORT": str(free_port()),
        "HPO_LEASE_TTL_S": str(LEASE_TTL_S),
        "HPO_REAPER_INTERVAL_S": "0.5",
    }
    running = LocalStack(url, settings=settings).start()
    yield running
    running.stop()


def scrape(url: str) -> Samples:
    """Every sample of a Prometheus text page, by name and labels (parsed by prometheus_client)."""
    answer = requests.get(url, timeout=10)
    assert answer.status_code == 200, answer.text
    assert answer.headers["Content-Type"].startswith("text/plain")
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(answer.text)
        for sample in family.samples
    }


def state(name: str, value: str) -> tuple[str, tuple[tuple[str, str], ...]]:
    return (name, (("state", value),))


@pytest.fixture(scope="module")
def finished_study(metered_stack: LocalStack) -> dict[str, Any]:
    client = metered_stack.client()
    spec = {
        "name": unique("metrics"),
        "space": {"lr": {"type": "float", "low": 1e-6, "high": 0.1, "log": True}},
        "sampler": {"name": "tpe", "seed": 3, "n_startup_trials": 3},
        "pruner": {"name": "hyperband", "min_resource": 1, "reduction_factor": 3},
        "budget": {"n_trials": N_TRIALS, "max_concurrent_trials": 2},
        "trainer": {"name": "mlp", "dataset": "digits", "epochs": EPOCHS},
    }
    study_id = client.create_study(spec)["study_id"]
    return {
        "study": wait_for_end(client, study_id, metered_stack),
        "trials": client.trials(study_id),
    }


def test_metrics_count_the_studies_and_trials_by_state(
    metered_stack: LocalStack, finished_study: dict[str, Any]
) -> None:
    samples = scrape(f"{metered_stack.url}/metrics")
    # Every study on the stack as the API tells them (other tests of the module add their own).
    client = metered_stack.client()
    studies = [client.study(listed["study_id"]) for listed in client.studies()]
    study_states = Counter(study["state"] for study in studies)
    trial_states: Counter[str] = Counter()
    for study in studies:
        trial_states.update(study["counts"])
    for name in ("running", "complete"):
        assert samples.get(state("hpo_studies", name), 0) == study_states[name], name
    for name in ("running", "complete", "pruned", "fail"):
        assert samples.get(state("hpo_trials", name), 0) == trial_states[name], name
    counts = finished_study["study"]["counts"]
    assert finished_study["study"]["state"] == "complete"
    assert counts["complete"] + counts["pruned"] == N_TRIALS
    assert counts["complete"] > 0 and counts["running"] == 0


def report_requests(stack: LocalStack, status: str = "") -> int:
    """How many report requests the API served (answering ``status``), by its access log."""
    assert stack.api is not None
    served = re.compile(rf'"POST /trials/\d+/reports? HTTP/1.1" {status}')
    lines = stack.api.log_path.read_text().splitlines()
    return sum(1 for line in lines if served.search(json.loads(line)["message"]))


def test_report_histogram_counts_every_report_served(
    metered_stack: LocalStack, finished_study: dict[str, Any]
) -> None:
    samples = scrape(f"{metered_stack.url}/metrics")
    reports = sum(len(trial["intermediate_values"]) for trial in finished_study["trials"])
    assert reports >= N_TRIALS
    served = report_requests(metered_stack)
    assert served >= N_TRIALS  # the workers send several epochs a request: fewer than reports
    assert samples[("hpo_report_seconds_count", ())] == served
    assert samples[("hpo_report_seconds_bucket", (("le", "+Inf"),))] == served
    assert samples[("hpo_report_seconds_sum", ())] > 0


def test_queue_is_empty_and_no_worker_is_busy_after_the_study(
    metered_stack: LocalStack, finished_study: dict[str, Any]
) -> None:
    samples = scrape(f"{metered_stack.url}/metrics")
    assert samples[("hpo_queue_depth", ())] == 0
    assert samples[("hpo_workers_busy", ())] == 0
    assert samples[("hpo_workers_wanted", ())] == 0


def test_worker_metrics_count_its_trials_and_epochs(
    metered_stack: LocalStack, finished_study: dict[str, Any]
) -> None:
    url = f"http://127.0.0.1:{metered_stack.extra_settings['HPO_WORKER_METRICS_PORT']}/metrics"
    reports = sum(len(trial["intermediate_values"]) for trial in finished_study["trials"])

    def counted() -> bool:
        samples = scrape(url)
        trials = worker_trials(samples)
        ended = trials.get("complete", 0) + trials.get("pruned", 0)
        return ended >= N_TRIALS and samples.get(("hpo_worker_epochs_total", ()), 0) >= reports

    # The worker counts a trial once the service has answered its completion, which can end
    # the study a moment before the worker's count moves.
    wait_until(counted, 30, "the worker's count of every trial and epoch")
    samples = scrape(url)
    trials = worker_trials(samples)
    counts = finished_study["study"]["counts"]
    assert trials.get("complete", 0) == counts["complete"]
    assert trials.get("pruned", 0) == counts["pruned"]
    assert samples[("hpo_worker_epochs_total", ())] == reports  # each epoch the service recorded


def worker_trials(samples: Samples) -> dict[str, float]:
    """The worker's trial counter, by the state the trial ended in."""
    return {
        labels[0][1]: value
        for (name, labels), value in samples.items()
        if name == "hpo_worker_trials_total"
    }


@pytest.mark.gpu
def test_worker_metrics_show_each_gpu(metered_stack: LocalStack) -> None:
    torch = pytest.importorskip("torch")
    if not torch.cuda.is_available():
        pytest.skip("no CUDA device")
    port = metered_stack.extra_settings["HPO_WORKER_METRICS_PORT"]
    samples = scrape(f"http://127.0.0.1:{port}/metrics")
    for index in range(torch.cuda.device_count()):
        gpu = (("gpu", str(index)),)
        assert samples[("hpo_worker_gpu_memory_total_bytes", gpu)] > 0
        assert 0 <= samples[("hpo_worker_gpu_utilization_ratio", gpu)] <= 1


def test_an_expired_lease_is_counted(
    metered_stack: LocalStack, finished_study: dict[str, Any]
) -> None:
    client = metered_stack.client()
    spec = {"name": unique("silent"), "space": {"x": {"type": "float", "low": 0, "high": 1}}}
    study_id = client.create_study(spec)["study_id"]
    before = scrape(f"{metered_stack.url}/metrics")[("hpo_leases_expired_total", ())]
    trial = client.ask(study_id)  # and never report: the lease runs out

    def counted() -> bool:
        after = scrape(f"{metered_stack.url}/metrics")[("hpo_leases_expired_total", ())]
        return after == before + 1

    wait_until(counted, 30 * LEASE_TTL_S, "the lease expiry in /metrics")
    failed = client.trials(study_id)[0]
    assert failed["trial_id"] == trial["trial_id"]
    assert failed["state"] == "fail"
    assert failed["fail_reason"].startswith("lease expired")


def test_workers_wanted_counts_the_busy_workers_and_the_waiting_trials(
    metered_stack: LocalStack, finished_study: dict[str, Any]
) -> None:
    """What the autoscaler scales on (deploy/kubernetes/keda-scaledobject.yaml): a worker
    training a trial is wanted, though its message has left the queue."""
    client = metered_stack.client()
    spec = {
        "name": unique("wanted"),
        "space": {"lr": {"type": "float", "low": 1e-4, "high": 0.1, "log": True}},
        "budget": {"n_trials": 3, "max_concurrent_trials": 3},
        "trainer": {"name": "mlp", "dataset": "digits", "epochs": 300},
    }
    study_id = client.create_study(spec)["study_id"]
    seen: list[Samples] = []

    def training() -> bool:
        seen.append(scrape(f"{metered_stack.url}/metrics"))
        return seen[-1][("hpo_workers_busy", ())] >= 1

    wait_until(training, 60, "a worker training a trial, in /metrics")
    client.stop(study_id)
    samples = seen[-1]
    busy, waiting = samples[("hpo_workers_busy", ())], samples[("hpo_queue_depth", ())]
    jobs = samples[("hpo_jobs_running", ())]  # the study's pre-flight checks, maybe
    assert samples[("hpo_workers_wanted", ())] == busy + jobs + waiting
    wait_until(
        lambda: scrape(f"{metered_stack.url}/metrics")[("hpo_workers_wanted", ())] == 0,
        240,
        "the stopped study's trials to end and the queue to empty",
    )


# What an earlier run of the API left in its PROMETHEUS_MULTIPROC_DIR: 5 reports counted.
EARLIER_RUNS_COUNTS = """
from prometheus_client import Histogram
from api.metrics import REPORT_BUCKETS
served = Histogram("hpo_report_seconds", "", buckets=REPORT_BUCKETS)
for _ in range(5):
    served.observe(0.01)
"""


def test_a_restarted_api_adds_none_of_its_earlier_runs_counts(tmp_path: Path) -> None:
    """The directory outlives the API in a container (an emptyDir): each start empties it."""
    counts = tmp_path / "metrics"
    counts.mkdir()
    env = {**os.environ, "PROMETHEUS_MULTIPROC_DIR": str(counts)}
    subprocess.run([sys.executable, "-c", EARLIER_RUNS_COUNTS], env=env, check=True, timeout=60)
    assert list(counts.glob("*.db"))
    stack = LocalStack(
        f"sqlite:///{tmp_path / 'hpo.db'}",
        workers=0,
        directory=tmp_path / "stack",
        settings={"PROMETHEUS_MULTIPROC_DIR": str(counts)},
    ).start()
    try:
        assert scrape(f"{stack.url}/metrics")[("hpo_report_seconds_count", ())] == 0
    finally:
        stack.stop()


def test_a_study_job_a_worker_runs_counts_among_the_workers_wanted(database: Database) -> None:
    """A long evaluation or ensemble alone on the pool read 0 (trials' leases only): KEDA
    would have taken its worker away."""
    jobs = JobStore(database)
    job, _ = jobs.add(1, JobKind.EVALUATE, "trial-1", {}, wait_s=60)
    assert read_figures(database).jobs_running == 0  # queued: its message is the queue's
    jobs.start(job.job_id, lease_s=60)
    assert read_figures(database).jobs_running == 1
    jobs.finish(job.job_id, {"test": {"loss": 0.1}}, None)
    assert read_figures(database).jobs_running == 0
