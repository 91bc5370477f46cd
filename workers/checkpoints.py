"""Each trial's best checkpoint: the weights of its epoch with the lowest validation loss.

A trainer calls ``keep_best(model, validation_loss)`` after each epoch's validation; inside a
trial (``workers/provenance.py``) the weights are copied when the loss is the best so far, and at
the end the trial runner uploads them as a safetensors file (``PUT /trials/{id}/checkpoint``).
Its metadata holds ``hpo.model``, a JSON string with what rebuilds the model (trainer, settings,
params, num_features, num_classes, the data's SHA-256). Loading never unpickles anything::

    model = load_checkpoint(open("best.safetensors", "rb").read())
"""

from __future__ import annotations

import json
import math
import operator
from typing import Any

import torch
from safetensors.torch import load as load_tensors
from safetensors.torch import save as save_tensors
from torch import nn

from service.artifacts import MODEL_METADATA_KEY, model_metadata
from workers.job_models import model_builder
from workers.provenance import TrialContext, current_trial, trainer_distribution

CHECKPOINT_FORMAT = 1


def keep_best(
    model: nn.Module,
    value: float,
    *,
    num_features: int | None = None,
    num_classes: int | None = None,
) -> None:
    """Keep a CPU copy of ``model``'s weights when ``value`` (a validation loss, lower is
    better) is the trial's best so far. Does nothing outside a trial. A trainer on data of its
    own (not ``load_split``'s) states ``num_features`` and ``num_classes``: its
    ``build_model`` rebuilds the model from them (the vault, ensembles)."""
    sizes = _model_sizes(num_features, num_classes)
    context = current_trial()
    if context is None or not math.isfinite(value) or value >= context.best.value:
        return
    context.best.value = value
    if sizes is not None:
        context.best.num_features, context.best.num_classes = sizes
    context.best.state = {
        name: tensor.detach().to("cpu", copy=True).contiguous()
        for name, tensor in model.state_dict().items()
    }


def _model_sizes(num_features: object, num_classes: object) -> tuple[int, int] | None:
    """Both sizes as whole numbers of at least 1 (a NumPy integer too), or neither given;
    ``ValueError`` at the call for anything else (found later, the checkpoint would not
    upload, or not rebuild)."""
    if num_features is None and num_classes is None:
        return None
    try:
        sizes = (operator.index(num_features), operator.index(num_classes))  # type: ignore[arg-type]
    except TypeError:
        sizes = (0, 0)
    if min(sizes) < 1:
        raise ValueError(
            "keep_best: give num_features and num_classes both, as whole numbers of at least 1 "
            f"(got {num_features!r} and {num_classes!r})"
        )
    return sizes


def checkpoint_bytes(context: TrialContext) -> bytes | None:
    """The trial's best weights as a safetensors file with its ``hpo.model`` metadata, if any."""
    if context.best.state is None:
        return None
    return save_tensors(
        context.best.state, metadata={MODEL_METADATA_KEY: json.dumps(_model_info(context))}
    )


def load_checkpoint(content: bytes) -> nn.Module:
    """The model a checkpoint holds, rebuilt from its metadata, in eval mode, on the CPU."""
    info: dict[str, Any] = model_metadata(content)
    if info.get("num_features") is None or info.get("num_classes") is None:
        raise ValueError(
            "the checkpoint does not say the model's num_features and num_classes: its trainer "
            "loaded data of its own and called keep_best without them"
        )
    build = model_builder(str(info["trainer"]))
    arguments = (
        dict(info["settings"]),
        dict(info["params"]),
        int(info["num_features"]),
        int(info["num_classes"]),
    )
    weights = load_tensors(content)
    _check_shapes(build, arguments, weights)
    model = build(*arguments)
    model.load_state_dict(weights)
    return model.eval()


def _check_shapes(build: Any, arguments: tuple[Any, ...], weights: dict[str, torch.Tensor]) -> None:
    """``ValueError`` where the model the metadata describes (built on PyTorch's meta device:
    shapes, no memory) has other tensors than the checkpoint's weights, before the model is
    built for real: a tenant's checkpoint saying ``num_features`` 3,000,000 made a worker
    allocate 49 GB, for weights of a few kilobytes (the upload's limit bounds the weights)."""
    with torch.device("meta"):
        described = build(*arguments)
    shapes = {name: tuple(tensor.shape) for name, tensor in described.state_dict().items()}
    held = {name: tuple(tensor.shape) for name, tensor in weights.items()}
    if shapes != held:
        wrong = sorted(
            name for name in shapes.keys() | held.keys() if shapes.get(name) != held.get(name)
        )
        raise ValueError(
            "the checkpoint's metadata describes a model whose tensors are not its weights "
            f"({', '.join(wrong[:5])}): not a checkpoint of this trial's model"
        )


def _model_info(context: TrialContext) -> dict[str, Any]:
    package, version = trainer_distribution(context.trainer)
    data = context.data
    return {
        "format": CHECKPOINT_FORMAT,
        "trainer": context.trainer,
        "trainer_package": package,
        "trainer_version": version,
        "settings": context.settings,
        "params": context.params,
        "seed": context.seed,
        "num_features": data.num_features if data else context.best.num_features,
        "num_classes": data.num_classes if data else context.best.num_classes,
        "dataset": data.dataset if data else None,
        "data_sha256": data.data_sha256 if data else None,
        # A raw row x is the model's input as (x - feature_mean) / feature_scale; output i is
        # the class classes[i] (all three: a trainer that reads the built-in data only).
        "feature_mean": list(data.feature_mean) or None if data else None,
        "feature_scale": list(data.feature_scale) or None if data else None,
        "classes": list(data.classes) or None if data else None,
        "validation_loss": context.best.value,
        "torch_version": torch.__version__,
    }
