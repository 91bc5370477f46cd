"""Regularisers and architecture choices act as they say: weight decay and L1 shrink weights,
dropout makes training outputs random, batch norm normalises, early stopping stops after its
patience, augmentation shifts and blurs images, class balancing reweights."""

from __future__ import annotations

from typing import Any

import pytest
import torch

from service.trainer_catalog import MLPParameters
from workers.trainers.architectures import build_model
from workers.trainers.base import TrialRun
from workers.trainers.cnn import build_cnn
from workers.trainers.mlp import MLPTrainer
from workers.trainers.optimizers import build_optimizer
from workers.trainers.regularisers import (
    EarlyStopping,
    augment,
    balanced_order,
    class_weights,
    l1_penalty,
)


def fitted_weights(params: dict[str, Any], steps: int = 60) -> torch.Tensor:
    """The first layer's weights after ``steps`` SGD steps on fixed random data."""
    torch.manual_seed(0)
    hp = MLPParameters.from_params({"optimizer": "sgd", "lr": 0.1, "hidden": 16, **params})
    model = build_model(8, 3, hp)
    optimizer = build_optimizer(model, hp)
    features, labels = torch.randn(64, 8), torch.randint(0, 3, (64,))
    for _ in range(steps):
        loss = torch.nn.functional.cross_entropy(model(features), labels)
        optimizer.zero_grad()
        (loss + l1_penalty(model, hp.l1)).backward()
        optimizer.step()
    return model[0].weight.detach()


def never_stop(epoch: int, value: float) -> bool:
    return False


def test_weight_decay_shrinks_weights_compared_with_none() -> None:
    free, decayed = fitted_weights({}), fitted_weights({"weight_decay": 0.1})
    assert decayed.norm() < 0.8 * free.norm()


def test_l1_penalty_drives_weights_to_zero() -> None:
    free, sparse = fitted_weights({}), fitted_weights({"l1": 0.01})
    assert sparse.abs().sum() < 0.8 * free.abs().sum()
    assert (sparse.abs() < 1e-2).float().mean() > (free.abs() < 1e-2).float().mean()


def test_l1_penalty_is_strength_times_absolute_weights_without_biases() -> None:
    layer = torch.nn.Linear(2, 1)
    with torch.no_grad():
        layer.weight.copy_(torch.tensor([[1.0, -2.0]]))
        layer.bias.fill_(5.0)
    assert float(torch.as_tensor(l1_penalty(layer, 0.5)).detach()) == pytest.approx(1.5)
    assert l1_penalty(layer, 0.0) == 0.0


def test_dropout_makes_training_outputs_random_and_eval_outputs_fixed() -> None:
    model = build_model(8, 3, MLPParameters.from_params({"dropout": 0.5, "hidden": 64}))
    features = torch.randn(4, 8)
    model.train()
    assert not torch.equal(model(features), model(features))
    model.eval()
    assert torch.equal(model(features), model(features))
    plain = build_model(8, 3, MLPParameters.from_params({"dropout": 0.0})).train()
    assert torch.equal(plain(features), plain(features))


def test_batch_norm_normalises_the_hidden_layer_in_training() -> None:
    model = build_model(8, 3, MLPParameters.from_params({"batch_norm": True, "hidden": 32}))
    assert isinstance(model[1], torch.nn.BatchNorm1d)
    with torch.no_grad():
        hidden = model[:2].train()(torch.randn(256, 8) * 7 + 3)
    assert float(hidden.mean(dim=0).abs().max()) < 1e-4
    assert float(hidden.std(dim=0).mean()) == pytest.approx(1.0, abs=0.01)


def test_early_stopping_stops_after_patience_epochs_without_improvement() -> None:
    stopping = EarlyStopping(patience=2)
    answers = [stopping.should_stop(v) for v in [1.0, 0.8, 0.85, 0.9, 0.7]]
    assert answers == [False, False, False, True, False]
    assert not any(EarlyStopping(0).should_stop(1.0) for _ in range(5))


def test_trainer_stops_early_when_the_validation_loss_stays_flat() -> None:
    # lr 1e-30 leaves the weights as they are: the validation loss never improves again.
    run = TrialRun(
        study_id=1,
        trial_id=1,
        number=0,
        params={"optimizer": "sgd", "lr": 1e-30, "early_stopping_patience": 2},
        settings={"name": "mlp", "epochs": 10, "device": "cpu"},
        seed=0,
    )
    result = MLPTrainer().train(run, never_stop)
    assert result.epochs_run == 3 and not result.pruned
    assert len(result.epoch_metrics) == 3


