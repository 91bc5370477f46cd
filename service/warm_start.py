"""Warm start: a new study begins with an earlier study's finished trials, where the spaces agree.

Copied trials teach the sampler (and the pruner, with their intermediate values); they do not
count in the new study's budget. Each one that cannot be copied is counted under the reason.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from typing import Any

import optuna
from optuna.trial import FrozenTrial, TrialState
from pydantic import BaseModel

from service.constraints import (
    FIGURES_ATTR,
    constraint_attr,
    constraint_values,
    figures_with_values,
)
from service.errors import InvalidSpec
from service.spec.conditional import active_names
from service.spec.grid import contains
from service.spec.study_spec import StudySpec
from service.trial_counts import COPIED_FROM_ATTR

WARM_START_ATTR = "hpo:warm_start"
PRUNED_LEFT_OUT = "it was pruned, and include_pruned is false"


class WarmStartView(BaseModel):
    """What a warm start copied from the earlier study, and what it skipped and why."""

    source_study_id: int
    copied: int
    skipped: int
    skipped_because: dict[str, int]


def check_source(spec: StudySpec, source_spec: StudySpec) -> None:
    """``InvalidSpec`` where the earlier study optimises other objectives than ``spec``: other
    metrics (a trial's value is its metric's figure), or the same in other directions."""
    ours = [(o.metric, o.direction) for o in spec.objective_list()]
    theirs = [(o.metric, o.direction) for o in source_spec.objective_list()]
    if ours != theirs:
        raise InvalidSpec(
            f"the earlier study optimises {_describe(theirs)}; this one {_describe(ours)}: "
            "their values cannot be compared",
            field="warm_start.study_id",
        )


def copy_trials(
    spec: StudySpec, source_trials: list[FrozenTrial], source_study_id: int, target: optuna.Study
) -> WarmStartView:
    """Copy into ``target`` every finished trial of the source that fits ``spec``'s space."""
    assert spec.warm_start is not None
    states = {TrialState.COMPLETE} | (
        {TrialState.PRUNED} if spec.warm_start.include_pruned else set()
    )
    skipped: Counter[str] = Counter()
    copies: list[FrozenTrial] = []
    for trial in source_trials:
        if trial.state == TrialState.PRUNED and trial.state not in states:
            skipped[PRUNED_LEFT_OUT] += 1
            continue
        if trial.state not in states:
            continue
        reason = why_not_copied(spec, trial)
        if reason is not None:
            skipped[reason] += 1
            continue
        copies.append(_copy_of(spec, trial))
    target.add_trials(copies)
    return WarmStartView(
        source_study_id=source_study_id,
        copied=len(copies),
        skipped=sum(skipped.values()),
        skipped_because=dict(skipped),
    )


def why_not_copied(spec: StudySpec, trial: FrozenTrial) -> str | None:
    """Why ``trial`` cannot join a study of ``spec``; ``None`` when it can."""
    active = active_names(spec.space, trial.params)
    for name in trial.params:
        if name not in spec.space:
            return f"parameter '{name}' is not in this study's space"
        if name not in active:
            return f"parameter '{name}' is set where this study's condition on it does not hold"
    for name in active:  # a parameter whose condition does not hold is rightly absent
        if name not in trial.params:
            return f"parameter '{name}' was not searched"
        if not contains(spec.space[name], trial.params[name]):
            return f"parameter '{name}' lies outside this study's space"
    if trial.state == TrialState.COMPLETE and spec.constraints:
        try:
            constraint_values(spec, _figures_of(spec, trial))
        except InvalidSpec:
            return "it lacks a figure this study's constraints need"
    return None


def _copy_of(spec: StudySpec, trial: FrozenTrial) -> FrozenTrial:
    system_attrs: dict[str, Any] = {COPIED_FROM_ATTR: trial._trial_id}
    figures = trial.system_attrs.get(FIGURES_ATTR)
    if figures is not None:
        system_attrs[FIGURES_ATTR] = figures
    if trial.state == TrialState.COMPLETE:
        for name, violation in constraint_values(spec, _figures_of(spec, trial)).items():
            system_attrs[constraint_attr(name)] = violation
    return optuna.trial.create_trial(
        state=trial.state,
        params=trial.params,
        distributions={name: spec.space[name].distribution() for name in trial.params},
        values=trial.values,
        intermediate_values=dict(trial.intermediate_values),
        user_attrs=trial.user_attrs,
        system_attrs=system_attrs,
    )


def _describe(objectives: Sequence[tuple[str, str]]) -> str:
    return ", ".join(f"{direction} {metric}" for metric, direction in objectives)


def _figures_of(spec: StudySpec, trial: FrozenTrial) -> dict[str, float]:
    """A finished trial's figures as its completion sent them, with its objectives' values for
    the figures they name (a constraint on an objective reads it there, as the completion's
    check did); as sent where the two disagree."""
    figures: dict[str, float] = trial.system_attrs.get(FIGURES_ATTR) or {}
    try:
        return figures_with_values(spec, None, trial.values, figures)
    except InvalidSpec:
        return figures
