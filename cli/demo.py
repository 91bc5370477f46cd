"""``hpo demo``: the whole service on one machine (SQLite, embedded Redis, API, workers), one
study; ``hpo local``: the same stack, kept up for studies of one's own until Ctrl-C."""

from __future__ import annotations

import shutil
import signal
import sys
import time
from importlib.resources import files
from pathlib import Path
from types import FrameType
from typing import Any

import typer
import yaml

from cli.local_stack import LocalStack
from cli.progress import follow_study
from client import HPOJSONClient

# Left in a folder the demo made: the demo wipes only a folder that holds it (or an empty one).
DEMO_MARK = ".hpo-demo-folder"
ALIVE_CHECK_S = 1.0


def demo_study() -> dict[str, Any]:
    """The example study the demo submits."""
    text = files("cli").joinpath("demo_study.yaml").read_text(encoding="utf-8")
    study: dict[str, Any] = yaml.safe_load(text)
    return study


def run_demo(directory: Path, workers: int) -> dict[str, Any]:
    """Start everything in ``directory`` (wiped first, where the demo made it), run the demo
    study, print the best."""
    _fresh_demo_folder(directory)
    started = time.monotonic()
    stack = LocalStack(
        _sqlite_in(directory), workers=workers, directory=directory, log_level="WARNING"
    )
    with _stopped_on_termination():
        try:
            stack.start()
            return _run_study(stack, started)
        finally:
            stack.stop()


def run_local(directory: Path, workers: int, port: int) -> None:
    """Start everything in ``directory`` (its database kept from one start to the next) on
    ``port``, and keep it up until Ctrl-C (or SIGTERM, SIGHUP)."""
    directory.mkdir(parents=True, exist_ok=True)
    stack = LocalStack(_sqlite_in(directory), workers=workers, directory=directory, port=port)
    with _stopped_on_termination():
        try:
            stack.start()
            print(
                f"the service is up at {stack.url} (no tokens: this machine only), its database "
                f"and logs in {directory}/; submit with: hpo submit STUDY.yaml --wait "
                f"(HPO_SERVICE_URL={stack.url}); Ctrl-C stops it",
                flush=True,
            )
            while True:
                stack.check_alive()
                time.sleep(ALIVE_CHECK_S)
        finally:
            stack.stop()


def _sqlite_in(directory: Path) -> str:
    return f"sqlite:///{(directory / 'hpo.db').resolve()}"


def _fresh_demo_folder(directory: Path) -> None:
    """An empty ``directory`` with the demo's mark; a folder of other files is refused, not
    wiped (``--directory .`` would have deleted the user's files)."""
    if directory.exists() and any(directory.iterdir()) and not (directory / DEMO_MARK).exists():
        raise typer.BadParameter(
            f"{directory} holds files the demo did not make, and the demo empties its folder "
            "at each start: give a new or empty folder",
            param_hint="--directory",
        )
    shutil.rmtree(directory, ignore_errors=True)
    directory.mkdir(parents=True)
    (directory / DEMO_MARK).touch()


class _StopSignal:
    """SIGTERM and SIGHUP (a closed terminal) end the command as Ctrl-C does: its ``finally``
    stops the stack (its processes run in sessions of their own and would outlive it)."""

    def __enter__(self) -> None:
        self._before = {sig: signal.signal(sig, _exit) for sig in (signal.SIGTERM, signal.SIGHUP)}

    def __exit__(self, *_: object) -> None:
        for sig, handler in self._before.items():
            signal.signal(sig, handler)


def _stopped_on_termination() -> _StopSignal:
    return _StopSignal()


def _exit(signum: int, _frame: FrameType | None) -> None:
    sys.exit(128 + signum)


def _run_study(stack: LocalStack, started: float) -> dict[str, Any]:
    client: HPOJSONClient = stack.client()
    study = client.create_study(demo_study())
    logs = stack.directory / "logs"
    print(f"study {study['study_id']} '{study['name']}' submitted; logs in {logs}/")
    finished = follow_study(client, study["study_id"], alive=stack.check_alive)
    best = client.best(study["study_id"])
    counts = finished["counts"]
    print(
        f"\n{counts['complete']} complete, {counts['pruned']} pruned, {counts['fail']} failed "
        f"in {time.monotonic() - started:.1f} s"
    )
    print(f"best validation loss {best['value']:.4f} (trial {best['number']}) with:")
    for name, value in best["params"].items():
        print(f"  {name:>13} = {value}")
    return best
