"""Report round trip through the HTTP API: an external program reporting every epoch.

Runs the API (gunicorn) on SQLite and on a throwaway PostgreSQL, drives a trainer-less study with
Hyperband through ask / report / complete, and times each report from request to decision.
Usage: ``python -m bench.report_latency [--trials N] [--epochs N]``.
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

from cli.local_stack import LocalStack
from client import HPOJSONClient
from tests.support.postgres_server import PostgresServer

RESULTS = Path(__file__).parent / "results"


def drive_study(client: HPOJSONClient, trials: int, epochs: int) -> list[float]:
    """Run ``trials`` trials of ``epochs`` reports each; the latency of every report, in ms."""
    study = client.create_study(
        {
            "name": f"latency-{time.time_ns()}",
            "space": {"x": {"type": "float", "low": 0.0, "high": 1.0}},
            "budget": {"n_trials": trials, "max_concurrent_trials": 1},
            "pruner": {"name": "hyperband", "min_resource": 1, "max_resource": epochs},
        }
    )
    latencies: list[float] = []
    for _ in range(trials):
        trial = client.ask(study["study_id"])
        x = trial["params"]["x"]
        for step in range(1, epochs + 1):
            started = time.perf_counter()
            pruned = client.report(trial["trial_id"], step, x + 1.0 / step, trial["lease"])
            latencies.append((time.perf_counter() - started) * 1000)
            if pruned:
                break
        else:
            client.complete(trial["trial_id"], value=x + 1.0 / epochs, lease=trial["lease"])
    return latencies


def summary(latencies: list[float]) -> dict[str, float]:
    """p50, p99 and mean, in ms."""
    ordered = sorted(latencies)
    return {
        "reports": len(ordered),
        "p50_ms": round(statistics.median(ordered), 2),
        "p99_ms": round(ordered[int(0.99 * (len(ordered) - 1))], 2),
        "mean_ms": round(statistics.fmean(ordered), 2),
    }


def measure(database_url: str, trials: int, epochs: int) -> dict[str, float]:
    """Start an API on ``database_url`` and measure its report round trip."""
    stack = LocalStack(database_url, workers=0, log_level="WARNING").start()
    try:
        return summary(drive_study(stack.client(), trials, epochs))
    finally:
        stack.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--trials", type=int, default=100)
    parser.add_argument("--epochs", type=int, default=10)
    args = parser.parse_args()
    results: dict[str, Any] = {}
    results["sqlite"] = measure(
        f"sqlite:///{tempfile.mkdtemp()}/bench.db", args.trials, args.epochs
    )
    postgres = PostgresServer().start()
    try:
        results["postgresql"] = measure(postgres.create_database("bench"), args.trials, args.epochs)
    finally:
        postgres.remove()
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "report_latency.json").write_text(json.dumps(results, indent=2))
    print("| database | reports | p50 ms | p99 ms | mean ms |\n|---|---|---|---|---|")
    for name, row in results.items():
        print(
            f"| {name} | {row['reports']} | {row['p50_ms']} | {row['p99_ms']} | {row['mean_ms']} |"
        )


if __name__ == "__main__":
    main()
