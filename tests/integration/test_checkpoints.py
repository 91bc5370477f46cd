"""Each trial keeps its best checkpoint: uploaded by the worker as safetensors, linked to the
trial, downloadable (the study's best model too), rebuilt from its metadata as the README shows,
and deleted with its study."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import requests
import torch
from safetensors import safe_open
from safetensors.torch import load_file, save
from sqlalchemy import create_engine, text
from torch.nn import functional

from cli.local_stack import LocalStack
from client import HPOError
from tests.integration.conftest import unique
from tests.support.datasets import blobs, npz_bytes, registered_study
from tests.support.studies import wait_for_end
from workers.dataset_cache import DatasetCache
from workers.job_models import model_builder
from workers.provenance import registered_datasets
from workers.trainers.datasets import load_split, split_indices

pytestmark = [pytest.mark.integration, pytest.mark.slow]
N_TRIALS = 4


@pytest.fixture(scope="module")
def finished(stack: LocalStack) -> dict[str, Any]:
    client = stack.client()
    features, labels = blobs(seed=1)
    dataset = client.register_dataset(unique("ckpt"), npz_bytes(X=features, y=labels), "npz")
    spec = registered_study(unique("ckpt-study"), dataset["reference"], N_TRIALS, epochs=6)
    created = client.create_study(spec)
    study = wait_for_end(client, created["study_id"])
    return {
        "dataset": dataset,
        "study": study,
        "trials": client.trials(created["study_id"]),
        "best": client.best(created["study_id"]),
    }


def artifact_rows(stack: LocalStack, study_id: int) -> int:
    engine = create_engine(stack.database_url)
    try:
        with engine.connect() as connection:
            query = text("SELECT COUNT(*) FROM hpo_artifacts WHERE study_id = :id")
            return int(connection.execute(query, {"id": study_id}).scalar_one())
    finally:
        engine.dispose()


def test_every_trial_keeps_a_checkpoint_of_its_model(
    stack: LocalStack, finished: dict[str, Any], tmp_path: Path
) -> None:
    assert [t["state"] for t in finished["trials"]] == ["complete"] * N_TRIALS
    for trial in finished["trials"]:
        path = tmp_path / f"{trial['trial_id']}.safetensors"
        path.write_bytes(stack.client().checkpoint(trial["trial_id"]))
        with safe_open(str(path), framework="pt") as file:
            info = json.loads(file.metadata()["hpo.model"])
        assert info["trainer"] == "mlp"
        assert info["params"] == trial["params"]
        assert info["data_sha256"] == finished["dataset"]["sha256"]
        assert (info["num_features"], info["num_classes"]) == (5, 3)
        assert info["validation_loss"] == pytest.approx(trial["value"])
    assert artifact_rows(stack, finished["study"]["study_id"]) == N_TRIALS


def test_the_best_model_rebuilt_as_documented_scores_the_reported_loss(
    stack: LocalStack, finished: dict[str, Any], tmp_path: Path
) -> None:
    path = str(tmp_path / "best.safetensors")
    answer = requests.get(
        f"{stack.url}/studies/{finished['study']['study_id']}/best/model", timeout=30
    )
    assert answer.status_code == 200
    assert answer.headers["X-HPO-Trial-Id"] == str(finished["best"]["trial_id"])
    Path(path).write_bytes(answer.content)

    # The README's code, as written there.
    with safe_open(path, framework="pt") as file:
        info = json.loads(file.metadata()["hpo.model"])
    build = model_builder(info["trainer"])
    model = build(info["settings"], info["params"], info["num_features"], info["num_classes"])
    model.load_state_dict(load_file(path))
    model.eval()

    settings = info["settings"]
    with registered_datasets(DatasetCache(stack.client(), tmp_path / "cache").fetch):
        split = load_split(settings["dataset"], settings["seed"])
    assert split.content_sha256 == finished["dataset"]["sha256"]
    features = torch.tensor(split.validation.features)
    labels = torch.tensor(split.validation.labels)
    with torch.no_grad():
        loss = float(functional.cross_entropy(model(features), labels))
    assert loss == pytest.approx(finished["best"]["value"], abs=1e-5)

    # The README's raw rows: the registered file's validation rows, standardised with the
    # checkpoint's figures, score the same loss; its outputs name the file's labels.
    raw_features, raw_labels = blobs(seed=1)
    fractions = settings.get("validation_fraction", 0.2), settings.get("test_fraction", 0.2)
    rows = split_indices(raw_labels, settings["seed"], *fractions)[1]
    inputs = (raw_features[rows] - np.array(info["feature_mean"])) / np.array(info["feature_scale"])
    with torch.no_grad():
        outputs = model(torch.as_tensor(inputs, dtype=torch.float32))
    raw_loss = float(functional.cross_entropy(outputs, torch.as_tensor(raw_labels[rows])))
    assert raw_loss == pytest.approx(finished["best"]["value"], abs=1e-4)
    assert info["classes"] == [str(label) for label in sorted(set(raw_labels.tolist()))]


def checkpoint_file() -> bytes:
    weights = {"layer.weight": torch.ones(2, 3)}
    return save(weights, metadata={"hpo.model": json.dumps({"trainer": "external"})})


def put(stack: LocalStack, trial_id: int, content: bytes, lease: str | None) -> requests.Response:
    return requests.put(
        f"{stack.url}/trials/{trial_id}/checkpoint",
        params={"lease": lease} if lease else {},
        data=content,
        headers={"Content-Type": "application/octet-stream"},
        timeout=30,
    )


def test_a_checkpoint_is_checked_and_held_to_the_trials_lease(stack: LocalStack) -> None:
    client = stack.client()
    study = client.create_study(
        {"name": unique("external"), "space": {"x": {"type": "float", "low": 0, "high": 1}}}
    )
    trial = client.ask(study["study_id"])
    trial_id, lease = trial["trial_id"], trial["lease"]
    not_safetensors = put(stack, trial_id, b"\x10\x00\x00\x00\x00\x00\x00\x00{not json}", lease)
    assert not_safetensors.status_code == 422
    assert not_safetensors.json()["problems"][0]["field"] == "body"
    unlabelled = put(stack, trial_id, save({"w": torch.ones(1)}), lease)
    assert unlabelled.status_code == 422 and "hpo.model" in unlabelled.text
    assert put(stack, trial_id, checkpoint_file(), "not-the-lease").status_code == 409
    with pytest.raises(HPOError) as missing:
        client.checkpoint(trial_id)
    assert missing.value.status == 404

    assert put(stack, trial_id, checkpoint_file(), lease).status_code == 200
    assert client.checkpoint(trial_id) == checkpoint_file()
    client.complete(trial_id, value=0.5, lease=lease)
    assert put(stack, trial_id, checkpoint_file(), lease).status_code == 409


def test_deleting_a_study_deletes_its_checkpoints(stack: LocalStack) -> None:
    client = stack.client()
    study = client.create_study(
        {"name": unique("deleted"), "space": {"x": {"type": "float", "low": 0, "high": 1}}}
    )
    study_id = study["study_id"]
    trial = client.ask(study_id)
    client.put_checkpoint(trial["trial_id"], checkpoint_file(), trial["lease"])
    client.complete(trial["trial_id"], value=0.1, lease=trial["lease"])
    assert len(client.best_model(study_id)) == len(checkpoint_file())
    assert artifact_rows(stack, study_id) == 1

    client.delete(study_id)
    assert artifact_rows(stack, study_id) == 0
    with pytest.raises(HPOError) as gone:
        client.checkpoint(trial["trial_id"])
    assert gone.value.status == 404
