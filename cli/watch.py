"""``hpo watch ID``: a live terminal view of a study until it ends.

A progress bar of finished trials out of the budget, the trials by state, the best so far and the
latest pruned trials, redrawn every poll (rich's ``Live``). On a pipe rather than a terminal only
the final view is printed.
"""

from __future__ import annotations

import sys
import time
from datetime import UTC, datetime, timedelta
from typing import Annotated

import typer
from rich.console import Console, Group
from rich.live import Live
from rich.panel import Panel
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn
from rich.table import Table

from cli.errors import CLI_RETRIES, service_url_checked
from client.models import Study, Trial
from client.typed_client import HPOClient

TRIAL_STATES = ("running", "waiting", "complete", "pruned", "fail")
RECENT_PRUNES = 5
LARGE_STUDY = 1000  # trials, above which the list is read at most every LARGE_STUDY_READ_S
LARGE_STUDY_READ_S = 15.0


def watch_study(
    client: HPOClient, study_id: int, poll_s: float = 1.0, console: Console | None = None
) -> Study:
    """Redraw the study's view every ``poll_s`` seconds until it is complete or stopped."""
    study = client.status(study_id)
    progress = _progress_bar()
    task = progress.add_task(study.name, total=study.n_trials, age=study_age(study))
    recent = _RecentTrials(client, study_id)
    with Live(console=console, refresh_per_second=4, transient=False) as live:
        while True:
            trials = recent.of(study)
            progress.update(
                task, completed=study.n_finished, total=study.n_trials, age=study_age(study)
            )
            live.update(study_view(study, trials, progress))
            if study.ended:
                return study
            time.sleep(poll_s)
            study = client.status(study_id)


class _RecentTrials:
    """The study's trials, read again only when its pruned count changed (the view lists the
    latest pruned), and for a large study at most every ``LARGE_STUDY_READ_S``: the whole
    list each poll was 4 MB a second at 8,000 trials, and three watchers slowed asks 4-fold."""

    def __init__(self, client: HPOClient, study_id: int) -> None:
        self._client, self._study_id = client, study_id
        self._trials: list[Trial] = []
        self._pruned: int | None = None
        self._read_at = 0.0

    def of(self, study: Study) -> list[Trial]:
        pruned = study.counts.get("pruned", 0)
        large = sum(study.counts.values()) > LARGE_STUDY
        due = not large or time.monotonic() - self._read_at >= LARGE_STUDY_READ_S
        if pruned != self._pruned and (due or study.ended):
            self._trials = self._client.trials(self._study_id)
            self._pruned, self._read_at = pruned, time.monotonic()
        return self._trials


def study_view(study: Study, trials: list[Trial], progress: Progress) -> Group:
    """Everything the view shows of the study, as one renderable."""
    header = f"study {study.study_id} [bold]{study.name}[/]: {study.state}"
    return Group(header, progress, _counts_table(study), _best_panel(study), _prunes_table(trials))


def _progress_bar() -> Progress:
    return Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("trials finished"),
        TextColumn("{task.fields[age]}"),
    )


def study_age(study: Study, now: datetime | None = None) -> str:
    """The study's time since it was created (until it ended, for an ended one), as H:MM:SS:
    the study's own, not the watcher's (one started late shows the study's whole time)."""
    end = study.finished_at or now or datetime.now(UTC)
    seconds = max((end - study.created_at).total_seconds(), 0.0)
    return str(timedelta(seconds=int(seconds)))


def _counts_table(study: Study) -> Table:
    table = Table(title="trials by state", title_justify="left")
    for state in TRIAL_STATES:
        table.add_column(state, justify="right")
    table.add_row(*(_count_cell(study.counts, state) for state in TRIAL_STATES))
    return table


def _count_cell(counts: dict[str, int], state: str) -> str:
    """A state's count; the running trials' says how many of them wait for a worker."""
    count = str(counts.get(state, 0))
    queued = counts.get("queued", 0)
    return f"{count} ({queued} queued)" if state == "running" and queued else count


def _best_panel(study: Study) -> Panel:
    best = study.best
    if len(study.objectives) > 1:  # no one best: the trade-offs are the Pareto front's
        names = ", ".join(objective.metric for objective in study.objectives)
        text = f"{len(study.objectives)} objectives ({names}): the best trials are the Pareto "
        text += f"front, GET /studies/{study.study_id}/pareto"
        return Panel(text, title="best so far", title_align="left")
    if best is None:
        return Panel("no complete trial yet", title="best so far", title_align="left")
    params = ", ".join(f"{name}={_short(value)}" for name, value in best.params.items())
    text = f"{study.metric} {best.value:.6g} (trial #{best.number})\n{params}"
    return Panel(text, title="best so far", title_align="left")


def _prunes_table(trials: list[Trial]) -> Table:
    """The latest pruned trials, the latest first (by when they ended, not by number)."""
    pruned = sorted((trial for trial in trials if trial.state == "pruned"), key=_ended_at)[
        -RECENT_PRUNES:
    ]
    table = Table(title="recent prunes", title_justify="left")
    for column in ("trial", "at step", "last value"):
        table.add_column(column, justify="right")
    for trial in reversed(pruned):
        step = trial.last_step
        value = trial.intermediate_values.get(step) if step is not None else None
        table.add_row(f"#{trial.number}", _short(step), _short(value))
    return table


def _ended_at(trial: Trial) -> tuple[datetime, int]:
    return (trial.finished_at or datetime.min.replace(tzinfo=UTC), trial.number)


def _short(value: object) -> str:
    if value is None:  # a trial pruned before any report, say
        return "—"
    return f"{value:.4g}" if isinstance(value, float) else str(value)


def settings_client() -> HPOClient:
    """A typed client of the API named by ``HPO_SERVICE_URL``, with ``HPO_TOKEN``."""
    from service.settings import Settings

    settings = Settings()
    return service_url_checked(
        lambda: HPOClient(settings.service_url, settings.bearer_token(), retries=CLI_RETRIES)
    )


def watch_command(
    study_id: int,
    poll: Annotated[float, typer.Option(min=0.1, help="Seconds between refreshes")] = 1.0,
) -> None:
    """Follow a study live (progress, trials by state, best so far, recent prunes) until it ends."""
    study = watch_study(settings_client(), study_id, poll)
    if not sys.stdout.isatty():
        typer.echo("")  # rich leaves a pipe's last line open
    typer.echo(f"study {study.study_id} {study.state}: {study.n_finished} trials finished")
