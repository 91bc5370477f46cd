"""A worker whose token the service refuses neither starts nor drops the trials it is sent.

At start the worker checks its token (a claim of a trial that cannot exist): refused, it exits
saying so. A token refused later (rotated on the API) fails the claim: the trial's message goes
back to the queue, and the trial runs once the token is accepted again, instead of waiting,
counted as running, until the service's dispatch timeout expires it.
"""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from cli.local_stack import LocalStack
from cli.processes import ManagedProcess
from tests.integration.conftest import unique
from tests.support.studies import wait_for_end

pytestmark = [pytest.mark.integration, pytest.mark.slow]
USER_TOKEN = "a-users-token"
WORKER_TOKEN = "the-workers-token"
ACCEPTED = {"HPO_WORKER_TOKENS": json.dumps([WORKER_TOKEN]), "HPO_TOKEN": WORKER_TOKEN}


@pytest.fixture(scope="module")
def guarded(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalStack]:
    """A stack whose API takes the user's token and the worker's, and one worker process."""
    directory: Path = tmp_path_factory.mktemp("worker-token")
    url = f"sqlite:///{directory / 'hpo.db'}"
    stack = LocalStack(url, workers=1, tokens=[USER_TOKEN], settings=dict(ACCEPTED))
    yield stack.start()
    stack.stop()


@pytest.mark.parametrize(
    ("token", "refusal"), [("not-a-token", "401"), (USER_TOKEN, "403")], ids=["wrong", "users"]
)
def test_a_worker_whose_token_is_refused_does_not_start(
    guarded: LocalStack, tmp_path: Path, token: str, refusal: str
) -> None:
    log = tmp_path / "worker.log"
    env = {**guarded.env(), "HPO_TOKEN": token}
    worker = ManagedProcess("worker", [sys.executable, "-m", "cli", "worker"], env, log)
    try:
        status = worker.process.wait(timeout=60)
    finally:
        worker.stop()
    output = log.read_text(errors="replace")
    assert status == 1, output
    assert f"refuses this worker's token ({refusal}:" in output
    assert "HPO_TOKEN must be a worker token" in output


def restart_api(stack: LocalStack, worker_tokens: list[str]) -> None:
    stack.stop_api()
    stack.extra_settings["HPO_WORKER_TOKENS"] = json.dumps(worker_tokens)
    stack.start_api()


def test_a_trial_whose_claim_the_token_failed_goes_back_to_the_queue(
    guarded: LocalStack,
) -> None:
    assert guarded.worker is not None and guarded.worker.alive()  # its token was accepted
    restart_api(guarded, ["the-tokens-rotated"])  # the running worker's token is refused now
    try:
        client = guarded.client()
        created = client.create_study(
            {
                "name": unique("token-refused"),
                "space": {"lr": {"type": "float", "low": 1e-3, "high": 1e-1, "log": True}},
                "budget": {"n_trials": 1, "max_concurrent_trials": 1},
                "trainer": {"name": "mlp", "dataset": "digits", "epochs": 2},
                "preflight": {"enabled": False},
            }
        )
        wait_for_refused_claim(guarded, created["study_id"])
    finally:
        restart_api(guarded, [WORKER_TOKEN])
    # Sent back for 15 s; dropped, it would wait for the dispatch timeout (an hour).
    study = wait_for_end(client, created["study_id"], guarded, timeout_s=120)
    [trial] = client.trials(created["study_id"])
    assert study["state"] == "complete"
    assert trial["state"] == "complete", trial["fail_reason"]
    assert trial["retried_by"] is None and trial["number"] == 0  # the same trial, run once
    assert guarded.worker is not None
    worker_log = guarded.worker.log_path.read_text(errors="replace")
    assert "the service refused this worker's token" in worker_log


def wait_for_refused_claim(stack: LocalStack, study_id: int) -> None:
    """Until the API has refused the claim of the study's trial (401, in its access log)."""
    client = stack.client()
    deadline = time.monotonic() + 60
    while not (trials := client.trials(study_id)):
        assert time.monotonic() < deadline, stack.logs()
        time.sleep(0.2)
    refused = f'POST /trials/{trials[0]["trial_id"]}/claim HTTP/1.1\\" 401'
    assert stack.api is not None
    while refused not in stack.api.log_path.read_text(errors="replace"):
        assert time.monotonic() < deadline, stack.logs()
        time.sleep(0.2)
