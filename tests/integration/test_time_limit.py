"""A trial that runs past the task's time limit is stopped by the soft limit before the hard one
kills its process: failed with the reason, for good. Killed by the hard limit, its message was
acknowledged and the trial failed as "worker lost" once its lease expired, then ran again, as
long, up to the study's max_retries."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from cli.local_stack import LocalStack
from tests.integration.conftest import unique
from tests.support.studies import wait_for_end

pytestmark = [pytest.mark.integration, pytest.mark.slow]
TIME_LIMIT_S = 20  # the soft limit comes 5 s before it


@pytest.fixture(scope="module")
def limited(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalStack]:
    directory: Path = tmp_path_factory.mktemp("time-limit")
    settings = {"HPO_TASK_TIME_LIMIT_S": str(TIME_LIMIT_S), "HPO_LEASE_TTL_S": "10"}
    stack = LocalStack(f"sqlite:///{directory / 'hpo.db'}", workers=1, settings=settings)
    yield stack.start()
    stack.stop()


def test_a_trial_past_the_time_limit_fails_with_the_reason_and_is_not_run_again(
    limited: LocalStack,
) -> None:
    client = limited.client()
    created = client.create_study(
        {
            "name": unique("time-limit"),
            "space": {"lr": {"type": "float", "low": 1e-3, "high": 1e-2, "log": True}},
            "pruner": {"name": "none"},
            "budget": {"n_trials": 1, "max_concurrent_trials": 1, "max_retries": 2},
            # A thousand epochs of a wide network: minutes on one core, far past the limit.
            "trainer": {
                "name": "mlp",
                "dataset": "digits",
                "epochs": 1000,
                "params": {"hidden": 1024, "layers": 3},
            },
            "preflight": {"enabled": False},
        }
    )
    study = wait_for_end(client, created["study_id"], limited, timeout_s=120)
    trials = client.trials(created["study_id"])
    assert study["state"] == "complete"
    assert len(trials) == 1, [t["fail_reason"] for t in trials]  # not run again
    [trial] = trials
    assert trial["state"] == "fail"
    assert trial["fail_reason"].startswith("the trial ran past the time limit: stopped after 15 s")
    assert trial["intermediate_values"]  # it trained, and its epochs were recorded
