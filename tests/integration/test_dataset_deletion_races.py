"""A data set is never deleted under a study that names it, whatever the order in which a
deletion and a study's creation meet, on SQLite and PostgreSQL: a study whose data set goes
while it is made is refused on ``trainer.dataset`` and not kept. (A deletion that finds a study
naming it is refused and deletes nothing: ``test_datasets.py``.)"""

from __future__ import annotations

import threading
import uuid
from typing import Any

import pytest

from service.datasets import DatasetView
from service.errors import Conflict, InvalidSpec
from service.spec.study_spec import StudySpec
from service.storage.database import Database
from service.tokens import DEFAULT_TENANT
from service.trainer_catalog import TrainerCatalog
from service.tuner import Tuner
from tests.support.datasets import blobs, csv_bytes, registered_study
from tests.support.dispatchers import DoNothingDispatcher

pytestmark = pytest.mark.integration


@pytest.fixture
def tuner(database: Database) -> Tuner:
    return Tuner(database, DoNothingDispatcher(), TrainerCatalog.installed())


@pytest.fixture
def dataset(tuner: Tuner) -> DatasetView:
    content = csv_bytes(*blobs(seed=3))
    return tuner.datasets.register("blobs", "csv", "species", content, DEFAULT_TENANT)


def study_on(dataset: DatasetView) -> StudySpec:
    name = f"on-{dataset.name}-{uuid.uuid4().hex[:8]}"
    return StudySpec.model_validate(registered_study(name, f"registered:{dataset.name}", 2, 1))


def test_a_deletion_landing_after_a_study_s_first_look_refuses_the_study(
    tuner: Tuner, dataset: DatasetView, monkeypatch: pytest.MonkeyPatch
) -> None:
    first_look = tuner.datasets.check_reference

    def look_then_delete(reference: object, tenant: str, field: str) -> None:
        first_look(reference, tenant, field)
        tuner.delete_dataset(dataset.name, tenant)  # no study names it yet: it goes

    monkeypatch.setattr(tuner.datasets, "check_reference", look_then_delete)
    with pytest.raises(InvalidSpec) as refused:
        tuner.create_study(study_on(dataset), DEFAULT_TENANT)
    assert refused.value.field == "trainer.dataset"
    assert tuner.studies(DEFAULT_TENANT) == []


def test_a_study_made_while_its_data_set_is_deleted_waits_for_the_deletion_and_is_refused(
    tuner: Tuner, dataset: DatasetView
) -> None:
    outcome: dict[str, Any] = {}

    def make() -> None:
        try:
            outcome["made"] = tuner.create_study(study_on(dataset), DEFAULT_TENANT).study_id
        except InvalidSpec as error:
            outcome["refused on"] = error.field

    with tuner.datasets.deleting(dataset.dataset_id, DEFAULT_TENANT):
        maker = threading.Thread(target=make)
        maker.start()
        maker.join(timeout=1.0)
        assert maker.is_alive(), outcome  # held off until the deletion ends
    maker.join(timeout=30)
    assert outcome == {"refused on": "trainer.dataset"}
    assert tuner.studies(DEFAULT_TENANT) == []


def test_a_study_made_while_a_deletion_is_refused_keeps_its_data_set(
    tuner: Tuner, dataset: DatasetView
) -> None:
    made: list[int] = []
    maker = threading.Thread(
        target=lambda: made.append(tuner.create_study(study_on(dataset), DEFAULT_TENANT).study_id)
    )
    with pytest.raises(RuntimeError), tuner.datasets.deleting(dataset.dataset_id, DEFAULT_TENANT):
        maker.start()
        maker.join(timeout=1.0)
        raise RuntimeError("the deletion is refused: rolled back")
    maker.join(timeout=30)
    assert len(made) == 1
    assert tuner.datasets.get(dataset.dataset_id, DEFAULT_TENANT) == dataset


def test_a_study_naming_the_data_set_by_its_id_however_written_holds_off_its_deletion(
    tuner: Tuner, dataset: DatasetView
) -> None:
    """``registered:05`` is data set 5 to the store: the deletion finds it so too."""
    name = f"padded-{uuid.uuid4().hex[:8]}"
    padded = f"registered:0{dataset.dataset_id}"
    study = tuner.create_study(
        StudySpec.model_validate(registered_study(name, padded, 2, 1)), DEFAULT_TENANT
    )
    with pytest.raises(Conflict, match=f"ids {study.study_id}:"):
        tuner.delete_dataset(dataset.name, DEFAULT_TENANT)
    assert tuner.datasets.get(dataset.dataset_id, DEFAULT_TENANT) == dataset
