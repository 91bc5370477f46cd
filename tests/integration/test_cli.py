"""The ``hpo`` command against a running service, and the one-command demo."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from cli.local_stack import LocalStack
from tests.integration.conftest import unique

pytestmark = pytest.mark.integration


def hpo(stack: LocalStack, *args: str, timeout_s: float = 240) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, **stack.env()}
    return subprocess.run(
        [sys.executable, "-m", "cli", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout_s,
    )


@pytest.mark.slow
def test_submit_a_yaml_study_and_read_status_and_best(stack: LocalStack, tmp_path: Path) -> None:
    study = {
        "name": unique("cli-yaml"),
        "space": {"lr": {"type": "float", "low": 1e-3, "high": 0.1, "log": True}},
        "budget": {"n_trials": 3, "max_concurrent_trials": 2},
        "trainer": {"name": "mlp", "dataset": "wine", "epochs": 3},
        # Held (preparing) until its checks pass: --wait follows it through to its end.
        "preflight": {"refuse_on_failure": True},
    }
    path = tmp_path / "study.yaml"
    path.write_text(yaml.safe_dump(study))
    submitted = hpo(stack, "submit", str(path), "--wait")
    assert submitted.returncode == 0, submitted.stderr + stack.logs()
    head, _, tail = submitted.stdout.partition("}\n{")
    study_id = json.loads(head + "}")["study_id"]
    assert 1e-3 <= json.loads("{" + tail)["params"]["lr"] <= 0.1
    status = json.loads(hpo(stack, "status", str(study_id)).stdout)
    assert (
        status["state"] == "complete"
        and status["counts"]["complete"] + status["counts"]["pruned"] == 3
    )
    best = json.loads(hpo(stack, "best", str(study_id)).stdout)
    assert best["value"] == status["best"]["value"]


@pytest.mark.slow
def test_submit_wait_prints_the_pareto_front_of_a_study_of_several_objectives(
    stack: LocalStack, tmp_path: Path
) -> None:
    """It exited 1 (the API's 409 before this stop: such a study has no one best trial)."""
    study = {
        "name": unique("cli-pareto"),
        "space": {"lr": {"type": "float", "low": 1e-3, "high": 0.1, "log": True}},
        "objectives": [
            {"metric": "validation_loss", "direction": "minimize"},
            {"metric": "n_parameters", "direction": "minimize"},
        ],
        "budget": {"n_trials": 2, "max_concurrent_trials": 2},
        "trainer": {"name": "mlp", "dataset": "wine", "epochs": 2},
        "preflight": {"enabled": False},
    }
    path = tmp_path / "pareto.json"
    path.write_text(json.dumps(study))
    submitted = hpo(stack, "submit", str(path), "--wait")
    assert submitted.returncode == 0, submitted.stderr + stack.logs()
    _, _, tail = submitted.stdout.partition("}\n{")
    front = json.loads("{" + tail)
    assert front["trials"] and all(trial["state"] == "complete" for trial in front["trials"])


def test_submit_reports_a_bad_file_clearly(stack: LocalStack, tmp_path: Path) -> None:
    path = tmp_path / "bad.json"
    path.write_text(
        json.dumps({"name": unique("bad"), "space": {"x": {"type": "float", "low": 1, "high": 0}}})
    )
    result = hpo(stack, "submit", str(path))
    assert result.returncode != 0
    assert "space.x" in result.stdout + result.stderr


def test_submit_wait_gives_up_after_its_timeout(stack: LocalStack, tmp_path: Path) -> None:
    path = tmp_path / "external.json"  # no trainer: only another program would finish its trials
    path.write_text(
        json.dumps(
            {"name": unique("cli-wait"), "space": {"x": {"type": "float", "low": 0, "high": 1}}}
        )
    )
    result = hpo(stack, "submit", str(path), "--wait", "--timeout", "1")
    assert result.returncode == 1, result.stderr
    study_id = json.loads(result.stdout)["study_id"]
    assert f"study {study_id} is still running after 1 s" in result.stderr
    assert f"hpo watch {study_id}" in result.stderr
    assert f"study {study_id} has no trainer: no worker runs its trials" in result.stderr
    assert json.loads(hpo(stack, "status", str(study_id)).stdout)["state"] == "running"


@pytest.mark.slow
def test_the_demo_prints_the_best_hyperparameters_found(tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "cli", "demo", "--directory", str(tmp_path / "demo")],
        capture_output=True,
        text=True,
        timeout=400,
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    lines = result.stdout.splitlines()
    summary = next(line for line in lines if "complete," in line and "pruned" in line)
    assert int(summary.split()[0]) + int(summary.split()[2]) == 30
    assert any(line.startswith("best validation loss") for line in lines)
    assert any(line.strip().startswith("lr =") for line in lines)
