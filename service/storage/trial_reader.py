"""Optuna's RDB storage with its trial reads done by SQLAlchemy Core instead of its ORM.

Optuna's cached storage re-reads a study's new and unfinished trials before every ask and every
look at the study (``_get_trials``), and reads a running trial whole on each ``get_trial``. Its
ORM builds a model object per row, then a ``FrozenTrial`` from the models: about 2 ms for one
running trial on SQLite, whatever the study's size. The same rows read as plain tuples build the
same ``FrozenTrial``\\ s in well under half that: one query for the trials, and one for all their
child rows (the five child tables as one ``UNION ALL``, joined to the trials on the same
conditions; five queries cost one millisecond more on PostgreSQL, four more round trips). Same
tables (service.storage.optuna_tables), same conditions, same order, same conversions as
``RDBStorage._build_frozen_trial_from_trial_model``: ``tests/integration/test_trial_reader.py``
compares the two trial by trial on SQLite and PostgreSQL.
"""

from __future__ import annotations

import enum
import json
from collections import defaultdict
from collections.abc import Container, Iterable
from functools import cache, lru_cache
from typing import Any, NamedTuple

import optuna
from optuna import distributions
from optuna.storages._rdb import models
from optuna.trial import FrozenTrial, TrialState
from sqlalchemy import (
    ColumnElement,
    CompoundSelect,
    Connection,
    Float,
    Integer,
    Select,
    String,
    Table,
    Text,
    and_,
    bindparam,
    cast,
    literal,
    null,
    or_,
    select,
    union_all,
)
from sqlalchemy.types import TypeEngine

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
# the others dropped here: the child rows' union repeats the list in each of its five parts,
# and five lists this long stay under SQLite's oldest limit on bound variables (999).
MAX_LISTED_TRIALS = 150

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
        values: dict[str, Any] = {"study_id": study_id, "after": trial_id_greater_than}
        chosen = _Chosen.AFTER
        if len(included) > MAX_LISTED_TRIALS:
            chosen, values["first"] = _Chosen.FROM, included[0]
        elif included:
            chosen, values["included"] = _Chosen.LISTED, included
        if states is not None:
            assert isinstance(states, Iterable)
            values["states"] = list(states)
        with connect_for_reads(self.engine) as connection:
            trials = _read_trials(connection, _statements(chosen, states is not None), values)
            if not trials:
                _require_study(connection, study_id)
        if chosen is _Chosen.FROM:
            wanted = set(included)
            trials = [
                t for t in trials if t._trial_id in wanted or t._trial_id > trial_id_greater_than
            ]
        return trials

    def get_trial(self, trial_id: int) -> FrozenTrial:
        """The trial with this id; ``KeyError`` where there is none (as Optuna's)."""
        with connect_for_reads(self.engine) as connection:
            trials = _read_trials(
                connection, _statements(_Chosen.ONE, False), {"trial_id": trial_id}
            )
        if not trials:
            raise KeyError(models.NOT_FOUND_MSG)
        return trials[0]


def _require_study(connection: Connection, study_id: int) -> None:
    found = connection.scalar(_STUDY_EXISTS, {"study_id": study_id})
    if found is None:
        raise KeyError(models.NOT_FOUND_MSG)


class _Chosen(enum.Enum):
    """Which trials a read takes, its bound values named as in ``_condition``."""

    AFTER = "after"  # the study's trials after one id
    LISTED = "listed"  # those, and the trials listed
    FROM = "from"  # the study's trials from one id on
    ONE = "one"  # one trial, by id


class _Statements(NamedTuple):
    """A read's two queries: its trials, and their child rows."""

    trials: Select[Any]
    children: CompoundSelect[Any]


_STUDY_EXISTS = select(STUDIES.c.study_id).where(STUDIES.c.study_id == bindparam("study_id"))


@cache
def _statements(chosen: _Chosen, in_states: bool) -> _Statements:
    """The queries of a read, built once for each kind (building them took about half a
    millisecond a read, a good part of an ask's; SQLAlchemy caches their compiled form).
    Child rows are read by the trials' ids alone, not their states, which may change meanwhile."""
    where = _condition(chosen)
    trials_where = where
    if in_states:
        states = bindparam("states", expanding=True, type_=TRIALS.c.state.type)
        trials_where = and_(where, TRIALS.c.state.in_(states))
    return _Statements(_trials_query(trials_where), _children_query(where))


def _condition(chosen: _Chosen) -> ColumnElement[bool]:
    trial_id = TRIALS.c.trial_id
    if chosen is _Chosen.ONE:
        one: ColumnElement[bool] = trial_id == bindparam("trial_id")
        return one
    of_study: ColumnElement[bool]
    if chosen is _Chosen.FROM:
        of_study = trial_id >= bindparam("first")
    else:
        of_study = trial_id > bindparam("after")
        if chosen is _Chosen.LISTED:
            of_study = or_(trial_id.in_(bindparam("included", expanding=True)), of_study)
    return and_(TRIALS.c.study_id == bindparam("study_id"), of_study)


def _trials_query(where: ColumnElement[bool]) -> Select[Any]:
    return (
        select(
            TRIALS.c.trial_id,
            TRIALS.c.number,
            TRIALS.c.state,
            TRIALS.c.datetime_start,
            TRIALS.c.datetime_complete,
        )
        .where(where)
        .order_by(TRIALS.c.trial_id)
    )


