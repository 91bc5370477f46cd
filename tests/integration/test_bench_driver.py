"""The benchmark's simulated workers (``bench.service_driver``) run a study to its end through
the HTTP API, reporting one request per epoch or as the Celery workers do: the control-plane
part's figures come from these runs, so a driver that breaks must fail here, not read as 0/s."""

from __future__ import annotations

import pytest

from bench.service_driver import drive
from cli.local_stack import LocalStack

pytestmark = pytest.mark.integration


@pytest.mark.parametrize("batched", [False, True])
def test_the_drivers_finish_every_trial_with_every_report_recorded(
    stack: LocalStack, batched: bool
) -> None:
    result = drive(stack.url, n_trials=8, epochs=4, workers=2, batched=batched)
    assert result.trials == 8
    client = stack.client()
    study = max(
        (s for s in client.studies() if s["name"].startswith("bench-")),
        key=lambda s: s["study_id"],
    )
    trials = client.trials(study["study_id"])
    assert len(trials) == 8
    assert {t["state"] for t in trials} <= {"complete", "pruned"}
    for trial in trials:  # each epoch up to the trial's end recorded once, in order
        steps = sorted(int(step) for step in trial["intermediate_values"])
        assert steps == list(range(1, len(steps) + 1)) and steps
        if trial["state"] == "complete":
            assert steps == [1, 2, 3, 4]
    if not batched:  # one timed request per epoch reported
        assert result.reports == sum(len(t["intermediate_values"]) for t in trials)
