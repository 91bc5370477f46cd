"""The vault and ensembles: which trials' models a job scores, and the figures it sends back.

The test split stays in the vault: samplers and pruners see validation figures only, and a
model's test figure exists only once ``POST /studies/{id}/evaluate`` asked for it, once per model.
An ensemble averages the top-k trials' predicted probabilities on the validation split.
"""

from __future__ import annotations

from collections.abc import Sequence

from optuna.trial import FrozenTrial, TrialState
from pydantic import BaseModel, ConfigDict, Field

from service.constraints import is_feasible
from service.errors import Conflict, InvalidSpec
from service.spec.study_spec import StudySpec
from service.state_words import state_in_words

MAX_ENSEMBLE = 20


class ModelFigures(BaseModel):
    """Loss (mean cross-entropy) and accuracy of one model, or one ensemble, on one split."""

    model_config = ConfigDict(extra="forbid")

    loss: float = Field(allow_inf_nan=False)
    accuracy: float = Field(ge=0, le=1)
    samples: int = Field(ge=0)


class EvaluationFigures(BaseModel):
    """A job's test-split score (out of the vault) of one trial's model, or of an ensemble's."""

    model_config = ConfigDict(extra="forbid")

    split: str = Field(default="test", pattern="^test$")
    test: ModelFigures


class EnsembleFigures(BaseModel):
    """The top-k ensemble's validation figures beside the single best trial's."""

    model_config = ConfigDict(extra="forbid")

    split: str = Field(default="validation", pattern="^validation$")
    ensemble: ModelFigures
    best_single: ModelFigures


def ranked_trials(spec: StudySpec, trials: Sequence[FrozenTrial]) -> list[FrozenTrial]:
    """The complete (and feasible) trials, best first; ties by number."""
    if spec.multi_objective:
        raise Conflict(
            "a study of several objectives has no single ranking of its trials (to score one of "
            "its Pareto front, evaluate with its trial_id)",
            field="study_id",
        )
    sign = 1.0 if spec.direction == "minimize" else -1.0
    finished = [trial for trial in trials if _ranks(trial)]
    return sorted(finished, key=lambda trial: (sign * float(trial.value or 0.0), trial.number))


def _ranks(trial: FrozenTrial) -> bool:
    """Complete, with a value, within the study's constraints."""
    complete = trial.state == TrialState.COMPLETE
    return complete and trial.value is not None and is_feasible(trial)


def top_trials(ranked: list[FrozenTrial], k: int, field: str) -> list[FrozenTrial]:
    """The best ``k`` of ``ranked``; ``Conflict`` naming ``field`` when there are fewer."""
    if len(ranked) < k:
        problem = f"the study has {len(ranked)} complete trials within its constraints, fewer "
        raise Conflict(problem + f"than {field} = {k}", field=field)
    return ranked[:k]


def chosen_trial(trials: Sequence[FrozenTrial], trial_id: int) -> FrozenTrial:
    """The trial ``trial_id`` of the study, which must be complete and within its constraints
    (of a study of one objective or several)."""
    for trial in trials:
        if trial._trial_id != trial_id:
            continue
        if trial.state != TrialState.COMPLETE:
            problem = f"trial {trial_id} is {state_in_words(trial.state)}, not complete"
            raise InvalidSpec(problem, field="trial_id")
        if not is_feasible(trial):
            problem = f"trial {trial_id} is complete but breaks the study's constraints"
            raise InvalidSpec(problem, field="trial_id")
        return trial
    raise InvalidSpec(f"the study has no trial with id {trial_id}", field="trial_id")


def model_key(trials: Sequence[FrozenTrial]) -> str:
    """The name of a model: one trial's (``trial:12``), or an ensemble's (``ensemble:3,7,9``)."""
    if len(trials) == 1:
        return f"trial:{trials[0]._trial_id}"
    return "ensemble:" + ",".join(str(trial._trial_id) for trial in trials)
