"""A worker's claim names the first step whose report can prune the trial, so that the reports
before it need not wait for their answers (workers.report_pipeline)."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from cli.local_stack import LocalStack
from client import HPOJSONClient
from tests.integration.conftest import unique

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def workerless_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalStack]:
    """Trials are sent to a real broker that no worker reads: the test claims them itself."""
    directory: Path = tmp_path_factory.mktemp("claims")
    running = LocalStack(f"sqlite:///{directory / 'hpo.db'}", workers=0, log_level="WARNING")
    yield running.start()
    running.stop()


def sent_trial(client: HPOJSONClient, pruner: dict[str, Any]) -> dict[str, Any]:
    study = client.create_study(
        {
            "name": unique("claims"),
            "space": {"lr": {"type": "float", "low": 1e-3, "high": 1e-1, "log": True}},
            "sampler": {"name": "random", "seed": 0},
            "pruner": pruner,
            "budget": {"n_trials": 1, "max_concurrent_trials": 1},
            "trainer": {"name": "mlp", "dataset": "digits", "epochs": 9},
            "preflight": {"enabled": False},
        }
    )
    deadline = time.monotonic() + 30
    while not (trials := client.trials(study["study_id"])):
        assert time.monotonic() < deadline, "no trial was sent"
        time.sleep(0.1)
    return trials[0]


@pytest.mark.parametrize(
    ("pruner", "expected"),
    [
        ({"name": "none"}, None),  # no report can prune: none waits
        ({"name": "median", "n_startup_trials": 0}, 0),  # any report can: the first waits
    ],
)
def test_the_claim_names_the_first_step_that_can_prune(
    workerless_stack: LocalStack, pruner: dict[str, Any], expected: int | None
) -> None:
    client = workerless_stack.client()
    trial = sent_trial(client, pruner)
    claimed = client.claim(trial["trial_id"], "test:1:claim")
    assert claimed["next_decision_step"] == expected
    assert claimed["lease"] and claimed["lease_ttl_s"] > 0


def test_under_hyperband_the_claim_names_the_trials_first_rung(
    workerless_stack: LocalStack,
) -> None:
    client = workerless_stack.client()
    # Factor 3 from 1 to 9 epochs: bracket 0 has rungs at 1, 3, 9; bracket 1 at 3, 9; 2 at 9.
    trial = sent_trial(client, {"name": "hyperband", "min_resource": 1, "max_resource": 9})
    claimed = client.claim(trial["trial_id"], "test:1:claim")
    assert claimed["next_decision_step"] in (1, 3, 9)
    # A report before any rung is answered with the same first rung.
    answer = client.report_decision(trial["trial_id"], 0, 0.5, claimed["lease"])
    assert answer == {"prune": False, "next_decision_step": claimed["next_decision_step"]}
