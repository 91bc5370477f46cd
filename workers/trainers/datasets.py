"""The small classification data sets the built-in trainer uses, loaded offline and split once.

Each data set is split into training, validation and test parts, stratified by class and fixed
by a seed. Features are standardised with statistics of the training part only. The test part is
kept "in the vault": trainers never evaluate on it; it is exposed here for a later, one-off score.
Loaded splits are cached per process, so repeated trials in one worker do not reload them.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from functools import lru_cache

import numpy as np
from sklearn.datasets import load_breast_cancer, load_digits, load_wine, make_classification
from sklearn.model_selection import train_test_split

SYNTHETIC_RANDOM_STATE = 1234


@dataclass(frozen=True)
class DataPart:
    """One part of a split: standardised float32 features, int64 labels, and source row indices."""

    features: np.ndarray
    labels: np.ndarray
    indices: np.ndarray


@dataclass(frozen=True)
class SplitDataset:
    """A data set split into training, validation and (never trained on) test parts."""

    name: str
    train: DataPart
    validation: DataPart
    test: DataPart
    num_features: int
    num_classes: int


def _load_synthetic() -> tuple[np.ndarray, np.ndarray]:
    """A fixed 3-class problem: 1000 samples, 20 features, 10 of them informative."""
    features, labels = make_classification(
        n_samples=1000,
        n_features=20,
        n_informative=10,
        n_redundant=5,
        n_classes=3,
        random_state=SYNTHETIC_RANDOM_STATE,
    )
    return features, labels


ArrayLoader = Callable[[], tuple[np.ndarray, np.ndarray]]


def _load_bundled(loader: Callable[..., tuple[np.ndarray, np.ndarray]]) -> ArrayLoader:
    """Wrap a scikit-learn loader so it returns ``(features, labels)``."""
    return lambda: loader(return_X_y=True)


_LOADERS: dict[str, ArrayLoader] = {
    "digits": _load_bundled(load_digits),
    "breast_cancer": _load_bundled(load_breast_cancer),
    "wine": _load_bundled(load_wine),
    "synthetic": _load_synthetic,
}

DATASET_NAMES: tuple[str, ...] = tuple(_LOADERS)


def load_arrays(name: str) -> tuple[np.ndarray, np.ndarray]:
    """The raw ``(features, labels)`` of a data set, as float64 and int64 arrays."""
    if name not in _LOADERS:
        raise ValueError(f"unknown dataset {name!r}; known: {', '.join(DATASET_NAMES)}")
    features, labels = _LOADERS[name]()
    return np.asarray(features, dtype=np.float64), np.asarray(labels, dtype=np.int64)


def split_indices(
    labels: np.ndarray, seed: int, validation_fraction: float, test_fraction: float
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Stratified ``(train, validation, test)`` row indices, fixed by ``seed``."""
    all_rows = np.arange(len(labels))
    rest, test = train_test_split(
        all_rows, test_size=test_fraction, stratify=labels, random_state=seed
    )
    validation_share = validation_fraction / (1.0 - test_fraction)
    train, validation = train_test_split(
        rest, test_size=validation_share, stratify=labels[rest], random_state=seed
    )
    return np.sort(train), np.sort(validation), np.sort(test)


def _frozen(array: np.ndarray) -> np.ndarray:
    """Mark a cached array read-only so no caller can change what other trials see."""
    array.setflags(write=False)
    return array


def _make_part(
    features: np.ndarray, labels: np.ndarray, rows: np.ndarray, mean: np.ndarray, scale: np.ndarray
) -> DataPart:
    """Standardise the chosen rows with the training statistics ``mean`` and ``scale``."""
    standardised = ((features[rows] - mean) / scale).astype(np.float32)
    return DataPart(_frozen(standardised), _frozen(labels[rows].copy()), _frozen(rows.copy()))


@lru_cache(maxsize=32)
def load_split(
    name: str, seed: int = 0, validation_fraction: float = 0.2, test_fraction: float = 0.2
) -> SplitDataset:
    """Load ``name`` and split it; cached per process on all arguments. Arrays are read-only."""
    features, labels = load_arrays(name)
    train, validation, test = split_indices(labels, seed, validation_fraction, test_fraction)
    mean = features[train].mean(axis=0)
    scale = features[train].std(axis=0)
    scale[scale == 0.0] = 1.0  # constant columns (e.g. blank digit pixels) stay at zero
    return SplitDataset(
        name=name,
        train=_make_part(features, labels, train, mean, scale),
        validation=_make_part(features, labels, validation, mean, scale),
        test=_make_part(features, labels, test, mean, scale),
        num_features=features.shape[1],
        num_classes=int(labels.max()) + 1,
    )
