"""Checks that need more than one field, or the installed trainers; run on every submitted spec."""

from __future__ import annotations

import warnings
from decimal import Decimal
from importlib.util import find_spec
from typing import Any

from optuna.distributions import FloatDistribution, IntDistribution
from pydantic import BaseModel, ValidationError

from service.errors import InvalidSpec
from service.spec.conditional import check_conditions
from service.spec.grid import AnyParam, grid_of, grid_size, why_not_in
from service.spec.objective_checks import with_objectives_resolved
from service.spec.problems import problems_from_validation_error
from service.spec.pruner_options import (
    MAX_STEP,
    MedianPrunerSpec,
    PatientPrunerSpec,
    PercentilePrunerSpec,
    SuccessiveHalvingPrunerSpec,
    ThresholdPrunerSpec,
    WilcoxonPrunerSpec,
)
from service.spec.pruners import HyperbandPrunerSpec, PrunerSpec, WrappablePrunerSpec
from service.spec.samplers import CmaEsSamplerSpec, GPSamplerSpec, GridSamplerSpec
from service.spec.space import CategoricalParam, Condition, FloatParam, IntParam
from service.spec.study_spec import MAX_TRIALS, StudySpec
from service.trainer_catalog import TrainerCatalog


def check_study_spec(spec: StudySpec, catalog: TrainerCatalog) -> StudySpec:
    """The spec with defaults that depend on other fields resolved; ``InvalidSpec`` if it cannot run."""
    _check_trainer(spec, catalog)
    check_conditions(spec)
    spec = with_objectives_resolved(spec, catalog)
    _check_modules_installed(spec)
    _check_cmaes_space(spec)
    _check_gp_space(spec)
    _check_choices_distinct_to_the_sampler(spec)
    _check_steps_divide_ranges(spec)
    _check_pruner_resources(spec)
    _check_webhook_url(spec)
    _check_pruner_acts_within_epochs(spec)
    _check_enqueued(spec)
    spec = _with_pruner_resource(spec)
    return _with_grid_budget(spec)


def _check_trainer(spec: StudySpec, catalog: TrainerCatalog) -> None:
    if spec.trainer is None:
        return
    name = spec.trainer.name
    if name not in catalog.names:
        raise InvalidSpec(
            f"unknown trainer '{name}'; installed: {', '.join(sorted(catalog.names))}",
            field="trainer.name",
        )
    model = catalog.settings_model(name)
    if model is not None:
        data = spec.trainer.model_dump()
        try:
            model.model_validate(data)
        except ValidationError as error:
            problems = problems_from_validation_error(error, data)
            first, *rest = [(f"trainer.{p['field']}", p["problem"]) for p in problems]
            raise InvalidSpec(first[1], field=first[0], others=rest) from None
    _check_parameters_known(spec, catalog.parameters(name))
    _check_parameters_in_bounds(spec, catalog.parameters_model(name))


def _check_parameters_known(spec: StudySpec, known: frozenset[str] | None) -> None:
    if known is None or spec.trainer is None:
        return
    for name in spec.space:
        if name not in known:
            raise InvalidSpec(
                f"the {spec.trainer.name} trainer has no hyperparameter '{name}'; "
                f"it reads: {', '.join(sorted(known))}",
                field=f"space.{name}",
            )


def _check_parameters_in_bounds(spec: StudySpec, model: type[BaseModel] | None) -> None:
    """Every value the space can draw for a hyperparameter the trainer bounds is within those
    bounds and of its type (else each trial drawing it would fail in the worker)."""
    if model is None:
        return
    for name, param in spec.space.items():
        for where, value in _values_to_check(param):
            try:
                model.model_validate({name: value})
            except ValidationError as error:
                problem = error.errors(include_url=False)[0]["msg"]
                raise InvalidSpec(
                    f"{value!r} is outside what the trainer accepts for '{name}': {problem}",
                    field=f"space.{name}.{where}",
                ) from None


