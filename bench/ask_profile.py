"""Where a TPE ask's time goes on Optuna's RDB storage, against the same history in memory.

Builds a SQLite study of N finished trials (3 parameters, 10 intermediate values each), then times
ask + tell of a multivariate TPE with constant liar on the RDB storage and on an in-memory copy,
and counts the SQL statements and commits each RDB ask + tell makes. The gap between the two is
what keeping a study's state in memory (writing each trial in one transaction) can save; beside
them the service's own ask + complete on SQLite (its in-memory mirror, service.study_mirror), in
process, with the same history, sampler and seed, counted the same way.
Usage: ``python -m bench.ask_profile [--trials N] [--asks N]``.
"""

from __future__ import annotations

import argparse
import random
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import optuna
from optuna.distributions import BaseDistribution, FloatDistribution, IntDistribution
from optuna.trial import FrozenTrial, TrialState, create_trial
from sqlalchemy import event

from bench.common import percentiles
from service.dispatch import NoDispatcher
from service.spec.study_spec import StudySpec
from service.storage.database import Database
from service.trainer_catalog import TrainerCatalog
from service.tuner import Tuner

SPACE: dict[str, BaseDistribution] = {
    "lr": FloatDistribution(1e-4, 1.0, log=True),
    "x": FloatDistribution(-5.0, 5.0),
    "n": IntDistribution(1, 64),
}


def history(trials: int, seed: int = 0) -> list[FrozenTrial]:
    """``trials`` finished trials with random parameters, values and 10 intermediate values."""
    rng = random.Random(seed)
    return [
        create_trial(
            params={
                "lr": 10 ** rng.uniform(-4, 0),
                "x": rng.uniform(-5, 5),
                "n": rng.randint(1, 64),
            },
            distributions=SPACE,
            value=rng.random(),
            intermediate_values={step: rng.random() for step in range(10)},
        )
        for _ in range(trials)
    ]


def tpe() -> optuna.samplers.TPESampler:
    return optuna.samplers.TPESampler(seed=1, multivariate=True, constant_liar=True)


def median_ms(action: Callable[[], None], times: int) -> float:
    taken = []
    for _ in range(times):
        started = time.perf_counter()
        action()
        taken.append((time.perf_counter() - started) * 1000)
    return percentiles(taken)["p50_ms"]


def ask_and_tell(study: optuna.Study) -> Callable[[], None]:
    def action() -> None:
        trial = study.ask(SPACE)
        study.tell(trial, 0.5)

    return action


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--trials", type=int, default=1000)
    parser.add_argument("--asks", type=int, default=20)
    args = parser.parse_args()
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    trials = history(args.trials)
    with tempfile.TemporaryDirectory() as folder:
        storage = optuna.storages.RDBStorage(f"sqlite:///{Path(folder) / 'ask.db'}")
        on_rdb = optuna.create_study(storage=storage, sampler=tpe())
        on_rdb.add_trials(trials)
        in_memory = optuna.create_study(sampler=tpe())
        in_memory.add_trials(trials)
        statements: list[str] = []
        commits: list[object] = []
        event.listen(storage.engine, "before_cursor_execute", lambda *a: statements.append(a[2]))
        event.listen(storage.engine, "commit", commits.append)
        rdb_ms = median_ms(ask_and_tell(on_rdb), args.asks)
        memory_ms = median_ms(ask_and_tell(in_memory), args.asks)
        service = service_figures(f"sqlite:///{Path(folder) / 'service.db'}", trials, args.asks)
    print(f"{args.trials} finished trials, TPE multivariate + constant liar, ask + tell:")
    print(f"  RDB (SQLite) p50 {rdb_ms:.1f} ms; in memory p50 {memory_ms:.1f} ms")
    print(f"  SQL statements per RDB ask + tell: {len(statements) / args.asks:.0f}")
    print(f"  transactions committed per RDB ask + tell: {len(commits) / args.asks:.0f}")
    print(
        f"  service ask + complete (SQLite, in process): p50 {service['ask_ms']:.1f} ms, "
        f"ask alone {service['ask_only_ms']:.1f} ms; {service['statements']:.0f} statements, "
        f"{service['commits']:.0f} commits per ask + complete"
    )


def service_figures(url: str, trials: list[FrozenTrial], asks: int) -> dict[str, float]:
    """The service's ask + complete on ``url`` after the same history: p50s and SQL counts."""
    database = Database(url)
    tuner = Tuner(database, NoDispatcher(), TrainerCatalog(frozenset()))
    spec = {
        "name": "ask-profile",
        "space": {
            "lr": {"type": "float", "low": 1e-4, "high": 1.0, "log": True},
            "x": {"type": "float", "low": -5.0, "high": 5.0},
            "n": {"type": "int", "low": 1, "high": 64},
        },
        "sampler": {"name": "tpe", "seed": 1},
        "pruner": {"name": "none"},
        "budget": {"n_trials": len(trials) + 2 * asks + 1, "max_concurrent_trials": 1},
    }
    study_id = tuner.create_study(StudySpec.model_validate(spec)).study_id
    for trial in trials:
        database.optuna.create_new_trial(study_id, template_trial=trial)
    ask_only: list[float] = []

    def ask_and_complete() -> None:
        started = time.perf_counter()
        trial = tuner.ask(study_id)
        ask_only.append((time.perf_counter() - started) * 1000)
        tuner.complete(trial.trial_id, TrialState.COMPLETE, 0.5, None, trial.lease)

    ask_and_complete()  # the mirror is made from the history on the first ask
    ask_only.clear()
    statements: list[str] = []
    commits: list[object] = []
    for engine in (database.engine, database.optuna._backend.engine):  # type: ignore[attr-defined]
        event.listen(engine, "before_cursor_execute", lambda *a: statements.append(a[2]))
        event.listen(engine, "commit", commits.append)
    ask_ms = median_ms(ask_and_complete, asks)
    database.dispose()
    return {
        "ask_ms": ask_ms,
        "ask_only_ms": percentiles(ask_only)["p50_ms"],
        "statements": len(statements) / asks,
        "commits": len(commits) / asks,
    }


if __name__ == "__main__":
    main()
