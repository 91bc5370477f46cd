"""Control plane: the service's HTTP API against plain Optuna, Optuna on Redis, and Ray Tune.

A study of ``--trials`` trials (10 reports each, TPE + Hyperband) driven by 1, 4 and 16 simulated
workers (threads calling ask / report / complete over HTTP, as an external program or a Celery
worker after its claim does, each report waited for) against a real API (gunicorn) on SQLite and
on PostgreSQL, and with one worker reporting as the Celery workers do (``ReportPipeline``: waits
only at decision steps, sends the others together in the background); beside it
plain Optuna in the same number of processes on the same database, Optuna's JournalStorage on the
embedded Redis, and Ray Tune (ASHA); one study through real Celery worker processes (the
built-in trainer on a tiny model). Then the service alone over a long history (decision latency
after 100 and after ``--history`` finished trials). Usage: ``python -m bench.control_plane
[--quick | --full] [--no-ray] [--no-postgres]``.
"""

from __future__ import annotations

import argparse
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psycopg

from bench import plain_optuna, ray_tune
from bench.common import Check, markdown_table, percentiles, write_results
from bench.service_driver import DriveResult, drive
from cli.embedded_redis import EmbeddedRedis
from cli.local_stack import LocalStack
from cli.processes import wait_until
from tests.support.postgres_server import PostgresServer

EPOCHS = 10
# The long-history run's trials report 3 epochs (Hyperband rungs at 1 and 3): its question is the
# decision's cost against the history, and 10,000 trials of 10 reports would take 12 minutes alone.
HISTORY_EPOCHS = 3


@dataclass(frozen=True)
class Sizes:
    """How big each run is."""

    trials: int
    worker_counts: tuple[int, ...]
    optuna_trials: int
    optuna_time_budget_s: float
    ray_trials: int
    history: int
    celery_trials: int
    celery_processes: int = 2

    @classmethod
    def of(cls, quick: bool = False, full: bool = False) -> Sizes:
        """The issue's sizes (``full``: about 23 minutes here), the default that keeps the whole
        ``make bench`` under 15 minutes on 2 cores, or the few-minutes ones."""
        if quick:
            return cls(200, (1, 4), 200, 8.0, 200, 1000, 60)
        if full:
            return cls(1000, (1, 4, 16), 1000, 15.0, 1000, 10000, 200)
        return cls(400, (1, 4, 16), 400, 10.0, 400, 2000, 200)


class ConnectionSampler:
    """The most connections to one PostgreSQL database seen (pg_stat_activity), sampled twice a second."""

    def __init__(self, admin_url: str | None, database: str | None) -> None:
        self._admin_url = admin_url
        self._database = database
        self.peak = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True)

    def __enter__(self) -> ConnectionSampler:
        if self._admin_url is not None:
            self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join()

    def _loop(self) -> None:
        assert self._admin_url is not None
        libpq_url = self._admin_url.replace("postgresql+psycopg://", "postgresql://", 1)
        with psycopg.connect(libpq_url, autocommit=True) as connection:
            while not self._stop.wait(0.5):
                row = connection.execute(
                    "SELECT count(*) FROM pg_stat_activity WHERE datname = %s", (self._database,)
                ).fetchone()
                self.peak = max(self.peak, int(row[0]) if row else 0)


@dataclass
class Database:
    """A database kind under test: its URL factory, and its admin URL for connection counts."""

    kind: str
    postgres: PostgresServer | None = None
    folder: Path | None = None

    def new(self, name: str) -> str:
        """A fresh, empty database of this kind."""
        if self.postgres is not None:
            return self.postgres.create_database(name)
        assert self.folder is not None
        return f"sqlite:///{self.folder}/{name}.db"

    def sampler(self, name: str) -> ConnectionSampler:
        """A connection counter for database ``name`` (a no-op on SQLite)."""
        if self.postgres is None:
            return ConnectionSampler(None, None)
        return ConnectionSampler(self.postgres.url(), name)


def service_row(result: DriveResult, connections: int | None) -> dict[str, Any]:
    """The figures of one service run."""
    return {
        "trials": result.trials,
        "reports": result.reports,
        "trials_per_s": round(result.trials / result.wall_s, 2),
        "ask": percentiles(result.ask_ms),
        "report_decision": percentiles(result.report_ms),
        "db_connections_peak": connections,
    }


