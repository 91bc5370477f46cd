"""Monitoring: a NaN, infinite or exploding loss fails the trial with its reason; every epoch
records its losses, gradient norm, update ratio, dead ReLUs, accuracy and macro F1; the
diagnosis of a trial's curves flags over- and under-fitting."""

from __future__ import annotations

import math
from typing import Any

import pytest
import torch
from optuna.distributions import FloatDistribution
from optuna.trial import TrialState, create_trial
from sklearn.metrics import accuracy_score, f1_score

from service.epoch_metrics import EPOCH_METRICS_ATTR, diagnose
from workers.trainers.base import TrainingFailed, TrialRun
from workers.trainers.mlp import MLPTrainer
from workers.trainers.monitoring import (
    GradientMonitor,
    classification_figures,
    dead_relu_fraction,
)

EPOCH_FIGURES = {
    "epoch",
    "lr",
    "train_loss",
    "validation_loss",
    "grad_norm",
    "update_ratio",
    "dead_relu_fraction",
    "validation_accuracy",
    "validation_macro_f1",
    "epoch_s",
}


def run_with(params: dict[str, Any], **settings: Any) -> TrialRun:
    chosen = {"name": "mlp", "epochs": 3, "device": "cpu", **settings}
    return TrialRun(study_id=1, trial_id=1, number=0, params=params, settings=chosen, seed=0)


def never_stop(epoch: int, value: float) -> bool:
    return False


def test_a_huge_learning_rate_fails_the_trial_naming_the_divergence() -> None:
    reported: list[float] = []
    with pytest.raises(TrainingFailed, match=r"training loss diverged at epoch 1 \(loss = nan\)"):
        MLPTrainer().train(
            run_with({"optimizer": "sgd", "lr": 1e6}), lambda e, v: bool(reported.append(v))
        )
    assert reported == []  # nothing non-finite is ever reported


def test_a_loss_past_the_bound_fails_the_trial_with_the_records_so_far() -> None:
    # An untrained net scores about ln 10 = 2.3 on digits: the first batches pass the bound 1.
    with pytest.raises(TrainingFailed) as failure:
        MLPTrainer().train(run_with({"lr": 1e-3}, max_loss=1.0), never_stop)
    assert "training loss diverged past the bound max_loss=1 at epoch 1" in failure.value.reason
    assert failure.value.epoch_metrics == []


def test_every_epoch_records_its_figures() -> None:
    result = MLPTrainer().train(run_with({"lr": 1e-2}), never_stop)
    assert [record["epoch"] for record in result.epoch_metrics] == [1, 2, 3]
    for record in result.epoch_metrics:
        assert set(record) == EPOCH_FIGURES
        assert all(math.isfinite(value) for value in record.values())
        assert record["grad_norm"] > 0 and 0 < record["update_ratio"] < 1
        assert 0 <= record["dead_relu_fraction"] <= 1
        assert 0 < record["epoch_s"] < 60
        assert 0 <= record["validation_macro_f1"] <= record["validation_accuracy"] + 0.2
    losses = [record["train_loss"] for record in result.epoch_metrics]
    assert losses[-1] < losses[0]
    assert set(result.metrics) >= {"validation_accuracy", "validation_macro_f1", "n_parameters"}


def test_the_gradient_norm_and_update_ratio_are_those_of_all_parameters_as_one_vector() -> None:
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.ReLU(), torch.nn.Linear(8, 3))
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    monitor = GradientMonitor(model)
    monitor.start_epoch()
    before = torch.cat([p.detach().reshape(-1).clone() for p in model.parameters()])
    norms = []
    for _ in range(3):
        optimizer.zero_grad()
        model(torch.randn(5, 4)).square().mean().backward()
        monitor.after_backward()
        grads = torch.cat([p.grad.reshape(-1) for p in model.parameters()])  # type: ignore[union-attr]
        norms.append(float(torch.sqrt((grads.double() ** 2).sum())))
        optimizer.step()
    after = torch.cat([p.detach().reshape(-1) for p in model.parameters()])
    figures = monitor.epoch_figures(batches=3)
    assert figures["grad_norm"] == pytest.approx(sum(norms) / 3, rel=1e-5)
    moved = float(torch.linalg.vector_norm(after - before) / torch.linalg.vector_norm(before))
    assert figures["update_ratio"] == pytest.approx(moved / 3, rel=1e-5)


def test_dead_relu_fraction_counts_units_that_never_fire() -> None:
    model = torch.nn.Sequential(torch.nn.Linear(4, 10), torch.nn.ReLU(), torch.nn.Linear(10, 2))
    with torch.no_grad():
        model[0].bias[:6] = -1e6  # six of ten units are dead for any input
        model[0].bias[6:] = 1e6
    assert dead_relu_fraction(model, torch.randn(32, 4)) == pytest.approx(0.6)
    assert dead_relu_fraction(torch.nn.Linear(4, 2), torch.randn(3, 4)) is None


def trial_with(records: list[dict[str, float]]) -> Any:
    return create_trial(
        state=TrialState.COMPLETE,
        value=min(r["validation_loss"] for r in records),
        params={"lr": 0.1},
        distributions={"lr": FloatDistribution(0.01, 1.0)},
        system_attrs={EPOCH_METRICS_ATTR: records},
    )


def curve(train: list[float], validation: list[float]) -> list[dict[str, float]]:
    return [
        {"epoch": i + 1, "train_loss": t, "validation_loss": v}
        for i, (t, v) in enumerate(zip(train, validation, strict=True))
    ]


def test_diagnosis_flags_diverging_curves_as_overfitting() -> None:
    found = diagnose(trial_with(curve([1.0, 0.5, 0.2, 0.05], [1.0, 0.6, 0.7, 0.9])))
    assert found.verdict == "overfitting" and found.overfitting and not found.underfitting


def test_diagnosis_flags_two_high_curves_as_underfitting() -> None:
    found = diagnose(trial_with(curve([2.3, 2.25, 2.2], [2.3, 2.26, 2.21])))
    assert found.verdict == "underfitting" and found.underfitting and not found.overfitting


def test_diagnosis_of_a_healthy_run_and_of_a_trial_without_records() -> None:
    assert diagnose(trial_with(curve([2.0, 0.8, 0.3], [2.0, 0.9, 0.4]))).verdict == "ok"
    bare = create_trial(state=TrialState.COMPLETE, value=1.0)
    unknown = diagnose(bare)
    assert unknown.verdict == "unknown" and "the completion's epoch_metrics" in unknown.explanation


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_accuracy_and_macro_f1_match_scikit_learn(seed: int) -> None:
    generator = torch.Generator().manual_seed(seed)
    logits = torch.randn(60, 5, generator=generator)
    labels = torch.randint(0, 4, (60,), generator=generator)  # class 4 never true, maybe chosen
    figures = classification_figures(logits, labels)
    predicted = logits.argmax(dim=1).numpy()
    assert figures["validation_accuracy"] == pytest.approx(accuracy_score(labels, predicted))
    expected = f1_score(labels.numpy(), predicted, average="macro", zero_division=0)
    assert figures["validation_macro_f1"] == pytest.approx(expected)
