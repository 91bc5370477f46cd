"""The vault: a trial's model (or an ensemble's) scored once on the test split, on request.

Models come from the trials' checkpoints (``GET /trials/{id}/checkpoint``: safetensors, whose
metadata ``hpo.model`` says how to rebuild the model); nothing is unpickled.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn
from torch.nn import functional

from client import HPOJSONClient
from service.vault import EvaluationFigures, ModelFigures
from workers.checkpoints import load_checkpoint
from workers.trainers.datasets import DataPart


def trial_models(client: HPOJSONClient, trial_ids: Sequence[int]) -> list[nn.Module]:
    """The models of ``trial_ids``, rebuilt from their checkpoints."""
    return [load_checkpoint(client.checkpoint(trial_id)) for trial_id in trial_ids]


@torch.no_grad()
def mean_probabilities(models: Sequence[nn.Module], features: torch.Tensor) -> torch.Tensor:
    """The models' softmax probabilities, averaged (one model: its own)."""
    return torch.stack([functional.softmax(model(features), dim=1) for model in models]).mean(0)


def figures(probabilities: torch.Tensor, labels: torch.Tensor) -> ModelFigures:
    """Mean cross-entropy and accuracy of predicted probabilities."""
    log_probabilities = probabilities.clamp_min(1e-12).log()
    loss = float(functional.nll_loss(log_probabilities, labels))
    accuracy = float((probabilities.argmax(dim=1) == labels).float().mean())
    return ModelFigures(loss=loss, accuracy=accuracy, samples=len(labels))


def part_tensors(part: DataPart) -> tuple[torch.Tensor, torch.Tensor]:
    """One data part as CPU tensors."""
    return torch.tensor(part.features, dtype=torch.float32), torch.tensor(part.labels)


def score_test_split(models: Sequence[nn.Module], test: DataPart) -> EvaluationFigures:
    """Open the vault: the test figures of one model, or of an ensemble's averaged predictions."""
    features, labels = part_tensors(test)
    return EvaluationFigures(test=figures(mean_probabilities(models, features), labels))
