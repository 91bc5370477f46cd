"""Search-space parameters as data, and their Optuna distributions."""

from __future__ import annotations

import math
from collections.abc import Mapping
from decimal import Decimal
from typing import Annotated, Literal

from optuna.distributions import (
    BaseDistribution,
    CategoricalDistribution,
    FloatDistribution,
    IntDistribution,
)
from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    StrictBool,
    WithJsonSchema,
    model_validator,
)

MAX_CHOICES = 1000
MAX_CHOICE_LENGTH = 256
# Optuna keeps parameter values as floats: integers past 2**53 would not come back exact,
# and past 1e308 not at all.
MAX_INT_MAGNITUDE = 2**53
# Bounds, and the distance between them, stay finite even squared, as the samplers need.
MAX_FLOAT_MAGNITUDE = 1e100
# A discretised float with more points than this is not discrete (and Optuna's rounding fails).
MAX_FLOAT_STEPS = 10**15


def _float_within_limit(value: float) -> float:
    if abs(value) > MAX_FLOAT_MAGNITUDE:
        raise ValueError(f"must be within ±{MAX_FLOAT_MAGNITUDE:g}")
    return value


def _choice_within_limits(
    value: str | int | float | bool | None,
) -> str | int | float | bool | None:
    if isinstance(value, str) and len(value) > MAX_CHOICE_LENGTH:
        raise ValueError(
            f"a choice has {len(value)} characters, more than the limit of {MAX_CHOICE_LENGTH}"
        )
    if isinstance(value, int) and not isinstance(value, bool) and abs(value) > MAX_INT_MAGNITUDE:
        raise ValueError(f"an integer choice must be within ±2**53 (±{MAX_INT_MAGNITUDE})")
    if isinstance(value, float) and not math.isfinite(value):
        raise ValueError("a number choice must be finite")
    return value


BoundedInt = Annotated[int, Field(ge=-MAX_INT_MAGNITUDE, le=MAX_INT_MAGNITUDE)]
BoundedFloat = Annotated[
    float,
    Field(
        allow_inf_nan=False,
        json_schema_extra={"minimum": -MAX_FLOAT_MAGNITUDE, "maximum": MAX_FLOAT_MAGNITUDE},
    ),
    AfterValidator(_float_within_limit),
]
# One union with one check after it: a bad choice gets one problem at its own index.
CategoricalValue = Annotated[
    str | int | float | bool | None,
    AfterValidator(_choice_within_limits),
    WithJsonSchema(
        {
            "anyOf": [
                {"type": "string", "maxLength": MAX_CHOICE_LENGTH},
                {"type": "integer", "minimum": -MAX_INT_MAGNITUDE, "maximum": MAX_INT_MAGNITUDE},
                {"type": "number"},
                {"type": "boolean"},
                {"type": "null"},
            ]
        }
    ),
]


class Condition(BaseModel):
    """A parameter exists only when the categorical parameter ``param`` took one of ``in``.

    The relation across the space (the parent exists, is categorical, the values are its
    choices, no cycle) is checked by ``service.spec.conditional.check_conditions``.
    """

    model_config = ConfigDict(
        extra="forbid", frozen=True, validate_by_name=True, serialize_by_alias=True
    )

    param: str = Field(min_length=1, max_length=128)
    values: list[CategoricalValue] = Field(alias="in", min_length=1, max_length=MAX_CHOICES)

    def holds(self, chosen: Mapping[str, object]) -> bool:
        """Whether the parent was chosen and took one of the values."""
        if self.param not in chosen:
            return False
        value = chosen[self.param]
        return any(type(value) is type(v) and value == v for v in self.values)


class _Param(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    condition: Condition | None = None


class FloatParam(_Param):
    """A real number in [low, high]; ``log`` searches on a log scale, ``step`` discretises."""

    type: Literal["float"]
    low: BoundedFloat
    high: BoundedFloat
    log: StrictBool = False
    step: float | None = Field(default=None, gt=0, allow_inf_nan=False)

    @model_validator(mode="after")
    def _bounds(self) -> FloatParam:
        _check_bounds(self.low, self.high, self.log, self.step)
        if self.step is not None and (self.high - self.low) / self.step > MAX_FLOAT_STEPS:
            raise ValueError(
                f"step ({self.step}) is too small: (high - low) / step must be at most "
                f"{MAX_FLOAT_STEPS:.0e}"
            )
        return self

    def distribution(self) -> BaseDistribution:
        return FloatDistribution(self.low, self.high, log=self.log, step=self.step)

    def grid_count(self) -> int | None:
        """How many values a grid over this parameter has (None: continuous), without listing them."""
        if self.step is None:
            return None
        return math.floor((self.high - self.low) / self.step + 1e-9) + 1

    def grid_values(self) -> list[CategoricalValue] | None:
        """The grid's values, ``low + i * step`` counted in decimal (in binary floating point,
        0.1 * 3 is 0.30000000000000004, and a last value past ``high``), never past ``high``."""
        count = self.grid_count()
        if count is None or self.step is None:
            return None
        low, step = Decimal(str(self.low)), Decimal(str(self.step))
        return [min(float(low + i * step), self.high) for i in range(count)]


class IntParam(_Param):
    """An integer in [low, high]; ``log`` searches on a log scale, ``step`` spaces the values."""

    type: Literal["int"]
    low: BoundedInt
    high: BoundedInt
    log: StrictBool = False
    step: int = Field(default=1, gt=0, le=2 * MAX_INT_MAGNITUDE)

    @model_validator(mode="after")
    def _bounds(self) -> IntParam:
        _check_bounds(self.low, self.high, self.log, None if self.step == 1 else self.step)
        return self

    def distribution(self) -> BaseDistribution:
        return IntDistribution(self.low, self.high, log=self.log, step=self.step)

    def grid_count(self) -> int:
        """How many values a grid over this parameter has, without listing them."""
        return len(range(self.low, self.high + 1, self.step))

    def grid_values(self) -> list[CategoricalValue] | None:
        return list(range(self.low, self.high + 1, self.step))


class CategoricalParam(_Param):
    """One of ``choices`` (strings, numbers, booleans or null)."""

    type: Literal["categorical"]
    choices: list[CategoricalValue] = Field(min_length=1, max_length=MAX_CHOICES)

    @model_validator(mode="after")
    def _distinct(self) -> CategoricalParam:
        # Equal to the sampler (true, 1 and 1.0) is refused when a study is submitted
        # (service.spec.validation), so that a study stored before that check still loads.
        if len({repr(choice) for choice in self.choices}) != len(self.choices):
            raise ValueError("choices must be distinct")
        return self

    def distribution(self) -> BaseDistribution:
        return CategoricalDistribution(self.choices)

    def grid_count(self) -> int:
        """How many values a grid over this parameter has."""
        return len(self.choices)

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
