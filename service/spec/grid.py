"""The grid of a ``grid`` sampler: explicit, or derived from a space whose parameters are countable."""

from __future__ import annotations

import math

from service.errors import InvalidSpec
from service.spec.space import CategoricalParam, CategoricalValue, FloatParam, IntParam
from service.spec.study_spec import StudySpec

MAX_GRID_POINTS = 100_000
Grid = dict[str, list[CategoricalValue]]
AnyParam = FloatParam | IntParam | CategoricalParam


def grid_of(spec: StudySpec) -> Grid:
    """The grid to search, checked against the space. Raises ``InvalidSpec`` where it does not fit.

    Its size is checked before any value is listed or checked, so that no request can make the
    service build or scan a huge grid.
    """
    explicit = getattr(spec.sampler, "grid", None)
    if explicit is not None:
        _check_size(math.prod(len(values) for values in explicit.values()))
        return _checked_explicit(explicit, spec)
    _check_size(math.prod(_countable(name, param) for name, param in spec.space.items()))
    return {name: param.grid_values() or [] for name, param in spec.space.items()}


def grid_size(grid: Grid) -> int:
    """Number of points in the grid."""
    return math.prod(len(values) for values in grid.values())


def _check_size(size: int) -> None:
    if size > MAX_GRID_POINTS:
        raise InvalidSpec(
            f"the grid has {size} points, more than the limit of {MAX_GRID_POINTS}",
            field="sampler.grid",
        )


def _countable(name: str, param: AnyParam) -> int:
    count = param.grid_count()
    if count is None:
        raise InvalidSpec(
            f"a grid needs countable parameters; '{name}' is a continuous float: "
            "give it a step, or list its values in sampler.grid",
            field=f"space.{name}",
        )
    return count


def _checked_explicit(grid: Grid, spec: StudySpec) -> Grid:
    missing = sorted(set(spec.space) - set(grid))
    extra = sorted(set(grid) - set(spec.space))
    if missing or extra:
        raise InvalidSpec(
            f"the grid must list exactly the space's parameters (missing: {missing}, "
            f"not in the space: {extra})",
            field="sampler.grid",
        )
    for name, values in grid.items():
        _check_values(name, values, spec.space[name])
    return grid


def _check_values(name: str, values: list[CategoricalValue], param: AnyParam) -> None:
    field = f"sampler.grid.{name}"
    if not values:
        raise InvalidSpec("a grid axis needs at least one value", field=field)
    if len({_identity(value) for value in values}) != len(values):
        raise InvalidSpec("grid values must be distinct (8 and 8.0 are one value)", field=field)
    problems = [(field, why) for value in values if (why := why_not_in(param, name, value))]
    if problems:
        (_, first), *others = problems
        raise InvalidSpec(first, field=field, others=others)


def _identity(value: CategoricalValue) -> tuple[str, CategoricalValue]:
    """What makes two grid values one: a number's value (8 and 8.0 alike), else type and value."""
    if isinstance(value, int | float) and not isinstance(value, bool):
        return ("number", float(value))
    return (type(value).__name__, value)


def why_not_in(param: AnyParam, name: str, value: CategoricalValue) -> str | None:
    """Why ``value`` is no point of the parameter ``name``'s space; ``None`` where it is one."""
    if contains(param, value):
        return None
    if isinstance(param, CategoricalParam):
        return f"{value!r} is not one of the choices of '{name}'"
    if isinstance(value, bool) or not isinstance(value, int | float):
        return f"{value!r} is no number, and '{name}' is a number"
    if isinstance(param, IntParam) and not float(value).is_integer():
        return f"{value!r} is not a whole number, and '{name}' is an int"
    if not param.low <= value <= param.high:
        return f"{value!r} is outside [{param.low}, {param.high}], the range of '{name}'"
    return f"{value!r} is off the step of '{name}': its values are {param.low} + k * {param.step}"


def contains(param: AnyParam, value: CategoricalValue) -> bool:
    """Whether ``value`` is a point of the parameter's space."""
    if isinstance(param, CategoricalParam):
        return any(value == choice and type(value) is type(choice) for choice in param.choices)
    if isinstance(value, bool) or not isinstance(value, int | float):
        return False
    if isinstance(param, IntParam):
        return (
            float(value).is_integer()
            and param.low <= value <= param.high
            and (int(value) - param.low) % param.step == 0
        )
    if not param.low <= value <= param.high:
        return False
    if param.step is None:
        return True
    offset = (value - param.low) / param.step
    return math.isclose(offset, round(offset), abs_tol=1e-8)
