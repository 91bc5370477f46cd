"""Each sampler and pruner past the first release, driven over HTTP by an external program."""

from __future__ import annotations

import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import requests

from cli.local_stack import LocalStack
from client import HPOJSONClient

pytestmark = pytest.mark.integration
SPACE = {
    "x": {"type": "float", "low": 0.0, "high": 1.0},
    "y": {"type": "float", "low": 0.0, "high": 1.0},
}
OPTIMUM = {"x": 0.3, "y": 0.6}
Curve = Callable[[int, dict[str, Any]], list[float]]  # (trial number, params) -> value per step


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalStack]:
    """The API alone (no worker: an external program runs the trials), on SQLite."""
    directory: Path = tmp_path_factory.mktemp("options")
    running = LocalStack(f"sqlite:///{directory / 'hpo.db'}", workers=0, directory=directory)
    running.start()
    yield running
    running.stop()


@dataclass
class Ran:
    """What the external program saw of one trial."""

    number: int
    params: dict[str, Any]
    values: list[float]  # as reported, up to the prune
    pruned: bool


def distance(params: dict[str, Any]) -> float:
    return sum((params[name] - best) ** 2 for name, best in OPTIMUM.items())


def run_study(stack: LocalStack, study: dict[str, Any], curve: Curve) -> list[Ran]:
    """Create ``study``, run every trial of its budget one by one, and check it ended whole."""
    client = stack.client()
    n_trials = study.setdefault("budget", {}).setdefault("n_trials", 12)
    study["name"] = f"{study.get('name', 'options')}-{uuid.uuid4().hex[:8]}"
    study_id = client.create_study({"space": SPACE, **study})["study_id"]
    ran = [run_trial(client, study_id, curve) for _ in range(n_trials)]
    finished = client.study(study_id)
    assert finished["state"] == "complete" and sum(finished["counts"].values()) == n_trials
    states = {trial["number"]: trial["state"] for trial in client.trials(study_id)}
    assert states == {r.number: "pruned" if r.pruned else "complete" for r in ran}
    return ran


def run_trial(client: HPOJSONClient, study_id: int, curve: Curve) -> Ran:
    trial = client.ask(study_id)
    ran = Ran(trial["number"], trial["params"], [], pruned=False)
    for step, value in enumerate(curve(ran.number, ran.params), start=1):
        ran.values.append(value)
        if client.report(trial["trial_id"], step, value, trial["lease"]):
            ran.pruned = True
            return ran
    client.complete(trial["trial_id"], value=ran.values[-1], lease=trial["lease"])
    return ran


def settling(number: int, params: dict[str, Any]) -> list[float]:
    """The synthetic objective, settling over 5 steps onto the distance to the optimum."""
    return [distance(params) + 0.1 / step for step in range(1, 6)]


def in_space(ran: list[Ran]) -> bool:
    return all(0 <= r.params[name] <= 1 for r in ran for name in SPACE)


def test_cmaes_stays_in_the_space_and_closes_in_on_the_optimum(stack: LocalStack) -> None:
    study = {
        "sampler": {"name": "cmaes", "seed": 1, "n_startup_trials": 2},
        "pruner": {"name": "none"},
    }
    ran = run_study(stack, {**study, "budget": {"n_trials": 16}}, settling)
    assert in_space(ran)
    assert min(distance(r.params) for r in ran) < 0.01
    assert min(distance(r.params) for r in ran[8:]) < min(distance(r.params) for r in ran[:2])


def test_gp_stays_in_the_space_and_closes_in_on_the_optimum(stack: LocalStack) -> None:
    study = {
        "sampler": {"name": "gp", "seed": 1, "n_startup_trials": 4},
        "pruner": {"name": "none"},
    }
    ran = run_study(stack, {**study, "budget": {"n_trials": 12}}, settling)
    assert in_space(ran)
    assert min(distance(r.params) for r in ran[4:]) < 0.001  # 8 random draws: about 1 in 40


def strata(values: list[float], count: int) -> Counter[int]:
    """How many of ``values`` fall in each of ``count`` equal strata of [0, 1)."""
    return Counter(int(value * count) for value in values)


@pytest.mark.parametrize("qmc_type", ["sobol", "halton"])
@pytest.mark.parametrize("seed", [None, 7])
def test_qmc_spreads_its_points_one_per_stratum(
    stack: LocalStack, qmc_type: str, seed: int | None
) -> None:
    """16 Sobol' points fill the 16 strata of each axis once. Halton's first 16 fill x's 16 strata
    (base 2) and y's 9 strata (base 3) once each, 7 of them twice: whatever the scrambling seed."""
    sampler = {"name": "qmc", "qmc_type": qmc_type, "scramble": True, "seed": seed}
    ran = run_study(stack, {"sampler": sampler, "budget": {"n_trials": 16}}, settling)
    assert in_space(ran)
    assert strata([r.params["x"] for r in ran], 16) == Counter(range(16))
    y_strata = strata([r.params["y"] for r in ran], 16 if qmc_type == "sobol" else 9)
    assert sorted(y_strata.values()) == ([1] * 16 if qmc_type == "sobol" else [1, 1] + [2] * 7)


