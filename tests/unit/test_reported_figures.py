"""Figures the service computes from what trials report, or takes from workers: a constraint's
violations stay finite (JSON has no infinity) and keep a name per bound; a pre-flight figure that
is not finite is refused."""

from __future__ import annotations

import math
import sys

import pytest
from pydantic import ValidationError

from service.preflight import CheckOutcome
from service.spec.objectives import ConstraintSpec


def test_a_constraint_violation_that_overflows_keeps_its_sign_and_stays_finite() -> None:
    bounds = ConstraintSpec(metric="c", min=-1e308, max=1e308)
    above = bounds.violations(1.7e308)
    below = bounds.violations(-1.7e308)
    assert all(math.isfinite(value) for value in (*above.values(), *below.values()))
    assert above == {"c<=1e+308": pytest.approx(7e307), "c>=-1e+308": -sys.float_info.max}
    assert below == {"c<=1e+308": -sys.float_info.max, "c>=-1e+308": pytest.approx(7e307)}


def test_a_constraint_violation_within_range_is_the_plain_difference() -> None:
    assert ConstraintSpec(metric="c", max=5).violations(7) == {"c<=5": 2}


@pytest.mark.parametrize("figure", [math.nan, math.inf, [1.0, -math.inf]])
def test_a_pre_flight_figure_that_is_not_finite_is_refused(figure: object) -> None:
    with pytest.raises(ValidationError) as refused:
        CheckOutcome.model_validate(
            {"name": "initial_loss", "passed": False, "figures": {"x": figure}}
        )
    assert refused.value.errors()[0]["loc"][:2] == ("figures", "x")


def test_two_bounds_on_one_figure_keep_names_of_their_own() -> None:
    first = ConstraintSpec(metric="m", max=1).violations(1.00000005)
    second = ConstraintSpec(metric="m", max=1.0000001).violations(1.00000005)
    assert list(first) == ["m<=1"] and list(second) == ["m<=1.0000001"]
    assert first["m<=1"] > 0 and second["m<=1.0000001"] < 0
