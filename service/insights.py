"""Pictures and importances of a study, read from the service's Optuna storage.

Figures come from ``optuna.visualization.matplotlib`` rendered off-screen (Agg) to PNG bytes;
importances from Optuna's default evaluator, PED-ANOVA (``PedAnovaImportanceEvaluator``).
"""

from __future__ import annotations

import io
import threading
import warnings
from collections.abc import Callable
from typing import Any

import matplotlib

matplotlib.use("Agg")  # no display on a server; set before pyplot is imported

import matplotlib.pyplot as plt
import optuna
from matplotlib.collections import LineCollection
from optuna.importance import PedAnovaImportanceEvaluator
from optuna.trial import TrialState
from optuna.visualization import matplotlib as optuna_plots
from pydantic import BaseModel

from service.errors import Conflict

PLOT_KINDS = ("history", "intermediate", "importance", "parallel_coordinate")
MAX_INTERMEDIATE_LINES = 500  # trials drawn in the intermediate values' figure
IMPORTANCE_EVALUATOR = "PedAnovaImportanceEvaluator"
MIN_TRIALS_FOR_IMPORTANCE = 2
FIGURE_DPI = 100
# pyplot keeps global state: one figure at a time per process (the API serves on threads)
_PYPLOT_LOCK = threading.Lock()


class ImportanceView(BaseModel):
    """How much each parameter explains the objective's variation, summing to 1."""

    study_id: int
    evaluator: str
    n_complete_trials: int
    importances: dict[str, float]


def plot_png(study: optuna.Study, study_id: int, kind: str) -> bytes:
    """The PNG of one figure of ``study``: one of ``PLOT_KINDS``; ``Conflict`` when the study
    has not got the trials the figure needs."""
    _check_plottable(study, study_id, kind)
    draw = _DRAWERS[kind]
    buffer = io.BytesIO()
    with _PYPLOT_LOCK, warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        try:
            figure = _figure_of(draw(study))
            figure.set_size_inches(9, 5.5)
            figure.tight_layout()
            figure.savefig(buffer, format="png", dpi=FIGURE_DPI)
        except (ValueError, OverflowError) as error:  # e.g. values near the float's limit
            raise Conflict(
                f"study {study_id}: its {kind} figure cannot be drawn ({error})", field="study_id"
            ) from None
        finally:
            plt.close("all")  # a figure a failed drawing left open too (under the lock: ours)
    return buffer.getvalue()


def importances(study: optuna.Study, study_id: int) -> ImportanceView:
    """Parameter importances of ``study``'s complete trials (PED-ANOVA, normalised)."""
    complete = _complete_trials(study)
    _check_single_objective(study, study_id)
    _check_enough_for_importance(complete, study_id)
    try:
        found = optuna.importance.get_param_importances(
            study, evaluator=PedAnovaImportanceEvaluator()
        )
    except (ValueError, RuntimeError) as error:  # e.g. every trial has the same parameters
        raise Conflict(
            f"study {study_id}: no parameter importances yet ({error})", field="study_id"
        ) from None
    return ImportanceView(
        study_id=study_id,
        evaluator=IMPORTANCE_EVALUATOR,
        n_complete_trials=len(complete),
        importances={name: float(value) for name, value in found.items()},
    )


def _draw_importance(study: optuna.Study) -> Any:
    return optuna_plots.plot_param_importances(study, evaluator=PedAnovaImportanceEvaluator())


def _draw_intermediate(study: optuna.Study) -> Any:
    """Each trial's reported values by step, the latest ``MAX_INTERMEDIATE_LINES`` trials (by
    number) as one collection of lines. Optuna's figure draws a line and a legend entry a
    trial: 24.7 s at 2,000 trials, 58.5 s at 8,000, holding the API's CPU (and its plotting
    lock) all the while."""
    reported = [
        trial
        for trial in study.get_trials(deepcopy=False, states=_INTERMEDIATE_STATES)
        if trial.intermediate_values
    ]
    drawn = sorted(reported, key=lambda trial: trial.number)[-MAX_INTERMEDIATE_LINES:]
    _, axes = plt.subplots()
    lines = [sorted(trial.intermediate_values.items()) for trial in drawn]
    axes.add_collection(LineCollection(lines, linewidths=0.8, alpha=0.6))
    axes.autoscale()
    axes.set_xlabel("Step")
    axes.set_ylabel("Intermediate value")
    shown = f"the latest {len(drawn)} of {len(reported)}" if len(drawn) < len(reported) else "all"
    axes.set_title(f"Intermediate values ({shown} trials that reported)")
    return axes


_DRAWERS: dict[str, Callable[[optuna.Study], Any]] = {
    "history": optuna_plots.plot_optimization_history,
    "intermediate": _draw_intermediate,
    "importance": _draw_importance,
    "parallel_coordinate": optuna_plots.plot_parallel_coordinate,
}


def _figure_of(axes: Any) -> Any:
    """The figure behind what an Optuna plot returns: one Axes or an array of them."""
    first = axes.flat[0] if hasattr(axes, "flat") else axes
    return first.get_figure()


def _check_plottable(study: optuna.Study, study_id: int, kind: str) -> None:
    _check_single_objective(study, study_id)
    complete = _complete_trials(study)
    if kind == "importance":
        _check_enough_for_importance(complete, study_id)
    elif kind == "intermediate":
        drawn = study.get_trials(deepcopy=False, states=_INTERMEDIATE_STATES)
        if not any(trial.intermediate_values for trial in drawn):  # failed trials are not drawn
            raise Conflict(
                f"study {study_id} has no trial that reported an intermediate value yet",
                field="study_id",
            )
    elif not complete:
        raise Conflict(f"study {study_id} has no complete trial yet", field="study_id")


# The states Optuna's intermediate-values figure draws (not failed or waiting trials).
_INTERMEDIATE_STATES = (TrialState.COMPLETE, TrialState.PRUNED, TrialState.RUNNING)


def _check_single_objective(study: optuna.Study, study_id: int) -> None:
    if len(study.directions) > 1:
        raise Conflict(
            f"study {study_id} has {len(study.directions)} objectives: these figures and "
            "importances are drawn for a single objective",
            field="study_id",
        )


def _check_enough_for_importance(complete: list[optuna.trial.FrozenTrial], study_id: int) -> None:
    if len(complete) < MIN_TRIALS_FOR_IMPORTANCE:
        raise Conflict(
            f"study {study_id} has {len(complete)} complete trial(s): parameter importances "
            f"need at least {MIN_TRIALS_FOR_IMPORTANCE}",
            field="study_id",
        )
    if len({trial.value for trial in complete}) == 1:  # nothing to explain: shares of nothing
        raise Conflict(
            f"study {study_id}: every complete trial has the same value, so no parameter "
            "explains any of it yet",
            field="study_id",
        )


def _complete_trials(study: optuna.Study) -> list[optuna.trial.FrozenTrial]:
    return study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
