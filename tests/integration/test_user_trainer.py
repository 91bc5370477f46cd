"""A user's trainer, a package declaring an ``hpo.trainers`` entry point, is installed and runs
a study end to end through Celery (examples/hpo-example-trainer)."""

from __future__ import annotations

import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from cli.local_stack import LocalStack
from client import HPOError
from tests.integration.conftest import unique
from tests.support.studies import wait_for_end

pytestmark = [pytest.mark.integration, pytest.mark.slow]
EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "hpo-example-trainer"
PIP = [sys.executable, "-m", "pip", "--disable-pip-version-check", "--quiet"]


@pytest.fixture(scope="module", autouse=True)
def example_installed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """Install the example before this module's stack starts (autouse: set up first), so the
    worker and the API see its entry point; remove it afterwards. It is built from a copy, so
    no build output lands in the repository."""
    ignore = shutil.ignore_patterns("build", "*.egg-info", "__pycache__")
    source = shutil.copytree(
        EXAMPLE, tmp_path_factory.mktemp("example") / EXAMPLE.name, ignore=ignore
    )
    install = [*PIP, "install", "--no-deps", "--no-build-isolation", str(source)]
    subprocess.run(install, check=True, capture_output=True, timeout=300)
    yield
    uninstall = [*PIP, "uninstall", "--yes", "hpo-example-trainer"]
    subprocess.run(uninstall, check=True, capture_output=True, timeout=300)


def test_a_study_with_the_example_trainer_runs_end_to_end(stack: LocalStack) -> None:
    client = stack.client()
    created = client.create_study(
        {
            "name": unique("user-trainer"),
            "space": {
                "lr": {"type": "float", "low": 1e-3, "high": 1.0, "log": True},
                "weight_decay": {"type": "float", "low": 1e-6, "high": 1e-2, "log": True},
            },
            "sampler": {"name": "random", "seed": 3},
            "pruner": {"name": "none"},
            "budget": {"n_trials": 4, "max_concurrent_trials": 2},
            "trainer": {"name": "example-logistic", "epochs": 8, "n_samples": 200},
        }
    )
    study = wait_for_end(client, created["study_id"], stack)
    trials = client.trials(created["study_id"])
    assert study["state"] == "complete"
    assert [t["state"] for t in trials] == ["complete"] * 4, [t["fail_reason"] for t in trials]
    for trial in trials:
        reported = list(trial["intermediate_values"].values())
        assert len(reported) == 8
        assert trial["value"] == pytest.approx(min(reported))
        assert [r["epoch"] for r in trial["epoch_metrics"]] == list(range(1, 9))
    best = client.best(created["study_id"])
    assert best["value"] < 0.693  # better than guessing (ln 2) on the synthetic data


def test_an_unknown_trainer_name_is_refused_naming_the_installed_ones(stack: LocalStack) -> None:
    body = {
        "name": unique("no-such-trainer"),
        "space": {"lr": {"type": "float", "low": 0.1, "high": 1.0}},
        "trainer": {"name": "example-logistc"},
    }
    with pytest.raises(HPOError) as refused:
        stack.client().create_study(body)
    assert refused.value.status == 422
    problem = refused.value.body["problems"][0]
    assert problem["field"] == "trainer.name" and "example-logistic" in problem["problem"]
