"""The small classification data sets the built-in trainer uses, loaded offline and split once.

Each data set is split into training, validation and test parts, stratified by class and fixed
by a seed. Features are standardised with statistics of the training part only. The test part is
kept "in the vault": trainers never evaluate on it; it is exposed here for a later, one-off score.
Loaded splits are cached per process, so repeated trials in one worker do not reload them.

Besides the built-in sets, ``registered:<name or id>`` names a data set a user registered with
the service (``POST /datasets``); inside a trial the runner's ``TrialContext`` fetches it (once per
worker, cached by its SHA-256) and it is read with the service's own checked reader (no pickles).
Every split carries the SHA-256 of its data and of its row indices, and inside a trial it is noted
as the trial's provenance.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np
from sklearn.datasets import load_breast_cancer, load_digits, load_wine, make_classification
from sklearn.model_selection import train_test_split

from service.datasets import REGISTERED_PREFIX, read_dataset
from workers.provenance import DataProvenance, current_trial, dataset_source

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
    content_sha256: str = ""
    split_sha256: str = ""
    # What turns raw rows into the model's input, and its outputs into labels: the training
    # part's mean and standard deviation (1 for a constant column), and the class names.
    feature_mean: tuple[float, ...] = ()
    feature_scale: tuple[float, ...] = ()
    classes: tuple[str, ...] = ()


@dataclass(frozen=True)
class RegisteredFile:
    """A registered data set's file in the worker's cache, and how to read it."""

    sha256: str
    file_format: str
    label_column: str | None
    path: Path


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


def load_split(
    name: str, seed: int = 0, validation_fraction: float = 0.2, test_fraction: float = 0.2
) -> SplitDataset:
    """Load ``name`` (built-in, or ``registered:<ref>``) and split it by ``seed``; cached per
    process on all arguments (the same object comes back). Arrays are read-only. Inside a trial,
    the data's hashes and split are noted as its provenance."""
    source = _registered_file(name) if name.startswith(REGISTERED_PREFIX) else None
    try:
        split = _split(name, source, seed, validation_fraction, test_fraction)
    except FileNotFoundError:
        if source is None:
            raise
        # Another process of the node made room in the cache meanwhile: fetched again, once.
        source = _registered_file(name)
        split = _split(name, source, seed, validation_fraction, test_fraction)
    context = current_trial()
    if context is not None:
        context.record_data(_provenance(split, seed))
    return split


def arrays_sha256(features: np.ndarray, labels: np.ndarray) -> str:
    """SHA-256 of a built-in data set's arrays (float64 features, int64 labels, with shapes)."""
    digest = hashlib.sha256(repr((features.shape, labels.shape)).encode())
    digest.update(np.ascontiguousarray(features, dtype=np.float64).tobytes())
    digest.update(np.ascontiguousarray(labels, dtype=np.int64).tobytes())
    return digest.hexdigest()


def _registered_file(name: str) -> RegisteredFile:
    fetch = dataset_source()
    if fetch is None:
        raise ValueError(
            f"{name!r} is a registered data set: only a worker connected to the service can read it"
        )
    sha256, file_format, label_column, path = fetch(name.removeprefix(REGISTERED_PREFIX))
    return RegisteredFile(sha256, file_format, label_column, Path(path))


def _arrays_of(
    name: str, source: RegisteredFile | None
) -> tuple[np.ndarray, np.ndarray, str, list[str]]:
    """Features, labels, the content's SHA-256 and the class names (a built-in set's: its
    class indices)."""
    if source is None:
        features, labels = load_arrays(name)
        classes = [str(index) for index in range(int(labels.max()) + 1)]
        return features, labels, arrays_sha256(features, labels), classes
    arrays = read_dataset(source.path.read_bytes(), source.file_format, source.label_column)
    return arrays.features, arrays.labels, source.sha256, arrays.classes


def _provenance(split: SplitDataset, seed: int) -> DataProvenance:
    sizes = {part: len(getattr(split, part).labels) for part in ("train", "validation", "test")}
    return DataProvenance(
        dataset=split.name,
        data_sha256=split.content_sha256,
        split_seed=seed,
        split_sizes=sizes,
        split_sha256=split.split_sha256,
        num_features=split.num_features,
        num_classes=split.num_classes,
        feature_mean=split.feature_mean,
        feature_scale=split.feature_scale,
        classes=split.classes,
    )


def _split_sha256(*parts: np.ndarray) -> str:
    digest = hashlib.sha256()
    for rows in parts:
        digest.update(np.ascontiguousarray(rows, dtype=np.int64).tobytes() + b"|")
    return digest.hexdigest()


@lru_cache(maxsize=32)
def _split(
    name: str,
    source: RegisteredFile | None,
    seed: int,
    validation_fraction: float,
    test_fraction: float,
) -> SplitDataset:
    features, labels, content_sha256, classes = _arrays_of(name, source)
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
        content_sha256=content_sha256,
        split_sha256=_split_sha256(train, validation, test),
        feature_mean=tuple(float(value) for value in mean),
        feature_scale=tuple(float(value) for value in scale),
        classes=tuple(classes),
    )
