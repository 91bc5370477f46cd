"""Ensembles: the top-k trials' predicted probabilities averaged, scored on the validation split
beside the single best trial's model (its test figure comes only through the vault)."""

from __future__ import annotations

from collections.abc import Sequence

from torch import nn

from service.vault import EnsembleFigures
from workers.trainers.datasets import DataPart
from workers.vault import figures, mean_probabilities, part_tensors


def score_ensemble(models: Sequence[nn.Module], validation: DataPart) -> EnsembleFigures:
    """The ensemble of ``models`` (best first) against the best one alone, on validation."""
    features, labels = part_tensors(validation)
    return EnsembleFigures(
        ensemble=figures(mean_probabilities(models, features), labels),
        best_single=figures(mean_probabilities(models[:1], features), labels),
    )
