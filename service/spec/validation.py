"""Checks that need more than one field, or the installed trainers; run on every submitted spec."""

from __future__ import annotations

from pydantic import ValidationError

from service.errors import InvalidSpec
from service.spec.grid import grid_of, grid_size
from service.spec.problems import problems_from_validation_error
from service.spec.pruners import HyperbandPrunerSpec
from service.spec.samplers import GridSamplerSpec
from service.spec.study_spec import StudySpec
from service.trainer_catalog import TrainerCatalog


def check_study_spec(spec: StudySpec, catalog: TrainerCatalog) -> StudySpec:
    """The spec with defaults that depend on other fields resolved; ``InvalidSpec`` if it cannot run."""
    _check_trainer(spec, catalog)
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


def _with_pruner_resource(spec: StudySpec) -> StudySpec:
    pruner = spec.pruner
    epochs = spec.trainer.settings().get("epochs") if spec.trainer else None
    if not isinstance(pruner, HyperbandPrunerSpec) or not isinstance(epochs, int):
        return spec
    if pruner.max_resource is None:
        resolved = pruner.model_copy(update={"max_resource": epochs})
        return spec.model_copy(update={"pruner": resolved})
    if pruner.max_resource > epochs:
        raise InvalidSpec(
            f"max_resource ({pruner.max_resource}) exceeds the trainer's epochs ({epochs})",
            field="pruner.max_resource",
        )
    return spec


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
