"""Search-space parameters as data, and their Optuna distributions."""

from __future__ import annotations

import math
from typing import Annotated, Literal

from optuna.distributions import (
    BaseDistribution,
    CategoricalDistribution,
    FloatDistribution,
    IntDistribution,
)
from pydantic import BaseModel, ConfigDict, Field, StrictBool, model_validator

CategoricalValue = str | int | float | bool | None
MAX_CHOICES = 1000


class _Param(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class FloatParam(_Param):
    """A real number in [low, high]; ``log`` searches on a log scale, ``step`` discretises."""

    type: Literal["float"]
    low: float = Field(allow_inf_nan=False)
    high: float = Field(allow_inf_nan=False)
    log: StrictBool = False
    step: float | None = Field(default=None, gt=0, allow_inf_nan=False)

    @model_validator(mode="after")
    def _bounds(self) -> FloatParam:
        _check_bounds(self.low, self.high, self.log, self.step)
        return self

    def distribution(self) -> BaseDistribution:
        return FloatDistribution(self.low, self.high, log=self.log, step=self.step)

    def grid_values(self) -> list[CategoricalValue] | None:
        if self.step is None:
            return None
        count = math.floor((self.high - self.low) / self.step + 1e-9) + 1
        return [self.low + i * self.step for i in range(count)]


class IntParam(_Param):
    """An integer in [low, high]; ``log`` searches on a log scale, ``step`` spaces the values."""

    type: Literal["int"]
    low: int
    high: int
    log: StrictBool = False
    step: int = Field(default=1, gt=0)

    @model_validator(mode="after")
    def _bounds(self) -> IntParam:
        _check_bounds(self.low, self.high, self.log, None if self.step == 1 else self.step)
        return self

    def distribution(self) -> BaseDistribution:
        return IntDistribution(self.low, self.high, log=self.log, step=self.step)

    def grid_values(self) -> list[CategoricalValue] | None:
        return list(range(self.low, self.high + 1, self.step))


class CategoricalParam(_Param):
    """One of ``choices`` (strings, numbers, booleans or null)."""

    type: Literal["categorical"]
    choices: list[CategoricalValue] = Field(min_length=1, max_length=MAX_CHOICES)

    @model_validator(mode="after")
    def _distinct(self) -> CategoricalParam:
        if len({repr(choice) for choice in self.choices}) != len(self.choices):
            raise ValueError("choices must be distinct")
        return self

    def distribution(self) -> BaseDistribution:
        return CategoricalDistribution(self.choices)

    def grid_values(self) -> list[CategoricalValue] | None:
        return list(self.choices)


Param = Annotated[FloatParam | IntParam | CategoricalParam, Field(discriminator="type")]


def _check_bounds(low: float, high: float, log: bool, step: float | None) -> None:
    if low >= high:
        raise ValueError(f"low ({low}) must be below high ({high})")
    if log and low <= 0:
        raise ValueError(f"log scale needs low > 0, got low={low}")
    if log and step is not None:
        raise ValueError("log and step cannot be combined")
