"""A trial's rows written into Optuna's RDB schema inside the caller's transaction: a new running
trial, and a running trial's completion.

Optuna's ``RDBStorage`` creates a trial and then writes each parameter and attribute with its own
reads and checks; a trial sampled in memory (service.study_mirror) needs none of them, so its rows
(the trial, one per parameter, one per system attribute) go in as Optuna lays them out: state by
name, times in naive UTC (as Optuna's trial model stores them), parameters in
their internal representation with the distribution as JSON, attributes as JSON. A completion is
likewise one update of the trial's row, its values and its system attributes, where Optuna's
path takes a transaction for each attribute and re-reads the trial between them. The tables are
read from the database (reflected), not redefined. Optuna's cached storage reads a trial it saw
running again until it sees it finished, so it takes in both.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

from optuna.distributions import distribution_to_json
from optuna.trial import FrozenTrial, TrialState
from sqlalchemy import Engine, MetaData, Table, delete, func, insert, select, update
from sqlalchemy.orm import Session

_NOT_ENDED = (TrialState.RUNNING.name, TrialState.WAITING.name)
OPTUNA_TABLES = ("studies", "trials", "trial_params", "trial_system_attributes", "trial_values")


class OptunaTrialRows:
    """Inserts a running trial's rows (the study's row locked first, as Optuna does), and
    writes a running trial's completion."""

    def __init__(self, engine: Engine) -> None:
        self._engine = engine
        self._tables: dict[str, Table] = {}

    def insert_running(
        self, session: Session, study_id: int, trial: FrozenTrial
    ) -> tuple[int, int]:
        """Write ``trial`` (running, with its parameters and system attributes) as the study's
        next trial; its database id and number."""
        studies, trials = self._table("studies"), self._table("trials")
        session.execute(
            select(studies.c.study_id).where(studies.c.study_id == study_id).with_for_update()
        )
        number = session.scalar(select(func.count()).where(trials.c.study_id == study_id))
        started = _naive_utc(trial.datetime_start or datetime.now())
        row = {
            "number": number,
            "study_id": study_id,
            "state": TrialState.RUNNING.name,
            "datetime_start": started,
        }
        trial_id = session.scalar(insert(trials).values(row).returning(trials.c.trial_id))
        assert trial_id is not None
        self._insert_params(session, trial_id, trial)
        self._insert_system_attrs(session, trial_id, trial.system_attrs)
        return int(trial_id), int(number or 0)

    def mark_complete(self, session: Session, trial_id: int) -> bool:
        """Set the trial complete unless it has ended; whether it was set. Its row stays locked
        to the end of the transaction: as the transaction's first statement this write takes
        SQLite's lock too, so nothing ends the trial between this check and the commit."""
        trials = self._table("trials")
        done = session.execute(
            update(trials)
            .where(trials.c.trial_id == trial_id, trials.c.state.in_(_NOT_ENDED))
            .values(state=TrialState.COMPLETE.name, datetime_complete=_naive_utc(datetime.now()))
        )
        return bool(done.rowcount == 1)  # type: ignore[attr-defined]

    def state_of(self, session: Session, trial_id: int) -> TrialState | None:
        """The trial's state (``None``: no such trial, its study was deleted)."""
        trials = self._table("trials")
        state = session.scalar(select(trials.c.state).where(trials.c.trial_id == trial_id))
        return None if state is None else TrialState[str(state)]

    def record_completion(
        self, session: Session, trial_id: int, values: list[float], attrs: dict[str, Any]
    ) -> None:
        """The values (finite, one per objective) and system attributes ``attrs`` of a trial
        :meth:`mark_complete` set complete in this transaction."""
        values_table = self._table("trial_values")
        rows = [
            {"trial_id": trial_id, "objective": i, "value": v, "value_type": "FINITE"}
            for i, v in enumerate(values)
        ]
        session.execute(delete(values_table).where(values_table.c.trial_id == trial_id))
        session.execute(insert(values_table), rows)
        self.set_system_attrs(session, trial_id, attrs)

    def set_system_attrs(self, session: Session, trial_id: int, attrs: dict[str, Any]) -> None:
        """Set the trial's system attributes ``attrs`` (each replacing one of the same key), as
        Optuna's ``set_trial_system_attr`` stores them (JSON)."""
        if not attrs:
            return
        table = self._table("trial_system_attributes")
        session.execute(
            delete(table).where(table.c.trial_id == trial_id, table.c.key.in_(list(attrs)))
        )
        self._insert_system_attrs(session, trial_id, attrs)

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
        if rows:
            session.execute(insert(self._table("trial_params")), rows)

    def _insert_system_attrs(self, session: Session, trial_id: int, attrs: dict[str, Any]) -> None:
        rows = [
            {"trial_id": trial_id, "key": key, "value_json": json.dumps(value)}
            for key, value in attrs.items()
        ]
        if rows:
            session.execute(insert(self._table("trial_system_attributes")), rows)

    def _table(self, name: str) -> Table:
        if not self._tables:
            metadata = MetaData()
            metadata.reflect(self._engine, only=OPTUNA_TABLES)
            self._tables = {table: metadata.tables[table] for table in OPTUNA_TABLES}
        return self._tables[name]


def _naive_utc(moment: datetime) -> datetime:
    """``moment`` (naive local, or aware) as the naive UTC Optuna's trial model stores."""
    return moment.astimezone(UTC).replace(tzinfo=None)
