"""Where a trial's result comes from: its seed, the trainer's package and version, the data's
SHA-256 and the train / validation / test split. Sent by the worker while the trial runs and kept
as the trial's Optuna system attribute ``hpo:provenance`` (shown in the trial view)."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field

PROVENANCE_ATTR = "hpo:provenance"
Sha256 = Field(default=None, pattern=r"^[0-9a-f]{64}$")
Text = Field(default=None, max_length=200)


class SplitSizes(BaseModel):
    """Rows in each part of the split."""

    model_config = ConfigDict(extra="forbid")
    train: int = Field(ge=0)
    validation: int = Field(ge=0)
    test: int = Field(ge=0)


class TrialProvenance(BaseModel):
    """What a worker states about a trial; fields left out keep what was recorded before."""

    model_config = ConfigDict(extra="forbid")
    seed: int | None = Field(default=None, ge=0, le=2**63 - 1)
    trainer: str | None = Text
    trainer_package: str | None = Text
    trainer_version: str | None = Text
    dataset: str | None = Text
    data_sha256: str | None = Sha256
    split_seed: int | None = Field(default=None, ge=0, le=2**63 - 1)
    split_sizes: SplitSizes | None = None
    split_sha256: str | None = Sha256


def merged_provenance(recorded: dict[str, Any] | None, update: TrialProvenance) -> dict[str, Any]:
    """``recorded`` with the fields ``update`` sets."""
    return {**(recorded or {}), **update.model_dump(exclude_none=True)}
