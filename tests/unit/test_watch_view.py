"""What ``hpo watch`` draws of a study: its own age, and its latest prunes by when they ended."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from rich.console import Console

from cli.watch import _progress_bar, study_age, study_view
from client.models import Study, Trial

CREATED = datetime(2026, 12, 7, 9, 0, tzinfo=UTC)


def a_study(**fields: Any) -> Study:
    defaults: dict[str, Any] = {
        "study_id": 1,
        "name": "s",
        "state": "running",
        "direction": "minimize",
        "metric": "validation_loss",
        "n_trials": 10,
        "counts": {"pruned": 3},
        "created_at": CREATED,
        "spec": {},
        "urls": {},
    }
    return Study(**{**defaults, **fields})


def pruned(number: int, ended_minutes: int) -> Trial:
    return Trial(
        trial_id=number + 100,
        number=number,
        state="pruned",
        params={},
        intermediate_values={1: float(number)},
        last_step=1,
        finished_at=CREATED + timedelta(minutes=ended_minutes),
    )


def test_a_study_s_age_is_its_own_and_stops_when_it_ends() -> None:
    running = a_study()
    assert study_age(running, now=CREATED + timedelta(hours=1, seconds=5)) == "1:00:05"
    ended = a_study(state="complete", finished_at=CREATED + timedelta(minutes=10))
    assert study_age(ended, now=CREATED + timedelta(days=1)) == "0:10:00"


def test_the_latest_prunes_come_first_by_when_they_ended_not_by_number() -> None:
    trials = [pruned(1, ended_minutes=9), pruned(2, ended_minutes=3), pruned(3, ended_minutes=6)]
    console = Console(record=True, width=100)
    progress = _progress_bar()
    progress.add_task("s", total=10, age="0:00:01")
    console.print(study_view(a_study(), trials, progress))
    text = console.export_text()
    rows = [line for line in text.splitlines() if "#" in line]
    assert [row.split("#")[1].split()[0] for row in rows] == ["1", "3", "2"]


def test_the_running_trials_count_says_how_many_wait_for_a_worker() -> None:
    study = a_study(counts={"running": 4, "queued": 3, "complete": 2})
    console = Console(record=True, width=120)
    console.print(study_view(study, [], _progress_bar()))
    assert "4 (3 queued)" in console.export_text()
