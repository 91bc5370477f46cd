"""Reading a user's data set file (``.npz`` or ``.csv``) into checked arrays.

Shared by the API (which checks a file when it is registered, so a malformed one is refused
there with a 422 naming the problem) and the workers (which read the same bytes later). Only
numpy is used: no pickles (``allow_pickle=False``), no code in a file is ever run.
"""

from __future__ import annotations

import csv
import io
import zipfile
import zlib
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np

from service.errors import InvalidSpec

FORMATS = ("npz", "csv")
MAX_ROWS = 1_000_000
MAX_FEATURES = 100_000
MAX_CLASSES = 1000
MAX_CELLS = 20_000_000  # rows x features of a data set (160 MB as the float64 it is kept in)
# A value past it could overflow its column's variance in float64 (1e150 squared, summed over
# MAX_ROWS rows, stays below 1.8e308).
MAX_FEATURE_MAGNITUDE = 1e150
MAX_UNPACKED_BYTES = 256 * 1024**2  # what an .npz file may unpack to, before its shape is known
MIN_ROWS_PER_CLASS = 5  # a stratified train / validation / test split needs a few of each class


_UNREADABLE = (
    ValueError,
    OSError,
    EOFError,
    KeyError,
    RuntimeError,
    NotImplementedError,
    zipfile.BadZipFile,
    zlib.error,
)


@dataclass(frozen=True)
class DatasetArrays:
    """Features (float64, 2-D), labels as class indices (int64, 1-D) and the class names."""

    features: np.ndarray
    labels: np.ndarray
    classes: list[str]


def read_dataset(content: bytes, file_format: str, label_column: str | None) -> DatasetArrays:
    """Parse and check a data set file; ``InvalidSpec`` naming the problem if it is malformed."""
    names: list[str] | None = None  # the features' names, where the file has a header
    if file_format == "npz":
        features, raw_labels = _read_npz(content)
    elif file_format == "csv":
        features, raw_labels, names = _read_csv(content, label_column)
    else:
        raise InvalidSpec(f"format must be one of {', '.join(FORMATS)}", field="format")
    return _checked(features, raw_labels, names)


def _read_npz(content: bytes) -> tuple[np.ndarray, np.ndarray]:
    try:
        with zipfile.ZipFile(io.BytesIO(content)) as archive:
            unpacked = sum(member.file_size for member in archive.infolist())
            names = archive.namelist()
    except (zipfile.BadZipFile, ValueError, OSError, EOFError):
        raise _bad("not an .npz file (a zip archive of .npy arrays)") from None
    twice = sorted(name for name, count in Counter(names).items() if count > 1)
    if twice:  # NumPy would read the last of each, without a word
        raise _bad(f"the .npz file holds {', '.join(twice)} more than once: which is meant?")
    if unpacked > MAX_UNPACKED_BYTES:
        raise _bad(f"the .npz file unpacks to {unpacked} bytes, more than {MAX_UNPACKED_BYTES}")
    try:
        with np.load(io.BytesIO(content), allow_pickle=False) as archive:
            missing = [name for name in ("X", "y") if name not in archive.files]
            if missing:
                raise _bad(f"the .npz file lacks the array(s) {', '.join(missing)} (needs X and y)")
            return archive["X"], archive["y"]
    except _UNREADABLE as error:
        # ValueError also covers an object array, which would need a pickle to load.
        raise _bad(f"not a readable .npz file without pickles: {error}") from None


def _read_csv(content: bytes, label_column: str | None) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """Read row by row into a preallocated array: memory stays near the size of the numbers."""
    if not label_column:
        message = "a .csv data set needs the name of its label column"
        raise InvalidSpec(message, field="label_column")
    try:
        text = content.decode("utf-8-sig")
    except UnicodeDecodeError as error:
        raise _bad(f"not a readable UTF-8 .csv file: {error}") from None
    reader = csv.reader(io.StringIO(text))
    header = [name.strip() for name in _next_row(reader) or []]
    twice = _named_twice(header)
    if twice is not None:  # which of the two is the label, or a feature, is anyone's guess
        raise _bad(f"the header names the column {twice!r} twice")
    if label_column not in header:
        problem = f"no column named {label_column!r}; the header has {', '.join(header)[:300]}"
        raise InvalidSpec(problem, field="label_column")
    most_rows = text.count("\n") + 1
    if most_rows > MAX_ROWS + 2:  # the header, and a last line break; before parsing any row
        raise _bad(f"at most {MAX_ROWS} rows, and the file has {most_rows} lines")
    if most_rows * len(header) > MAX_CELLS:
        raise _bad(f"at most {MAX_CELLS} values, and the file may hold {most_rows} x {len(header)}")
    features = np.empty((most_rows, len(header) - 1))
    labels = _fill_rows(reader, features, header, header.index(label_column))
    if not labels:
        raise _bad("the .csv file needs a header row and at least one data row")
    names = [name for name in header if name != label_column]
    return features[: len(labels)], np.array(labels), names


