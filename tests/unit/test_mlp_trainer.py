"""Unit tests of the built-in MLP trainer and its data sets (CPU only, no servers)."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pytest
import torch

from workers.trainers.base import TrainResult, TrialRun
from workers.trainers.datasets import DATASET_NAMES, load_arrays, load_split
from workers.trainers.mlp import (
    MLPHyperparameters,
    MLPTrainer,
    build_model,
    build_optimizer,
    resolve_device,
    validation_loss,
)

CHANCE_LOSS_DIGITS = math.log(10)


class RecordingReporter:
    """An EpochReporter that records every call and answers ``True`` from ``stop_at`` on."""

    def __init__(self, stop_at: int | None = None) -> None:
        self.calls: list[tuple[int, float]] = []
        self.stop_at = stop_at

    def __call__(self, epoch: int, value: float) -> bool:
        self.calls.append((epoch, value))
        return self.stop_at is not None and epoch >= self.stop_at

    @property
    def values(self) -> list[float]:
        return [value for _, value in self.calls]


def make_run(params: dict[str, Any] | None = None, seed: int = 0, **settings: Any) -> TrialRun:
    """A TrialRun for the mlp trainer on CPU; ``settings`` override the defaults below."""
    chosen = {"name": "mlp", "dataset": "digits", "epochs": 3, "device": "cpu", **settings}
    return TrialRun(
        study_id=1, trial_id=1, number=0, params=params or {}, settings=chosen, seed=seed
    )


def train(run: TrialRun, stop_at: int | None = None) -> tuple[TrainResult, RecordingReporter]:
    reporter = RecordingReporter(stop_at)
    return MLPTrainer().train(run, reporter), reporter


def test_reports_once_per_epoch_in_order_with_finite_values() -> None:
    result, reporter = train(make_run(epochs=3))
    assert [epoch for epoch, _ in reporter.calls] == [1, 2, 3]
    assert all(math.isfinite(value) for value in reporter.values)
    assert (result.value, result.epochs_run, result.pruned) == (min(reporter.values), 3, False)
    assert [record["validation_loss"] for record in result.epoch_metrics] == reporter.values


def test_same_run_twice_reports_identical_losses() -> None:
    run = make_run({"dropout": 0.3, "batch_size": 32}, seed=7, epochs=3)
    assert train(run)[1].values == train(run)[1].values


def test_different_seed_reports_different_losses() -> None:
    first = train(make_run(seed=1))[1].values
    second = train(make_run(seed=2))[1].values
    assert first != second


def test_reasonable_config_learns_digits_well_below_chance() -> None:
    run = make_run({"optimizer": "adam", "lr": 1e-2, "hidden": 64}, epochs=10)
    result, _ = train(run)
    assert result.value < 0.5 < CHANCE_LOSS_DIGITS


def test_tiny_sgd_learning_rate_stays_near_chance() -> None:
    run = make_run({"optimizer": "sgd", "lr": 1e-6}, epochs=10)
    result, reporter = train(run)
    assert min(reporter.values) > 2.0
    assert result.value == pytest.approx(CHANCE_LOSS_DIGITS, abs=0.3)


def test_true_from_report_stops_training_at_once() -> None:
    result, reporter = train(make_run(epochs=6), stop_at=2)
    assert [epoch for epoch, _ in reporter.calls] == [1, 2]
    assert result.pruned is True
    assert result.epochs_run == 2
    assert result.value == min(reporter.values)


def test_result_value_is_minimum_of_reported_values() -> None:
    # SGD at lr 0.2 with momentum oscillates: on this seed the best epoch is neither first nor last.
    run = make_run({"optimizer": "sgd_momentum", "lr": 0.2, "momentum": 0.9}, seed=0, epochs=6)
    result, reporter = train(run)
    assert len(reporter.values) == 6
    assert result.value == min(reporter.values)
    assert result.value not in (reporter.values[0], reporter.values[-1])  # the check has teeth


def test_diverging_config_raises_value_error_naming_the_epoch() -> None:
    reporter = RecordingReporter()
    with pytest.raises(ValueError, match=r"diverged at epoch 1\b"):
        MLPTrainer().train(make_run({"optimizer": "sgd", "lr": 1e6}, epochs=3), reporter)
    assert reporter.calls == []


@pytest.mark.parametrize(
    ("dataset", "num_classes"),
    [("digits", 10), ("breast_cancer", 2), ("wine", 3), ("synthetic", 3)],
)
def test_every_dataset_loads_and_trains_one_epoch(dataset: str, num_classes: int) -> None:
    split = load_split(dataset)
    assert split.num_classes == num_classes
    assert set(np.unique(split.train.labels)) == set(range(num_classes))
    result, reporter = train(make_run(dataset=dataset, epochs=1))
    assert result.epochs_run == 1
    assert len(reporter.calls) == 1 and math.isfinite(reporter.values[0])


def test_dataset_names_match_the_settings_schema() -> None:
    assert set(DATASET_NAMES) == {"digits", "breast_cancer", "wine", "synthetic"}


def test_split_is_fixed_by_seed() -> None:
    first, again, other = load_split("digits", 3), load_split("digits", 3), load_split("digits", 4)
    np.testing.assert_array_equal(first.train.indices, again.train.indices)
    np.testing.assert_array_equal(first.validation.features, again.validation.features)
    assert not np.array_equal(first.train.indices, other.train.indices)
    assert not np.array_equal(first.test.indices, other.test.indices)


def test_split_parts_are_disjoint_and_sized_by_the_fractions() -> None:
    split = load_split("digits", 0, 0.25, 0.15)
    train_rows, validation_rows, test_rows = (
        set(part.indices.tolist()) for part in (split.train, split.validation, split.test)
    )
    total = len(load_arrays("digits")[1])
    assert not train_rows & validation_rows and not train_rows & test_rows
    assert not validation_rows & test_rows
    assert len(train_rows | validation_rows | test_rows) == total
    assert len(validation_rows) / total == pytest.approx(0.25, abs=0.01)
    assert len(test_rows) / total == pytest.approx(0.15, abs=0.01)


def test_standardisation_uses_training_statistics_only() -> None:
    split = load_split("wine", 5)
    raw_features, _ = load_arrays("wine")
    train_raw = raw_features[split.train.indices]
    mean, scale = train_raw.mean(axis=0), train_raw.std(axis=0)
    np.testing.assert_allclose(split.train.features.mean(axis=0), 0.0, atol=1e-5)
    np.testing.assert_allclose(split.train.features.std(axis=0), 1.0, atol=1e-4)
    expected_validation = (raw_features[split.validation.indices] - mean) / scale
    np.testing.assert_allclose(split.validation.features, expected_validation, rtol=1e-5)
    assert abs(split.validation.features.mean()) > 1e-4  # not re-centred on its own data


def test_loaded_split_is_cached_and_read_only() -> None:
    split = load_split("digits", 11)
    assert load_split("digits", 11) is split
    with pytest.raises(ValueError):
        split.train.features[0, 0] = 1.0


def test_missing_hyperparameters_take_the_catalog_defaults() -> None:
    hp = MLPHyperparameters.from_params({"layers": 2})
    assert (hp.lr, hp.batch_size, hp.hidden, hp.optimizer) == (1e-3, 64, 128, "adam")
    linear_layers = [m for m in build_model(64, 10, hp) if isinstance(m, torch.nn.Linear)]
    assert [layer.out_features for layer in linear_layers] == [128, 128, 10]


def test_optimizer_choice_builds_plain_sgd_sgd_with_momentum_or_adam() -> None:
    model = torch.nn.Linear(4, 2)
    sgd = build_optimizer(model, MLPHyperparameters.from_params({"optimizer": "sgd"}))
    heavy = build_optimizer(model, MLPHyperparameters.from_params({"optimizer": "sgd_momentum"}))
    adam = build_optimizer(model, MLPHyperparameters.from_params({"optimizer": "adam"}))
    assert isinstance(sgd, torch.optim.SGD) and sgd.defaults["momentum"] == 0
    assert isinstance(heavy, torch.optim.SGD) and heavy.defaults["momentum"] == 0.9
    assert isinstance(adam, torch.optim.Adam)
    with pytest.raises(ValueError, match="optimizer"):
        MLPHyperparameters.from_params({"optimizer": "lbfgs"})


def test_validation_loss_runs_in_eval_mode_without_dropout_noise() -> None:
    split = load_split("digits")
    hp = MLPHyperparameters.from_params({"dropout": 0.9, "layers": 2})
    model = build_model(split.num_features, split.num_classes, hp)
    data = (
        torch.from_numpy(split.validation.features.copy()),
        torch.from_numpy(split.validation.labels.copy()),
    )
    first = validation_loss(model, data)
    assert validation_loss(model, data) == first
    assert not model.training


def test_auto_device_follows_cuda_availability() -> None:
    expected = "cuda" if torch.cuda.is_available() else "cpu"
    assert resolve_device("auto").type == expected
    assert resolve_device("cpu").type == "cpu"