def _values_to_check(param: AnyParam) -> list[tuple[str, Any]]:
    """The values that tell whether a trainer takes all the parameter draws, each with where in
    its definition: each choice; a range's two ends (its last step, as Optuna's distribution
    trims it), and a value inside that is a fraction where the range draws fractions."""
    if isinstance(param, CategoricalParam):
        return [(f"choices.{index}", choice) for index, choice in enumerate(param.choices)]
    with warnings.catch_warnings():  # a range its steps do not divide: Optuna says so, and trims it
        warnings.simplefilter("ignore", UserWarning)
        distribution = param.distribution()
    assert isinstance(distribution, FloatDistribution | IntDistribution)
    ends: list[tuple[str, Any]] = [("low", distribution.low), ("high", distribution.high)]
    if isinstance(param, FloatParam) and param.step is None and param.high > param.low:
        # A continuous range draws fractions: an integer hyperparameter takes none of them.
        inside = (param.low + (param.high - param.low) * part for part in (1 / 3, 1 / 7, 0.3819))
        ends.append(("type", next((x for x in inside if not x.is_integer()), param.low)))
    elif isinstance(param, FloatParam) and param.step is not None:
        second = param.low + param.step  # a fraction where the step is one
        if second <= distribution.high:  # a step past the range draws its low end only
            ends.append(("step", second))
    return ends


def _check_enqueued(spec: StudySpec) -> None:
    if not spec.enqueue:
        return
    _check_enqueued_fit_the_sampler_and_budget(spec)
    for index, params in enumerate(spec.enqueue):
        for name, value in params.items():
            field = f"enqueue.{index}.{name}"
            if name not in spec.space:
                raise InvalidSpec(f"'{name}' is not a parameter of the space", field=field)
            if why := why_not_in(spec.space[name], name, value):
                raise InvalidSpec(why, field=field)
            _check_enqueued_parent(name, spec.space[name].condition, params, field)


def _check_enqueued_fit_the_sampler_and_budget(spec: StudySpec) -> None:
    if isinstance(spec.sampler, GridSamplerSpec):
        raise InvalidSpec(
            "a grid study runs every point of its grid once, in an order of its own, and takes "
            "no enqueued configurations (to add a point, list its value in sampler.grid)",
            field="enqueue",
        )
    budget = spec.budget.n_trials
    if len(spec.enqueue) > budget:
        given = "" if "n_trials" in spec.budget.model_fields_set else ", its default"
        raise InvalidSpec(
            f"{len(spec.enqueue)} configurations, more than budget.n_trials ({budget}{given}): "
            "each runs as one of the budget's trials; raise budget.n_trials, or enqueue fewer",
            field="enqueue",
        )


def _check_enqueued_parent(
    name: str, condition: Condition | None, params: dict[str, Any], field: str
) -> None:
    """A conditional parameter is enqueued with its parent, set to one of the values it exists
    under (left out, the parent is sampled, and may drop the child's value without a word)."""
    if condition is None or (condition.param in params and condition.holds(params)):
        return
    where = f"'{name}' exists only where '{condition.param}' is one of {condition.values!r}"
    if condition.param in params:
        raise InvalidSpec(f"{where}, and this configuration sets it otherwise", field=field)
    raise InvalidSpec(
        f"{where}: set '{condition.param}' too (left out, it is sampled, and may drop '{name}')",
        field=field,
    )


def _with_pruner_resource(spec: StudySpec) -> StudySpec:
    pruner = spec.pruner
    given = spec.trainer.settings().get("epochs") if spec.trainer else None
    if not isinstance(pruner, HyperbandPrunerSpec) or given is None:
        return spec
    epochs = _whole_epochs(given)
    if epochs > MAX_STEP:
        raise InvalidSpec(
            f"must be at most {MAX_STEP}, the largest step a report takes (Hyperband's "
            "max_resource is the trainer's epochs)",
            field="trainer.epochs",
        )
    if pruner.max_resource is None:  # validated as if written: a user trainer's epochs are free
        try:
            resolved = type(pruner).model_validate({**pruner.model_dump(), "max_resource": epochs})
        except ValidationError as error:
            problem = error.errors(include_url=False)[0]["msg"].removeprefix("Value error, ")
            raise InvalidSpec(
                f"{problem} (Hyperband's max_resource is the trainer's epochs)",
                field="trainer.epochs",
            ) from None
        return spec.model_copy(update={"pruner": resolved})
    if pruner.max_resource > epochs:
        raise InvalidSpec(
            f"max_resource ({pruner.max_resource}) exceeds the trainer's epochs ({epochs})",
            field="pruner.max_resource",
        )
    return spec


def _whole_epochs(given: object) -> int:
    """The trainer's ``epochs`` as Hyperband's resource takes it: a whole number (``10.0`` as
    JSON may write it is 10); ``InvalidSpec`` on ``trainer.epochs`` for anything else."""
    if isinstance(given, int) and not isinstance(given, bool):
        return given
    if isinstance(given, float) and given.is_integer():
        return int(given)
    kind = "a boolean" if isinstance(given, bool) else repr(given)
    raise InvalidSpec(
        f"must be a whole number of epochs, not {kind} (Hyperband's max_resource is the "
        "trainer's epochs)",
        field="trainer.epochs",
    )