def _named_twice(header: list[str]) -> str | None:
    """The first name the header gives a second time (in one pass: a header of 100,000
    columns compared pairwise kept a thread a minute)."""
    seen: set[str] = set()
    for name in header:
        if name in seen:
            return name
        seen.add(name)
    return None


def _next_row(reader: Iterator[list[str]]) -> list[str] | None:
    try:
        return next(reader, None)
    except csv.Error as error:
        raise _bad(f"not a readable .csv file: {error}") from None


def _fill_rows(
    reader: Iterator[list[str]], features: np.ndarray, header: list[str], label_index: int
) -> list[str]:
    """Parse every data row into ``features``; the labels, as text."""
    width = len(header)
    feature_names = header[:label_index] + header[label_index + 1 :]
    labels: list[str] = []
    line = 1
    while (row := _next_row(reader)) is not None:
        line += 1
        if not row:
            continue  # a blank line
        if len(row) != width:
            raise _bad(f"line {line} has {len(row)} fields, the header {width}")
        label = row.pop(label_index).strip()
        if not label:
            raise _bad(f"line {line}: the label is empty")
        labels.append(label)
        try:
            if "_" in "".join(row):  # Python's float() reads 1_0 as 10
                raise ValueError("it holds '_'")
            features[len(labels) - 1] = row
        except ValueError:
            raise _bad(_not_a_number(line, row, feature_names)) from None
    return labels


def _not_a_number(line: int, row: list[str], names: list[str]) -> str:
    """Which cell of a row is no number, by its column's name."""
    for name, cell in zip(names, row, strict=True):
        try:
            if "_" in cell:
                raise ValueError(cell)
            float(cell)
        except ValueError:
            return f"line {line}, column {name!r}: {cell[:40]!r} is not a number"
    return f"line {line}: a feature value is not a number"


def _checked(
    features: np.ndarray, raw_labels: np.ndarray, feature_names: list[str] | None = None
) -> DatasetArrays:
    if features.ndim != 2:
        raise _bad(f"the features X must be 2-D (rows x features), got shape {features.shape}")
    if raw_labels.ndim != 1:
        raise _bad(f"the labels y must be 1-D, got shape {raw_labels.shape}")
    if len(raw_labels) != len(features):
        raise _bad(f"X has {len(features)} rows but y has {len(raw_labels)} labels")
    _check_sizes(features)
    if features.dtype.kind not in "biuf":
        raise _bad(f"the features X must be numbers, not {features.dtype}")
    features = features.astype(np.float64)
    if not np.isfinite(features).all():
        raise _bad("the features hold NaN or infinite values")
    _check_standardisable(features, feature_names)
    if raw_labels.dtype.kind == "f" and not np.isfinite(raw_labels).all():
        raise _bad("the labels hold NaN or infinite values")
    names, labels = np.unique(raw_labels, return_inverse=True)
    _check_classes(np.bincount(labels), names)
    return DatasetArrays(features, labels.astype(np.int64), [str(name) for name in names])


def _check_standardisable(features: np.ndarray, names: list[str] | None) -> None:
    """No value so large that its column's variance could overflow a float64: the trainer
    standardises with it (a column of 1e200s did, and every trial failed at NaN or trained on
    zeros at chance level). Read from each column's extremes: no array the size of the file's."""
    largest = np.maximum(features.max(axis=0), -features.min(axis=0))
    too_large = np.flatnonzero(largest > MAX_FEATURE_MAGNITUDE)
    if too_large.size:
        column = int(too_large[0])
        named = f"{names[column]!r}" if names else f"{column} (of X, counting from 0)"
        raise _bad(
            f"feature column {named} holds values up to {float(largest[column]):.3g}, too large "
            f"to standardise (at most {MAX_FEATURE_MAGNITUDE:.0e}: its variance would overflow "
            "a float64): scale it down"
        )


def _check_sizes(features: np.ndarray) -> None:
    rows, columns = features.shape
    if rows > MAX_ROWS or columns > MAX_FEATURES:
        raise _bad(f"at most {MAX_ROWS} rows and {MAX_FEATURES} features, got {rows} x {columns}")
    if rows * columns > MAX_CELLS:
        raise _bad(f"at most {MAX_CELLS} values in X, got {rows} x {columns}")
    if columns < 1:
        raise _bad("the data set has no feature column")
    if rows < 1:
        raise _bad("the data set has no rows")


def _check_classes(counts: np.ndarray, names: np.ndarray) -> None:
    if len(counts) < 2:
        raise _bad(f"the labels need at least 2 classes, got {len(counts)}")
    if len(counts) > MAX_CLASSES:
        raise _bad(f"at most {MAX_CLASSES} classes, got {len(counts)}")
    rare = [
        str(name) for name, count in zip(names, counts, strict=True) if count < MIN_ROWS_PER_CLASS
    ]
    if rare:
        problem = (
            f"every class needs at least {MIN_ROWS_PER_CLASS} rows; too few: {', '.join(rare[:10])}"
        )
        raise _bad(problem)


def _bad(problem: str) -> InvalidSpec:
    return InvalidSpec(problem, field="file")
