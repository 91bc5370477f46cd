"""Several objectives (NSGA-II, the Pareto front), constraints, and warm starts, over HTTP."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import optuna
import pytest
import requests

from cli.local_stack import LocalStack
from tests.integration.conftest import unique
from tests.support.studies import wait_for_end

pytestmark = pytest.mark.integration
SPACE = {"x": {"type": "float", "low": 0.0, "high": 1.0}}
TWO_OBJECTIVES = [{"metric": "loss"}, {"metric": "size"}]


def post(stack: LocalStack, path: str, body: dict[str, Any]) -> requests.Response:
    return requests.post(f"{stack.url}{path}", json=body, timeout=30)


def get(stack: LocalStack, path: str) -> requests.Response:
    return requests.get(f"{stack.url}{path}", timeout=30)


def create(stack: LocalStack, **fields: Any) -> dict[str, Any]:
    body = {"name": unique("objectives"), "space": SPACE, **fields}
    response = post(stack, "/studies", body)
    assert response.status_code == 201, response.text
    created: dict[str, Any] = response.json()
    return created


Completion = Callable[[dict[str, Any]], dict[str, Any]]


def run_trials(
    stack: LocalStack, study_id: int, n: int, completion_of: Completion
) -> list[dict[str, Any]]:
    """Ask for ``n`` trials one by one and complete each with ``completion_of(params)``."""
    done = []
    for _ in range(n):
        asked = post(stack, f"/studies/{study_id}/trials", {})
        assert asked.status_code == 201, asked.text
        trial = asked.json()
        body = {"lease": trial["lease"], **completion_of(trial["params"])}
        response = post(stack, f"/trials/{trial['trial_id']}/complete", body)
        assert response.status_code == 200, response.text
        done.append(response.json())
    return done


def trade_off(params: dict[str, Any]) -> dict[str, Any]:
    """Two objectives that pull apart: no single x is best on both."""
    return {"metrics": {"loss": params["x"] ** 2, "size": (1 - params["x"]) ** 2}}


def constant(value: float) -> Completion:
    return lambda params: {"value": value}


def dominated(values: list[float], others: list[list[float]]) -> bool:
    return any(
        all(o <= v for o, v in zip(other, values, strict=True)) and other != values
        for other in others
    )


def test_nsga2_study_has_a_pareto_front_and_no_single_best(stack: LocalStack) -> None:
    study = create(
        stack,
        objectives=TWO_OBJECTIVES,
        sampler={"name": "nsga2", "seed": 3, "population_size": 4},
        budget={"n_trials": 12, "max_concurrent_trials": 1},
    )
    assert [o["metric"] for o in study["objectives"]] == ["loss", "size"]
    assert study["spec"]["pruner"]["name"] == "none"
    trials = run_trials(stack, study["study_id"], 12, trade_off)
    assert all(len(trial["values"]) == 2 and trial["value"] is None for trial in trials)

    front = get(stack, f"/studies/{study['study_id']}/pareto").json()
    all_values = [trial["values"] for trial in trials]
    expected = {t["number"] for t in trials if not dominated(t["values"], all_values)}
    assert {trial["number"] for trial in front["trials"]} == expected
    assert get(stack, f"/studies/{study['study_id']}").json()["state"] == "complete"

    best = get(stack, f"/studies/{study['study_id']}/best")
    assert best.status_code == 409
    assert "pareto" in best.json()["error"]


def test_a_completion_without_an_objectives_figure_gets_422_and_changes_nothing(
    stack: LocalStack,
) -> None:
    study = create(stack, objectives=TWO_OBJECTIVES, budget={"n_trials": 1})
    trial = post(stack, f"/studies/{study['study_id']}/trials", {}).json()
    body = {"lease": trial["lease"], "metrics": {"loss": 0.5}}
    response = post(stack, f"/trials/{trial['trial_id']}/complete", body)
    assert response.status_code == 422
    assert response.json()["problems"][0]["field"] == "metrics.size"
    wrong_length = {"lease": trial["lease"], "values": [0.5]}
    response = post(stack, f"/trials/{trial['trial_id']}/complete", wrong_length)
    assert response.status_code == 422 and response.json()["problems"][0]["field"] == "values"
    trials = get(stack, f"/studies/{study['study_id']}/trials").json()["trials"]
    assert [t["state"] for t in trials] == ["running"]
    response = post(
        stack, f"/trials/{trial['trial_id']}/complete", {**wrong_length, "values": [0.5, 2.0]}
    )
    assert response.status_code == 200 and response.json()["values"] == [0.5, 2.0]


def problem_of(response: requests.Response) -> tuple[str, str]:
    first = response.json()["problems"][0]
    return first["field"], first["problem"]


def test_a_completion_giving_value_and_values_gets_422_and_changes_nothing(
    stack: LocalStack,
) -> None:
    study = create(stack, budget={"n_trials": 1})
    trial = post(stack, f"/studies/{study['study_id']}/trials", {}).json()
    both = {"lease": trial["lease"], "value": 1.0, "values": [2.0]}
    response = post(stack, f"/trials/{trial['trial_id']}/complete", both)
    assert response.status_code == 422
    assert problem_of(response) == (
        "values",
        "give value (one objective) or values (one per objective), not both",
    )
    trials = get(stack, f"/studies/{study['study_id']}/trials").json()["trials"]
    assert [t["state"] for t in trials] == ["running"]


def test_a_single_value_for_several_objectives_is_told_to_send_values(stack: LocalStack) -> None:
    study = create(stack, objectives=TWO_OBJECTIVES, budget={"n_trials": 1})
    trial = post(stack, f"/studies/{study['study_id']}/trials", {}).json()
    response = post(
        stack, f"/trials/{trial['trial_id']}/complete", {"lease": trial["lease"], "value": 1.0}
    )
    assert response.status_code == 422
    field, problem = problem_of(response)
    assert field == "values"
    assert "send values, one per objective in order (loss, size)" in problem


def test_a_constraint_on_an_objective_reads_it_from_values(stack: LocalStack) -> None:
    study = create(
        stack,
        objectives=TWO_OBJECTIVES,
        constraints=[{"metric": "size", "max": 100}],
        budget={"n_trials": 2},
    )
    [feasible] = run_trials(stack, study["study_id"], 1, lambda _: {"values": [0.9, 50]})
    clashing = post(stack, f"/studies/{study['study_id']}/trials", {}).json()
    assert feasible["values"] == [0.9, 50] and feasible["feasible"] is True
    assert feasible["constraints"] == {"size<=100": pytest.approx(-50)}
    body = {"lease": clashing["lease"], "values": [0.8, 10], "metrics": {"size": 99999}}
    response = post(stack, f"/trials/{clashing['trial_id']}/complete", body)
    assert response.status_code == 422
    field, problem = problem_of(response)
    assert field == "metrics.size" and "values.1, the objective 'size', is 10" in problem
    trials = get(stack, f"/studies/{study['study_id']}/trials").json()["trials"]
    assert [t["state"] for t in trials] == ["complete", "running"]
    warm = create(
        stack,
        objectives=TWO_OBJECTIVES,
        constraints=[{"metric": "size", "max": 100}],
        warm_start={"study_id": study["study_id"]},
    )
    assert warm["warm_start"]["copied"] == 1, warm["warm_start"]  # its size is in its values
    [copied] = get(stack, f"/studies/{warm['study_id']}/trials").json()["trials"]
    assert copied["constraints"] == {"size<=100": pytest.approx(-50)}


def test_a_constraint_on_the_one_objective_reads_it_from_value(stack: LocalStack) -> None:
    study = create(stack, metric="loss", constraints=[{"metric": "loss", "max": 1.0}])
    [done] = run_trials(stack, study["study_id"], 1, lambda _: {"value": 0.25})
    assert done["value"] == 0.25 and done["feasible"] is True
    assert done["constraints"] == {"loss<=1": pytest.approx(-0.75)}
    assert done["metrics"] == {}  # what the completion sent, nothing added


def test_best_and_the_sampler_see_only_feasible_trials(stack: LocalStack) -> None:
    """A constraint on a reported figure: the better but infeasible trial is never best."""
    study = create(
        stack,
        constraints=[{"metric": "size", "max": 0.5}],
        sampler={"name": "tpe", "seed": 5, "n_startup_trials": 2},
        pruner={"name": "none"},
        enqueue=[{"x": 0.1}, {"x": 0.6}, {"x": 0.9}],
        budget={"n_trials": 3, "max_concurrent_trials": 1},
    )
    study_id = study["study_id"]
    # Lower x is better, and bigger: x = 0.1 is the best value but breaks size <= 0.5.
    trials = run_trials(
        stack, study_id, 3, lambda p: {"value": p["x"], "metrics": {"size": 1 - p["x"]}}
    )
    assert [t["feasible"] for t in trials] == [False, True, True]
    assert trials[0]["constraints"] == {"size<=0.5": pytest.approx(0.4)}
    best = get(stack, f"/studies/{study_id}/best").json()
    assert best["params"] == {"x": 0.6}

    stored = optuna.load_study(study_name=study["name"], storage=stack.database_url)
    assert [t.constraints for t in stored.trials] == [t["constraints"] for t in trials]
    assert stored.best_trial.params == {"x": 0.6}


def test_warm_start_copies_what_fits_and_says_what_it_skipped(stack: LocalStack) -> None:
    source = create(
        stack,
        pruner={"name": "none"},
        enqueue=[{"x": 0.1}, {"x": 0.2}, {"x": 0.7}, {"x": 0.9}],
        budget={"n_trials": 4, "max_concurrent_trials": 1},
    )
    run_trials(stack, source["study_id"], 4, constant(0.0))
    source_trials = get(stack, f"/studies/{source['study_id']}/trials").json()["trials"]
    for trial in source_trials:
        assert trial["state"] == "complete" and trial["copied_from"] is None

    narrow = {"x": {"type": "float", "low": 0.0, "high": 0.5}}
    warm = create(
        stack,
        space=narrow,
        warm_start={"study_id": source["study_id"]},
        budget={"n_trials": 2, "max_concurrent_trials": 1},
    )
    assert warm["warm_start"] == {
        "source_study_id": source["study_id"],
        "copied": 2,
        "skipped": 2,
        "skipped_because": {"parameter 'x' lies outside this study's space": 2},
    }
    assert warm["counts"]["copied"] == 2
    copied = get(stack, f"/studies/{warm['study_id']}/trials").json()["trials"]
    assert sorted(t["params"]["x"] for t in copied) == [0.1, 0.2]
    sources = {t["params"]["x"]: t["trial_id"] for t in source_trials}
    assert [t["copied_from"] for t in copied] == [sources[t["params"]["x"]] for t in copied]
    # Copied trials are history, not budget: both trials of the budget still run.
    run_trials(stack, warm["study_id"], 2, constant(1.0))
    assert get(stack, f"/studies/{warm['study_id']}").json()["state"] == "complete"
    # A copy is the best (0.0 beats 1.0): it says so, and its checkpoint is the source's.
    best = get(stack, f"/studies/{warm['study_id']}/best").json()
    assert best["copied_from"] == sources[best["params"]["x"]]
    model = get(stack, f"/studies/{warm['study_id']}/best/model")
    assert model.status_code == 404
    assert f"/trials/{best['copied_from']}/checkpoint" in model.json()["error"]

    wider = {**SPACE, "y": {"type": "int", "low": 0, "high": 3}}
    none_fit = create(stack, space=wider, warm_start={"study_id": source["study_id"]})
    assert none_fit["warm_start"]["copied"] == 0
    assert none_fit["warm_start"]["skipped_because"] == {"parameter 'y' was not searched": 4}


REJECTED = [
    ({"sampler": {"name": "nsga2"}}, "sampler.name", "several objectives"),
    ({"objectives": TWO_OBJECTIVES, "sampler": {"name": "cmaes"}}, "sampler.name", "one objective"),
    (
        {"objectives": TWO_OBJECTIVES, "pruner": {"name": "hyperband"}},
        "pruner.name",
        "cannot be pruned",
    ),
    ({"objectives": TWO_OBJECTIVES, "direction": "maximize"}, "objectives", "not both"),
    (
        {"objectives": TWO_OBJECTIVES, "budget": {"target_value": 0.1}},
        "budget.target_value",
        "single objective",
    ),
    ({"objectives": [{"metric": "loss"}]}, "objectives", "at least 2"),
    ({"objectives": [{"metric": "a"}, {"metric": "a"}]}, "objectives.1.metric", "already"),
    ({"constraints": [{"metric": "size"}]}, "constraints.0", "max, min or both"),
    ({"constraints": [{"metric": "size", "min": 2, "max": 1}]}, "constraints.0", "above max"),
    (
        {
            "objectives": [{"metric": "validation_loss"}, {"metric": "latency"}],
            "trainer": {"name": "mlp", "epochs": 2},
            "space": {"lr": {"type": "float", "low": 1e-4, "high": 1e-1, "log": True}},
        },
        "objectives.1.metric",
        "reports no figure 'latency'",
    ),
    ({"warm_start": {"study_id": 2_000_000_000}}, "warm_start.study_id", "no study"),
]


@pytest.mark.parametrize(("fields", "field", "words"), REJECTED)
def test_objectives_that_do_not_fit_get_422_with_the_field_named(
    stack: LocalStack, fields: dict[str, Any], field: str, words: str
) -> None:
    body = {"name": unique("bad"), "space": SPACE, **fields}
    response = post(stack, "/studies", body)
    assert response.status_code == 422, response.text
    problems = response.json()["problems"]
    assert any(p["field"] == field and words in p["problem"] for p in problems), problems
    assert body["name"] not in {s["name"] for s in get(stack, "/studies").json()["studies"]}


def test_warm_start_refuses_a_study_of_other_objectives(stack: LocalStack) -> None:
    single = create(stack, pruner={"name": "none"})
    response = post(
        stack,
        "/studies",
        {
            "name": unique("warm-mo"),
            "space": SPACE,
            "objectives": TWO_OBJECTIVES,
            "warm_start": {"study_id": single["study_id"]},
        },
    )
    assert response.status_code == 422
    assert response.json()["problems"][0]["field"] == "warm_start.study_id"
    other_metric = {
        "name": unique("warm-metric"),
        "space": SPACE,
        "metric": "accuracy",
        "warm_start": {"study_id": single["study_id"]},
    }
    response = post(stack, "/studies", other_metric)
    assert response.status_code == 422, response.text
    assert "validation_loss" in response.json()["problems"][0]["problem"]


def test_the_mlp_trainer_tunes_loss_against_size_through_celery(stack: LocalStack) -> None:
    """Two objectives from the built-in trainer's figures, one constraint, on real workers."""
    study = create(
        stack,
        space={"hidden": {"type": "int", "low": 4, "high": 64, "log": True}},
        objectives=[{"metric": "validation_loss"}, {"metric": "n_parameters"}],
        constraints=[{"metric": "validation_accuracy", "min": 0.2}],
        sampler={"name": "nsga2", "seed": 1, "population_size": 4},
        trainer={"name": "mlp", "dataset": "wine", "epochs": 2},
        budget={"n_trials": 6, "max_concurrent_trials": 2},
    )
    deadline = time.monotonic() + 240
    while get(stack, f"/studies/{study['study_id']}").json()["state"] != "complete":
        assert time.monotonic() < deadline, "the study did not finish"
        time.sleep(0.5)
    trials = get(stack, f"/studies/{study['study_id']}/trials").json()["trials"]
    complete = [t for t in trials if t["state"] == "complete"]
    assert len(complete) == 6
    for trial in complete:
        figures = trial["metrics"]
        assert trial["values"] == [figures["validation_loss"], figures["n_parameters"]]
        assert set(trial["constraints"]) == {"validation_accuracy>=0.2"}
    front = get(stack, f"/studies/{study['study_id']}/pareto").json()["trials"]
    feasible = [t["values"] for t in complete if t["feasible"]]
    expected = {
        t["number"] for t in complete if t["feasible"] and not dominated(t["values"], feasible)
    }
    assert {t["number"] for t in front} == expected and expected


