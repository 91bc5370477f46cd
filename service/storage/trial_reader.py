"""Optuna's RDB storage with its trial reads done by SQLAlchemy Core instead of its ORM.

Optuna's cached storage re-reads a study's new and unfinished trials before every ask and every
look at the study (``_get_trials``), and reads a running trial whole on each ``get_trial``. Its
ORM builds a model object per row, then a ``FrozenTrial`` from the models: about 2 ms for one
running trial on SQLite, whatever the study's size. The same rows read as plain tuples (one query
for the trials, one for each kind of child row, joined to the trials on the same conditions)
build the same ``FrozenTrial``\\ s in well under half that. Same tables (service.storage.optuna_tables),
same conditions, same order, same conversions as ``RDBStorage._build_frozen_trial_from_trial_model``:
``tests/integration/test_trial_reader.py`` compares the two trial by trial on SQLite and
PostgreSQL.
"""

from __future__ import annotations

import json
from collections import defaultdict
from collections.abc import Container, Iterable, Sequence
from functools import lru_cache
from typing import Any

import optuna
from optuna import distributions
from optuna.storages._rdb import models
from optuna.trial import FrozenTrial, TrialState
from sqlalchemy import ColumnElement, Connection, Table, and_, or_, select

from service.storage.optuna_tables import (
    INTERMEDIATE,
    PARAMS,
    STUDIES,
    SYSTEM_ATTRS,
    TRIALS,
    USER_ATTRS,
    VALUES,
)
from service.storage.read_connections import connect_for_reads

# More unfinished trials than this are read as "every trial from the oldest of them on", and
# the others dropped here: an IN list that long would pass SQLite's limit on bound variables.
MAX_LISTED_TRIALS = 500

_Rows = list[tuple[Any, ...]]
_Children = dict[int, _Rows]


class CoreReadRDBStorage(optuna.storages.RDBStorage):
    """``RDBStorage`` whose ``_get_trials`` and ``get_trial`` read with Core queries."""

    def _get_trials(
        self,
        study_id: int,
        states: Container[TrialState] | None,
        included_trial_ids: set[int],
        trial_id_greater_than: int,
    ) -> list[FrozenTrial]:
        """The study's trials whose id is above ``trial_id_greater_than`` or among
        ``included_trial_ids``, in ``states`` where given, by id (as Optuna's)."""
        included = sorted(i for i in included_trial_ids if i <= trial_id_greater_than)
        chosen: ColumnElement[bool] = TRIALS.c.trial_id > trial_id_greater_than
        wanted: set[int] | None = None
        if len(included) > MAX_LISTED_TRIALS:
            chosen = TRIALS.c.trial_id >= included[0]
            wanted = set(included)
        elif included:
            chosen = or_(TRIALS.c.trial_id.in_(included), chosen)
        chosen = and_(TRIALS.c.study_id == study_id, chosen)
        in_states = chosen
        if states is not None:
            assert isinstance(states, Iterable)
            in_states = and_(chosen, TRIALS.c.state.in_(list(states)))
        with connect_for_reads(self.engine) as connection:
            # Child rows by the trials' ids alone, not their states, which may change meanwhile.
            trials = _read_trials(connection, in_states, children_of=chosen)
            if not trials:
                _require_study(connection, study_id)
        if wanted is not None:
            trials = [
                t for t in trials if t._trial_id in wanted or t._trial_id > trial_id_greater_than
            ]
        return trials

    def get_trial(self, trial_id: int) -> FrozenTrial:
        """The trial with this id; ``KeyError`` where there is none (as Optuna's)."""
        with connect_for_reads(self.engine) as connection:
            trials = _read_trials(connection, TRIALS.c.trial_id == trial_id)
        if not trials:
            raise KeyError(models.NOT_FOUND_MSG)
        return trials[0]


def _require_study(connection: Connection, study_id: int) -> None:
    found = connection.scalar(select(STUDIES.c.study_id).where(STUDIES.c.study_id == study_id))
    if found is None:
        raise KeyError(models.NOT_FOUND_MSG)


def _read_trials(
    connection: Connection,
    where: ColumnElement[bool],
    children_of: ColumnElement[bool] | None = None,
) -> list[FrozenTrial]:
    """The trials matching ``where`` with all their rows, by trial id: parameters in the order
    they were set (as Optuna sorts them), attributes by key and intermediate values by step (the
    order Optuna's unordered reads return on SQLite, through the (trial, key) and (trial, step)
    indexes). Child rows are read for the trials matching ``children_of`` (default ``where``): a
    condition that holds for every trial ``where`` matches, and may hold for more."""
    rows = connection.execute(
        select(
            TRIALS.c.trial_id,
            TRIALS.c.number,
            TRIALS.c.state,
            TRIALS.c.datetime_start,
            TRIALS.c.datetime_complete,
        )
        .where(where)
        .order_by(TRIALS.c.trial_id)
    ).all()
    if not rows:
        return []

    def children(table: Table, columns: Sequence[str], order: str) -> _Children:
        selected = select(table.c.trial_id, *(table.c[name] for name in columns))
        joined = selected.join(TRIALS, TRIALS.c.trial_id == table.c.trial_id)
        joined = joined.where(where if children_of is None else children_of)
        found: _Children = defaultdict(list)
        for row in connection.execute(joined.order_by(table.c[order])):
            found[row[0]].append(tuple(row))
        return found

    params = children(PARAMS, ("param_name", "param_value", "distribution_json"), "param_id")
    values = children(VALUES, ("objective", "value", "value_type"), "objective")
    user = children(USER_ATTRS, ("key", "value_json"), "key")
    system = children(SYSTEM_ATTRS, ("key", "value_json"), "key")
    steps = children(
        INTERMEDIATE, ("step", "intermediate_value", "intermediate_value_type"), "step"
    )
    return [
        _frozen(
            row,
            params[row.trial_id],
            values[row.trial_id],
            {key: json.loads(text) for _, key, text in user[row.trial_id]},
            {key: json.loads(text) for _, key, text in system[row.trial_id]},
            steps[row.trial_id],
        )
        for row in rows
    ]


def _frozen(
    trial: Any,
    params: _Rows,
    values: _Rows,
    user_attrs: dict[str, Any],
    system_attrs: dict[str, Any],
    steps: _Rows,
) -> FrozenTrial:
    """The trial as ``RDBStorage._build_frozen_trial_from_trial_model`` builds it."""
    chosen = {name: _distribution(text) for _, name, _, text in params}
    return FrozenTrial(
        number=trial.number,
        state=trial.state,
        value=None,
        values=_objective_values(values),
        datetime_start=trial.datetime_start,
        datetime_complete=trial.datetime_complete,
        params={name: chosen[name].to_external_repr(internal) for _, name, internal, _ in params},
        distributions=chosen,
        user_attrs=user_attrs,
        system_attrs=system_attrs,
        intermediate_values={
            step: models.TrialIntermediateValueModel.stored_repr_to_intermediate_value(value, kind)
            for _, step, value, kind in steps
        },
        trial_id=trial.trial_id,
    )


@lru_cache(maxsize=1024)
def _distribution(text: str) -> distributions.BaseDistribution:
    """A parameter's distribution from its JSON, parsed once per text (a study's trials share a
    few): Optuna treats distributions as values and never changes one in place."""
    return distributions.json_to_distribution(text)


def _objective_values(rows: _Rows) -> list[float] | None:
    if not rows:
        return None
    values: list[float] = [0 for _ in rows]
    for _, objective, value, kind in rows:
        values[objective] = models.TrialValueModel.stored_repr_to_value(value, kind)
    return values
