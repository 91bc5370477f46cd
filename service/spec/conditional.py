"""Conditional parameters: a parameter that exists only when a categorical parent took certain
values (e.g. ``momentum`` only for ``optimizer`` in ``sgd_momentum``, ``nesterov``).

``check_conditions`` refuses a space whose conditions cannot hold; ``suggest`` samples a trial
define-by-run: parents first, a child only when its condition holds.
"""

from __future__ import annotations

from collections.abc import Mapping
from graphlib import CycleError, TopologicalSorter
from typing import Any

import optuna
from optuna.distributions import (
    BaseDistribution,
    CategoricalDistribution,
    FloatDistribution,
    IntDistribution,
)

from service.errors import InvalidSpec
from service.spec.samplers import CmaEsSamplerSpec, GridSamplerSpec
from service.spec.space import CategoricalParam, FloatParam, IntParam
from service.spec.study_spec import StudySpec

AnyParam = FloatParam | IntParam | CategoricalParam


def is_conditional(space: Mapping[str, AnyParam]) -> bool:
    """Whether any parameter of the space carries a condition."""
    return any(param.condition is not None for param in space.values())


def check_conditions(spec: StudySpec) -> None:
    """``InvalidSpec`` naming the field when a condition's parent is missing or not categorical,
    a value is not among the parent's choices, the conditions form a cycle, or the sampler
    cannot search a conditional space (grid, CMA-ES)."""
    space = spec.space
    for name, param in space.items():
        if param.condition is not None:
            _check_parent(name, param, space)
    order_of(space)
    if is_conditional(space) and isinstance(spec.sampler, GridSamplerSpec | CmaEsSamplerSpec):
        raise InvalidSpec(
            f"the {spec.sampler.name} sampler cannot search conditional parameters: "
            "use tpe, random, qmc or gp, or drop the conditions",
            field="sampler.name",
        )


def _check_parent(name: str, param: AnyParam, space: Mapping[str, AnyParam]) -> None:
    assert param.condition is not None
    parent_name = param.condition.param
    field = f"space.{name}.condition"
    if parent_name == name:
        raise InvalidSpec(f"'{name}' cannot be conditional on itself", field=f"{field}.param")
    parent = space.get(parent_name)
    if parent is None:
        raise InvalidSpec(
            f"the condition names '{parent_name}', which is not a parameter of the space",
            field=f"{field}.param",
        )
    if not isinstance(parent, CategoricalParam):
        raise InvalidSpec(
            f"the condition's parent '{parent_name}' must be categorical, not {parent.type}",
            field=f"{field}.param",
        )
    choices = {repr(choice) for choice in parent.choices}
    missing = [value for value in param.condition.values if repr(value) not in choices]
    if missing:
        raise InvalidSpec(
            f"{missing} are not among the choices of '{parent_name}' ({parent.choices})",
            field=f"{field}.in",
        )


def order_of(space: Mapping[str, AnyParam]) -> list[str]:
    """The parameter names with every parent before its children (the space's order otherwise);
    ``InvalidSpec`` for a cycle."""
    graph = {
        name: {param.condition.param} if param.condition is not None else set()
        for name, param in space.items()
    }
    sorter = TopologicalSorter(graph)
    try:
        sorter.prepare()
    except CycleError as cycle:
        names = " → ".join(str(node) for node in cycle.args[1])
        raise InvalidSpec(f"the conditions form a cycle: {names}", field="space") from None
    ordered: list[str] = []
    position = {name: index for index, name in enumerate(space)}
    while sorter.is_active():
        ready = sorted(sorter.get_ready(), key=lambda name: position.get(name, -1))
        ordered.extend(name for name in ready if name in space)
        sorter.done(*ready)
    return ordered


def active_names(space: Mapping[str, AnyParam], params: Mapping[str, object]) -> list[str]:
    """The parameters of ``space`` that exist for a trial of ``params``, parents first: those
    without a condition, and those whose parent exists and took one of their values."""
    active: list[str] = []
    for name in order_of(space):
        condition = space[name].condition
        if condition is None or (condition.param in active and condition.holds(params)):
            active.append(name)
    return active


def suggest(study: optuna.Study, space: Mapping[str, AnyParam]) -> optuna.Trial:
    """A new trial of ``study`` with its parameters chosen: all at once for a space without
    conditions (as before), else define-by-run, a child only when its condition holds."""
    if not is_conditional(space):
        distributions = {name: param.distribution() for name, param in space.items()}
        return study.ask(fixed_distributions=distributions)
    trial = study.ask()
    for name in order_of(space):
        param = space[name]
        if param.condition is None or param.condition.holds(trial.params):
            suggest_one(trial, name, param.distribution())
    return trial


def suggest_one(trial: optuna.Trial, name: str, distribution: BaseDistribution) -> Any:
    """Suggest one parameter from its distribution through Optuna's public API."""
    if isinstance(distribution, FloatDistribution):
        return trial.suggest_float(
            name, distribution.low, distribution.high, step=distribution.step, log=distribution.log
        )
    if isinstance(distribution, IntDistribution):
        return trial.suggest_int(
            name, distribution.low, distribution.high, step=distribution.step, log=distribution.log
        )
    assert isinstance(distribution, CategoricalDistribution)
    return trial.suggest_categorical(name, distribution.choices)
