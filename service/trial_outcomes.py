"""How a trial's end is judged: the values it finishes with, and what a repeated or late write means.

Pure functions of a trial as Optuna holds it; the lifecycle decides when to call them.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from itertools import pairwise

from optuna.exceptions import UpdateFinishedTrialError
from optuna.trial import FrozenTrial, TrialState

from service.constraints import objective_values
from service.epoch_metrics import EpochRecord
from service.errors import Conflict, InvalidSpec
from service.spec.study_spec import StudySpec
from service.state_words import ended_in_words, state_in_words
from service.storage.optuna_rows import FAIL_REASON_ATTR


@dataclass(frozen=True)
class CompleteEnding:
    """What a complete trial ends with: its value (or one per objective), the trainer's named
    figures, its per-epoch records, and its epochs' values not reported yet ((step, value))."""

    value: float | None
    values: list[float] | None
    figures: dict[str, float]
    epoch_metrics: list[EpochRecord] | None
    last_reports: list[tuple[int, float]]


def complete_values(
    spec: StudySpec,
    value: float | None,
    values: list[float] | None = None,
    figures: dict[str, float] | None = None,
) -> list[float]:
    """The values a complete trial finishes with, one per objective, each finite."""
    found = objective_values(spec, value, values, figures or {})
    for index, each in enumerate(found):
        require_finite(each, "value" if values is None and value is not None else f"values.{index}")
    return found


def values_to_record(
    spec: StudySpec,
    state: TrialState,
    value: float | None,
    values: list[float] | None,
    figures: dict[str, float] | None,
) -> list[float] | None:
    """What a completion in ``state`` records as the trial's values (a repeat compares them)."""
    if state == TrialState.COMPLETE:
        return complete_values(spec, value, values, figures)
    return values if values is not None else ([value] if value is not None else None)


def final_values(state: TrialState, value: float | None, spec: StudySpec) -> list[float] | None:
    """The values a pruned or failed trial finishes with: ``value`` when pruned (its last report
    where the worker sends none; a study of several objectives is never pruned: none), none when
    failed. A complete trial's are :func:`complete_values`."""
    assert state != TrialState.COMPLETE, "a completion's values are complete_values'"
    if state != TrialState.PRUNED or spec.multi_objective or value is None:
        return None
    require_finite(value, "value")
    return [value]


def repeated_completion(
    trial: FrozenTrial, state: TrialState, recorded: list[float] | None
) -> FrozenTrial:
    """A repeat of the completion already recorded is answered as before (duplicate deliveries):
    the same state, and the values it would have recorded (``recorded``; ``None``: it names
    none) the same."""
    if trial.state == state and (recorded is None or trial.values == recorded):
        return trial
    ended = ended_in_words(trial.state, trial.system_attrs.get(FAIL_REASON_ATTR))
    raise Conflict(f"trial {trial._trial_id} is already {ended}", field="trial_id")


@contextmanager
def finished_is_conflict(trial_id: int) -> Iterator[None]:
    """Optuna's refusal to update a finished trial (a race with another request) is a 409."""
    try:
        yield
    except UpdateFinishedTrialError as error:
        raise Conflict(f"trial {trial_id} has already finished", field="trial_id") from error


def check_last_reports(state: TrialState, reports: list[tuple[int, float]]) -> None:
    """``InvalidSpec`` unless ``reports`` (a completion's last epochs' values) are finite, of
    rising steps, and brought by a complete trial (a pruned or failed one reports first)."""
    if reports and state != TrialState.COMPLETE:
        raise InvalidSpec(
            f"only a complete trial's completion brings reports, not a {state_in_words(state)} "
            "one's: send them to POST /trials/{id}/reports first",
            field="reports",
        )
    problem = steps_problem([step for step, _ in reports])
    if problem is not None:
        raise InvalidSpec(problem, field="reports")
    for index, (_, value) in enumerate(reports):
        require_finite(value, f"reports.{index}.value")


def check_failure_brings_no_result(
    state: TrialState,
    value: float | None,
    values: list[float] | None,
    figures: dict[str, float] | None,
) -> None:
    """``InvalidSpec`` naming the ``value``, ``values`` or ``metrics`` a failed trial's
    completion brings: a failed trial records none (they would be dropped without a word)."""
    if state != TrialState.FAIL:
        return
    for field, given in (("value", value), ("values", values), ("metrics", figures or None)):
        if given is not None:
            raise InvalidSpec(
                f"a failed trial records no {field}: send state complete with it, or the "
                "failure with its reason alone",
                field=field,
            )


def steps_problem(steps: list[int]) -> str | None:
    """What is wrong with a batch of reports' steps: they must rise, one report per step."""
    if any(later <= earlier for earlier, later in pairwise(steps)):
        return f"the steps must rise, one report per step: got {steps}"
    return None


def require_finite(value: float, field: str) -> None:
    """``InvalidSpec`` for NaN and infinities."""
    if not math.isfinite(value):
        raise InvalidSpec(f"{field} must be a finite number, got {value}", field=field)
