"""The searchable optimizers: SGD, SGD with momentum, Nesterov, RMSProp, Adam and AdamW.

Each reads only its own sub-parameters (``momentum``; ``rmsprop_alpha`` and ``eps``; ``beta1``,
``beta2`` and ``eps``). ``weight_decay`` is the L2 penalty; AdamW applies it decoupled.
"""

from __future__ import annotations

from collections.abc import Iterable

import torch

from service.trainer_catalog import MLPParameters


def build_optimizer(
    parameters: Iterable[torch.nn.Parameter] | torch.nn.Module, hp: MLPParameters
) -> torch.optim.Optimizer:
    """The optimizer ``hp.optimizer`` over ``parameters`` (a model's, or the parameters given)."""
    params = list(
        parameters.parameters() if isinstance(parameters, torch.nn.Module) else parameters
    )
    decay = hp.weight_decay
    if hp.optimizer == "sgd":
        return torch.optim.SGD(params, lr=hp.lr, weight_decay=decay)
    if hp.optimizer in ("sgd_momentum", "nesterov"):
        nesterov = hp.optimizer == "nesterov"
        return torch.optim.SGD(
            params, lr=hp.lr, momentum=hp.momentum, nesterov=nesterov, weight_decay=decay
        )
    if hp.optimizer == "rmsprop":
        return torch.optim.RMSprop(
            params, lr=hp.lr, alpha=hp.rmsprop_alpha, eps=hp.eps, weight_decay=decay
        )
    betas = (hp.beta1, hp.beta2)
    if hp.optimizer == "adamw":
        return torch.optim.AdamW(params, lr=hp.lr, betas=betas, eps=hp.eps, weight_decay=decay)
    return torch.optim.Adam(params, lr=hp.lr, betas=betas, eps=hp.eps, weight_decay=decay)
