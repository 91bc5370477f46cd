"""A trial's rows written into Optuna's RDB schema inside the caller's transaction: a new running
trial, and a running trial's end, complete (with its last epochs' values, where it brings them)
or pruned by a report.

Optuna's ``RDBStorage`` creates a trial and then writes each parameter and attribute with its own
reads and checks; a trial sampled in memory (service.study_mirror) needs none of them, so its rows
(the trial, one per parameter, one per system attribute) go in as Optuna lays them out: state by
name, times in naive UTC (as Optuna's trial model stores them), parameters in
their internal representation with the distribution as JSON, attributes as JSON. A completion is
likewise one update of the trial's row, its values and its system attributes, where Optuna's
path takes a transaction for each attribute and re-reads the trial between them. The tables are
Optuna's own models' (service.storage.optuna_tables), so its
column types convert states and value kinds. Optuna's cached storage reads a trial it saw
running again until it sees it finished, so it takes in both.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from functools import lru_cache
from typing import Any

from optuna.distributions import distribution_to_json
from optuna.storages._rdb import models
from optuna.trial import FrozenTrial, TrialState
from sqlalchemy import (
    Connection,
    TextClause,
    bindparam,
    delete,
    func,
    insert,
    select,
    text,
    update,
)
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from service.errors import Conflict, InvalidSpec, NotFound
from service.state_words import ended_in_words
from service.storage.optuna_tables import (
    INTERMEDIATE,
    PARAMS,
    STUDIES,
    SYSTEM_ATTRS,
    TRIALS,
    VALUES,
)

FAIL_REASON_ATTR = "hpo:fail_reason"
_NOT_ENDED = (TrialState.RUNNING, TrialState.WAITING)
# A new trial's statements (every ask), built once.
_HOLD_STUDY = (
    select(STUDIES.c.study_id)
    .where(STUDIES.c.study_id == bindparam("held_study_id"))
    .with_for_update()
)
_TRIALS_OF_STUDY = select(func.count()).where(TRIALS.c.study_id == bindparam("counted_study_id"))
_INSERT_RUNNING = insert(TRIALS).returning(TRIALS.c.trial_id)
_MARK_ENDED = (  # every trial's end: built once, run on the session's connection (half the cost)
    update(TRIALS)
    .where(TRIALS.c.trial_id == bindparam("ended_id"), TRIALS.c.state.in_(_NOT_ENDED))
    .values(state=bindparam("ended_state"), datetime_complete=bindparam("ended_at"))
)
# A completion's values and system attributes, likewise.
_DELETE_VALUES = delete(VALUES).where(VALUES.c.trial_id == bindparam("valued_id"))
_INSERT_VALUES = insert(VALUES)
_DELETE_SYSTEM_ATTRS = delete(SYSTEM_ATTRS).where(
    SYSTEM_ATTRS.c.trial_id == bindparam("attributed_id"),
    SYSTEM_ATTRS.c.key.in_(bindparam("attr_keys", expanding=True)),
)


class OptunaTrialRows:
    """Inserts a running trial's rows (the study's row locked first, as Optuna does), and
    writes a running trial's end (complete, or pruned by a report)."""

    def insert_running(
        self, session: Session, study_id: int, trial: FrozenTrial
    ) -> tuple[int, int]:
        """Write ``trial`` (running, with its parameters and system attributes) as the study's
        next trial; its database id and number."""
        connection = session.connection()
        connection.execute(_HOLD_STUDY, {"held_study_id": study_id})
        number = connection.scalar(_TRIALS_OF_STUDY, {"counted_study_id": study_id})
        started = _naive_utc(trial.datetime_start or datetime.now())
        row = {
            "number": number,
            "study_id": study_id,
            "state": TrialState.RUNNING,
            "datetime_start": started,
        }
        trial_id = connection.scalar(_INSERT_RUNNING, row)
        assert trial_id is not None
        self._insert_params(session, trial_id, trial)
        self._insert_system_attrs(session, trial_id, trial.system_attrs)
        return int(trial_id), int(number or 0)

    def count(self, connection: Connection, study_id: int) -> int:
        """How many trials the study has, in any state."""
        return int(connection.scalar(_TRIALS_OF_STUDY, {"counted_study_id": study_id}) or 0)

    def mark_ended(
        self, session: Session, trial_id: int, state: TrialState = TrialState.COMPLETE
    ) -> bool:
        """End the trial in ``state`` (complete, pruned or failed) unless it has ended; whether it was
        ended. Its row stays locked to the end of the transaction: as a completion's first
        statement this write takes SQLite's lock too, so nothing ends the trial between this
        check and the commit (a pruning report has taken that lock already, with its lease's
        renewal)."""
        ended_at = _naive_utc(datetime.now())
        done = session.connection().execute(
            _MARK_ENDED, {"ended_id": trial_id, "ended_state": state, "ended_at": ended_at}
        )
        return done.rowcount == 1

    def running_number(self, connection: Session | Connection, trial_id: int, *, hold: bool) -> int:
        """The running trial's number; ``NotFound`` without the trial (its study was deleted),
        ``Conflict`` once it has ended. ``hold``: keep its row locked to the end of the
        transaction on PostgreSQL (SQLite takes its one writer's lock at the first write)."""
        query = select(TRIALS.c.number, TRIALS.c.state).where(TRIALS.c.trial_id == trial_id)
        row = connection.execute(query.with_for_update() if hold else query).first()
        if row is None:
            raise NotFound(f"no trial with id {trial_id}", field="trial_id")
        if row.state != TrialState.RUNNING:
            raise not_running(connection, trial_id, row.state)
        return int(row.number)

    def system_attr(self, session: Session, trial_id: int, key: str) -> Any:
        """The trial's system attribute ``key`` (``None`` where it has none)."""
        found = session.scalar(
            select(SYSTEM_ATTRS.c.value_json).where(
                SYSTEM_ATTRS.c.trial_id == trial_id, SYSTEM_ATTRS.c.key == key
            )
        )
        return None if found is None else json.loads(found)

    def state_of(self, session: Session, trial_id: int) -> TrialState | None:
        """The trial's state (``None``: no such trial, its study was deleted)."""
        state: TrialState | None = session.scalar(
            select(TRIALS.c.state).where(TRIALS.c.trial_id == trial_id)
        )
        return state

    def record_completion(
        self, session: Session, trial_id: int, values: list[float], attrs: dict[str, Any]
    ) -> None:
        """The values (finite, one per objective; none for a failed trial) and system attributes
        ``attrs`` of a trial :meth:`mark_ended` ended in this transaction."""
        finite = models.TrialValueModel.TrialValueType.FINITE
        rows = [
            {"trial_id": trial_id, "objective": i, "value": v, "value_type": finite}
            for i, v in enumerate(values)
        ]
        connection = session.connection()
        connection.execute(_DELETE_VALUES, {"valued_id": trial_id})
        if rows:  # none for a failed trial, or one pruned before its first report
            connection.execute(_INSERT_VALUES, rows)
        self.set_system_attrs(session, trial_id, attrs)

    def last_intermediate_value(self, session: Session, trial_id: int) -> float | None:
        """The value of the trial's last reported step (``None`` before its first report)."""
        found = session.scalar(
            select(INTERMEDIATE.c.intermediate_value)
            .where(INTERMEDIATE.c.trial_id == trial_id)
            .order_by(INTERMEDIATE.c.step.desc())
            .limit(1)
        )
        return None if found is None else float(found)

    def record_last_reports(
        self, session: Session, trial_id: int, reports: list[tuple[int, float]]
    ) -> None:
        """Record a completing trial's last epochs' values ((step, value), finite, steps rising)
        as its intermediate values, in its completion's transaction; ``InvalidSpec`` on
        ``reports`` where the first step is not after the last one the trial reported, or a
        report of one of the steps was recorded meanwhile (nothing is replaced)."""
        last_step = session.scalar(
            select(func.max(INTERMEDIATE.c.step)).where(INTERMEDIATE.c.trial_id == trial_id)
        )
        if last_step is not None and reports[0][0] <= last_step:
            raise InvalidSpec(
                f"the completion's first report is of step {reports[0][0]}, but trial "
                f"{trial_id} has reported step {last_step} already: send only later steps",
                field="reports",
            )
        finite = models.TrialIntermediateValueModel.TrialIntermediateValueType.FINITE
        rows = [
            {
                "trial_id": trial_id,
                "step": step,
                "intermediate_value": value,
                "intermediate_value_type": finite,
            }
            for step, value in reports
        ]
        try:
            session.execute(insert(INTERMEDIATE), rows)
        except IntegrityError:  # a report of the same step, committed since the read above
            raise InvalidSpec(
                f"a report of one of the steps {[step for step, _ in reports]} was recorded "
                "while the completion was written: send only later steps",
                field="reports",
            ) from None

    def set_system_attrs(self, session: Session, trial_id: int, attrs: dict[str, Any]) -> None:
        """Set the trial's system attributes ``attrs`` (each replacing one of the same key), as
        Optuna's ``set_trial_system_attr`` stores them (JSON)."""
        if not attrs:
            return
        self.delete_system_attrs(session, trial_id, list(attrs))
        self._insert_system_attrs(session, trial_id, attrs)

    def delete_system_attrs(self, session: Session, trial_id: int, keys: list[str]) -> None:
        """Remove the trial's system attributes named ``keys`` (those it has)."""
        session.connection().execute(
            _DELETE_SYSTEM_ATTRS, {"attributed_id": trial_id, "attr_keys": keys}
        )

    def _insert_params(self, session: Session, trial_id: int, trial: FrozenTrial) -> None:
        rows = [
            {
                "trial_id": trial_id,
                "param_name": name,
                "param_value": trial.distributions[name].to_internal_repr(value),
                "distribution_json": distribution_to_json(trial.distributions[name]),
            }
            for name, value in trial.params.items()
        ]
        _insert_rows(session.connection(), PARAMS.name, rows)

    def _insert_system_attrs(self, session: Session, trial_id: int, attrs: dict[str, Any]) -> None:
        rows = [
            {"trial_id": trial_id, "key": key, "value_json": json.dumps(value)}
            for key, value in attrs.items()
        ]
        _insert_rows(session.connection(), SYSTEM_ATTRS.name, rows)


