"""Samplers and pruners built from a spec, and the budget's arithmetic."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import optuna
import pytest

from service.dispatch import NoDispatcher
from service.policies import build_pruner, build_sampler, trial_seed
from service.seeded_hyperband import SeededHyperbandPruner
from service.spec.study_spec import StudySpec
from service.storage.database import Database
from service.study_names import optuna_study_name
from service.trainer_catalog import TrainerCatalog
from service.trial_counts import TrialCounts, is_done, why_no_trial_may_start
from service.tuner import Tuner


def spec(**fields: object) -> StudySpec:
    return StudySpec.model_validate(
        {"name": "s", "space": {"x": {"type": "int", "low": 0, "high": 3}}, **fields}
    )


def test_each_sampler_name_builds_its_optuna_sampler() -> None:
    assert isinstance(build_sampler(spec(), 0), optuna.samplers.TPESampler)
    assert isinstance(
        build_sampler(spec(sampler={"name": "random"}), 0), optuna.samplers.RandomSampler
    )
    assert isinstance(build_sampler(spec(sampler={"name": "grid"}), 0), optuna.samplers.GridSampler)
    assert isinstance(
        build_sampler(spec(sampler={"name": "cmaes"}), 0), optuna.samplers.CmaEsSampler
    )
    assert isinstance(build_sampler(spec(sampler={"name": "qmc"}), 0), optuna.samplers.QMCSampler)
    assert isinstance(build_sampler(spec(sampler={"name": "gp"}), 0), optuna.samplers.GPSampler)


def test_each_pruner_name_builds_its_optuna_pruner() -> None:
    assert isinstance(build_pruner(spec()), optuna.pruners.HyperbandPruner)
    assert isinstance(build_pruner(spec(pruner={"name": "none"})), optuna.pruners.NopPruner)
    named = {
        "median": optuna.pruners.MedianPruner,
        "successive_halving": optuna.pruners.SuccessiveHalvingPruner,
        "wilcoxon": optuna.pruners.WilcoxonPruner,
    }
    for name, kind in named.items():
        assert type(build_pruner(spec(pruner={"name": name}))) is kind
    percentile = spec(pruner={"name": "percentile", "percentile": 10})
    assert isinstance(build_pruner(percentile), optuna.pruners.PercentilePruner)
    threshold = spec(pruner={"name": "threshold", "lower": 0})
    assert isinstance(build_pruner(threshold), optuna.pruners.ThresholdPruner)
    patient = spec(pruner={"name": "patient", "patience": 0})
    assert isinstance(build_pruner(patient), optuna.pruners.PatientPruner)


def test_unseeded_hyperband_brackets_follow_the_name_its_tenant_gave_not_its_optuna_name() -> None:
    """Another tenant's study is ``tenant/name`` in Optuna's tables: its trials fall in the
    brackets Optuna's own Hyperband gives a study of the plain name, as the default tenant's do."""
    unseeded = spec(pruner={"name": "hyperband", "max_resource": 27})
    ours = build_pruner(unseeded)
    assert isinstance(ours, SeededHyperbandPruner) and ours.ready()
    optunas = optuna.pruners.HyperbandPruner(max_resource=27)
    optunas._try_initialization(None)  # type: ignore[arg-type]  # unused with a fixed max
    plain = optuna.create_study(study_name=unseeded.name)
    tenants = optuna.create_study(study_name=optuna_study_name("acme", unseeded.name))
    for number in range(40):
        trial = optuna.trial.create_trial(state=optuna.trial.TrialState.RUNNING)
        trial.number = number
        expected = optunas._get_bracket_id(plain, trial)
        assert ours._get_bracket_id(tenants, trial) == ours.bracket_of(number) == expected
    assert len({ours.bracket_of(number) for number in range(40)}) > 1


def test_the_sampler_seed_moves_with_the_history_so_draws_do_not_repeat() -> None:
    first = build_sampler(spec(sampler={"name": "random", "seed": 5}), 0)
    again = build_sampler(spec(sampler={"name": "random", "seed": 5}), 0)
    later = build_sampler(spec(sampler={"name": "random", "seed": 5}), 1)
    draw = lambda s: s._rng.rng.random()  # noqa: E731
    assert draw(first) == draw(again) != draw(later)


def test_the_qmc_seed_stays_the_same_on_every_ask_so_the_sequence_goes_on() -> None:
    seeded = spec(sampler={"name": "qmc", "scramble": True, "seed": 5})
    assert build_sampler(seeded, 0)._seed == build_sampler(seeded, 7)._seed == 5
    unseeded = spec(sampler={"name": "qmc", "scramble": True})
    assert build_sampler(unseeded, 0)._seed == build_sampler(unseeded, 7)._seed
    other_study = StudySpec.model_validate({**unseeded.model_dump(), "name": "other"})
    assert build_sampler(other_study, 0)._seed != build_sampler(unseeded, 0)._seed


def sobol_tuner(tmp_path: Path) -> Tuner:
    database = Database(f"sqlite:///{tmp_path / 'qmc.db'}")
    return Tuner(database, NoDispatcher(), TrainerCatalog.installed())


def qmc_study(sampler: dict[str, Any]) -> StudySpec:
    return StudySpec.model_validate(
        {
            "name": f"qmc-{sampler.get('scramble', False)}",
            "space": {
                "x": {"type": "float", "low": 0, "high": 1},
                "y": {"type": "float", "low": 0, "high": 1},
            },
            "sampler": sampler,
            "pruner": {"name": "none"},
            "budget": {"n_trials": 8, "max_concurrent_trials": 8},
        }
    )


@pytest.mark.parametrize("sampler", [{"name": "qmc"}, {"name": "qmc", "scramble": True}])
def test_qmc_asks_advance_one_sobol_sequence_across_asks_and_processes(
    tmp_path: Path, sampler: dict[str, Any]
) -> None:
    """Eight Sobol' points split each axis into eight strata, one point each: draws that
    restarted the sequence, or were random, would not."""
    first = sobol_tuner(tmp_path)
    study_id = first.create_study(qmc_study(sampler)).study_id
    points = []
    for n in range(8):
        tuner = first if n < 4 else sobol_tuner(tmp_path)  # another API process, same database
        trial = tuner.ask(study_id)
        tuner.report(trial.trial_id, 1, trial.params["x"], trial.lease)
        value = trial.params["x"] + trial.params["y"]
        tuner.complete(trial.trial_id, optuna.trial.TrialState.COMPLETE, value, None, trial.lease)
        points.append((trial.params["x"], trial.params["y"]))
    assert len(set(points)) == 8
    for axis in (0, 1):
        assert sorted(int(point[axis] * 8) for point in points) == list(range(8))
    if not sampler.get("scramble"):
        assert points[:4] == [(0.0, 0.0), (0.5, 0.5), (0.75, 0.25), (0.25, 0.75)]


def test_trial_seeds_are_fixed_and_distinct() -> None:
    seeded = spec(sampler={"seed": 3})
    assert trial_seed(seeded, 4) == trial_seed(seeded, 4)
    assert len({trial_seed(seeded, n) for n in range(100)}) == 100


def counts(total: int, running: int) -> TrialCounts:
    return TrialCounts(total=total, running=running, by_state={"running": running})


def test_a_trial_may_start_while_budget_and_slots_allow() -> None:
    s = spec(budget={"n_trials": 3, "max_concurrent_trials": 2})
    now = datetime.now(UTC)
    assert why_no_trial_may_start(s, counts(1, 1), now) is None
    assert "max_concurrent_trials" in (why_no_trial_may_start(s, counts(2, 2), now) or "")
    assert "budget" in (why_no_trial_may_start(s, counts(3, 0), now) or "")


def test_enqueued_trials_waiting_within_a_spent_budget_still_run() -> None:
    """Enqueued configurations are in the total from the start; popping one adds no trial."""
    s = spec(budget={"n_trials": 3})
    now = datetime.now(UTC)
    waiting = TrialCounts(total=3, running=0, by_state={"running": 0, "waiting": 1})
    assert why_no_trial_may_start(s, waiting, now) is None
    assert not is_done(s, waiting, now)
    assert is_done(s, counts(3, 0), now)


def test_trials_started_leave_out_the_enqueued_ones_still_waiting() -> None:
    """A sampler's seed counts the trials started: with the waiting ones counted, each trial
    taken off the queue (and the first after them) drew the same values for what it left out."""
    waiting = TrialCounts(total=5, running=1, by_state={"running": 1, "waiting": 3})
    assert waiting.started == 2
    assert counts(5, 1).started == 5


def test_the_timeout_stops_new_trials_and_ends_the_study_once_idle() -> None:
    s = spec(budget={"n_trials": 100, "timeout_seconds": 60})
    long_ago = datetime.now(UTC) - timedelta(seconds=61)
    assert "timeout" in (why_no_trial_may_start(s, counts(1, 0), long_ago) or "")
    assert not is_done(s, counts(5, 1), long_ago)
    assert is_done(s, counts(5, 0), long_ago)
    assert not is_done(s, counts(5, 0), datetime.now(UTC))


def test_counts_with_one_started_are_the_counts_read_after_a_new_trial_starts() -> None:
    done = optuna.trial.create_trial(value=1.0)
    retried = optuna.trial.create_trial(
        state=optuna.trial.TrialState.FAIL, system_attrs={"hpo:retried_by": 7}
    )
    running = optuna.trial.create_trial(state=optuna.trial.TrialState.RUNNING)
    before = TrialCounts.of([done, retried, running])
    assert before.with_one_started() == TrialCounts.of([done, retried, running, running])