def steady(levels: dict[int, float], default: float, steps: int = 5) -> Curve:
    """Trial ``n`` reports ``levels[n]`` (or ``default``) at every step."""
    return lambda number, _params: [levels.get(number, default)] * steps


def pruned_at(
    stack: LocalStack, pruner: dict[str, Any], n_trials: int, curve: Curve
) -> dict[int, int]:
    """Run a study with ``pruner``: trial number -> the step it was pruned at."""
    study = {"sampler": {"name": "random", "seed": 3}, "pruner": pruner}
    ran = run_study(stack, {**study, "budget": {"n_trials": n_trials}}, curve)
    return {r.number: len(r.values) for r in ran if r.pruned}


def test_threshold_prunes_every_trial_over_upper_at_its_first_step(stack: LocalStack) -> None:
    bad = {1: 5.0, 4: 5.0, 5: 5.0, 9: 5.0}
    pruner = {"name": "threshold", "upper": 1.0}
    assert pruned_at(stack, pruner, 10, steady(bad, 0.5)) == dict.fromkeys(bad, 1)


def test_median_prunes_a_clearly_bad_trial_only_after_startup(stack: LocalStack) -> None:
    bad = {1: 10.0, 7: 10.0, 10: 10.0}  # trial 1 runs while fewer than 3 have completed
    pruner = {"name": "median", "n_startup_trials": 3}
    assert pruned_at(stack, pruner, 12, steady(bad, 1.0)) == {7: 1, 10: 1}


def test_percentile_prunes_what_the_median_would_keep(stack: LocalStack) -> None:
    """Completed levels 1..4: the 25th percentile is 1.75, the median 2.5; a 2.0 is pruned."""
    levels = {0: 1.0, 1: 2.0, 2: 3.0, 3: 4.0, 4: 2.0, 5: 1.5}
    pruner = {"name": "percentile", "percentile": 25, "n_startup_trials": 4}
    assert pruned_at(stack, pruner, 6, steady(levels, 1.0)) == {4: 1}


def test_successive_halving_prunes_some_and_only_at_rungs(stack: LocalStack) -> None:
    pruner = {"name": "successive_halving", "min_resource": 1, "reduction_factor": 2}
    pruned = pruned_at(stack, pruner, 16, lambda _n, p: [p["x"] + 1 / s for s in range(1, 9)])
    assert 3 <= len(pruned) < 16
    assert set(pruned.values()) <= {1, 2, 4, 8}  # the rungs: steps 1 * 2**k


def test_patient_waits_for_three_steps_without_improvement(stack: LocalStack) -> None:
    curves = {
        0: [1.0, 0.9, 0.8, 0.7, 0.6, 0.5],  # improving
        1: [1.0, 0.9, 0.95, 0.97, 0.99, 1.2],  # worse than 0.9 three steps running
        2: [1.0, 0.9, 0.9, 0.9, 0.9, 0.9],  # a plateau is not worse
        3: [1.0, 0.9, 0.95, 0.85, 0.95, 0.96],  # improves at step 4: the count starts again
    }
    pruner = {"name": "patient", "patience": 2}
    assert pruned_at(stack, pruner, 4, lambda n, _p: curves[n]) == {1: 5}


def test_patient_prunes_only_where_the_pruner_it_wraps_agrees(stack: LocalStack) -> None:
    curves = {0: [1.0, 0.9, 1.1, 1.2, 1.3, 1.4], 1: [1.0, 0.9, 3.0, 3.1, 3.2, 3.3]}
    pruner = {"name": "patient", "patience": 1, "wrapped": {"name": "threshold", "upper": 2.0}}
    # patience alone would prune both at step 4, the threshold alone trial 1 at step 3
    assert pruned_at(stack, pruner, 2, lambda n, _p: curves[n]) == {1: 4}


def test_wilcoxon_prunes_a_trial_worse_on_every_step_than_the_best(stack: LocalStack) -> None:
    """Worse on all n paired steps gives p = 2**-n: below 0.1 from the 4th step on."""
    instances = [0.3, 0.9, 0.1, 0.5, 0.7, 0.2, 0.8, 0.4]
    offsets = {0: 0.0, 1: 0.25, 2: -0.05, 3: 0.1}  # trial 2 beats trial 0 and becomes the best
    pruner = {"name": "wilcoxon", "p_threshold": 0.1}
    curve: Curve = lambda n, _p: [loss + offsets[n] for loss in instances]  # noqa: E731
    assert pruned_at(stack, pruner, 4, curve) == {1: 4, 3: 4}