def _with_grid_budget(spec: StudySpec) -> StudySpec:
    if not isinstance(spec.sampler, GridSamplerSpec):
        return spec
    size = grid_size(grid_of(spec))
    if "n_trials" not in spec.budget.model_fields_set:
        budget = spec.budget.model_copy(update={"n_trials": size})
        return spec.model_copy(update={"budget": budget})
    if spec.budget.n_trials > size:
        raise InvalidSpec(
            f"n_trials ({spec.budget.n_trials}) exceeds the {size} points of the grid",
            field="budget.n_trials",
        )
    return spec


# The packages a sampler or pruner imports when it runs, in the API process.
NEEDED_MODULES = {
    "cmaes": ("cmaes",),
    "qmc": ("scipy",),
    "gp": ("torch", "scipy"),
    "wilcoxon": ("scipy",),
}


def _check_modules_installed(spec: StudySpec) -> None:
    """A sampler or pruner whose packages this API lacks would fail on the first ask or report."""
    chosen = [("sampler.name", spec.sampler.name), ("pruner.name", spec.pruner.name)]
    if isinstance(spec.pruner, PatientPrunerSpec) and spec.pruner.wrapped is not None:
        chosen.append(("pruner.wrapped.name", spec.pruner.wrapped.name))
    for field, name in chosen:
        missing = [module for module in NEEDED_MODULES.get(name, ()) if find_spec(module) is None]
        if missing:
            raise InvalidSpec(
                f"the {name} {field.split('.')[0]} needs {', '.join(missing)}, "
                "which this service does not have installed",
                field=field,
            )


def _check_cmaes_space(spec: StudySpec) -> None:
    """CMA-ES searches numbers only: Optuna would draw a categorical parameter at random."""
    if not isinstance(spec.sampler, CmaEsSamplerSpec):
        return
    for name, param in spec.space.items():
        if isinstance(param, CategoricalParam):
            raise InvalidSpec(
                f"the cmaes sampler cannot search the categorical parameter '{name}': "
                "use tpe, gp or qmc, or make it an int parameter",
                field=f"space.{name}",
            )


def _check_choices_distinct_to_the_sampler(spec: StudySpec) -> None:
    """Optuna finds a choice by equality: true, 1 and 1.0 are one choice to it."""
    for name, param in spec.space.items():
        if isinstance(param, CategoricalParam) and len(set(param.choices)) != len(param.choices):
            raise InvalidSpec(
                "choices must be distinct to the sampler (true, 1 and 1.0 are equal to it)",
                field=f"space.{name}.choices",
            )


def _check_steps_divide_ranges(spec: StudySpec) -> None:
    """A step must divide high - low: Optuna would otherwise lower ``high`` to the last value a
    step reaches, with a warning in the server's log only, and the study would show a ``high``
    no trial can take. Checked as Optuna checks it: ints exactly, floats in decimals of the
    default context (0.1 divides 1.0)."""
    for name, param in spec.space.items():
        reach = _steps_reach(param)
        if reach is None:
            continue
        low, step, last = reach
        reached = {low: f"only low ({low})", low + step: f"{low} and {last}"}.get(
            last, f"{low}, {low + step}, … up to {last}"
        )
        higher = f"{last + step}" if last == low else f"{last} or {last + step}"
        raise InvalidSpec(
            f"high - low is no multiple of step ({step}): the values would be {reached}; "
            f"make high {higher}",
            field=f"space.{name}.step",
        )


def _steps_reach(param: AnyParam) -> tuple[Decimal, Decimal, Decimal] | None:
    """Low, step and the last value steps reach where that falls short of high, else ``None``."""
    if isinstance(param, IntParam):
        if (param.high - param.low) % param.step == 0:
            return None
        last = param.low + (param.high - param.low) // param.step * param.step
        return Decimal(param.low), Decimal(param.step), Decimal(last)
    if not isinstance(param, FloatParam) or param.step is None:
        return None
    low, high, step = (Decimal(str(bound)) for bound in (param.low, param.high, param.step))
    if (high - low) % step == 0:
        return None
    return low, step, (high - low) // step * step + low


def _check_pruner_resources(spec: StudySpec) -> None:
    pruner = spec.pruner
    if not isinstance(pruner, HyperbandPrunerSpec):
        return
    for name in ("min_resource", "max_resource"):
        resource = getattr(pruner, name)
        if resource is not None and resource > MAX_STEP:
            raise InvalidSpec(
                f"{name} must be at most {MAX_STEP}, the largest step a report takes",
                field=f"pruner.{name}",
            )