def test_a_metric_other_than_the_loss_is_what_the_study_maximises(stack: LocalStack) -> None:
    """The built-in trainer's validation accuracy as the one metric: each trial's value is that
    figure (not the loss the trainer sends as its value), and the study is not pruned on the
    losses it reports each epoch."""
    study = create(
        stack,
        space={"hidden": {"type": "int", "low": 4, "high": 64, "log": True}},
        metric="validation_accuracy",
        direction="maximize",
        sampler={"name": "random", "seed": 2},
        trainer={"name": "mlp", "dataset": "wine", "epochs": 2},
        budget={"n_trials": 4, "max_concurrent_trials": 2},
    )
    assert study["spec"]["pruner"]["name"] == "none"
    wait_for_end(stack.client(), study["study_id"], stack)
    trials = get(stack, f"/studies/{study['study_id']}/trials").json()["trials"]
    complete = [t for t in trials if t["state"] == "complete"]
    assert len(complete) == 4
    for trial in complete:
        assert trial["value"] == trial["metrics"]["validation_accuracy"]
    best = get(stack, f"/studies/{study['study_id']}/best").json()
    assert best["value"] == max(t["value"] for t in complete)


def test_a_pruner_over_another_metric_than_the_epochs_report_is_refused(stack: LocalStack) -> None:
    body = {
        "name": unique("objectives"),
        "space": {"hidden": {"type": "int", "low": 4, "high": 64}},
        "metric": "validation_accuracy",
        "direction": "maximize",
        "pruner": {"name": "hyperband"},
        "trainer": {"name": "mlp", "dataset": "wine", "epochs": 2},
    }
    response = post(stack, "/studies", body)
    assert response.status_code == 422, response.text
    assert response.json()["problems"][0]["field"] == "pruner.name"
    unknown = post(stack, "/studies", {**body, "name": unique("objectives"), "metric": "nonsense"})
    assert unknown.status_code == 422, unknown.text
    assert unknown.json()["problems"][0]["field"] == "metric"
