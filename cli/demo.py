"""``hpo demo``: the whole service on one machine (SQLite, embedded Redis, API, workers), one
study; ``hpo local``: the same stack, kept up for studies of one's own until Ctrl-C."""

from __future__ import annotations

import shutil
import signal
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from importlib.resources import files
from pathlib import Path
from types import FrameType
from typing import Any

import typer
import yaml

from cli.local_stack import LocalStack
from cli.progress import follow_study
from client import HPOJSONClient

# Left in a folder the demo made: the demo empties only a folder that is its own (or empty).
DEMO_MARK = ".hpo-demo-folder"
# Left in the folder of ``hpo local``, whose database holds the user's studies: never emptied.
LOCAL_MARK = ".hpo-local-folder"
DEMO_LAYOUT = frozenset({"logs", "redis"})  # and the database's files, hpo.db*
STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)
ALIVE_CHECK_S = 1.0


def demo_study() -> dict[str, Any]:
    """The example study the demo submits."""
    text = files("cli").joinpath("demo_study.yaml").read_text(encoding="utf-8")
    study: dict[str, Any] = yaml.safe_load(text)
    return study


def run_demo(directory: Path, workers: int) -> dict[str, Any]:
    """Start everything in ``directory`` (emptied first, where it is the demo's), run the demo
    study, print the best."""
    _fresh_demo_folder(directory)
    started = time.monotonic()
    database_url = _sqlite_in(directory)
    stack = LocalStack(database_url, workers=workers, directory=directory, log_level="WARNING")
    with _running(stack):
        return _run_study(stack, started)


def run_local(directory: Path, workers: int, port: int) -> None:
    """Start everything in ``directory`` (its database kept from one start to the next) on
    ``port``, and keep it up until Ctrl-C (or SIGTERM, SIGHUP)."""
    if (directory / DEMO_MARK).exists():
        raise typer.BadParameter(
            f"{directory} is the demo's folder, which each demo empties: give another",
            param_hint="--directory",
        )
    directory.mkdir(parents=True, exist_ok=True)
    (directory / LOCAL_MARK).touch()
    stack = LocalStack(_sqlite_in(directory), workers=workers, directory=directory, port=port)
    with _running(stack):
        print(
            f"the service is up at {stack.url} (no tokens: this machine only), its database "
            f"and logs in {directory}/; submit with: HPO_SERVICE_URL={stack.url} hpo submit "
            "STUDY.yaml --wait, in a shell without HPO_TOKEN (this API takes no token it did "
            "not make); Ctrl-C stops it",
            flush=True,
        )
        while True:
            stack.check_alive()
            time.sleep(ALIVE_CHECK_S)


@contextmanager
def _running(stack: LocalStack) -> Iterator[LocalStack]:
    """``stack`` started, and stopped at the end, on Ctrl-C, SIGTERM or SIGHUP (a closed
    terminal) alike: its processes run in sessions of their own and would outlive the command.
    Once the stop has begun, a further signal waits for it (it would leave the rest running)."""
    stopping = False

    def end(signum: int, _frame: FrameType | None) -> None:
        if not stopping:
            sys.exit(128 + signum)

    before = {sig: signal.signal(sig, end) for sig in STOP_SIGNALS}
    try:
        yield stack.start()
    finally:
        stopping = True
        stack.stop()
        for sig, handler in before.items():
            signal.signal(sig, handler)


def _sqlite_in(directory: Path) -> str:
    return f"sqlite:///{(directory / 'hpo.db').resolve()}"


def _fresh_demo_folder(directory: Path) -> None:
    """An empty ``directory`` with the demo's mark; a folder of other files is refused, not
    emptied (``--directory .`` would have deleted the user's files)."""
    if directory.exists() and not _made_by_the_demo(directory):
        raise typer.BadParameter(
            f"{directory} holds files the demo did not make, and the demo empties its folder "
            "at each start: give a new or empty folder",
            param_hint="--directory",
        )
    shutil.rmtree(directory, ignore_errors=True)
    directory.mkdir(parents=True)
    (directory / DEMO_MARK).touch()


def _made_by_the_demo(directory: Path) -> bool:
    """Whether the folder is empty, or the demo's: its mark, or (made before the mark was) only
    what the demo writes there; never ``hpo local``'s (its mark), which holds the same files."""
    names = {entry.name for entry in directory.iterdir()}
    if LOCAL_MARK in names:  # hpo local's studies
        return False
    return DEMO_MARK in names or all(
        name in DEMO_LAYOUT or name.startswith("hpo.db") for name in names
    )


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
