"""The whole service on one machine as real processes: embedded Redis, the API, a Celery worker.

Used by ``hpo demo``, by the integration tests and by the benchmarks.
"""

from __future__ import annotations

import json
import re
import sys
import tempfile
from pathlib import Path

from cli.embedded_redis import EmbeddedRedis
from cli.errors import PortTaken, StackPartStopped
from cli.processes import ManagedProcess, free_port, http_ok, port_is_free, wait_until
from client import HPOJSONClient


class LocalStack:
    """Starts Redis, then ``hpo serve`` and (optionally) ``hpo worker`` against ``database_url``."""

    def __init__(
        self,
        database_url: str,
        *,
        workers: int = 2,
        tokens: list[str] | None = None,
        directory: Path | None = None,
        log_level: str = "INFO",
        settings: dict[str, str] | None = None,
        port: int | None = None,
    ) -> None:
        """``tokens``: the users' tokens the API takes (tokens required where there are any);
        every process sends the first. Such a stack's workers need a worker token of their own
        (claims are a worker token's alone): ``HPO_WORKER_TOKENS`` and ``HPO_TOKEN`` in
        ``settings``, which override the stack's own."""
        self.directory = directory or Path(tempfile.mkdtemp(prefix="hpo-stack-"))
        self.log_level = log_level
        self.extra_settings = settings or {}
        self.database_url = database_url
        self.port = port or free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.workers = workers
        self.tokens = tokens or []
        self.redis = EmbeddedRedis(self.directory / "redis")
        self.api: ManagedProcess | None = None
        self.worker: ManagedProcess | None = None

    def env(self) -> dict[str, str]:
        """The HPO_ environment of every process of this stack."""
        env = {
            "HPO_DATABASE_URL": self.database_url,
            "HPO_BROKER_URL": self.redis.url,
            "HPO_SERVICE_URL": self.url,
            "HPO_PORT": str(self.port),
            "HPO_WORKER_CONCURRENCY": str(max(self.workers, 1)),
            # The API, Redis and the database share these cores: OpenMP threads that spin
            # waiting for a busy core slow an epoch several-fold (bench.worker_overhead).
            "HPO_WORKER_TORCH_THREADS": "1",
            "HPO_API_TOKENS": json.dumps(self.tokens),
            # One machine, loopback only: open unless the stack is given tokens.
            "HPO_REQUIRE_TOKENS": "true" if self.tokens else "false",
            "HPO_LOG_LEVEL": self.log_level,
        }
        if self.tokens:
            env["HPO_TOKEN"] = self.tokens[0]
        return {**env, **self.extra_settings}

    def start(self) -> LocalStack:
        """Start every part and wait until the API answers; ``PortTaken`` where the API's port
        is another server's (its answer would be taken for this API's)."""
        if not port_is_free(self.port):
            raise PortTaken(self.port)
        self.redis.start()
        self.start_api()
        if self.workers:
            self.worker = self._process("worker")
        return self

    def start_api(self) -> None:
        """Start the API (again) and wait until it answers."""
        self.api = self._process("serve")
        wait_until(self._api_answers, 60, "the API")

    def _api_answers(self) -> bool:
        """Whether this stack's API answers; ``StackPartStopped`` where it has stopped (its port
        taken, say: another server's answer there is not this API's)."""
        if self.api is None or not self.api.alive():
            raise StackPartStopped("serve", self.directory / "logs" / "serve.log")
        return http_ok(f"{self.url}/health")

    def stop_api(self) -> None:
        """Stop the API (SIGTERM: gunicorn finishes the requests in flight)."""
        if self.api is not None:
            self.api.stop()
            self.api = None

    def client(self, token: str | None = None) -> HPOJSONClient:
        """A client of this stack's API (with the stack's first token by default)."""
        return HPOJSONClient(self.url, token or (self.tokens[0] if self.tokens else None))

    def logs(self) -> str:
        """Everything the API and the worker wrote (for failure messages)."""
        parts = [
            _without_successful_requests(p.log_path.read_text(errors="replace"))[-4000:]
            for p in (self.api, self.worker)
            if p
        ]
        return "\n-----\n".join(parts)

    def check_alive(self) -> None:
        """``StackPartStopped`` naming the first part that has stopped, and the end of its log."""
        for process in (self.api, self.worker):
            if process is not None and not process.alive():
                raise StackPartStopped(process.name, process.log_path)
        if not self.redis.alive():
            raise StackPartStopped("redis", self.redis.log_path)

    def stop(self) -> None:
        """Stop the worker, the API and Redis."""
        for process in (self.worker, self.api):
            if process is not None:
                process.stop()
        self.redis.stop()

    def _process(self, command: str) -> ManagedProcess:
        argv = [sys.executable, "-m", "cli", command]
        log = self.directory / "logs" / f"{command}.log"
        return ManagedProcess(command, argv, self.env(), log)


def _without_successful_requests(log: str) -> str:
    """A log without its 2xx/3xx access lines, which only bury what went wrong."""
    successful = re.compile(r'HTTP/1\.[01]\\?" [23]\d\d ')
    return "\n".join(line for line in log.splitlines() if not successful.search(line))
