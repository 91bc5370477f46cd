"""Small data set files for the tests of registered data sets and checkpoints."""

from __future__ import annotations

import io
from typing import Any

import numpy as np

CLASS_NAMES = ("setosa", "versicolor", "virginica")


def blobs(rows: int = 180, features: int = 5, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Three overlapping Gaussian classes: easy to learn, never perfectly."""
    rng = np.random.default_rng(seed)
    labels = np.arange(rows) % 3
    centres = rng.normal(scale=2.0, size=(3, features))
    return centres[labels] + rng.normal(size=(rows, features)), labels


def npz_bytes(**arrays: Any) -> bytes:
    """The arrays as an .npz file."""
    buffer = io.BytesIO()
    np.savez(buffer, **arrays)
    return buffer.getvalue()


def csv_bytes(features: np.ndarray, labels: np.ndarray, label_column: str = "species") -> bytes:
    """A CSV file with a header, the features as f0…fn and string labels in ``label_column``."""
    header = [f"f{i}" for i in range(features.shape[1])] + [label_column]
    lines = [",".join(header)]
    for row, label in zip(features, labels, strict=True):
        lines.append(",".join([*(f"{value:.6f}" for value in row), CLASS_NAMES[int(label)]]))
    return ("\n".join(lines) + "\n").encode()


def registered_study(name: str, dataset: str, n_trials: int, epochs: int) -> dict[str, Any]:
    """A small study of the mlp trainer on a registered data set; every trial runs to the end."""
    return {
        "name": name,
        "space": {
            "lr": {"type": "float", "low": 1e-3, "high": 3e-2, "log": True},
            "hidden": {"type": "int", "low": 8, "high": 32, "step": 8},
        },
        "sampler": {"name": "random", "seed": 0},
        "pruner": {"name": "none"},
        "budget": {"n_trials": n_trials, "max_concurrent_trials": 2},
        "trainer": {"name": "mlp", "dataset": dataset, "epochs": epochs, "seed": 5},
        "preflight": {"enabled": False},
    }
