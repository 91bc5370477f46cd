"""An ensemble of the top-k trials is scored on validation beside the single best trial."""

from __future__ import annotations

import math

import pytest

from cli.local_stack import LocalStack
from client import HPOError
from tests.integration.test_vault import finished_study, vault_figures_in, wait_for_job

pytestmark = [pytest.mark.integration, pytest.mark.slow]


@pytest.fixture(scope="module")
def study_id(stack: LocalStack) -> int:
    return finished_study(stack.client(), n_trials=4)


def test_an_ensemble_of_three_reports_its_validation_figure_beside_the_best(
    stack: LocalStack, study_id: int
) -> None:
    client = stack.client()
    ranked = sorted(
        (t for t in client.trials(study_id) if t["state"] == "complete"),
        key=lambda t: (t["value"], t["number"]),
    )
    job = client.ensemble(study_id, k=3)
    assert job["kind"] == "ensemble"
    assert job["trial_ids"] == [t["trial_id"] for t in ranked[:3]]
    done = wait_for_job(client, job["job_id"])
    assert done["state"] == "done", done["reason"]
    result = done["result"]
    assert result["split"] == "validation"
    ensemble, single = result["ensemble"], result["best_single"]
    assert math.isfinite(ensemble["loss"]) and 0 <= ensemble["accuracy"] <= 1
    # The best trial's checkpoint, rebuilt on the worker, scores what the trial reported.
    assert single["loss"] == pytest.approx(ranked[0]["value"], rel=1e-3)
    assert ensemble["samples"] == single["samples"] > 0
    assert vault_figures_in(done) == []  # its test figure comes only through the vault

    again = client.ensemble(study_id, k=3)
    assert again["job_id"] == job["job_id"] and again["result"] == result


def test_an_ensemble_larger_than_the_complete_trials_is_refused(
    stack: LocalStack, study_id: int
) -> None:
    client = stack.client()
    with pytest.raises(HPOError) as refused:
        client.ensemble(study_id, k=5)
    assert refused.value.status == 409
    assert refused.value.body["problems"][0]["field"] == "k"
    with pytest.raises(HPOError) as invalid:
        client.ensemble(study_id, k=1)
    assert invalid.value.status == 422
    assert invalid.value.body["problems"][0]["field"] == "k"