def _insert_rows(connection: Connection, table: str, rows: list[dict[str, Any]]) -> None:
    """Insert ``rows`` (each with the same columns) in one statement. psycopg runs a statement
    given several rows (an executemany) as a pipeline, which waits on the server twice: an ask's
    two parameters' rows took 1.8 ms of its 8 on PostgreSQL, its system attributes' as long."""
    if not rows:
        return
    statement = _rows_statement(table, tuple(rows[0]), len(rows))
    values = {
        f"{column}_{index}": value
        for index, row in enumerate(rows)
        for column, value in row.items()
    }
    connection.execute(statement, values)


@lru_cache(maxsize=128)
def _rows_statement(table: str, columns: tuple[str, ...], count: int) -> TextClause:
    """The INSERT of ``count`` rows into ``columns``, as text made once per shape:
    SQLAlchemy's ``insert().values()`` of several rows has no cache key (it compiled on every
    call)."""
    names = ", ".join(f'"{column}"' for column in columns)
    rows = ", ".join(
        "(" + ", ".join(f":{column}_{index}" for column in columns) + ")" for index in range(count)
    )
    return text(f'INSERT INTO "{table}" ({names}) VALUES {rows}')


def _naive_utc(moment: datetime) -> datetime:
    """``moment`` (naive local, or aware) as the naive UTC Optuna's trial model stores."""
    return moment.astimezone(UTC).replace(tzinfo=None)


def not_running(connection: Session | Connection, trial_id: int, state: TrialState) -> Conflict:
    """The refusal of a write to a trial that ended: its state, and a failed trial's reason
    (``lease expired ...``: a program silent past its lease learns why), its first line."""
    reason = None
    if state == TrialState.FAIL:
        query = select(SYSTEM_ATTRS.c.value_json).where(
            SYSTEM_ATTRS.c.trial_id == trial_id, SYSTEM_ATTRS.c.key == FAIL_REASON_ATTR
        )
        stored = connection.execute(query).scalar()
        reason = json.loads(stored) if stored else None
    words = ended_in_words(state, reason)
    return Conflict(f"trial {trial_id} is {words}, not running", field="trial_id")
