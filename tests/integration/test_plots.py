"""The study's figures and parameter importances, over HTTP and through ``hpo plot``."""

from __future__ import annotations

import io
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import requests
from PIL import Image

from cli.local_stack import LocalStack
from client import HPOClient
from tests.integration.conftest import unique

pytestmark = pytest.mark.integration
KINDS = ("history", "intermediate", "importance", "parallel_coordinate")
PARAMS = {"lr", "hidden", "optimizer"}


def wine_study(n_trials: int) -> dict[str, Any]:
    """A small study with three parameters and Hyperband pruning over 3 epochs."""
    return {
        "name": unique("plots-wine"),
        "space": {
            "lr": {"type": "float", "low": 1e-4, "high": 0.1, "log": True},
            "hidden": {"type": "int", "low": 16, "high": 64, "step": 16},
            "optimizer": {"type": "categorical", "choices": ["sgd", "adam"]},
        },
        "sampler": {"name": "tpe", "seed": 5, "n_startup_trials": 4},
        "budget": {"n_trials": n_trials, "max_concurrent_trials": 2},
        "trainer": {"name": "mlp", "dataset": "wine", "epochs": 3},
    }


@pytest.fixture(scope="module")
def hpo(stack: LocalStack) -> HPOClient:
    return HPOClient(stack.url)


@pytest.fixture(scope="module")
def finished_id(hpo: HPOClient) -> int:
    study = hpo.submit(wine_study(n_trials=8))
    return hpo.wait(study.study_id, timeout=240, poll=0.3).study_id


def external_study(hpo: HPOClient, values: list[float]) -> int:
    """A study whose trials this test completes itself, one per value (no trainer, no epochs)."""
    study = hpo.submit(
        {
            "name": unique("plots-few"),
            "space": {"x": {"type": "float", "low": 0.0, "high": 1.0}},
            "budget": {"n_trials": 5, "max_concurrent_trials": 1},
        }
    )
    for value in values:
        hpo.complete(hpo.ask(study.study_id), value=value)
    return study.study_id


def decoded(png: bytes) -> Image.Image:
    image = Image.open(io.BytesIO(png))
    image.load()  # decodes every pixel: a truncated file fails here
    return image


@pytest.mark.slow
@pytest.mark.parametrize("kind", KINDS)
def test_each_plot_is_a_real_png(stack: LocalStack, finished_id: int, kind: str) -> None:
    response = requests.get(f"{stack.url}/studies/{finished_id}/plots/{kind}.png", timeout=60)
    assert response.status_code == 200, response.text
    assert response.headers["Content-Type"] == "image/png"
    image = decoded(response.content)
    assert image.format == "PNG" and image.size == (900, 550)
    assert len(image.getcolors(maxcolors=1 << 16) or range(1 << 16)) > 10  # not a blank canvas


@pytest.mark.slow
def test_importance_names_the_study_parameters(hpo: HPOClient, finished_id: int) -> None:
    found = hpo.importance(finished_id)
    assert found.evaluator == "PedAnovaImportanceEvaluator"
    assert set(found.importances) <= PARAMS and found.importances
    assert found.n_complete_trials == hpo.status(finished_id).counts["complete"]
    assert sum(found.importances.values()) == pytest.approx(1.0)
    assert all(value >= 0 for value in found.importances.values())


def test_an_unknown_kind_is_refused_naming_kind(stack: LocalStack) -> None:
    response = requests.get(f"{stack.url}/studies/1/plots/contour.png", timeout=30)
    assert response.status_code == 422
    assert any(problem["field"].endswith("kind") for problem in response.json()["problems"])


def test_too_few_trials_is_a_clear_conflict(stack: LocalStack, hpo: HPOClient) -> None:
    empty = external_study(hpo, [])
    one = external_study(hpo, [0.5])
    for study_id, path in (
        (one, "importance"),
        (one, "plots/importance.png"),
        (empty, "plots/history.png"),
    ):
        response = requests.get(f"{stack.url}/studies/{study_id}/{path}", timeout=30)
        assert response.status_code == 409, (path, response.text)
        assert response.json()["problems"][0]["field"] == "study_id"
    assert (
        "need at least 2" in requests.get(f"{stack.url}/studies/{one}/importance", timeout=30).text
    )
    history = requests.get(f"{stack.url}/studies/{one}/plots/history.png", timeout=30)
    assert history.status_code == 200 and decoded(history.content).format == "PNG"


