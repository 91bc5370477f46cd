"""Samplers and pruners built from a spec, and the budget's arithmetic."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import optuna

from service.policies import build_pruner, build_sampler, trial_seed
from service.spec.study_spec import StudySpec
from service.trial_counts import TrialCounts, is_done, why_no_trial_may_start


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


def test_each_pruner_name_builds_its_optuna_pruner() -> None:
    assert isinstance(build_pruner(spec()), optuna.pruners.HyperbandPruner)
    assert isinstance(build_pruner(spec(pruner={"name": "none"})), optuna.pruners.NopPruner)


def test_the_sampler_seed_moves_with_the_history_so_draws_do_not_repeat() -> None:
    first = build_sampler(spec(sampler={"name": "random", "seed": 5}), 0)
    again = build_sampler(spec(sampler={"name": "random", "seed": 5}), 0)
    later = build_sampler(spec(sampler={"name": "random", "seed": 5}), 1)
    draw = lambda s: s._rng.rng.random()  # noqa: E731
    assert draw(first) == draw(again) != draw(later)


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


def test_the_timeout_stops_new_trials_and_ends_the_study_once_idle() -> None:
    s = spec(budget={"n_trials": 100, "timeout_seconds": 60})
    long_ago = datetime.now(UTC) - timedelta(seconds=61)
    assert "timeout" in (why_no_trial_may_start(s, counts(1, 0), long_ago) or "")
    assert not is_done(s, counts(5, 1), long_ago)
    assert is_done(s, counts(5, 0), long_ago)
    assert not is_done(s, counts(5, 0), datetime.now(UTC))