def test_shift_augmentation_moves_the_image_and_noise_has_its_spread() -> None:
    image = torch.zeros(1, 8, 8)
    image[0, 4, 4] = 1.0
    generator = torch.Generator().manual_seed(3)
    moved = [augment(image.reshape(1, 64), 1, 0.0, generator).reshape(8, 8) for _ in range(30)]
    positions = {tuple(int(i) for i in (m == 1).nonzero()[0]) for m in moved}
    assert len(positions) > 1 and positions <= {(r, c) for r in (3, 4, 5) for c in (3, 4, 5)}
    noisy = augment(torch.zeros(2000, 64), 0, 0.5, generator)
    assert float(noisy.std()) == pytest.approx(0.5, rel=0.05)
    with pytest.raises(ValueError, match="square"):
        augment(torch.zeros(2, 10), 1, 0.0, generator)


def test_class_weights_and_resampling_balance_a_skewed_label_set() -> None:
    labels = torch.tensor([0] * 90 + [1] * 10)
    weights = class_weights(labels, 2)
    assert weights.tolist() == pytest.approx([100 / (2 * 90), 100 / (2 * 10)])
    order = balanced_order(labels, 2, torch.Generator().manual_seed(0))
    share_of_minority = float((labels[order] == 1).float().mean())
    assert share_of_minority == pytest.approx(0.5, abs=0.12)


@pytest.mark.parametrize("init", ["xavier", "kaiming"])
def test_initialisation_sets_the_weight_spread_of_its_scheme(init: str) -> None:
    model = build_model(400, 3, MLPParameters.from_params({"init": init, "hidden": 400}))
    weight = model[0].weight.detach()
    gain = 2**0.5  # relu
    expected = gain * (2 / 800) ** 0.5 if init == "xavier" else gain / 400**0.5
    assert float(weight.std()) == pytest.approx(expected, rel=0.05)
    assert float(model[0].bias.detach().abs().max()) == 0.0


@pytest.mark.parametrize("name", ["relu", "leaky_relu", "elu", "selu", "tanh"])
def test_activation_choice_builds_that_activation(name: str) -> None:
    kinds = {
        "relu": torch.nn.ReLU,
        "leaky_relu": torch.nn.LeakyReLU,
        "elu": torch.nn.ELU,
        "selu": torch.nn.SELU,
        "tanh": torch.nn.Tanh,
    }
    model = build_model(4, 2, MLPParameters.from_params({"activation": name, "layers": 2}))
    assert sum(isinstance(m, kinds[name]) for m in model) == 2


def test_cnn_trains_on_the_8x8_digits_and_refuses_non_square_inputs() -> None:
    model = build_cnn(64, 10, MLPParameters.from_params({"channels": 4, "hidden": 16}))
    assert any(isinstance(m, torch.nn.Conv2d) for m in model)
    assert model(torch.randn(5, 64)).shape == (5, 10)
    run = TrialRun(
        study_id=1,
        trial_id=1,
        number=0,
        params={"channels": 4, "hidden": 32, "lr": 0.01},
        settings={"name": "mlp", "model": "cnn", "epochs": 2, "device": "cpu"},
        seed=0,
    )
    result = MLPTrainer().train(run, never_stop)
    assert result.value < 2.0 < 2.302  # learnt below chance (ln 10) in two epochs
    with pytest.raises(ValueError, match="square"):
        build_cnn(30, 2, MLPParameters())


def one_epoch(**settings: Any) -> list[dict[str, float]]:
    run = TrialRun(
        study_id=1,
        trial_id=1,
        number=0,
        params={"lr": 0.01, "hidden": 32},
        settings={"name": "mlp", "epochs": 1, "device": "cpu", **settings},
        seed=0,
    )
    return MLPTrainer().train(run, never_stop).epoch_metrics


def test_class_balancing_settings_change_the_training_run() -> None:
    plain = one_epoch(dataset="wine")
    weighted = one_epoch(dataset="wine", class_balance="weighted_loss")
    resampled = one_epoch(dataset="wine", class_balance="resample")
    assert plain[0]["train_loss"] != weighted[0]["train_loss"]
    assert plain[0]["train_loss"] != resampled[0]["train_loss"]


def test_mixed_precision_is_ignored_on_cpu() -> None:
    def figures(records: list[dict[str, float]]) -> list[dict[str, float]]:
        return [{k: v for k, v in r.items() if k != "epoch_s"} for r in records]  # a clock

    assert figures(one_epoch(mixed_precision=True)) == figures(one_epoch(mixed_precision=False))
