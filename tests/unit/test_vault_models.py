"""Models rebuilt from safetensors checkpoints predict as the originals; ensembles average them."""

from __future__ import annotations

import json
from typing import Any

import pytest
import torch
from safetensors.torch import save
from torch import nn
from torch.nn import functional

from service.artifacts import MODEL_METADATA_KEY
from workers.checkpoints import load_checkpoint
from workers.ensemble import score_ensemble
from workers.job_models import _build_mlp
from workers.trainers.datasets import load_split
from workers.vault import part_tensors, score_test_split

SETTINGS: dict[str, Any] = {"name": "mlp", "dataset": "wine"}
PARAMS: dict[str, Any] = {"hidden": 8, "layers": 2, "activation": "elu"}


def trained_model(seed: int) -> nn.Module:
    """A small MLP on wine, trained a few steps so that its predictions mean something."""
    split = load_split("wine", 0)
    torch.manual_seed(seed)
    model = _build_mlp(SETTINGS, PARAMS, split.num_features, split.num_classes)
    features, labels = part_tensors(split.train)
    optimizer = torch.optim.Adam(model.parameters(), lr=0.01)
    for _ in range(20):
        optimizer.zero_grad()
        functional.cross_entropy(model(features), labels).backward()
        optimizer.step()
    return model.eval()


def checkpoint(model: nn.Module) -> bytes:
    meta = {
        "trainer": "mlp",
        "settings": SETTINGS,
        "params": PARAMS,
        "num_features": 13,
        "num_classes": 3,
    }
    return save(model.state_dict(), metadata={MODEL_METADATA_KEY: json.dumps(meta)})


def test_a_rebuilt_model_predicts_what_the_original_predicted() -> None:
    model = trained_model(seed=1)
    rebuilt = load_checkpoint(checkpoint(model))
    features, _ = part_tensors(load_split("wine", 0).test)
    with torch.no_grad():
        assert torch.equal(rebuilt(features), model(features))


def test_a_checkpoint_whose_metadata_describes_a_larger_model_is_refused_before_building_it() -> (
    None
):
    """A tenant's own checkpoint (an asked trial's upload) said num_features 3,000,000 beside a
    few kilobytes of weights: the worker building it for the vault tried to allocate 49 GB."""
    weights = trained_model(seed=1).state_dict()
    meta = {"trainer": "mlp", "settings": SETTINGS, "params": PARAMS}
    meta |= {"num_features": 3_000_000, "num_classes": 3}
    planted = save(weights, metadata={MODEL_METADATA_KEY: json.dumps(meta)})
    with pytest.raises(ValueError, match="describes a model whose tensors are not its weights"):
        load_checkpoint(planted)


def test_the_test_score_is_the_cross_entropy_and_accuracy_of_the_model() -> None:
    model = trained_model(seed=2)
    test = load_split("wine", 0).test
    features, labels = part_tensors(test)
    with torch.no_grad():
        logits = model(features)
    figures = score_test_split([model], test).test
    assert figures.loss == pytest.approx(float(functional.cross_entropy(logits, labels)), rel=1e-5)
    expected_accuracy = float((logits.argmax(1) == labels).float().mean())
    assert figures.accuracy == pytest.approx(expected_accuracy)
    assert figures.samples == len(labels)


def test_an_ensemble_averages_its_members_probabilities() -> None:
    members = [trained_model(seed) for seed in (3, 4, 5)]
    validation = load_split("wine", 0).validation
    features, labels = part_tensors(validation)
    with torch.no_grad():
        mean = torch.stack([functional.softmax(m(features), 1) for m in members]).mean(0)
    scored = score_ensemble(members, validation)
    assert scored.ensemble.loss == pytest.approx(
        float(functional.nll_loss(mean.log(), labels)), rel=1e-5
    )
    assert scored.best_single == score_ensemble(members[:1], validation).ensemble
    assert scored.ensemble != scored.best_single
