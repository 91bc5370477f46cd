"""Model builders: an MLP of ``layers`` x ``hidden`` units and its activation and initialisation.

Every hidden block is Linear → (BatchNorm) → activation → (Dropout). ``init`` ``xavier`` or
``kaiming`` (MSRA) sets the linear and convolution weights (biases to zero); ``default`` keeps
PyTorch's own.
"""

from __future__ import annotations

from typing import Literal

from torch import nn

from service.trainer_catalog import MLPParameters

_ACTIVATIONS: dict[str, type[nn.Module]] = {
    "relu": nn.ReLU,
    "leaky_relu": nn.LeakyReLU,
    "elu": nn.ELU,
    "selu": nn.SELU,
    "tanh": nn.Tanh,
}
# The names torch.nn.init knows a gain for.
Nonlinearity = Literal["linear", "relu", "leaky_relu", "tanh"]
_GAINS: dict[str, Nonlinearity] = {
    "relu": "relu",
    "leaky_relu": "leaky_relu",
    "elu": "relu",
    "selu": "linear",
}


def activation(name: str) -> nn.Module:
    """A fresh activation module by name."""
    return _ACTIVATIONS[name]()


def build_model(num_features: int, num_classes: int, hp: MLPParameters) -> nn.Sequential:
    """``hp.layers`` hidden blocks of width ``hp.hidden``, then a linear layer to the classes."""
    blocks: list[nn.Module] = []
    width_in = num_features
    for _ in range(hp.layers):
        blocks.append(nn.Linear(width_in, hp.hidden))
        if hp.batch_norm:
            blocks.append(nn.BatchNorm1d(hp.hidden))
        blocks.append(activation(hp.activation))
        if hp.dropout > 0:
            blocks.append(nn.Dropout(hp.dropout))
        width_in = hp.hidden
    blocks.append(nn.Linear(width_in, num_classes))
    model = nn.Sequential(*blocks)
    initialise(model, hp)
    return model


def initialise(model: nn.Module, hp: MLPParameters) -> None:
    """Apply ``hp.init`` to every linear and convolution layer of ``model``."""
    if hp.init == "default":
        return
    nonlinearity = _GAINS.get(hp.activation, "tanh")
    for module in model.modules():
        if not isinstance(module, nn.Linear | nn.Conv2d):
            continue
        if hp.init == "xavier":
            nn.init.xavier_uniform_(module.weight, gain=nn.init.calculate_gain(nonlinearity))
        else:
            nn.init.kaiming_normal_(module.weight, nonlinearity=_kaiming_nonlinearity(hp))
        if module.bias is not None:
            nn.init.zeros_(module.bias)


def _kaiming_nonlinearity(hp: MLPParameters) -> Nonlinearity:
    return "leaky_relu" if hp.activation == "leaky_relu" else "relu"
