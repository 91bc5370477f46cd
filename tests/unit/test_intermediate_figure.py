"""The intermediate values' figure draws the latest trials as one collection of lines: Optuna's
drew a line and a legend entry a trial (58.5 s at 8,000 trials, the API's CPU held)."""

from __future__ import annotations

import matplotlib.pyplot as plt
import optuna

from service.insights import MAX_INTERMEDIATE_LINES, _draw_intermediate


def study_of(n_trials: int) -> optuna.Study:
    study = optuna.create_study()
    for number in range(n_trials):
        trial = study.ask()
        for step in (1, 2, 3):
            trial.report(number + 1 / step, step)
        study.tell(trial, float(number))
    return study


def test_a_large_study_draws_its_latest_trials_and_says_so() -> None:
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    axes = _draw_intermediate(study_of(MAX_INTERMEDIATE_LINES + 20))
    try:
        [lines] = axes.collections
        segments = lines.get_segments()
        assert len(segments) == MAX_INTERMEDIATE_LINES
        assert segments[-1][0].tolist() == [1.0, MAX_INTERMEDIATE_LINES + 19 + 1.0]  # the last
        assert axes.get_title() == (
            f"Intermediate values (the latest {MAX_INTERMEDIATE_LINES} of "
            f"{MAX_INTERMEDIATE_LINES + 20} trials that reported)"
        )
    finally:
        plt.close("all")


def test_a_small_study_draws_every_trial() -> None:
    axes = _draw_intermediate(study_of(3))
    try:
        assert len(axes.collections[0].get_segments()) == 3
        assert axes.get_title() == "Intermediate values (all trials that reported)"
    finally:
        plt.close("all")
