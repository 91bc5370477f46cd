"""Checks of a study's objectives and constraints against its sampler, pruner, budget and trainer."""

from __future__ import annotations

from service.errors import InvalidSpec
from service.spec.pruners import NoPrunerSpec
from service.spec.samplers import CmaEsSamplerSpec, NSGA2SamplerSpec
from service.spec.study_spec import StudySpec
from service.trainer_catalog import TrainerCatalog


def with_objectives_resolved(spec: StudySpec, catalog: TrainerCatalog) -> StudySpec:
    """The spec, checked; a study of several objectives gets its first objective as ``direction``
    and ``metric`` (what a single figure shows) and no pruner unless it named one (refused)."""
    _check_metric_names(spec, catalog)
    if not spec.multi_objective:
        if isinstance(spec.sampler, NSGA2SamplerSpec):
            raise InvalidSpec(
                "the nsga2 sampler is for studies of several objectives: give objectives, "
                "or use tpe",
                field="sampler.name",
            )
        return _without_pruner_on_another_figure(spec, catalog)
    _check_multi_objective(spec)
    first = spec.objective_list()[0]
    return spec.model_copy(
        update={
            "direction": first.direction,
            "metric": first.metric,
            "pruner": NoPrunerSpec(name="none"),
        }
    )


def _without_pruner_on_another_figure(spec: StudySpec, catalog: TrainerCatalog) -> StudySpec:
    """A study whose metric is not the figure its trainer reports each epoch cannot be pruned on
    those reports (the pruner would compare validation losses in the metric's direction): no
    pruner where it named none, refused where it named one."""
    trainer = spec.trainer.name if spec.trainer else None
    epoch_figure = catalog.epoch_figure(trainer) if trainer else None
    if epoch_figure is None or spec.metric == epoch_figure:
        return spec
    if "pruner" in spec.model_fields_set and not isinstance(spec.pruner, NoPrunerSpec):
        raise InvalidSpec(
            f"the {trainer} trainer reports its {epoch_figure} each epoch, which a pruner would "
            f"compare as '{spec.metric}': use the none pruner, or the metric {epoch_figure}",
            field="pruner.name",
        )
    return spec.model_copy(update={"pruner": NoPrunerSpec(name="none")})


def _check_multi_objective(spec: StudySpec) -> None:
    if {"direction", "metric"} & spec.model_fields_set:
        raise InvalidSpec(
            "give either objectives or direction and metric, not both", field="objectives"
        )
    if "pruner" in spec.model_fields_set and not isinstance(spec.pruner, NoPrunerSpec):
        raise InvalidSpec(
            "pruning compares one figure per epoch; a study of several objectives "
            "cannot be pruned (use the none pruner)",
            field="pruner.name",
        )
    if isinstance(spec.sampler, CmaEsSamplerSpec):
        raise InvalidSpec(
            "the cmaes sampler optimises one objective: use nsga2, tpe or gp",
            field="sampler.name",
        )
    if spec.budget.target_value is not None:
        raise InvalidSpec(
            "a target value needs a single objective: several objectives have no single best",
            field="budget.target_value",
        )


def _check_metric_names(spec: StudySpec, catalog: TrainerCatalog) -> None:
    if spec.objectives is not None:
        names = [objective.metric for objective in spec.objectives]
        for index, name in enumerate(names):
            if name in names[:index]:
                raise InvalidSpec(
                    f"'{name}' is already an objective", field=f"objectives.{index}.metric"
                )
    if spec.trainer is None:
        return
    trainer = spec.trainer.name
    known = catalog.figures(trainer)
    if known is None:
        return
    needed = [(f"objectives.{i}.metric", o.metric) for i, o in enumerate(spec.objectives or [])]
    if spec.objectives is None:
        needed.append(("metric", spec.metric))
    needed += [(f"constraints.{i}.metric", c.metric) for i, c in enumerate(spec.constraints)]
    for field, name in needed:
        if name not in known:
            raise InvalidSpec(
                f"the {trainer} trainer reports no figure '{name}'; "
                f"it reports: {', '.join(sorted(known))}",
                field=field,
            )
