"""``hpo demo``: the whole service on one machine (SQLite, embedded Redis, API, workers), one study."""

from __future__ import annotations

import shutil
import time
from importlib.resources import files
from pathlib import Path
from typing import Any

import yaml

from cli.local_stack import LocalStack
from cli.progress import follow_study
from client import HPOJSONClient


def demo_study() -> dict[str, Any]:
    """The example study the demo submits."""
    text = files("cli").joinpath("demo_study.yaml").read_text(encoding="utf-8")
    study: dict[str, Any] = yaml.safe_load(text)
    return study


def run_demo(directory: Path, workers: int) -> dict[str, Any]:
    """Start everything in ``directory`` (wiped first), run the demo study, print the best."""
    shutil.rmtree(directory, ignore_errors=True)
    directory.mkdir(parents=True)
    started = time.monotonic()
    database_url = f"sqlite:///{(directory / 'hpo.db').resolve()}"
    stack = LocalStack(database_url, workers=workers, directory=directory, log_level="WARNING")
    try:
        stack.start()
        return _run_study(stack.client(), started)
    finally:
        stack.stop()


def _run_study(client: HPOJSONClient, started: float) -> dict[str, Any]:
    study = client.create_study(demo_study())
    print(f"study {study['study_id']} '{study['name']}' submitted; logs in the demo folder")
    finished = follow_study(client, study["study_id"])
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
