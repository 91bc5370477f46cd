"""Each optimizer choice builds its torch optimizer with its own sub-parameters, and they act."""

from __future__ import annotations

from typing import Any

import pytest
import torch

from service.trainer_catalog import OPTIMIZER_SUB_PARAMETERS, OPTIMIZERS, MLPParameters
from workers.trainers.optimizers import build_optimizer


def descend(params: dict[str, Any], steps: int = 5) -> float:
    """Minimise f(w) = w (a constant gradient of 1) from w = 0; where w ends up."""
    weight = torch.nn.Parameter(torch.zeros(1))
    optimizer = build_optimizer([weight], MLPParameters.from_params({"lr": 0.1, **params}))
    for _ in range(steps):
        optimizer.zero_grad()
        weight.sum().backward()
        optimizer.step()
    return float(weight.detach())


@pytest.mark.parametrize(
    ("choice", "kind", "options"),
    [
        ("sgd", torch.optim.SGD, {"momentum": 0, "nesterov": False}),
        ("sgd_momentum", torch.optim.SGD, {"momentum": 0.8, "nesterov": False}),
        ("nesterov", torch.optim.SGD, {"momentum": 0.8, "nesterov": True}),
        ("rmsprop", torch.optim.RMSprop, {"alpha": 0.95, "eps": 1e-6}),
        ("adam", torch.optim.Adam, {"betas": (0.8, 0.99), "eps": 1e-6}),
        ("adamw", torch.optim.AdamW, {"betas": (0.8, 0.99), "eps": 1e-6}),
    ],
)
def test_each_choice_builds_its_optimizer_with_its_sub_parameters(
    choice: str, kind: type[torch.optim.Optimizer], options: dict[str, Any]
) -> None:
    hp = MLPParameters.from_params(
        {"optimizer": choice, "momentum": 0.8, "rmsprop_alpha": 0.95, "beta1": 0.8}
        | {"beta2": 0.99, "eps": 1e-6}
    )
    optimizer = build_optimizer(torch.nn.Linear(2, 2), hp)
    assert type(optimizer) is kind
    for name, value in options.items():
        assert optimizer.defaults[name] == value


def test_every_optimizer_is_offered_and_every_sub_parameter_belongs_to_real_choices() -> None:
    assert set(OPTIMIZERS) == {"sgd", "sgd_momentum", "nesterov", "rmsprop", "adam", "adamw"}
    for owners in OPTIMIZER_SUB_PARAMETERS.values():
        assert set(owners) <= set(OPTIMIZERS)


def test_momentum_accelerates_on_a_constant_gradient() -> None:
    plain = descend({"optimizer": "sgd"})
    heavy = descend({"optimizer": "sgd_momentum", "momentum": 0.9})
    assert plain == pytest.approx(-0.5)  # five steps of lr x gradient
    assert heavy < plain  # momentum has built up speed


def test_nesterov_looks_ahead_and_differs_from_plain_momentum() -> None:
    heavy = descend({"optimizer": "sgd_momentum", "momentum": 0.9})
    ahead = descend({"optimizer": "nesterov", "momentum": 0.9})
    assert ahead < heavy


def test_adamw_decays_weights_decoupled_from_the_gradient() -> None:
    # With no gradient (zero loss), L2 inside Adam is normalised away (a step of about lr),
    # while AdamW shrinks by lr x decay x w: the two decays differ.
    def shrink(choice: str) -> float:
        weight = torch.nn.Parameter(torch.ones(1))
        hp = MLPParameters.from_params({"optimizer": choice, "lr": 0.01, "weight_decay": 0.1})
        optimizer = build_optimizer([weight], hp)
        optimizer.zero_grad()
        (weight * 0).sum().backward()
        optimizer.step()
        return 1 - float(weight)

    assert shrink("adamw") == pytest.approx(0.01 * 0.1, rel=1e-4)
    assert shrink("adam") == pytest.approx(0.01, rel=1e-3)