def _read_trials(
    connection: Connection, statements: _Statements, values: dict[str, Any]
) -> list[FrozenTrial]:
    """The trials ``statements`` read with the bound ``values``, with all their rows, by trial
    id: parameters in the order they were set (as Optuna sorts them), attributes by key and
    intermediate values by step (the order Optuna's unordered reads return on SQLite, through
    the (trial, key) and (trial, step) indexes). Child rows are read for every trial the
    condition takes, whatever its state."""
    rows = connection.execute(statements.trials, values).all()
    if not rows:
        return []

    found = _child_rows(connection, statements.children, values)
    return [
        _frozen(
            row,
            found[_PARAMS][row.trial_id],
            found[_VALUES][row.trial_id],
            {key: json.loads(text) for key, text in found[_USER][row.trial_id]},
            {key: json.loads(text) for key, text in found[_SYSTEM][row.trial_id]},
            found[_STEPS][row.trial_id],
        )
        for row in rows
    ]


# The kinds of child row; each read as the union's columns (the others NULL). An enum is read as
# its name: a union's column has one type, and PostgreSQL gives each enum a type of its own.
_PARAMS, _VALUES, _USER, _SYSTEM, _STEPS = range(5)
_CHILD_TABLES: list[tuple[Table, dict[str, ColumnElement[Any]]]] = [
    (
        PARAMS,
        {
            "ordinal": PARAMS.c.param_id,
            "key": PARAMS.c.param_name,
            "number": PARAMS.c.param_value,
            "text": PARAMS.c.distribution_json,
        },
    ),
    (
        VALUES,
        {
            "ordinal": VALUES.c.objective,
            "number": VALUES.c.value,
            "kind_name": cast(VALUES.c.value_type, String()),
        },
    ),
    (USER_ATTRS, {"key": USER_ATTRS.c.key, "text": USER_ATTRS.c.value_json}),
    (SYSTEM_ATTRS, {"key": SYSTEM_ATTRS.c.key, "text": SYSTEM_ATTRS.c.value_json}),
    (
        INTERMEDIATE,
        {
            "ordinal": INTERMEDIATE.c.step,
            "number": INTERMEDIATE.c.intermediate_value,
            "kind_name": cast(INTERMEDIATE.c.intermediate_value_type, String()),
        },
    ),
]
_UNION_TYPES: dict[str, TypeEngine[Any]] = {
    "ordinal": Integer(),
    "key": String(),
    "number": Float(precision=53),
    "text": Text(),
    "kind_name": String(),
}
_VALUE_KINDS = {kind.name: kind for kind in models.TrialValueModel.TrialValueType}
_STEP_KINDS = {
    kind.name: kind for kind in models.TrialIntermediateValueModel.TrialIntermediateValueType
}


def _child_rows(
    connection: Connection, query: CompoundSelect[Any], values: dict[str, Any]
) -> list[_Children]:
    """Every child row ``query`` reads with ``values``, in one query (one round trip, not five),
    by kind and trial id: parameters in the order they were set, values by objective,
    attributes by key, intermediate values by step; each row as ``_frozen`` takes it."""
    found: list[_Children] = [defaultdict(list) for _ in _CHILD_TABLES]
    for kind, trial_id, ordinal, key, number, text, kind_name in connection.execute(query, values):
        if kind == _PARAMS:
            found[kind][trial_id].append((key, number, text))
        elif kind == _VALUES:
            found[kind][trial_id].append((ordinal, number, _VALUE_KINDS[kind_name]))
        elif kind == _STEPS:
            found[kind][trial_id].append((ordinal, number, _STEP_KINDS[kind_name]))
        else:
            found[kind][trial_id].append((key, text))
    return found


def _children_query(of_trials: ColumnElement[bool]) -> CompoundSelect[Any]:
    parts = [
        select(
            literal(kind, Integer).label("kind"),
            table.c.trial_id.label("trial_id"),
            *(
                columns.get(name, cast(null(), type_)).label(name)
                for name, type_ in _UNION_TYPES.items()
            ),
        )
        .join_from(table, TRIALS, TRIALS.c.trial_id == table.c.trial_id)
        .where(of_trials)
        for kind, (table, columns) in enumerate(_CHILD_TABLES)
    ]
    union = union_all(*parts)
    ordered = union.selected_columns
    return union.order_by(ordered.kind, ordered.trial_id, ordered.ordinal, ordered.key)


def _frozen(
    trial: Any,
    params: _Rows,
    values: _Rows,
    user_attrs: dict[str, Any],
    system_attrs: dict[str, Any],
    steps: _Rows,
) -> FrozenTrial:
    """The trial as ``RDBStorage._build_frozen_trial_from_trial_model`` builds it."""
    chosen = {name: _distribution(text) for name, _, text in params}
    return FrozenTrial(
        number=trial.number,
        state=trial.state,
        value=None,
        values=_objective_values(values),
        datetime_start=trial.datetime_start,
        datetime_complete=trial.datetime_complete,
        params={name: chosen[name].to_external_repr(internal) for name, internal, _ in params},
        distributions=chosen,
        user_attrs=user_attrs,
        system_attrs=system_attrs,
        intermediate_values={
            step: models.TrialIntermediateValueModel.stored_repr_to_intermediate_value(value, kind)
            for step, value, kind in steps
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
    for objective, value, kind in rows:
        values[objective] = models.TrialValueModel.stored_repr_to_value(value, kind)
    return values
