"""``hpo watch ID`` follows a running study and ends with it."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from cli.local_stack import LocalStack
from client import HPOClient
from tests.integration.conftest import unique

pytestmark = [pytest.mark.integration, pytest.mark.slow]
N_TRIALS = 5


def test_watch_ends_with_the_study_and_shows_counts_and_best(stack: LocalStack) -> None:
    hpo = HPOClient(stack.url)
    study = hpo.submit(
        {
            "name": unique("watch-wine"),
            "space": {"lr": {"type": "float", "low": 1e-4, "high": 0.1, "log": True}},
            "sampler": {"name": "random", "seed": 2},
            "budget": {"n_trials": N_TRIALS, "max_concurrent_trials": 2},
            "trainer": {"name": "mlp", "dataset": "wine", "epochs": 3},
        }
    )
    watched = subprocess.run(
        [sys.executable, "-m", "cli", "watch", str(study.study_id), "--poll", "0.3"],
        env={**os.environ, **stack.env(), "COLUMNS": "120"},
        capture_output=True,
        text=True,
        timeout=240,
    )
    assert watched.returncode == 0, watched.stderr + stack.logs()
    final = hpo.status(study.study_id)
    assert final.state == "complete"  # watch returned only once the study had ended
    out = watched.stdout
    assert f"{N_TRIALS}/{N_TRIALS}" in out  # the progress bar, full
    assert "trials by state" in out and "recent prunes" in out
    lines = out.splitlines()
    header_end = next(i for i, line in enumerate(lines) if line.startswith("┡"))  # counts table
    assert "running" in lines[header_end - 1] and "pruned" in lines[header_end - 1]
    cells = [cell.strip() for cell in lines[header_end + 1].strip("│ ").split("│")]
    assert cells == [
        str(final.counts.get(state, 0))
        for state in ("running", "waiting", "complete", "pruned", "fail")
    ]
    assert final.best is not None and f"{final.best.value:.6g}" in out
    assert f"trial #{final.best.number}" in out
    assert f"{N_TRIALS} trials finished" in out
    # The trial list is read again only when the pruned count changed (it was read every poll:
    # 4 MB a second at 8,000 trials); the study itself every poll.
    polls = served(stack, f"GET /studies/{study.study_id} ")
    lists = served(stack, f"GET /studies/{study.study_id}/trials ")
    assert 1 <= lists <= final.counts.get("pruned", 0) + 1 and polls >= 2, (lists, polls)


def served(stack: LocalStack, request: str) -> int:
    """How many requests starting so the API's access log holds."""
    assert stack.api is not None
    lines = stack.api.log_path.read_text().splitlines()
    return sum(f'"{request}HTTP/1.1"' in json.loads(line)["message"] for line in lines)


def test_watch_of_an_unknown_study_fails_clearly(stack: LocalStack) -> None:
    watched = subprocess.run(
        [sys.executable, "-m", "cli", "watch", "999999"],
        env={**os.environ, **stack.env()},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert watched.returncode == 1
    assert "404" in watched.stderr and "no study" in watched.stderr


def test_watch_of_a_study_of_two_objectives_points_to_its_pareto_front(stack: LocalStack) -> None:
    """No single best there: the panel names the objectives and the front's endpoint; a trial
    pruned before any report shows a dash, not 'None'."""
    hpo = HPOClient(stack.url)
    study = hpo.submit(
        {
            "name": unique("watch-two"),
            "space": {"x": {"type": "float", "low": 0.0, "high": 1.0}},
            "objectives": [{"metric": "loss"}, {"metric": "size"}],
            "budget": {"n_trials": 3, "max_concurrent_trials": 1},
        }
    )
    for values in ([0.1, 0.9], [0.9, 0.1]):
        hpo.complete(hpo.ask(study.study_id), values=values)
    hpo.complete(hpo.ask(study.study_id), state="pruned")
    watched = subprocess.run(
        [sys.executable, "-m", "cli", "watch", str(study.study_id)],
        env={**os.environ, **stack.env(), "COLUMNS": "160"},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert watched.returncode == 0, watched.stderr
    out = " ".join(watched.stdout.split())
    assert "2 objectives (loss, size): the best trials are the Pareto front" in out
    assert "no complete trial yet" not in out and "None" not in out
    assert "│ #2 │ — │ — │" in out  # the prunes table's row
