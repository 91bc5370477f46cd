"""Which studies name a registered data set: one in use is not deleted."""

from __future__ import annotations

from collections.abc import Iterable

from service.datasets.store import DatasetView, names_an_id, registered_reference
from service.spec.study_spec import StudySpec


def studies_using(dataset: DatasetView, studies: Iterable[tuple[int, StudySpec]]) -> list[int]:
    """The ids of the studies whose trainer's ``dataset`` names ``dataset`` (by name, or by id
    however written: ``registered:05`` is data set 5 to the store)."""
    return [
        study_id
        for study_id, spec in studies
        if spec.trainer is not None and _names(spec.trainer.settings().get("dataset"), dataset)
    ]


def _names(setting: object, dataset: DatasetView) -> bool:
    reference = registered_reference(setting)
    if reference is None:
        return False
    if names_an_id(reference):
        return int(reference) == dataset.dataset_id
    return reference == dataset.name
