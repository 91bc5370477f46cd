"""The built-in trainer's split, checked at submission: the sizes are the trainer's, and a study
is refused exactly where the trainer's split would fail in every trial."""

from __future__ import annotations

import numpy as np
import pytest

from service.datasets.splits import (
    BUILT_IN_CLASS_COUNTS,
    check_image_model,
    check_split,
    split_sizes,
)
from service.errors import InvalidSpec
from workers.trainers.cnn import image_side
from workers.trainers.datasets import load_arrays, split_indices

# (rows of each class, validation_fraction, test_fraction): splits that can be made and ones
# that cannot, at and around the edges.
CASES = [
    ((5,) * 10, 0.2, 0.2),
    ((5,) * 10, 0.05, 0.05),
    ((5,) * 10, 0.2, 0.19),
    ((5,) * 10, 0.2, 0.181),
    ((5,) * 10, 0.1, 0.2),
    ((5,) * 10, 0.49, 0.49),
    ((7, 5, 40), 0.01, 0.3),
    ((7, 5, 40), 0.3, 0.01),
    ((59, 71, 48), 0.2, 0.01),
    ((59, 71, 48), 0.2, 0.017),
    ((178, 182, 177, 183, 181, 182, 181, 179, 174, 180), 0.001, 0.2),
    ((212, 357), 0.45, 0.45),
]


def labels_of(counts: tuple[int, ...]) -> np.ndarray:
    return np.repeat(np.arange(len(counts)), counts)


@pytest.mark.parametrize(("counts", "validation", "test"), CASES)
def test_the_check_refuses_exactly_the_splits_the_trainer_cannot_make(
    counts: tuple[int, ...], validation: float, test: float
) -> None:
    settings = {"validation_fraction": validation, "test_fraction": test}
    try:
        parts = split_indices(labels_of(counts), 0, validation, test)
    except ValueError:
        with pytest.raises(InvalidSpec):
            check_split(settings, counts)
    else:
        check_split(settings, counts)
        assert split_sizes(sum(counts), validation, test) == tuple(len(part) for part in parts)


@pytest.mark.parametrize(("counts", "validation", "test"), CASES)
def test_the_fractions_refusals_suggest_make_the_split(
    counts: tuple[int, ...], validation: float, test: float
) -> None:
    """Taking what each refusal suggests, part by part, ends in a split the trainer makes; a
    training part too small says to lower the fractions instead."""
    settings = {"validation_fraction": validation, "test_fraction": test}
    for _ in range(3):
        try:
            check_split(settings, counts)
        except InvalidSpec as refused:
            if "would do" not in str(refused):
                assert str(refused).endswith("lower one or both fractions")
                return
            least = str(refused).rsplit("at least ", 1)[1].split()[0]
            settings[refused.field.removeprefix("trainer.")] = float(least)
        else:
            break
    split_indices(labels_of(counts), 0, settings["validation_fraction"], settings["test_fraction"])


def test_a_refusal_names_the_fraction_the_parts_and_the_classes() -> None:
    settings = {"dataset": "wine", "validation_fraction": 0.2, "test_fraction": 0.01}
    with pytest.raises(InvalidSpec) as refused:
        check_split(settings, None)
    assert refused.value.field == "trainer.test_fraction"
    assert str(refused.value).startswith(
        "leaves the test part 2 of the data set's 178 rows, fewer than its 3 classes"
    )


def test_a_trainer_without_the_fractions_or_data_set_is_not_checked() -> None:
    check_split({"dataset": "wine"}, None)
    check_split({"validation_fraction": 0.2, "test_fraction": 0.01}, None)


@pytest.mark.parametrize("name", sorted(BUILT_IN_CLASS_COUNTS))
def test_the_built_in_data_sets_class_counts_are_the_trainer_s(name: str) -> None:
    _, labels = load_arrays(name)
    assert tuple(np.bincount(labels)) == BUILT_IN_CLASS_COUNTS[name]


@pytest.mark.parametrize("n_features", [1, 3, 4, 63, 64, 784, 785])
def test_the_cnn_check_refuses_exactly_the_rows_the_trainer_cannot_make_an_image_of(
    n_features: int,
) -> None:
    """A registered data set's rows read as side x side pixels: the check at the study's creation
    agrees with the CNN the worker builds (a study of 3 features failed every trial)."""
    try:
        image_side(n_features)
        fits = True
    except ValueError:
        fits = False
    if fits:
        check_image_model({"model": "cnn"}, n_features)
    else:
        with pytest.raises(InvalidSpec, match="no square of 2 or more") as refused:
            check_image_model({"model": "cnn"}, n_features)
        assert refused.value.field == "trainer.model"
    check_image_model({"model": "mlp"}, n_features)  # an MLP reads any row
