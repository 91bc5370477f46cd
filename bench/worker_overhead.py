"""Worker overhead: an epoch of the built-in trainer inside a real Celery worker (claiming over HTTP,
reporting every epoch, completing) against the same model, data and batch size in a bare PyTorch
loop, in the same run, one after the other (never side by side on the 2 cores).

The worker process trains on one thread (the one-machine stack's ``HPO_WORKER_TORCH_THREADS``),
and so do the bare loop and the in-process trainer here. The worker is warmed up by a one-trial
study first (a deployment's workers are up: torch imported, data cached).

Four figures per epoch: the bare loop; the trainer called in-process with a no-op reporter (its own
per-epoch figures: accuracy, F1, gradient norms, ...); the trainer in the worker, timed from the
trial's start to its completion as the service recorded them; and, of that, the epoch itself as
the trainer's own clock in the worker saw it (``epoch_s`` of its epoch records: training and
validation, without the trial's claim, reports and completion). The share of a whole study's wall
time (submission to completion) not spent in bare training is ``1 - bare epoch x epochs / wall``.
The bare loop and the trainer in process run in pairs, one after the other, three pairs before
the study and three after; each of the two figures is the median of its six (the machine's speed
drifts within minutes, and a ratio of figures timed minutes apart carries the drift).
Usage: ``python -m bench.worker_overhead [--quick]``.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from datetime import datetime
from typing import Any

import torch
from torch.nn import functional

from bench.common import Check, markdown_table, write_results
from cli.local_stack import LocalStack
from client import HPOJSONClient
from service.trainer_catalog import MLPParameters
from workers.trainers.base import TrialRun
from workers.trainers.datasets import load_split
from workers.trainers.mlp import MLPTrainer, build_model

DATASET = "digits"


def trainer_settings(epochs: int) -> dict[str, Any]:
    """The study's trainer: the built-in MLP on digits, on the CPU, every hyperparameter default."""
    return {"name": "mlp", "dataset": DATASET, "epochs": epochs, "device": "cpu"}


def bare_epoch_s(epochs: int, seed: int = 0) -> float:
    """Seconds per epoch of a bare PyTorch loop: same model, data, optimizer and batch size."""
    hp = MLPParameters()
    split = load_split(DATASET, 0, 0.2, 0.2)
    torch.manual_seed(seed)
    model = build_model(split.num_features, split.num_classes, hp)
    optimizer = torch.optim.Adam(model.parameters(), lr=hp.lr)
    train_x = torch.tensor(split.train.features, dtype=torch.float32)
    train_y = torch.tensor(split.train.labels, dtype=torch.long)
    val_x = torch.tensor(split.validation.features, dtype=torch.float32)
    val_y = torch.tensor(split.validation.labels, dtype=torch.long)
    started = time.perf_counter()
    for _ in range(epochs):
        model.train()
        for batch in torch.split(torch.randperm(len(train_y)), hp.batch_size):
            loss = functional.cross_entropy(model(train_x[batch]), train_y[batch])
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
        model.eval()
        with torch.no_grad():
            float(functional.cross_entropy(model(val_x), val_y))
    return (time.perf_counter() - started) / epochs


def alternated_epochs_s(epochs: int, seeds: range) -> list[tuple[float, float]]:
    """Seconds per epoch of the bare loop and of the trainer in process, one pair per seed, the
    two run one after the other."""
    return [(bare_epoch_s(epochs, seed), trainer_epoch_s(epochs)) for seed in seeds]


def trainer_epoch_s(epochs: int) -> float:
    """Seconds per epoch of the built-in trainer in-process, reporting to a no-op."""
    run = TrialRun(0, 0, 0, {}, trainer_settings(epochs), 0)
    started = time.perf_counter()
    result = MLPTrainer().train(run, lambda epoch, value: False)
    return (time.perf_counter() - started) / result.epochs_run


def celery_study(trials: int, epochs: int) -> dict[str, Any]:
    """A digits study through the whole service (API, Redis, one Celery worker process)."""
    stack = LocalStack(
        f"sqlite:///{tempfile.mkdtemp()}/overhead.db", workers=1, log_level="WARNING"
    ).start()
    try:
        client = stack.client()
        # A deployment's workers are up and warm (torch imported, data cached): so are these.
        _finish_study(client, {**_study(1, 1), "preflight": {"enabled": False}})
        submitted = time.time()
        study_id = _finish_study(client, _study(trials, epochs))
        finished = client.trials(study_id)
        # Up to the last trial's end, not to the poll that saw the study complete.
        wall = max(_at(t["finished_at"]) for t in finished) - submitted
    finally:
        stack.stop()
    per_epoch = [
        (_at(t["finished_at"]) - _at(t["started_at"])) / max(len(t["intermediate_values"]), 1)
        for t in finished
    ]
    epochs_run = sum(len(t["intermediate_values"]) for t in finished)
    states = sorted({t["state"] for t in finished})
    # The trainer's own clock inside the worker: an epoch's training and validation, no more.
    trained = [r["epoch_s"] for t in finished for r in t["epoch_metrics"] if "epoch_s" in r]
    return {
        "wall_s": wall,
        "epoch_s": statistics.median(per_epoch),
        "trained_epoch_s": statistics.median(trained),
        "epochs": epochs_run,
        "states": states,
    }


