"""How a trial's end is judged: the values it finishes with, and what a repeated or late write means.

Pure functions of a trial as Optuna holds it; the lifecycle decides when to call them.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from contextlib import contextmanager

from optuna.exceptions import UpdateFinishedTrialError
from optuna.trial import FrozenTrial, TrialState

from service.errors import Conflict, InvalidSpec


def final_values(trial: FrozenTrial, state: TrialState, value: float | None) -> list[float] | None:
    """The values a trial finishes with: its own when complete, the last reported when pruned."""
    if state == TrialState.COMPLETE:
        if value is None:
            raise InvalidSpec("a complete trial needs its value", field="value")
        require_finite(value, "value")
        return [value]
    if state == TrialState.PRUNED:
        if value is not None:
            require_finite(value, "value")
            return [value]
        last = trial.last_step
        return [trial.intermediate_values[last]] if last is not None else None
    return None


def repeated_completion(trial: FrozenTrial, state: TrialState, value: float | None) -> FrozenTrial:
    """A repeat of the completion already recorded is answered as before (duplicate deliveries)."""
    same_value = value is None or trial.values == [value]
    if trial.state == state and same_value:
        return trial
    state_name = trial.state.name.lower()
    raise Conflict(f"trial {trial._trial_id} is already {state_name}", field="trial_id")


@contextmanager
def finished_is_conflict(trial_id: int) -> Iterator[None]:
    """Optuna's refusal to update a finished trial (a race with another request) is a 409."""
    try:
        yield
    except UpdateFinishedTrialError as error:
        raise Conflict(f"trial {trial_id} has already finished", field="trial_id") from error


def require_finite(value: float, field: str) -> None:
    """``InvalidSpec`` for NaN and infinities."""
    if not math.isfinite(value):
        raise InvalidSpec(f"{field} must be a finite number, got {value}", field=field)
