"""Which pre-flight checks a study definition asks for, and whether they can run.

Apart from ``service.preflight`` (which the study definition imports) so that this module may
read the whole definition.
"""

from __future__ import annotations

from typing import Any

from pydantic import ValidationError

from service.errors import InvalidSpec
from service.preflight import PreflightSpec
from service.spec.study_spec import StudySpec
from service.trainer_catalog import TrainerCatalog


def checked_preflight(spec: StudySpec, catalog: TrainerCatalog) -> PreflightSpec | None:
    """The checks to run for a study, or ``None``: on by default for the built-in trainers."""
    built_in = spec.trainer is not None and catalog.settings_model(spec.trainer.name) is not None
    chosen = spec.preflight or PreflightSpec()
    enabled = chosen.enabled if chosen.enabled is not None else built_in
    return chosen if enabled else None


def check_preflight(spec: StudySpec, catalog: TrainerCatalog) -> None:
    """``InvalidSpec`` naming the field for pre-flight settings that cannot run."""
    wanted = checked_preflight(spec, catalog)
    if wanted is None:
        return
    if spec.trainer is None:
        raise InvalidSpec("pre-flight checks need a trainer", field="preflight.enabled")
    known = catalog.parameters(spec.trainer.name)
    for name in wanted.params:
        if known is not None and name not in known:
            raise InvalidSpec(
                f"the trainer '{spec.trainer.name}' reads no parameter '{name}'; "
                f"known: {', '.join(sorted(known))}",
                field=f"preflight.params.{name}",
            )
    _check_values(catalog, spec.trainer.model_dump(), wanted.params)


def _check_values(catalog: TrainerCatalog, trainer: dict[str, Any], params: dict[str, Any]) -> None:
    """The checked model's parameters, as the trainer's settings would take them."""
    model = catalog.settings_model(str(trainer["name"]))
    if model is None or "params" not in model.model_fields or not params:
        return
    try:
        model.model_validate({**trainer, "params": {**trainer.get("params", {}), **params}})
    except ValidationError as error:
        problem = error.errors()[0]["msg"].removeprefix("Value error, ")
        raise InvalidSpec(problem, field="preflight.params") from None