def run_service(
    database: Database, workers: int, trials: int, *, batched: bool = False
) -> tuple[dict[str, Any], DriveResult]:
    """One study through the API, ``workers`` simulated workers (``batched``: reporting as the
    Celery workers do): its figures, and the raw run."""
    name = f"service_{workers}_{time.time_ns() % 10**9}"
    stack = LocalStack(database.new(name), workers=0, log_level="WARNING").start()
    try:
        with database.sampler(name) as sampler:
            result = drive(stack.url, trials, EPOCHS, workers, batched=batched)
    finally:
        stack.stop()
    return service_row(result, sampler.peak if database.postgres else None), result


def matched(result: DriveResult, optuna: dict[str, Any]) -> dict[str, Any]:
    """The service's ask and report latencies over the history plain Optuna reached in its
    time-boxed run (its costs grow with the history, so the whole run's figures would not compare)."""
    asks, reports = result.first_trials(optuna["trials"])
    return {
        "trials": optuna["trials"],
        "ask": percentiles(asks),
        "report_decision": percentiles(reports),
    }


def run_optuna(database: Database, workers: int, sizes: Sizes) -> dict[str, Any]:
    """Plain Optuna on the same database kind, ``workers`` processes."""
    name = f"optuna_{workers}_{time.time_ns() % 10**9}"
    url = database.new(name)
    with database.sampler(name) as sampler:
        result = plain_optuna.run(
            "rdb", url, workers, sizes.optuna_trials, EPOCHS, sizes.optuna_time_budget_s
        )
    return {**result.summary(), "db_connections_peak": sampler.peak if database.postgres else None}


def run_journal(workers: int, sizes: Sizes) -> dict[str, Any]:
    """Plain Optuna on JournalStorage over the embedded Redis."""
    redis = EmbeddedRedis(Path(tempfile.mkdtemp(prefix="bench-redis-"))).start()
    try:
        result = plain_optuna.run(
            "journal", redis.url, workers, sizes.optuna_trials, EPOCHS, sizes.optuna_time_budget_s
        )
    finally:
        redis.stop()
    return result.summary()


def celery_spec(trials: int, processes: int) -> dict[str, Any]:
    """TPE + Hyperband over the built-in trainer on a tiny model and data set (about a
    millisecond an epoch): what is left is the control plane, Celery included."""
    return {
        "name": f"celery-{time.time_ns()}",
        "space": {
            "lr": {"type": "float", "low": 1e-4, "high": 0.3, "log": True},
            "hidden": {"type": "int", "low": 2, "high": 8},
        },
        "sampler": {"name": "tpe", "seed": 0},
        "pruner": {"name": "hyperband", "min_resource": 1, "max_resource": EPOCHS},
        "budget": {"n_trials": trials, "max_concurrent_trials": processes},
        "trainer": {
            "name": "mlp",
            "dataset": "synthetic",
            "epochs": EPOCHS,
            "device": "cpu",
            "params": {"batch_size": 1000},
        },
        "preflight": {"enabled": False},
    }


def run_celery(database: Database, trials: int, processes: int) -> dict[str, Any]:
    """One study through real Celery worker processes (claim, reports, completion over HTTP),
    once the workers are up and warm: a study of one trial per process runs first (the stack
    returns before its worker has imported PyTorch, about 4 s here, and a process's first trial
    makes its data and PyTorch's first calls, about 1.3 s), as a deployment's workers are."""
    name = f"celery_{processes}_{time.time_ns() % 10**9}"
    stack = LocalStack(database.new(name), workers=processes, log_level="WARNING").start()
    try:
        client = stack.client()
        warm_up = client.create_study(celery_spec(processes, processes))["study_id"]

        def warmed_up() -> bool:
            return bool(client.study(warm_up)["state"] == "complete")

        wait_until(warmed_up, timeout_s=120, what="the warm-up study")
        started = time.perf_counter()
        study_id = client.create_study(celery_spec(trials, processes))["study_id"]
        while (study := client.study(study_id))["state"] == "running":
            time.sleep(0.2)
        wall = time.perf_counter() - started
    finally:
        stack.stop()
    counts = study["counts"]
    return {
        "trials": trials,
        "state": study["state"],
        "counts": counts,
        "trials_per_s": round(trials / wall, 2),
        "wall_s": round(wall, 2),
    }


