"""A trial's records on the worker side, without a server: registered data read through a
fetcher, the provenance ``load_split`` notes, and the best checkpoint ``keep_best`` keeps."""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import pytest
import torch
from torch.nn import functional

from service.artifacts import model_metadata
from tests.support.datasets import blobs, npz_bytes
from workers.checkpoints import checkpoint_bytes, keep_best, load_checkpoint
from workers.job_models import model_builder
from workers.provenance import (
    DataProvenance,
    DatasetFetcher,
    TrialContext,
    registered_datasets,
    trial_context,
)
from workers.trainers.base import TrialRun
from workers.trainers.datasets import load_split
from workers.trainers.mlp import MLPTrainer


def local_fetcher(tmp_path: Path) -> tuple[str, DatasetFetcher]:
    content = npz_bytes(X=blobs()[0], y=blobs()[1])
    path = tmp_path / "blobs.npz"
    path.write_bytes(content)
    sha256 = hashlib.sha256(content).hexdigest()
    return sha256, lambda reference: (sha256, "npz", None, str(path))


def test_a_registered_data_set_is_read_through_the_fetcher_and_split_by_seed(
    tmp_path: Path,
) -> None:
    sha256, fetch = local_fetcher(tmp_path)
    with registered_datasets(fetch):
        split = load_split("registered:blobs", 4)
        again = load_split("registered:blobs", 4)
        other = load_split("registered:blobs", 5)
    assert split is again
    assert split.content_sha256 == sha256
    assert (split.num_features, split.num_classes) == (5, 3)
    assert len(split.train.labels) + len(split.validation.labels) + len(split.test.labels) == 180
    assert split.split_sha256 == again.split_sha256 != other.split_sha256


def test_a_registered_data_set_outside_a_worker_says_why_it_cannot_be_read() -> None:
    with pytest.raises(ValueError, match="registered data set"):
        load_split("registered:blobs", 0)


def test_inside_a_trial_load_split_notes_the_data_once(tmp_path: Path) -> None:
    seen: list[DataProvenance] = []
    context = TrialContext(1, "mlp", {}, {}, seed=3, on_data=seen.append)
    with trial_context(context):
        load_split("wine", 2)
        load_split("wine", 2)
    assert len(seen) == 1
    assert seen[0].dataset == "wine" and seen[0].split_seed == 2
    assert seen[0].split_sizes == {"train": 106, "validation": 36, "test": 36}
    assert len(seen[0].data_sha256) == 64


def test_keep_best_keeps_the_weights_of_the_lowest_loss_only() -> None:
    model = torch.nn.Linear(2, 2)
    context = TrialContext(1, "mlp", {}, {}, seed=0)
    with trial_context(context):
        keep_best(model, 0.5)
        kept = model.weight.detach().clone()
        with torch.no_grad():
            model.weight.add_(1.0)
        keep_best(model, 0.7)  # worse: ignored
        keep_best(model, float("nan"))  # not a loss: ignored
    assert context.best.value == 0.5
    assert context.best.state is not None
    assert torch.equal(context.best.state["weight"], kept)
    keep_best(model, 0.1)  # outside a trial: nothing to keep it in, and no error


def test_the_checkpoint_rebuilds_the_model_of_the_best_epoch() -> None:
    settings = {"name": "mlp", "dataset": "wine", "epochs": 6, "seed": 3}
    run = TrialRun(1, 1, 0, params={"lr": 0.01}, settings=settings, seed=7)
    context = TrialContext(1, "mlp", run.params, settings, seed=7)
    with trial_context(context):
        result = MLPTrainer().train(run, lambda epoch, value: False)
    content = checkpoint_bytes(context)
    assert content is not None
    info = model_metadata(content)
    assert info["data_sha256"] == load_split("wine", 3).content_sha256
    model = load_checkpoint(content)
    validation = load_split("wine", 3).validation
    with torch.no_grad():
        logits = model(torch.tensor(validation.features))
        loss = float(functional.cross_entropy(logits, torch.tensor(validation.labels)))
    assert loss == pytest.approx(result.value, abs=1e-6)


def test_a_trainer_on_data_of_its_own_states_the_sizes_its_checkpoint_rebuilds_from() -> None:
    """Without load_split the context knows no data: the trainer states the model's sizes to
    keep_best, and the checkpoint rebuilds (as the vault and ensembles do)."""
    settings = {"name": "mlp", "dataset": "wine", "epochs": 1}
    params = {"hidden": 8, "layers": 1}
    context = TrialContext(1, "mlp", params, settings, seed=0)
    model = model_builder("mlp")(settings, params, 13, 3)
    with trial_context(context):
        keep_best(model, 0.5, num_features=13, num_classes=3)
    info = model_metadata(checkpoint_bytes(context) or b"")
    assert (info["num_features"], info["num_classes"]) == (13, 3)
    rebuilt = load_checkpoint(checkpoint_bytes(context) or b"")
    for name, tensor in model.state_dict().items():
        assert torch.equal(rebuilt.state_dict()[name], tensor)


def test_a_checkpoint_without_the_model_s_sizes_says_why_it_cannot_be_rebuilt() -> None:
    context = TrialContext(1, "mlp", {}, {"name": "mlp"}, seed=0)
    with trial_context(context):
        keep_best(torch.nn.Linear(2, 2), 0.5)  # data of its own, no sizes stated
    with pytest.raises(ValueError, match="called keep_best without them"):
        load_checkpoint(checkpoint_bytes(context) or b"")


@pytest.mark.parametrize(
    ("num_features", "num_classes"), [(13, None), (None, 3), (13, 0), (2.5, 3), ("13", 3)]
)
def test_keep_best_refuses_sizes_a_checkpoint_could_not_rebuild_from(
    num_features: object, num_classes: object
) -> None:
    with pytest.raises(ValueError, match="num_features and num_classes both"):
        keep_best(torch.nn.Linear(2, 2), 0.5, num_features=num_features, num_classes=num_classes)  # type: ignore[arg-type]


def test_keep_best_takes_numpy_integers_for_the_sizes() -> None:
    context = TrialContext(1, "mlp", {}, {"name": "mlp"}, seed=0)
    labels = np.array([0, 1, 2])
    with trial_context(context):
        keep_best(
            torch.nn.Linear(2, 3), 0.5, num_features=np.int64(2), num_classes=labels.max() + 1
        )
    info = model_metadata(checkpoint_bytes(context) or b"")
    assert (info["num_features"], info["num_classes"]) == (2, 3)
