"""A completed trial's named figures, the objective values and constraint values taken from them.

Optuna's samplers, ``best_trial`` and ``best_trials`` read a finished trial's constraints from its
``constraints:<name>`` system attributes (feasible where every value is ≤ 0). Trials finish here
through the storage, not ``Study.tell``, so the service writes those attributes itself.
"""

from __future__ import annotations

from typing import Any

from optuna.study._constrained_optimization import _CONSTRAINTS_KEY
from optuna.trial import FrozenTrial

from service.errors import InvalidSpec
from service.spec.study_spec import StudySpec

FIGURES_ATTR = "hpo:figures"


def constraint_attr(name: str) -> str:
    """The system attribute under which Optuna looks for the constraint ``name``."""
    return f"{_CONSTRAINTS_KEY}:{name}"


def objective_values(
    spec: StudySpec, value: float | None, values: list[float] | None, figures: dict[str, float]
) -> list[float]:
    """A complete trial's values, in objective order: ``values`` as given; one objective's figure
    where the completion names it among its ``figures`` (the built-in trainer's ``value`` is its
    validation loss, whatever the study's metric), else the single ``value``; or (several
    objectives) each objective's figure. ``InvalidSpec`` naming what is missing."""
    objectives = spec.objective_list()
    if values is not None and value is not None:
        raise InvalidSpec(
            "give value (one objective) or values (one per objective), not both", field="values"
        )
    if values is not None:
        if len(values) != len(objectives):
            raise InvalidSpec(
                f"the study has {len(objectives)} objective(s); {len(values)} values were given",
                field="values",
            )
        return values
    if not spec.multi_objective:
        if spec.metric in figures:
            return [figures[spec.metric]]
        if value is None:
            raise InvalidSpec("a complete trial needs its value", field="value")
        return [value]
    missing = [objective.metric for objective in objectives if objective.metric not in figures]
    if value is not None and missing:
        names = ", ".join(objective.metric for objective in objectives)
        raise InvalidSpec(
            f"the study has {len(objectives)} objectives: send values, one per objective in "
            f"order ({names}), or metrics naming each; a single value is not enough",
            field="values",
        )
    return [_figure(figures, objective.metric, "objective") for objective in objectives]


def figures_with_values(
    spec: StudySpec, value: float | None, values: list[float] | None, figures: dict[str, float]
) -> dict[str, float]:
    """A completion's figures, each objective's filled in from ``values`` (or a single
    objective's from ``value``) where it names none: a constraint on an objective reads it
    there. ``InvalidSpec`` naming a figure that says otherwise than its objective's entry of
    ``values``. (A single ``value`` and its metric's figure may differ: the built-in trainer's
    value is its loss whatever the metric, and the figure is the objective, as
    ``objective_values`` reads it.)"""
    objectives = spec.objective_list()
    if values is None and value is not None and not spec.multi_objective:
        return {spec.metric: value, **figures}
    if values is None or len(values) != len(objectives):  # objective_values refuses a miscount
        return figures
    merged = dict(figures)
    for index, (objective, value) in enumerate(zip(objectives, values, strict=True)):
        given = merged.setdefault(objective.metric, value)
        if given != value:
            raise InvalidSpec(
                f"metrics.{objective.metric} is {given}, and values.{index}, the objective "
                f"{objective.metric!r}, is {value}: give one, or the same in both",
                field=f"metrics.{objective.metric}",
            )
    return merged


def constraint_values(spec: StudySpec, figures: dict[str, float]) -> dict[str, float]:
    """Every bound's violation (≤ 0 where it holds), by name (e.g. ``n_parameters<=5000``)."""
    found: dict[str, float] = {}
    for constraint in spec.constraints:
        figure = _figure(figures, constraint.metric, "constraint")
        found.update(constraint.violations(figure))
    return found


def _figure(figures: dict[str, float], name: str, used_by: str) -> float:
    if name not in figures:
        raise InvalidSpec(
            f"the study's {used_by} needs the figure '{name}'; the completion's metrics "
            f"name {', '.join(sorted(figures)) or 'none'}",
            field=f"metrics.{name}",
        )
    return figures[name]


def figure_attrs(
    spec: StudySpec,
    figures: dict[str, float],
    value: float | None = None,
    values: list[float] | None = None,
) -> dict[str, Any]:
    """A completing trial's figures (as sent) and its constraint values, read from them and its
    objectives' ``value`` or ``values`` (:func:`figures_with_values`), as the system attributes
    they are kept in (the constraints checked before anything is written)."""
    constraints = constraint_values(spec, figures_with_values(spec, value, values, figures))
    attrs: dict[str, Any] = {FIGURES_ATTR: figures} if figures else {}
    attrs.update({constraint_attr(name): violation for name, violation in constraints.items()})
    return attrs


def is_feasible(trial: FrozenTrial) -> bool:
    """Whether the trial lies within its study's constraints (every violation ≤ 0; a trial
    without constraints is)."""
    return all(violation <= 0 for violation in trial.constraints.values())
