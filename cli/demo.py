"""``hpo demo``: the whole service on one machine (SQLite, embedded Redis, API, workers), one study."""

from __future__ import annotations

import shutil
import sys
import time
from importlib.resources import files
from pathlib import Path
from typing import Any

import yaml

from cli.embedded_redis import EmbeddedRedis
from cli.processes import ManagedProcess, free_port, http_ok, wait_until
from cli.progress import follow_study
from client import HPOClient


def demo_study() -> dict[str, Any]:
    """The example study the demo submits."""
    text = files("cli").joinpath("demo_study.yaml").read_text(encoding="utf-8")
    study: dict[str, Any] = yaml.safe_load(text)
    return study


def run_demo(directory: Path, workers: int) -> dict[str, Any]:
    """Start everything in ``directory`` (wiped first), run the demo study, print the best."""
    shutil.rmtree(directory, ignore_errors=True)
    started = time.monotonic()
    redis = EmbeddedRedis(directory / "redis").start()
    port = free_port()
    env = {
        "HPO_DATABASE_URL": f"sqlite:///{(directory / 'hpo.db').resolve()}",
        "HPO_BROKER_URL": redis.url,
        "HPO_SERVICE_URL": f"http://127.0.0.1:{port}",
        "HPO_PORT": str(port),
        "HPO_WORKER_CONCURRENCY": str(workers),
        "HPO_LOG_LEVEL": "WARNING",
    }
    processes: list[ManagedProcess] = []
    try:
        processes.append(_start("serve", env, directory))
        wait_until(lambda: http_ok(f"{env['HPO_SERVICE_URL']}/health"), 60, "the API")
        processes.append(_start("worker", env, directory))
        return _run_study(HPOClient(env["HPO_SERVICE_URL"]), started)
    finally:
        for process in reversed(processes):
            process.stop()
        redis.stop()


def _start(command: str, env: dict[str, str], directory: Path) -> ManagedProcess:
    argv = [sys.executable, "-m", "cli", command]
    return ManagedProcess(command, argv, env, directory / "logs" / f"{command}.log")


def _run_study(client: HPOClient, started: float) -> dict[str, Any]:
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
