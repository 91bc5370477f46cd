"""Ray Tune with ASHA on trivial trials: 10 reports each, ``reuse_actors=True``, local CPUs.

Skipped (``None``) when Ray is not installed (``pip install -e '.[bench]'`` installs it).
Usage: ``python -m bench.ray_tune --trials 1000``.
"""

from __future__ import annotations

import argparse
import importlib.util
import logging
import os
import time
from typing import Any

from bench.common import trial_value


def available() -> bool:
    """Whether ``ray[tune]`` can be imported."""
    return importlib.util.find_spec("ray") is not None


def run(n_trials: int, epochs: int, cpus: int) -> dict[str, Any] | None:
    """Trials per second of a Ray Tune ASHA run of ``n_trials`` trivial trials, or ``None``."""
    if not available():
        return None
    os.environ.setdefault("RAY_DEDUP_LOGS", "0")
    os.environ.setdefault("TUNE_DISABLE_AUTO_CALLBACK_LOGGERS", "1")
    import ray
    from ray import tune
    from ray.tune.schedulers import ASHAScheduler

    def trainable(config: dict[str, float]) -> None:
        for step in range(1, epochs + 1):
            tune.report({"loss": trial_value(config, step), "step": step})

    ray.init(
        num_cpus=cpus, include_dashboard=False, log_to_driver=False, logging_level=logging.ERROR
    )
    try:
        tuner = tune.Tuner(
            trainable,
            param_space={"x": tune.uniform(0.0, 1.0), "y": tune.uniform(0.0, 1.0)},
            tune_config=tune.TuneConfig(
                metric="loss",
                mode="min",
                num_samples=n_trials,
                scheduler=ASHAScheduler(max_t=epochs, grace_period=1, reduction_factor=3),
                reuse_actors=True,
            ),
            run_config=tune.RunConfig(verbose=0),
        )
        started = time.perf_counter()
        tuner.fit()
        wall = time.perf_counter() - started
    finally:
        ray.shutdown()
    return {"trials": n_trials, "wall_s": round(wall, 2), "trials_per_s": round(n_trials / wall, 2)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--trials", type=int, default=1000)
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--cpus", type=int, default=os.cpu_count() or 2)
    args = parser.parse_args()
    print(run(args.trials, args.epochs, args.cpus))


if __name__ == "__main__":
    main()
