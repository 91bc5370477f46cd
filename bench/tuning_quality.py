"""Tuning quality: the built-in ``mlp`` trainer on digits, breast_cancer and wine, at one budget in
epochs, over several seeds:

- ``service``: the service's TPE + Hyperband, built by ``service.policies`` from a study spec
  (its defaults), re-seeded per ask as the service does;
- ``random``: random search without pruning;
- ``tpe``: the service's TPE without pruning;
- ``optuna``: plain Optuna, ``TPESampler(seed)`` + ``HyperbandPruner()`` with their defaults.

To fit the benchmark's time, trials run in-process (the trainer the workers run, called the way the
worker calls it, with the study's sampler and pruner from ``service.policies`` on an in-memory
Optuna study) rather than through HTTP and Celery; the control-plane part measures that path.
Two processes run seeds side by side, each with one torch thread.
Usage: ``python -m bench.tuning_quality [--quick | --full]``.
"""

from __future__ import annotations

import argparse
import math
import statistics
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from typing import Any

import optuna

from bench.common import RESULTS, Check, markdown_table, write_results

EPOCHS = 27
SPACE: dict[str, Any] = {
    "lr": {"type": "float", "low": 1e-4, "high": 0.3, "log": True},
    "batch_size": {"type": "int", "low": 16, "high": 256, "log": True},
    "hidden": {"type": "int", "low": 16, "high": 256, "log": True},
    "layers": {"type": "int", "low": 1, "high": 3},
    "weight_decay": {"type": "float", "low": 1e-6, "high": 1e-2, "log": True},
    "dropout": {"type": "float", "low": 0.0, "high": 0.5},
}
METHODS = ("service", "random", "tpe", "optuna")


@dataclass(frozen=True)
class Plan:
    """Data sets, seeds, and the budget in epochs of each run."""

    datasets: tuple[str, ...]
    seeds: tuple[int, ...]
    budget_epochs: int

    @classmethod
    def of(cls, quick: bool = False, full: bool = False) -> Plan:
        """Three data sets, 10 seeds, 15 full trainings' worth of epochs each; ``full``: 30
        trainings' worth; ``quick``: two small data sets, 2 seeds, 6 trainings' worth. Ten seeds,
        as the benchmark's issue asks where time allows: with five, the median run of a method
        moved by more than the methods differ on digits."""
        if quick:
            return cls(("wine", "breast_cancer"), (0, 1), 6 * EPOCHS)
        if full:
            return cls(("digits", "breast_cancer", "wine"), tuple(range(10)), 30 * EPOCHS)
        return cls(("digits", "breast_cancer", "wine"), tuple(range(10)), 15 * EPOCHS)


def spec_of(dataset: str, seed: int, pruner: str) -> Any:
    """The study spec a user would submit (defaults of the service otherwise)."""
    from service.spec.study_spec import StudySpec

    return StudySpec.model_validate(
        {
            "name": f"quality-{dataset}-{seed}",
            "space": SPACE,
            "sampler": {"name": "tpe", "seed": seed},
            "pruner": {"name": pruner} if pruner == "none" else {"name": "hyperband"},
            "budget": {"n_trials": 10_000},
            "trainer": {"name": "mlp", "dataset": dataset, "epochs": EPOCHS, "device": "cpu"},
        }
    )


class BudgetSpent(Exception):
    """The run's epochs are used up."""


def run_one(method: str, dataset: str, seed: int, budget: int) -> list[float]:
    """Best validation loss after each epoch spent (``budget`` entries)."""
    import torch

    from service.policies import build_pruner, build_sampler, trial_seed
    from workers.trainers.base import TrialRun
    from workers.trainers.mlp import MLPTrainer

    torch.set_num_threads(1)
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    spec = spec_of(dataset, seed, "none" if method in ("random", "tpe") else "hyperband")
    study = _study(method, spec, seed, build_pruner)
    distributions = {name: param.distribution() for name, param in spec.space.items()}
    settings = spec.trainer.model_dump()
    curve: list[float] = []
    best = math.inf
    while len(curve) < budget:
        if method in ("service", "tpe"):
            study.sampler = build_sampler(spec, len(study.trials))
        trial = study.ask(fixed_distributions=distributions)

        def report(epoch: int, value: float, trial: optuna.Trial = trial) -> bool:
            nonlocal best
            best = min(best, value)
            curve.append(best)
            if len(curve) >= budget:
                raise BudgetSpent
            trial.report(value, epoch)
            return bool(trial.should_prune())

        run = TrialRun(
            0, trial.number, trial.number, trial.params, settings, trial_seed(spec, trial.number)
        )
        try:
            result = MLPTrainer().train(run, report)
        except BudgetSpent:
            break
        except Exception:  # a diverging configuration fails, as it would on a worker
            study.tell(trial, state=optuna.trial.TrialState.FAIL)
            continue
        if result.pruned:
            study.tell(trial, state=optuna.trial.TrialState.PRUNED)
        else:
            study.tell(trial, result.value)
    return curve[:budget]