def flat_history(database: Database, history: int) -> dict[str, Any]:
    """The service alone, one worker, ``history`` trials: decision latency near trial 100 and at
    the end. Random sampling (TPE's ask grows with the history; this run is about the pruner)."""
    name = f"history_{time.time_ns() % 10**9}"
    stack = LocalStack(database.new(name), workers=0, log_level="WARNING").start()
    try:
        result = drive(stack.url, history, HISTORY_EPOCHS, 1, sampler="random")
    finally:
        stack.stop()
    window = max(50, history // 20)
    early = [ms for number, ms in result.report_ms_by_trial if 100 <= number < 100 + window]
    late = [ms for number, ms in result.report_ms_by_trial if number >= history - window]
    return {
        "trials": result.trials,
        "trials_per_s": round(result.trials / result.wall_s, 2),
        "at_100": percentiles(early),
        f"at_{history}": percentiles(late),
        "ask_all": percentiles(result.ask_ms),
    }


@contextmanager
def databases(postgres: bool) -> Iterator[list[Database]]:
    """SQLite in a temporary folder, and a throwaway PostgreSQL cluster unless told not to."""
    found = [Database("sqlite", folder=Path(tempfile.mkdtemp(prefix="bench-sqlite-")))]
    server = PostgresServer().start() if postgres else None
    if server is not None:
        found.append(Database("postgresql", postgres=server))
    try:
        yield found
    finally:
        if server is not None:
            server.remove()


def measure(sizes: Sizes, *, postgres: bool, ray: bool) -> dict[str, Any]:
    """Every run of the control-plane part."""
    results: dict[str, Any] = {
        "sizes": sizes.__dict__,
        "service": {},
        "service_batched": {},
        "optuna": {},
    }
    with databases(postgres) as found:
        for database in found:
            for workers in sizes.worker_counts:
                key = f"{database.kind}/{workers}"
                print(f"[control plane] service {key} ...", flush=True)
                row, run = run_service(database, workers, sizes.trials)
                print(f"[control plane] plain optuna {key} ...", flush=True)
                results["optuna"][key] = run_optuna(database, workers, sizes)
                row["same_history_as_optuna"] = matched(run, results["optuna"][key])
                results["service"][key] = row
            key = f"{database.kind}/1"
            print(
                f"[control plane] service {key}, reports as the workers send them ...", flush=True
            )
            results["service_batched"][key] = run_service(database, 1, sizes.trials, batched=True)[
                0
            ]
        for workers in sizes.worker_counts:
            print(f"[control plane] optuna journal on redis/{workers} ...", flush=True)
            results["optuna"][f"journal-redis/{workers}"] = run_journal(workers, sizes)
        print(
            f"[control plane] service through {sizes.celery_processes} Celery processes ...",
            flush=True,
        )
        results["celery"] = run_celery(found[0], sizes.celery_trials, sizes.celery_processes)
        print(f"[control plane] service alone, {sizes.history} trials of history ...", flush=True)
        results["history"] = flat_history(found[0], sizes.history)
    if ray and ray_tune.available():
        print("[control plane] ray tune asha ...", flush=True)
        results["ray"] = ray_tune.run(sizes.ray_trials, EPOCHS, cpus=2)
    return results


def checks(results: dict[str, Any]) -> list[Check]:
    """Every control-plane target, PASS or MISS."""
    found: list[Check] = []
    for key, service in results["service"].items():
        optuna = results["optuna"][key]
        found.append(
            Check(
                f"trials/s vs plain Optuna ({key})",
                _ratio(service["trials_per_s"], optuna["trials_per_s"]),
                10.0,
                True,
                "x",
            )
        )
        same = service["same_history_as_optuna"]
        optuna_p50 = optuna["report_should_prune"]["p50_ms"]
        found.append(
            Check(
                f"report->decision p50 / Optuna report+should_prune p50 ({key}, "
                f"first {same['trials']} trials)",
                _ratio(same["report_decision"]["p50_ms"], optuna_p50),
                0.1,
                False,
            )
        )
        found.append(
            Check(
                f"report->decision p99 ({key})",
                service["report_decision"]["p99_ms"],
                20.0,
                False,
                " ms",
            )
        )
        found.append(
            Check(
                f"ask p50 / Optuna ask p50 ({key}, first {same['trials']} trials)",
                _ratio(same["ask"]["p50_ms"], optuna["ask"]["p50_ms"]),
                1 / 3,
                False,
            )
        )
    for key, service in results.get("service_batched", {}).items():
        found.append(
            Check(
                f"trials/s vs plain Optuna ({key}, reports as the workers send them)",
                _ratio(service["trials_per_s"], results["optuna"][key]["trials_per_s"]),
                10.0,
                True,
                "x",
            )
        )
    ray = results.get("ray")
    if ray:
        for key, service in _service_runs(results):
            found.append(
                Check(
                    f"trials/s vs Ray Tune ({key})",
                    _ratio(service["trials_per_s"], ray["trials_per_s"]),
                    1.2,
                    True,
                    "x",
                )
            )
    history = results["history"]
    late_key = next(key for key in history if key.startswith("at_") and key != "at_100")
    found.append(
        Check(
            f"decision p50 at {late_key[3:]} trials / at 100",
            _ratio(history[late_key]["p50_ms"], history["at_100"]["p50_ms"]),
            1.5,
            False,
        )
    )
    return found


def _service_runs(results: dict[str, Any]) -> list[tuple[str, dict[str, Any]]]:
    """Every service run by its label: reports one by one, then as the workers send them."""
    runs = list(results["service"].items())
    runs += [(f"{key}, batched", row) for key, row in results.get("service_batched", {}).items()]
    return runs


def _ratio(ours: float, theirs: float) -> float:
    """``ours / theirs``; NaN (a MISS) where the other side measured nothing."""
    return ours / theirs if theirs and theirs == theirs else float("nan")


def table(results: dict[str, Any]) -> str:
    """The control-plane figures as one Markdown table."""
    rows: list[list[Any]] = []
    systems = {
        "service": "service (HTTP)",
        "service_batched": "service (HTTP, reports as the workers send them)",
        "optuna": "plain Optuna",
    }
    for system, label in systems.items():
        for key, row in results.get(system, {}).items():
            report = row.get("report_decision") or row.get("report_should_prune")
            rows.append(
                [
                    label,
                    key,
                    row["trials_per_s"],
                    "—" if system == "service_batched" else report["p50_ms"],
                    "—" if system == "service_batched" else report["p99_ms"],
                    row["ask"]["p50_ms"],
                    row["ask"]["p99_ms"],
                    "—" if row.get("db_connections_peak") is None else row["db_connections_peak"],
                ]
            )
    celery = results.get("celery")
    if celery:
        rows.append(
            [
                "service (real Celery, mlp on a tiny model)",
                f"sqlite/{results['sizes']['celery_processes']} processes",
                celery["trials_per_s"],
                "—",
                "—",
                "—",
                "—",
                "—",
            ]
        )
    if results.get("ray"):
        rows.append(
            [
                "Ray Tune ASHA",
                "local/2 CPUs",
                results["ray"]["trials_per_s"],
                "—",
                "—",
                "—",
                "—",
                "—",
            ]
        )
    header = [
        "system",
        "database/workers",
        "trials/s",
        "report→decision p50 ms",
        "p99 ms",
        "ask p50 ms",
        "ask p99 ms",
        "DB connections",
    ]
    return markdown_table(header, rows)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--full", action="store_true")
    parser.add_argument("--no-ray", action="store_true")
    parser.add_argument("--no-postgres", action="store_true")
    args = parser.parse_args()
    sizes = Sizes.of(args.quick, args.full)
    results = measure(sizes, postgres=not args.no_postgres, ray=not args.no_ray)
    write_results("control_plane", results, checks(results), table(results))


if __name__ == "__main__":
    main()