def _study(trials: int, epochs: int) -> dict[str, Any]:
    """One trial at a time, no pruning, the default pre-flight checks."""
    return {
        "name": f"overhead-{time.time_ns()}",
        "space": {"optimizer": {"type": "categorical", "choices": ["adam"]}},
        "sampler": {"name": "random", "seed": 0},
        "pruner": {"name": "none"},
        "budget": {"n_trials": trials, "max_concurrent_trials": 1},
        "trainer": trainer_settings(epochs),
    }


def _finish_study(client: HPOJSONClient, spec: dict[str, Any]) -> int:
    """Submit ``spec`` and wait until the study is complete; its id."""
    study_id = int(client.create_study(spec)["study_id"])
    while client.study(study_id)["state"] != "complete":
        time.sleep(0.2)  # a user polls no faster: the polls share the 2 cores
    return study_id


def _at(moment: str) -> float:
    return datetime.fromisoformat(moment).timestamp()


def measure(quick: bool) -> dict[str, Any]:
    """Bare loop, trainer in-process, trainer in a Celery worker; the overhead figures."""
    trials, epochs = (3, 10) if quick else (6, 27)
    torch.set_num_threads(1)  # what a worker process of the one-machine stack uses
    bare_epoch_s(3)  # warm-up: imports, allocator, data set cache
    # This machine's speed drifts by 15% and more within minutes: the bare loop and the trainer
    # alternate, three pairs before the study and three after, and each figure is the median.
    pairs = alternated_epochs_s(epochs, seeds=range(3))
    study = celery_study(trials, epochs)
    pairs += alternated_epochs_s(epochs, seeds=range(3, 6))
    bare = statistics.median(bare for bare, _ in pairs)
    in_process = statistics.median(trainer for _, trainer in pairs)
    return {
        "dataset": DATASET,
        "trials": trials,
        "epochs_per_trial": epochs,
        "bare_epoch_ms": round(bare * 1000, 2),
        "trainer_in_process_epoch_ms": round(in_process * 1000, 2),
        "celery_worker_epoch_ms": round(study["epoch_s"] * 1000, 2),
        "epoch_in_worker_ms": round(study["trained_epoch_s"] * 1000, 2),
        "study_wall_s": round(study["wall_s"], 2),
        "study_epochs": study["epochs"],
        "states": study["states"],
        "ratio_worker_vs_bare": study["epoch_s"] / bare,
        "ratio_worker_vs_trainer": study["epoch_s"] / in_process,
        "share_not_training": 1 - bare * study["epochs"] / study["wall_s"],
    }


def checks(results: dict[str, Any]) -> list[Check]:
    """Per-epoch ratio (≤ 1.05) and the share of the study not spent training (≤ 5 %)."""
    return [
        Check(
            "epoch in Celery worker / bare PyTorch loop",
            results["ratio_worker_vs_bare"],
            1.05,
            False,
        ),
        Check(
            "epoch in Celery worker / same trainer in-process (service's share)",
            results["ratio_worker_vs_trainer"],
            1.05,
            False,
        ),
        Check(
            "share of digits study wall time not training",
            results["share_not_training"],
            0.05,
            False,
        ),
    ]


def table(results: dict[str, Any]) -> str:
    """One row: the per-epoch times and the study's wall time."""
    header = [
        "bare loop ms/epoch",
        "trainer in-process ms/epoch",
        "Celery worker ms/epoch",
        "of which the epoch itself ms",
        "study wall s",
        "epochs",
    ]
    row = [
        results["bare_epoch_ms"],
        results["trainer_in_process_epoch_ms"],
        results["celery_worker_epoch_ms"],
        results["epoch_in_worker_ms"],
        results["study_wall_s"],
        results["study_epochs"],
    ]
    return markdown_table(header, [row])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--full", action="store_true", help="the same as the default")
    args = parser.parse_args()
    results = measure(args.quick)
    write_results("worker_overhead", results, checks(results), table(results))


if __name__ == "__main__":
    main()
