"""Plain Optuna, the way a user would run it without the service: TPE + HyperbandPruner,
``report()`` + ``should_prune()`` every epoch, in N processes sharing one storage (RDB on SQLite
or PostgreSQL, or JournalStorage on Redis).

Each process runs Optuna's ask-and-tell loop (what ``study.optimize`` does inside) so that ask and
report + should_prune can be timed apart. A run stops at ``n_trials`` or after ``time_budget_s``,
whichever comes first: Optuna's cost per trial grows with the study's history, so a run cut short
flatters Optuna. Usage: ``python -m bench.plain_optuna --storage sqlite --workers 4``.
"""

from __future__ import annotations

import argparse
import multiprocessing
import tempfile
import time
from dataclasses import dataclass, field
from typing import Any

import optuna
from optuna.storages.journal import JournalRedisBackend

from bench.common import percentiles, trial_value


@dataclass
class OptunaResult:
    """What one plain-Optuna run measured."""

    trials: int = 0
    wall_s: float = 0.0
    ask_ms: list[float] = field(default_factory=list)
    report_ms: list[float] = field(default_factory=list)

    def summary(self) -> dict[str, Any]:
        """Trials per second and latency percentiles."""
        return {
            "trials": self.trials,
            "trials_per_s": round(self.trials / self.wall_s, 2) if self.wall_s else 0.0,
            "ask": percentiles(self.ask_ms),
            "report_should_prune": percentiles(self.report_ms),
        }


def make_storage(kind: str, url: str) -> optuna.storages.BaseStorage:
    """An RDB storage on ``url``, or a JournalStorage on the Redis at ``url`` (kind ``journal``)."""
    if kind == "journal":
        backend = JournalRedisBackend(url)
        return optuna.storages.JournalStorage(backend)
    return optuna.storages.RDBStorage(url)


def run(
    kind: str, url: str, workers: int, n_trials: int, epochs: int, time_budget_s: float
) -> OptunaResult:
    """Run ``workers`` processes on one new study until ``n_trials`` trials or the time is up."""
    name = f"plain-{time.time_ns()}"
    optuna.create_study(study_name=name, storage=make_storage(kind, url))
    context = multiprocessing.get_context("spawn")
    queue = context.Queue()
    ready = context.Barrier(workers)  # every process starts its clock together
    quota = [n_trials // workers + (1 if i < n_trials % workers else 0) for i in range(workers)]
    processes = [
        context.Process(
            target=_process_main,
            args=(kind, url, name, quota[i], epochs, time_budget_s, queue, ready),
        )
        for i in range(workers)
    ]
    for process in processes:
        process.start()
    parts = [queue.get() for _ in processes]
    for process in processes:
        process.join()
    result = OptunaResult()
    for part in parts:
        result.trials += part["trials"]
        result.ask_ms += part["ask_ms"]
        result.report_ms += part["report_ms"]
    # One wall clock for all, as for the service: from the common start to the last one's end.
    result.wall_s = max(p["end"] for p in parts) - min(p["start"] for p in parts)
    return result


def _process_main(
    kind: str,
    url: str,
    name: str,
    quota: int,
    epochs: int,
    budget_s: float,
    queue: Any,
    ready: Any,
) -> None:
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.load_study(
        study_name=name,
        storage=make_storage(kind, url),
        sampler=optuna.samplers.TPESampler(seed=None, multivariate=True, constant_liar=True),
        pruner=optuna.pruners.HyperbandPruner(min_resource=1, max_resource=epochs),
    )
    ask_ms: list[float] = []
    report_ms: list[float] = []
    trials = 0
    ready.wait()  # imports and connection done in every process
    start = time.time()
    deadline = start + budget_s
    while trials < quota and time.time() < deadline:
        began = time.perf_counter()
        trial = study.ask()
        params = {
            "x": trial.suggest_float("x", 0.0, 1.0),
            "y": trial.suggest_float("y", 0.0, 1.0),
        }
        ask_ms.append((time.perf_counter() - began) * 1000)
        _run_trial(study, trial, params, epochs, report_ms)
        trials += 1
    queue.put(
        {
            "trials": trials,
            "start": start,
            "end": time.time(),
            "ask_ms": ask_ms,
            "report_ms": report_ms,
        }
    )


def _run_trial(
    study: optuna.Study,
    trial: optuna.Trial,
    params: dict[str, float],
    epochs: int,
    report_ms: list[float],
) -> None:
    value = 0.0
    for step in range(1, epochs + 1):
        value = trial_value(params, step)
        began = time.perf_counter()
        trial.report(value, step)
        prune = trial.should_prune()
        report_ms.append((time.perf_counter() - began) * 1000)
        if prune:
            study.tell(trial, state=optuna.trial.TrialState.PRUNED)
            return
    study.tell(trial, value)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--storage", choices=["sqlite", "journal"], default="sqlite")
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--trials", type=int, default=200)
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--time-budget-s", type=float, default=20.0)
    args = parser.parse_args()
    if args.storage == "journal":
        from cli.embedded_redis import EmbeddedRedis

        redis = EmbeddedRedis(__import__("pathlib").Path(tempfile.mkdtemp())).start()
        try:
            result = run(
                "journal", redis.url, args.workers, args.trials, args.epochs, args.time_budget_s
            )
        finally:
            redis.stop()
    else:
        url = f"sqlite:///{tempfile.mkdtemp()}/optuna.db"
        result = run("rdb", url, args.workers, args.trials, args.epochs, args.time_budget_s)
    print(result.summary())


if __name__ == "__main__":
    main()
