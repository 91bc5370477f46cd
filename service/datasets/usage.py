"""Which studies name a registered data set: one in use is not deleted."""

from __future__ import annotations

from collections.abc import Iterable

from service.datasets.store import REGISTERED_PREFIX, DatasetView
from service.spec.study_spec import StudySpec


def studies_using(dataset: DatasetView, studies: Iterable[tuple[int, StudySpec]]) -> list[int]:
    """The ids of the studies whose trainer's ``dataset`` names ``dataset`` (by name or id)."""
    names = {f"{REGISTERED_PREFIX}{dataset.name}", f"{REGISTERED_PREFIX}{dataset.dataset_id}"}
    return [
        study_id
        for study_id, spec in studies
        if spec.trainer is not None and spec.trainer.settings().get("dataset") in names
    ]
