"""The service's ask in process after a history like the control-plane part's: the same study
(``bench.service_driver.study_spec``: two parameters, TPE, Hyperband over 10 steps), each trial
reporting its simulated curve until pruned or complete. Times the asks after ``--trials`` trials;
for comparing two commits by alternating runs (``PYTHONPATH`` pointing at one tree or the other).
Usage: ``python -m bench.ask_under_hyperband [--trials N] [--asks N]``.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time

import optuna
from optuna.trial import TrialState

from bench.common import trial_value
from bench.service_driver import study_spec
from service.dispatch import NoDispatcher
from service.spec.study_spec import StudySpec
from service.storage.database import Database
from service.trainer_catalog import TrainerCatalog
from service.tuner import Tuner

EPOCHS = 10


def ask_times(trials: int, asks: int) -> list[float]:
    """Seconds of each ask after ``trials`` trials, one trial at a time, on a fresh SQLite file."""
    database = Database(f"sqlite:///{tempfile.mkdtemp()}/asks.db")
    tuner = Tuner(database, NoDispatcher(), TrainerCatalog(frozenset()))
    spec = StudySpec.model_validate(study_spec("asks", trials + asks, EPOCHS, 1))
    study_id = tuner.create_study(spec).study_id
    times = []
    for number in range(trials + asks):
        started = time.perf_counter()
        trial = tuner.ask(study_id)
        if number >= trials:
            times.append(time.perf_counter() - started)
        _run(tuner, trial.trial_id, trial.params, trial.lease)
    database.dispose()
    return times


def _run(tuner: Tuner, trial_id: int, params: dict[str, float], lease: str | None) -> None:
    """Report every epoch until pruned; complete the trial if it was not."""
    for step in range(1, EPOCHS + 1):
        if tuner.report(trial_id, step, trial_value(params, step), lease):
            return
    tuner.complete(trial_id, TrialState.COMPLETE, trial_value(params, EPOCHS), None, lease)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--trials", type=int, default=600)
    parser.add_argument("--asks", type=int, default=150)
    args = parser.parse_args()
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    times = ask_times(args.trials, args.asks)
    print(
        f"{args.asks} asks after {args.trials} trials: p50 {statistics.median(times) * 1000:.2f} ms,"
        f" mean {statistics.mean(times) * 1000:.2f} ms"
    )


if __name__ == "__main__":
    main()