def _check_webhook_url(spec: StudySpec) -> None:
    """A secret that is not the mask; each event once; no credentials in the URL (they would be shown back and
    logged, and urllib takes ``user:pw@host`` as the host; the signature is how a receiver knows
    the sender), and a port a receiver can listen on."""
    if spec.webhook is not None and set(spec.webhook.secret) == {"*"}:
        # A spec copied from an answer, sent back (checked here, at submission alone: a spec
        # stored with such a secret still loads).
        problem = "is the masked value answers show, not a secret: send the receiver's real key"
        raise InvalidSpec(problem, field="webhook.secret")
    if spec.webhook is None:
        return
    events = spec.webhook.events
    if len(set(events)) != len(events):
        repeated = sorted({event for event in events if events.count(event) > 1})
        raise InvalidSpec(
            f"each event once: {repeated} given more than once", field="webhook.events"
        )
    url = spec.webhook.url
    if url.username is not None or url.password is not None:
        problem = "must not carry a user name or password: verify the signature instead"
        raise InvalidSpec(problem, field="webhook.url")
    if url.port == 0:
        raise InvalidSpec("port 0 is no port a receiver listens on", field="webhook.url")


# Optuna's GP sampler lists every value of an int or stepped float parameter on each ask (an
# array of them, and arrays computed from it): a million takes about 0.1 s and tens of MB.
MAX_GP_DISCRETE_VALUES = 1_000_000


def _check_gp_space(spec: StudySpec) -> None:
    if not isinstance(spec.sampler, GPSamplerSpec):
        return
    for name, param in spec.space.items():
        count = None if isinstance(param, CategoricalParam) else param.grid_count()
        if count is not None and count > MAX_GP_DISCRETE_VALUES:
            raise InvalidSpec(
                f"the gp sampler lists every value of '{name}' on each ask: {count}, more than "
                f"the limit of {MAX_GP_DISCRETE_VALUES}; make it a float without a step, or "
                "give it a coarser step",
                field=f"space.{name}",
            )


def _check_pruner_acts_within_epochs(spec: StudySpec) -> None:
    """A pruner that could first act after the trainer's last epoch would never prune."""
    epochs = spec.trainer.settings().get("epochs") if spec.trainer else None
    if not isinstance(epochs, int):
        return
    first = _first_pruning_step(spec.pruner, "pruner")
    if first is not None and first[0] > epochs:
        step, field = first
        raise InvalidSpec(
            f"this pruner cannot prune before epoch {step}, "
            f"past the trainer's {epochs} epochs: it would never prune",
            field=field,
        )


def _first_pruning_step(
    pruner: PrunerSpec | WrappablePrunerSpec, path: str
) -> tuple[int, str] | None:
    """The first epoch (epochs count from 1) at which ``pruner`` may prune, and the field that
    sets it; ``None`` where that depends on nothing but the trainer."""
    if isinstance(pruner, MedianPrunerSpec | PercentilePrunerSpec | ThresholdPrunerSpec):
        return max(pruner.n_warmup_steps, 1), f"{path}.n_warmup_steps"
    if isinstance(pruner, SuccessiveHalvingPrunerSpec):
        first_rung = pruner.min_resource * pruner.reduction_factor**pruner.min_early_stopping_rate
        return first_rung, f"{path}.min_resource"
    if isinstance(pruner, WilcoxonPrunerSpec):
        return max(pruner.n_startup_steps, 2), f"{path}.n_startup_steps"
    if isinstance(pruner, PatientPrunerSpec):
        own = (pruner.patience + 2, f"{path}.patience")
        wrapped = None
        if pruner.wrapped is not None:
            wrapped = _first_pruning_step(pruner.wrapped, f"{path}.wrapped")
        return max(own, wrapped or own, key=lambda first: first[0])
    return None


def check_budget_extension(spec: StudySpec, n_trials: int) -> None:
    """``InvalidSpec`` unless ``n_trials`` raises the budget within its limits (and the grid's)."""
    if n_trials <= spec.budget.n_trials:
        raise InvalidSpec(
            f"an extension must raise the budget above its {spec.budget.n_trials} trials",
            field="n_trials",
        )
    if n_trials > MAX_TRIALS:
        raise InvalidSpec(f"n_trials may be at most {MAX_TRIALS}", field="n_trials")
    if isinstance(spec.sampler, GridSamplerSpec) and n_trials > grid_size(grid_of(spec)):
        raise InvalidSpec(f"the grid has only {grid_size(grid_of(spec))} points", field="n_trials")
