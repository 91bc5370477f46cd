"""A small CNN for square single-channel images given as flat rows (the 8x8 digits: 64 features).

Two 3x3 convolutions of ``channels`` filters (each with optional batch norm and the chosen
activation), a 2x2 max-pool, then ``layers`` hidden linear blocks as in the MLP.
"""

from __future__ import annotations

import math

from torch import nn

from service.trainer_catalog import MLPParameters
from workers.trainers.architectures import activation, initialise


def image_side(num_features: int) -> int:
    """The side of the square image ``num_features`` pixels make; ``ValueError`` if none."""
    side = math.isqrt(num_features)
    if side * side != num_features or side < 2:
        raise ValueError(f"a cnn needs square images: {num_features} features are not nxn")
    return side


def build_cnn(num_features: int, num_classes: int, hp: MLPParameters) -> nn.Sequential:
    """The CNN for ``num_features`` = side² pixels and ``num_classes`` classes."""
    side = image_side(num_features)
    blocks: list[nn.Module] = [nn.Unflatten(1, (1, side, side))]
    channels_in = 1
    for _ in range(2):
        blocks.append(nn.Conv2d(channels_in, hp.channels, kernel_size=3, padding=1))
        if hp.batch_norm:
            blocks.append(nn.BatchNorm2d(hp.channels))
        blocks.append(activation(hp.activation))
        channels_in = hp.channels
    blocks += [nn.MaxPool2d(2), nn.Flatten()]
    width_in = hp.channels * (side // 2) ** 2
    for _ in range(hp.layers):
        blocks += [nn.Linear(width_in, hp.hidden), activation(hp.activation)]
        if hp.dropout > 0:
            blocks.append(nn.Dropout(hp.dropout))
        width_in = hp.hidden
    blocks.append(nn.Linear(width_in, num_classes))
    model = nn.Sequential(*blocks)
    initialise(model, hp)
    return model