def test_importance_of_an_objective_that_never_varies_is_a_clear_conflict(
    stack: LocalStack, hpo: HPOClient
) -> None:
    same = external_study(hpo, [0.5, 0.5, 0.5])  # Optuna would share 0 out: x 1.0
    for path in ("importance", "plots/importance.png"):
        response = requests.get(f"{stack.url}/studies/{same}/{path}", timeout=30)
        assert response.status_code == 409, (path, response.text)
        assert "the same value" in response.json()["error"]


def test_intermediate_values_of_failed_trials_alone_are_nothing_to_draw(
    stack: LocalStack, hpo: HPOClient
) -> None:
    """Optuna's figure leaves failed trials out: it drew empty axes (200)."""
    study = hpo.submit(
        {"name": unique("plots-failed"), "space": {"x": {"type": "float", "low": 0, "high": 1}}}
    )
    trial = hpo.ask(study.study_id)
    hpo.report(trial, 1, 0.5)
    hpo.complete(trial, state="failed", reason="diverged")
    response = requests.get(
        f"{stack.url}/studies/{study.study_id}/plots/intermediate.png", timeout=30
    )
    assert response.status_code == 409, response.text
    assert "no trial that reported an intermediate value" in response.json()["error"]


def test_an_unknown_study_is_404(stack: LocalStack) -> None:
    for path in ("importance", "plots/history.png"):
        assert requests.get(f"{stack.url}/studies/999999/{path}", timeout=30).status_code == 404


@pytest.mark.slow
def test_hpo_plot_writes_every_figure(stack: LocalStack, finished_id: int, tmp_path: Path) -> None:
    out = tmp_path / "figures"
    done = hpo_plot(stack, finished_id, out)
    assert done.returncode == 0, done.stderr
    written = sorted(path.name for path in out.iterdir())
    assert written == sorted(f"study-{finished_id}-{kind}.png" for kind in KINDS)
    for path in out.iterdir():
        assert decoded(path.read_bytes()).size == (900, 550)
    copy_for_readme(out / f"study-{finished_id}-history.png")


def test_hpo_plot_of_nothing_to_draw_writes_no_folder(
    stack: LocalStack, hpo: HPOClient, tmp_path: Path
) -> None:
    empty = external_study(hpo, [])
    for study_id, message in ((empty, "skipped history"), (999999, "999999")):
        out = tmp_path / f"figures-{study_id}"
        done = hpo_plot(stack, study_id, out)
        assert done.returncode == 1
        assert message in done.stderr
        assert not out.exists()


def hpo_plot(stack: LocalStack, study_id: int, out: Path) -> subprocess.CompletedProcess[str]:
    """``hpo plot STUDY --out OUT`` against the stack, as a user runs it."""
    return subprocess.run(
        [sys.executable, "-m", "cli", "plot", str(study_id), "--out", str(out)],
        env={**os.environ, **stack.env()},
        capture_output=True,
        text=True,
        timeout=120,
    )


def copy_for_readme(history: Path) -> None:
    """Keep the history figure where the README shows it, when asked (HPO_DOCS_IMAGES)."""
    folder = os.environ.get("HPO_DOCS_IMAGES")
    if folder:
        Path(folder).mkdir(parents=True, exist_ok=True)
        (Path(folder) / "history.png").write_bytes(history.read_bytes())


def test_values_too_large_to_draw_are_a_clear_conflict(stack: LocalStack, hpo: HPOClient) -> None:
    huge = external_study(hpo, [1e308, -1e308, 1.0])
    for kind in ("history", "parallel_coordinate"):
        response = requests.get(f"{stack.url}/studies/{huge}/plots/{kind}.png", timeout=30)
        assert response.status_code == 409, (kind, response.text)
        assert "cannot be drawn" in response.json()["problems"][0]["problem"]
    # The failed drawings left nothing behind: another study's figure is drawn as ever.
    fine = external_study(hpo, [0.5, 0.25])
    history = requests.get(f"{stack.url}/studies/{fine}/plots/history.png", timeout=30)
    assert history.status_code == 200 and decoded(history.content).format == "PNG"