def _study(method: str, spec: Any, seed: int, build_pruner: Any) -> optuna.Study:
    if method == "random":
        return optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=seed))
    if method == "tpe":
        return optuna.create_study(pruner=optuna.pruners.NopPruner())
    if method == "optuna":
        return optuna.create_study(
            sampler=optuna.samplers.TPESampler(seed=seed), pruner=optuna.pruners.HyperbandPruner()
        )
    return optuna.create_study(pruner=build_pruner(spec))


def median_curve(curves: list[list[float]]) -> list[float]:
    """The per-epoch median over seeds."""
    return [statistics.median(values) for values in zip(*curves, strict=False)]


def epochs_to_reach(curve: list[float], target: float) -> float:
    """The first epoch (1-based) at which ``curve`` is at or below ``target``; inf if never."""
    for index, value in enumerate(curve):
        if value <= target:
            return float(index + 1)
    return math.inf


def measure(plan: Plan) -> dict[str, Any]:
    """Every run, two at a time; per data set and method the median curve."""
    jobs = [(m, d, s) for d in plan.datasets for m in METHODS for s in plan.seeds]
    with ProcessPoolExecutor(max_workers=2) as pool:
        futures = {job: pool.submit(run_one, *job, plan.budget_epochs) for job in jobs}
        curves = {job: future.result() for job, future in futures.items()}
    results: dict[str, Any] = {"plan": plan.__dict__, "datasets": {}}
    for dataset in plan.datasets:
        medians = {
            method: median_curve([curves[(method, dataset, s)] for s in plan.seeds])
            for method in METHODS
        }
        target = medians["random"][-1]
        random_epochs = epochs_to_reach(medians["random"], target)
        service_epochs = epochs_to_reach(medians["service"], target)
        results["datasets"][dataset] = {
            "median_curves": medians,
            "final_best": {method: curve[-1] for method, curve in medians.items()},
            "random_median_final_best": target,
            "epochs_random": random_epochs,
            "epochs_service": service_epochs,
            "speedup": random_epochs / service_epochs,
        }
    return results


def plot(results: dict[str, Any]) -> None:
    """``bench/results/tuning_quality.png``: best validation loss vs epochs, per data set."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    datasets = results["datasets"]
    figure, axes = plt.subplots(1, len(datasets), figsize=(5 * len(datasets), 4), squeeze=False)
    for axis, (dataset, row) in zip(axes[0], datasets.items(), strict=True):
        for method, curve in row["median_curves"].items():
            axis.plot(range(1, len(curve) + 1), curve, label=method)
        axis.set_title(f"{dataset} (median of {len(results['plan']['seeds'])} seeds)")
        axis.set_xlabel("epochs spent")
        axis.set_ylabel("best validation loss")
        axis.set_yscale("log")
        axis.legend()
    figure.tight_layout()
    RESULTS.mkdir(exist_ok=True)
    figure.savefig(RESULTS / "tuning_quality.png", dpi=100)


TINY = 1e-12


def checks(results: dict[str, Any]) -> list[Check]:
    """Speed-up over random search (at least 5x) and no regression against plain Optuna, per data set."""
    found = []
    for dataset, row in results["datasets"].items():
        found.append(
            Check(f"speed-up vs random search ({dataset})", row["speedup"], 5.0, True, "x")
        )
        final = row["final_best"]
        found.append(
            Check(
                f"final best: service / plain Optuna TPE+Hyperband ({dataset})",
                # Both can reach 0 (a perfect validation figure): equal then, not a division.
                (final["service"] + TINY) / (final["optuna"] + TINY),
                1.0,
                False,
            )
        )
    return found


def table(results: dict[str, Any]) -> str:
    """Per data set: final best of each method at the budget, and the speed-up."""
    rows = []
    for dataset, row in results["datasets"].items():
        final = row["final_best"]
        rows.append(
            [
                dataset,
                *(round(final[method], 4) for method in METHODS),
                row["epochs_random"],
                row["epochs_service"],
                f"{row['speedup']:.1f}x",
            ]
        )
    header = [
        "data set",
        *(f"best loss: {method}" for method in METHODS),
        "epochs random",
        "epochs service",
        "speed-up",
    ]
    return markdown_table(header, rows)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--full", action="store_true")
    args = parser.parse_args()
    results = measure(Plan.of(args.quick, args.full))
    plot(results)
    write_results("tuning_quality", results, checks(results), table(results))


if __name__ == "__main__":
    main()
