"""Whether the built-in trainer's split of a data set can be made, checked when a study is submitted.

The trainer splits the rows into training, validation and test parts, stratified by class
(scikit-learn's ``train_test_split``: the test part first, then the validation part from the
rest). A stratified part needs at least one row of each class, so a fraction that leaves a part
fewer rows than the data set has classes fails in every trial; this finds it before any runs.
The sizes follow scikit-learn's: a part of fraction ``f`` of ``n`` rows holds ``ceil(f * n)``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from math import ceil, isqrt
from typing import Any

from service.errors import InvalidSpec

# Rows of each class of the built-in data sets (workers/trainers/datasets.py loads them).
BUILT_IN_CLASS_COUNTS: dict[str, tuple[int, ...]] = {
    "digits": (178, 182, 177, 183, 181, 182, 181, 179, 174, 180),
    "breast_cancer": (212, 357),
    "wine": (59, 71, 48),
    "synthetic": (338, 330, 332),
}
_FIELD = "trainer"


def split_sizes(
    n_rows: int, validation_fraction: float, test_fraction: float
) -> tuple[int, int, int]:
    """Rows in the ``(train, validation, test)`` parts, as the trainer's split makes them."""
    n_test = ceil(test_fraction * n_rows)
    rest = n_rows - n_test
    n_validation = ceil(validation_fraction / (1.0 - test_fraction) * rest)
    return rest - n_validation, n_validation, n_test


def check_split(settings: Mapping[str, Any], class_counts: Sequence[int] | None) -> None:
    """``InvalidSpec`` naming the fraction that leaves a part of the split fewer rows than the
    data set has classes. ``settings``: the trainer's (the built-in trainer's name the
    fractions; others split as they like); ``class_counts``: a registered data set's, else the
    built-in data set's that ``settings`` names, if any."""
    counts = class_counts or BUILT_IN_CLASS_COUNTS.get(str(settings.get("dataset")))
    validation_share, test_share = (
        settings.get("validation_fraction"),
        settings.get("test_fraction"),
    )
    if counts is None or validation_share is None or test_share is None:
        return
    validation_fraction, test_fraction = float(validation_share), float(test_share)
    n_rows, n_classes = sum(counts), len(counts)
    n_train, n_validation, n_test = split_sizes(n_rows, validation_fraction, test_fraction)
    needs = f"fewer than its {n_classes} classes (a stratified part needs a row of each)"
    if n_test < n_classes:
        least = _least_fraction(n_classes / n_rows)
        raise InvalidSpec(
            f"leaves the test part {n_test} of the data set's {n_rows} rows, {needs}: "
            f"at least {least} would do",
            field=f"{_FIELD}.test_fraction",
        )
    if n_validation < n_classes:
        least = _least_fraction(n_classes * (1.0 - test_fraction) / (n_rows - n_test))
        raise InvalidSpec(
            f"leaves the validation part {n_validation} of the data set's {n_rows} rows, "
            f"{needs}: at least {least} would do",
            field=f"{_FIELD}.validation_fraction",
        )
    if n_train < n_classes:
        raise InvalidSpec(
            f"with test_fraction {test_fraction}, leaves {n_train} of the data set's {n_rows} "
            f"rows to train on, {needs}: lower one or both fractions",
            field=f"{_FIELD}.validation_fraction",
        )


def _least_fraction(exact: float) -> str:
    """``exact``, rounded up to three decimals (a fraction rounded down could fall short)."""
    return f"{ceil(exact * 1000) / 1000:g}"


def check_image_model(settings: Mapping[str, Any], n_features: int | None) -> None:
    """``InvalidSpec`` on ``trainer.model`` for the built-in trainer's CNN on a registered data
    set whose rows are no square image (it reads each row as side x side pixels; a built-in data
    set is checked with the settings)."""
    if settings.get("model") != "cnn" or n_features is None:
        return
    side = isqrt(n_features)
    if side < 2 or side * side != n_features:
        raise InvalidSpec(
            f"model 'cnn' reads each row as a square image (side x side pixels, 64 = 8 x 8 for "
            f"digits): the data set's {n_features} features are no square of 2 or more",
            field=f"{_FIELD}.model",
        )
