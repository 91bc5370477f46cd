"""Per-epoch training records of a trial, and the diagnosis of its curves.

A trainer sends them with the trial's completion (or its failure), never with the per-epoch
report; they are kept as an Optuna system attribute of the trial, bounded in size.
The diagnosis reads a trial's records: *over-fitting* when the validation loss has risen
clearly above its lowest value while the training loss kept falling; *under-fitting* when
both losses end high, near where they started.
"""

from __future__ import annotations

import math
from typing import Literal

from optuna.trial import FrozenTrial
from pydantic import BaseModel

EPOCH_METRICS_ATTR = "hpo:epoch_metrics"
MAX_EPOCH_RECORDS = 1000
MAX_FIGURES_PER_EPOCH = 32
# Over-fitting: the last validation loss is this much (relative) above its lowest value ...
OVERFIT_RISE = 0.10
# ... while the training loss at the end is below its value at the validation minimum.
# Under-fitting: both final losses are at least this share of their first-epoch values.
UNDERFIT_SHARE = 0.7

EpochRecord = dict[str, float | None]
NO_CURVES = (
    "fewer than 2 epochs with training and validation losses were recorded: they come from "
    'the completion\'s epoch_metrics ([{"train_loss": …, "validation_loss": …}, one per '
    "epoch]), not from the reports, which carry the validation loss alone"
)


def epoch_metrics_attrs(records: list[EpochRecord] | None) -> dict[str, list[EpochRecord]]:
    """The system attribute that keeps a trial's ``records`` (at most ``MAX_EPOCH_RECORDS``);
    none when there are none."""
    return {EPOCH_METRICS_ATTR: records[:MAX_EPOCH_RECORDS]} if records else {}


def epoch_metrics_of(trial: FrozenTrial) -> list[EpochRecord]:
    """The trial's per-epoch records (empty when its trainer sent none)."""
    records = trial.system_attrs.get(EPOCH_METRICS_ATTR, [])
    return records if isinstance(records, list) else []


class Diagnosis(BaseModel):
    """What a trial's curves say: ``overfitting``, ``underfitting``, ``ok`` or ``unknown``."""

    trial_id: int
    verdict: Literal["overfitting", "underfitting", "ok", "unknown"]
    overfitting: bool
    underfitting: bool
    explanation: str


def diagnose(trial: FrozenTrial) -> Diagnosis:
    """The diagnosis of one trial's training and validation curves."""
    curves = _losses(epoch_metrics_of(trial))
    if curves is None:
        return Diagnosis(
            trial_id=trial._trial_id,
            verdict="unknown",
            overfitting=False,
            underfitting=False,
            explanation=NO_CURVES,
        )
    train, validation = curves
    overfitting, over_text = _overfitting(train, validation)
    underfitting, under_text = _underfitting(train, validation)
    verdict: Literal["overfitting", "underfitting", "ok"] = (
        "overfitting" if overfitting else "underfitting" if underfitting else "ok"
    )
    return Diagnosis(
        trial_id=trial._trial_id,
        verdict=verdict,
        overfitting=overfitting,
        underfitting=underfitting,
        explanation=f"{over_text}; {under_text}",
    )


def _losses(records: list[EpochRecord]) -> tuple[list[float], list[float]] | None:
    pairs: list[tuple[float, float]] = []
    for record in records:
        train, validation = record.get("train_loss"), record.get("validation_loss")
        numbers = isinstance(train, int | float) and isinstance(validation, int | float)
        if numbers and math.isfinite(train or 0) and math.isfinite(validation or 0):
            pairs.append((float(train or 0), float(validation or 0)))
    if len(pairs) < 2:
        return None
    return [t for t, _ in pairs], [v for _, v in pairs]


def _overfitting(train: list[float], validation: list[float]) -> tuple[bool, str]:
    lowest = min(range(len(validation)), key=validation.__getitem__)
    rise = (validation[-1] - validation[lowest]) / max(abs(validation[lowest]), 1e-12)
    diverging = rise > OVERFIT_RISE and train[-1] < train[lowest]
    return diverging, (
        f"validation loss {validation[-1]:.4g} at the end vs {validation[lowest]:.4g} at its "
        f"lowest (epoch {lowest + 1}, +{max(rise, 0.0):.0%}); training loss {train[-1]:.4g} "
        f"at the end vs {train[lowest]:.4g} at that epoch"
    )


def _underfitting(train: list[float], validation: list[float]) -> tuple[bool, str]:
    train_share = train[-1] / max(train[0], 1e-12)
    validation_share = validation[-1] / max(validation[0], 1e-12)
    high = train_share >= UNDERFIT_SHARE and validation_share >= UNDERFIT_SHARE
    return high, (
        f"final losses are {train_share:.0%} (training) and {validation_share:.0%} (validation) "
        "of the first epoch's"
    )
