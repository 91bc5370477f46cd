"""The service's trial reads (SQLAlchemy Core) return what Optuna's ORM reads return, on SQLite
and PostgreSQL: every trial, field by field, for each way Optuna's cached storage asks."""

from __future__ import annotations

import math
from collections.abc import Iterator

import optuna
import pytest
from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution
from optuna.trial import FrozenTrial, TrialState, create_trial

from service.storage import trial_reader
from service.storage.database import Database
from service.storage.trial_reader import CoreReadRDBStorage

pytestmark = pytest.mark.integration


@pytest.fixture
def storages(database_url: str) -> Iterator[tuple[optuna.storages.RDBStorage, CoreReadRDBStorage]]:
    """Optuna's own RDB storage and the service's, on one database."""
    optuna_storage = optuna.storages.RDBStorage(database_url)
    core = CoreReadRDBStorage(database_url)
    yield optuna_storage, core
    optuna_storage.engine.dispose()
    core.engine.dispose()


def varied_study(storage: optuna.storages.RDBStorage, name: str = "varied") -> int:
    """A study holding every kind of row: each state, each parameter type, values that are
    infinite, intermediate values that are NaN or infinite, user and system attributes."""
    study = optuna.create_study(storage=storage, study_name=name, directions=["minimize"] * 2)
    space = {
        "lr": FloatDistribution(1e-5, 1.0, log=True),
        "width": IntDistribution(8, 256, step=8),
        "act": CategoricalDistribution(["relu", "tanh", None]),
    }
    params = {"lr": 0.01, "width": 64, "act": None}
    steps = {0: 1.5, 1: math.nan, 2: math.inf, 3: -math.inf}
    study.add_trial(
        create_trial(
            params=params,
            distributions=space,
            values=[0.25, math.inf],
            intermediate_values=steps,
            user_attrs={"note": "first", "nested": {"a": [1, 2]}},
            system_attrs={"seed": 7},
        )
    )
    study.add_trial(create_trial(state=TrialState.FAIL, params=params, distributions=space))
    study.add_trial(
        create_trial(
            state=TrialState.PRUNED, params=params, distributions=space, intermediate_values=steps
        )
    )
    running = study.ask()
    running.suggest_float("lr", 1e-5, 1.0, log=True)
    storage.set_trial_intermediate_value(running._trial_id, 0, 0.5)
    running.set_user_attr("epoch", 1)
    study.tell(study.ask(space), [-math.inf, 3.0])
    study.enqueue_trial({"lr": 0.1})  # waiting
    return study._study_id


def test_every_trial_reads_the_same_as_through_optuna(
    storages: tuple[optuna.storages.RDBStorage, CoreReadRDBStorage],
) -> None:
    optuna_storage, core = storages
    study_id = varied_study(optuna_storage)
    expected = optuna_storage.get_all_trials(study_id)
    read = core.get_all_trials(study_id)
    assert len(read) == len(expected) == 6
    for ours, theirs in zip(read, expected, strict=True):
        assert_same_trial(ours, theirs)
        assert_same_trial(core.get_trial(theirs._trial_id), theirs)


@pytest.mark.parametrize(
    "states", [None, (TrialState.COMPLETE,), (TrialState.RUNNING, TrialState.WAITING), ()]
)
def test_the_cached_storage_s_reads_of_new_and_unfinished_trials_match(
    storages: tuple[optuna.storages.RDBStorage, CoreReadRDBStorage],
    states: tuple[TrialState, ...] | None,
) -> None:
    optuna_storage, core = storages
    study_id = varied_study(optuna_storage)
    other_id = varied_study(optuna_storage, "other")  # its trials must not be read
    ids = [t._trial_id for t in optuna_storage.get_all_trials(study_id)]
    assert other_id != study_id
    for included, greater in [
        (set(), -1),
        (set(), ids[2]),
        ({ids[3], ids[4]}, ids[4]),
        ({ids[0], ids[5]}, ids[2]),  # an included id above the bound is covered by the bound
        ({ids[1]}, ids[-1]),
        (set(), ids[-1]),
    ]:
        expected = optuna_storage._get_trials(study_id, states, included, greater)
        read = core._get_trials(study_id, states, included, greater)
        assert [t._trial_id for t in read] == [t._trial_id for t in expected]
        for ours, theirs in zip(read, expected, strict=True):
            assert_same_trial(ours, theirs)


def test_a_long_list_of_unfinished_trials_reads_the_same(
    storages: tuple[optuna.storages.RDBStorage, CoreReadRDBStorage],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    optuna_storage, core = storages
    study = optuna.create_study(storage=optuna_storage)
    for _ in range(12):
        study.ask().suggest_int("n", 0, 9)
    for trial in study.get_trials()[::3]:
        study.tell(trial.number, 1.0)
    trials = optuna_storage.get_all_trials(study._study_id)
    unfinished = {t._trial_id for t in trials if not t.state.is_finished()}
    monkeypatch.setattr(trial_reader, "MAX_LISTED_TRIALS", 3)  # read from the oldest one on
    greater = trials[9]._trial_id
    expected = optuna_storage._get_trials(study._study_id, None, unfinished, greater)
    read = core._get_trials(study._study_id, None, unfinished, greater)
    assert len(expected) == 8  # six unfinished up to the bound, two above it
    assert [t._trial_id for t in read] == [t._trial_id for t in expected]
    for ours, theirs in zip(read, expected, strict=True):
        assert_same_trial(ours, theirs)


def test_the_service_s_database_reads_through_it(database_url: str) -> None:
    database = Database(database_url)
    try:
        assert isinstance(database.optuna._backend, CoreReadRDBStorage)  # type: ignore[attr-defined]
    finally:
        database.dispose()


def test_a_study_or_trial_that_does_not_exist_is_a_key_error_as_in_optuna(
    storages: tuple[optuna.storages.RDBStorage, CoreReadRDBStorage],
) -> None:
    optuna_storage, core = storages
    empty_id = optuna_storage.create_new_study([optuna.study.StudyDirection.MINIMIZE], "empty")
    assert core._get_trials(empty_id, None, set(), -1) == []
    with pytest.raises(KeyError):
        optuna_storage._get_trials(empty_id + 1, None, set(), -1)
    with pytest.raises(KeyError):
        core._get_trials(empty_id + 1, None, set(), -1)
    with pytest.raises(KeyError):
        core.get_trial(12345)


def assert_same_trial(ours: FrozenTrial, theirs: FrozenTrial) -> None:
    """Field by field, NaN equal to NaN; parameters in the same order (Optuna sorts them; its
    attributes and intermediate values come in whatever order the database returns)."""
    assert ours._trial_id == theirs._trial_id
    assert ours.number == theirs.number
    assert ours.state == theirs.state
    assert ours.values == theirs.values
    assert ours.datetime_start == theirs.datetime_start
    assert ours.datetime_complete == theirs.datetime_complete
    assert list(ours.params.items()) == list(theirs.params.items())
    assert list(ours.distributions.items()) == list(theirs.distributions.items())
    assert ours.user_attrs == theirs.user_attrs
    assert ours.system_attrs == theirs.system_attrs
    assert same_steps(ours.intermediate_values, theirs.intermediate_values)


def same_steps(ours: dict[int, float], theirs: dict[int, float]) -> bool:
    return sorted(ours) == sorted(theirs) and all(
        ours[step] == theirs[step] or (math.isnan(ours[step]) and math.isnan(theirs[step]))
        for step in ours
    )