CONDITIONAL = {
    "kind": {"type": "categorical", "choices": ["near", "far"]},
    "x": {"type": "float", "low": 0.0, "high": 1.0, "condition": {"param": "kind", "in": ["near"]}},
    "z": {"type": "float", "low": 5.0, "high": 6.0, "condition": {"param": "kind", "in": ["far"]}},
}


def test_tpe_with_group_and_constant_liar_runs_parallel_trials_of_a_conditional_space(
    stack: LocalStack,
) -> None:
    client = stack.client()
    sampler = {
        "name": "tpe",
        "seed": 1,
        "multivariate": True,
        "group": True,
        "constant_liar": True,
        "n_startup_trials": 4,
    }
    study = {
        "name": f"tpe-group-{uuid.uuid4().hex[:8]}",
        "space": CONDITIONAL,
        "sampler": sampler,
        "pruner": {"name": "none"},
        "budget": {"n_trials": 24, "max_concurrent_trials": 3},
    }
    study_id = client.create_study(study)["study_id"]
    seen: list[dict[str, Any]] = []
    for _ in range(8):  # three trials asked before any of them is told (parallel workers)
        batch = [client.ask(study_id) for _ in range(3)]
        for trial in batch:
            params = trial["params"]
            seen.append(params)
            value = params["x"] if params["kind"] == "near" else params["z"]
            client.complete(trial["trial_id"], value=value, lease=trial["lease"])
    assert all(set(p) == ({"kind", "x"} if p["kind"] == "near" else {"kind", "z"}) for p in seen)
    assert client.study(study_id)["counts"]["complete"] == 24
    later = seen[12:]  # after the start-up trials, TPE's groups learn that "near" is better
    assert sum(p["kind"] == "near" for p in later) > len(later) / 2
    assert client.best(study_id)["params"]["kind"] == "near"


CATEGORICAL = {**SPACE, "act": {"type": "categorical", "choices": ["a", "b"]}}
MLP_SPACE = {"lr": {"type": "float", "low": 1e-4, "high": 1e-1, "log": True}}
LATE_RUNG = {"name": "successive_halving", "min_resource": 4, "min_early_stopping_rate": 1}
PATIENT_IN_PATIENT = {"name": "patient", "patience": 1, "wrapped": {"name": "patient"}}
REJECTED = [
    # study fields, the field named, words of the problem
    pytest.param(
        {"sampler": {"name": "cmaes"}, "space": CATEGORICAL},
        "space.act",
        "categorical",
        id="cmaes-categorical",
    ),
    pytest.param(
        {"sampler": {"name": "tpe", "multivariate": False, "group": True}},
        "sampler.group",
        "multivariate",
        id="group-univariate",
    ),
    pytest.param(
        {"sampler": {"name": "qmc", "qmc_type": "lattice"}},
        "sampler.qmc_type",
        "sobol",
        id="qmc-type",
    ),
    pytest.param(
        {"pruner": {"name": "threshold"}}, "pruner.upper", "lower, upper", id="no-threshold"
    ),
    pytest.param(
        {"pruner": {"name": "threshold", "lower": 1, "upper": 0}},
        "pruner.upper",
        "below",
        id="upside-down",
    ),
    pytest.param(
        {"pruner": PATIENT_IN_PATIENT}, "pruner.wrapped", "patient", id="patient-in-patient"
    ),
    pytest.param(
        {"pruner": {"name": "patient", "patience": -1}}, "pruner.patience", "0", id="impatient"
    ),
    pytest.param(
        {"pruner": {"name": "wilcoxon", "p_threshold": 2}}, "pruner.p_threshold", "1", id="p-over-1"
    ),
    pytest.param(
        {"space": MLP_SPACE, "pruner": LATE_RUNG, "trainer": {"name": "mlp", "epochs": 10}},
        "pruner.min_resource",
        "never prune",
        id="rung-past-last-epoch",
    ),
]


@pytest.mark.parametrize(("fields", "field", "words"), REJECTED)
def test_options_that_do_not_fit_get_422_with_the_field_named(
    stack: LocalStack, fields: dict[str, Any], field: str, words: str
) -> None:
    body = {"name": f"bad-{uuid.uuid4().hex[:8]}", "space": SPACE, **fields}
    response = requests.post(f"{stack.url}/studies", json=body, timeout=10)
    assert response.status_code == 422, response.text
    problems = response.json()["problems"]
    assert any(p["field"] == field and words in p["problem"] for p in problems), problems
    assert body["name"] not in {s["name"] for s in stack.client().studies()}
