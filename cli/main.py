"""The ``hpo`` command: serve, worker, submit, list, status, best, stop, delete, demo, local."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import typer

from cli.dashboard import dashboard_command
from cli.db import db_app
from cli.plot import plot_command
from cli.tokens import tokens_app
from cli.watch import watch_command
from client.models import FINISHED_TRIAL_STATES
from service.settings import Settings

app = typer.Typer(help="Hyperparameter-optimisation service.", no_args_is_help=True)
app.add_typer(tokens_app, name="token")
app.add_typer(db_app, name="db")
app.command(name="watch")(watch_command)
app.command(name="plot")(plot_command)
app.command(name="dashboard")(dashboard_command)


def _client() -> Any:
    """The plain JSON client of the API the settings name (the typed one's)."""
    from cli.watch import settings_client

    return settings_client().raw


def _print(data: Any) -> None:
    typer.echo(json.dumps(data, indent=2, default=str))


@app.command()
def serve() -> None:
    """Run the HTTP API (settings from HPO_ environment variables)."""
    from cli.serve import serve as run_api

    run_api(Settings())


@app.command()
def worker() -> None:
    """Run a Celery worker that trains trials (one process per GPU)."""
    from cli.worker import run_worker

    run_worker(Settings())


@app.command()
def submit(
    path: Annotated[
        Path, typer.Argument(exists=True, dir_okay=False, help="Study file (.json, .yaml)")
    ],
    wait: Annotated[
        bool, typer.Option(help="Follow the study with a progress bar until it ends")
    ] = False,
    timeout: Annotated[
        float | None,
        typer.Option(min=0, help="With --wait: give up waiting after this many seconds (exit 1)"),
    ] = None,
) -> None:
    """Submit a study definition; prints the new study (with --wait, then its best, or its
    Pareto front for several objectives)."""
    from cli.progress import UNDER_WAY, follow_study
    from cli.study_files import load_study_file

    client = _client()
    study = client.create_study(load_study_file(path))
    _print({"study_id": study["study_id"], "name": study["name"], "urls": study["urls"]})
    if wait:
        if study["spec"].get("trainer") is None:
            typer.echo(
                f"study {study['study_id']} has no trainer: no worker runs its trials; it moves "
                f"as your program asks for them (POST /studies/{study['study_id']}/trials)",
                err=True,
            )
        followed = follow_study(client, study["study_id"], timeout_s=timeout)
        if followed["state"] in UNDER_WAY:
            typer.echo(
                f"study {study['study_id']} is still {followed['state']} after {timeout:g} s; "
                f"follow it with: hpo watch {study['study_id']}",
                err=True,
            )
            raise typer.Exit(1)
        several = len(followed.get("objectives") or []) > 1
        front = client.pareto(study["study_id"]) if several else None
        if front and front["trials"]:  # a study of several objectives' best: its Pareto front
            _print(front)
            return
        if followed.get("best") is None:  # stopped by its checks, or no complete trial
            typer.echo(no_best_in_words(followed), err=True)
            raise typer.Exit(1)
        _print(client.best(study["study_id"]))


def no_best_in_words(study: dict[str, Any]) -> str:
    """Why a study that ended has no best trial to print."""
    study_id, state = study["study_id"], study["state"]
    preflight = study.get("preflight") or {}
    if preflight.get("refused"):
        failed = [check["name"] for check in preflight.get("checks", []) if not check["passed"]]
        why = ", ".join(failed) or preflight.get("reason") or preflight.get("state")
        return (
            f"study {study_id} was stopped by its pre-flight checks ({why}) before any trial "
            f"ran: see GET /studies/{study_id} (preflight) and /studies/{study_id}/jobs"
        )
    counts = ", ".join(f"{n} {name}" for name, n in study["counts"].items() if n)
    if study["counts"].get("complete"):  # every one outside the study's constraints
        return (
            f"study {study_id} is {state} with no complete trial within its constraints ({counts})"
        )
    return f"study {study_id} is {state} with no complete trial ({counts or 'no trial'})"


@app.command()
def status(study_id: int) -> None:
    """A study's state, counts by trial state and best so far."""
    study = _client().study(study_id)
    _print({key: study[key] for key in ("study_id", "name", "state", "n_trials", "counts", "best")})


@app.command()
def best(study_id: int) -> None:
    """The best hyperparameters found so far, and their value."""
    _print(_client().best(study_id))


@app.command(name="list")
def list_studies() -> None:
    """Every study the token sees, newest first, one a line under a header: id, state, trials
    finished of the budget, best value, name."""
    studies = _client().studies()
    if not studies:
        typer.echo("no studies yet: hpo submit STUDY.yaml makes one", err=True)
        return
    typer.echo("id\tstate\tfinished\tbest\tname")
    for study in studies:
        counts = study["counts"]
        finished = sum(counts.get(state, 0) for state in FINISHED_TRIAL_STATES)
        best = study["best"]["value"] if study.get("best") else "-"
        typer.echo(
            f"{study['study_id']}\t{study['state']}\t{finished}/{study['n_trials']}\t{best}"
            f"\t{study['name']}"
        )


@app.command()
def stop(study_id: int) -> None:
    """Start no new trial of the study; running ones finish."""
    study = _client().stop(study_id)
    typer.echo(f"study {study_id} is {study['state']}")


@app.command()
def delete(study_id: int) -> None:
    """Delete the study and its trials (a worker still running one is refused from then on)."""
    _client().delete(study_id)
    typer.echo(f"study {study_id} deleted")


@app.command()
def demo(
    directory: Annotated[
        Path, typer.Option(help="Where the demo keeps its files (emptied at each start)")
    ] = Path(".hpo-demo"),
    workers: Annotated[int, typer.Option(min=1, help="Worker processes")] = 2,
) -> None:
    """Start everything on this machine, run an example study, print the best hyperparameters."""
    from cli.demo import run_demo

    run_demo(directory, workers)


@app.command()
def local(
    directory: Annotated[
        Path, typer.Option(help="Where the stack keeps its database and logs (kept)")
    ] = Path(".hpo-local"),
    workers: Annotated[int, typer.Option(min=1, help="Worker processes")] = 2,
    port: Annotated[int, typer.Option(min=1, max=65535, help="The API's port")] = 8000,
) -> None:
    """Start the service on this machine (SQLite, an embedded Redis, the API with no tokens on
    loopback, a worker) and keep it up for studies of your own (hpo submit) until Ctrl-C."""
    from cli.demo import run_local

    run_local(directory, workers, port)


def main() -> None:
    """Console-script entry point: an error the user can act on (an answer of the API, a service
    out of reach, a bad study file, settings or database URL) is printed as a message, exit
    status 1; anything else keeps its traceback."""
    from cli.errors import explained

    try:
        app()  # usage errors, --help and Ctrl-C end here as Typer ends them (SystemExit)
    except Exception as error:
        message = explained(error)
        if message is None:
            raise
        typer.echo(message, err=True)
        raise SystemExit(1) from None
