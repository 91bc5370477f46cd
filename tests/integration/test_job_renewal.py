"""A study job that runs longer than its time (``HPO_LEASE_TTL_S``) is renewed by its worker and
ends with its outcome, not timed out under it.

The job runner runs in the test's process with the real client against a real API whose reaper
times jobs out every 0.3 s; the checks themselves are scripted to take longer than the job's time.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from cli.local_stack import LocalStack
from client import HPOJSONClient
from service.preflight import PreflightReport
from tests.integration.conftest import unique
from workers import jobs
from workers.jobs import JobRunner

pytestmark = pytest.mark.integration
LEASE_TTL_S = 2.0


@pytest.fixture(scope="module")
def short_job_times(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalStack]:
    directory: Path = tmp_path_factory.mktemp("renewal")
    settings = {"HPO_LEASE_TTL_S": str(LEASE_TTL_S), "HPO_REAPER_INTERVAL_S": "0.3"}
    running = LocalStack(f"sqlite:///{directory / 'hpo.db'}", workers=0, settings=settings)
    yield running.start()
    running.stop()


def test_a_job_longer_than_its_time_ends_with_its_outcome(
    short_job_times: LocalStack, monkeypatch: pytest.MonkeyPatch
) -> None:
    def slow_checks(*_: Any, **__: Any) -> PreflightReport:
        time.sleep(3 * LEASE_TTL_S)  # three times the job's time, without a word to the service
        return PreflightReport(checks=[])

    monkeypatch.setattr(jobs, "run_checks", slow_checks)
    client = short_job_times.client()
    study = client.create_study(
        {
            "name": unique("renewal"),
            "space": {"lr": {"type": "float", "low": 1e-3, "high": 1e-1, "log": True}},
            "budget": {"n_trials": 1},
            "trainer": {"name": "mlp", "dataset": "wine", "epochs": 1},
            "preflight": {"enabled": True},
        }
    )
    [job] = client.jobs(study["study_id"])
    outcome = JobRunner(HPOJSONClient(short_job_times.url)).run({"job_id": job["job_id"]})
    assert outcome == "done"
    ended = client.job(job["job_id"])
    assert (ended["state"], ended["reason"], ended["result"]) == ("done", None, {"checks": []})
