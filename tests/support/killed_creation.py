"""A study's creation whose process dies part way, run as its own process: the study's record
is written, then the process exits at once (no clean-up, no rollback: as a killed API process)
as it writes the first enqueued trial.

Usage: ``python -m tests.support.killed_creation DATABASE_URL SPEC_JSON``; exits with
``KILLED``.
"""

from __future__ import annotations

import os
import sys
from typing import Any

from sqlalchemy import event

from service.spec.study_spec import StudySpec
from service.storage.database import Database
from service.trainer_catalog import TrainerCatalog
from service.tuner import Tuner
from tests.support.dispatchers import DoNothingDispatcher

KILLED = 17


def main(database_url: str, spec_json: str) -> None:
    database = Database(database_url)
    tuner = Tuner(database, DoNothingDispatcher(), TrainerCatalog.installed())

    def die_at_the_first_trial(_conn: Any, _cursor: Any, statement: str, *_: Any) -> None:
        if statement.lstrip().startswith("INSERT INTO trials"):
            os._exit(KILLED)

    optuna_engine = database.optuna._backend.engine  # type: ignore[attr-defined]  # Optuna's own
    event.listen(optuna_engine, "before_cursor_execute", die_at_the_first_trial)
    tuner.create_study(StudySpec.model_validate_json(spec_json))


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
