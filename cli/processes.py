"""Starting, waiting for and stopping the local processes of the embedded mode (and of tests)."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

import requests


def free_port() -> int:
    """A TCP port on the loopback interface that nothing listens on now."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def port_is_free(port: int) -> bool:
    """Whether nothing listens on ``port`` of the loopback interface now (a connection of an
    earlier server left waiting to close does not count: gunicorn binds over it too)."""
    with socket.socket() as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def wait_until(ready: Callable[[], bool], timeout_s: float, what: str) -> None:
    """Poll ``ready`` until it holds; ``TimeoutError`` naming ``what`` otherwise."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if ready():
            return
        time.sleep(0.1)
    raise TimeoutError(f"{what} was not ready after {timeout_s} s")


def http_ok(url: str) -> bool:
    """Whether ``url`` answers 200."""
    try:
        return requests.get(url, timeout=1).status_code == 200
    except requests.RequestException:
        return False


class ManagedProcess:
    """A child process with its output in a log file, stopped politely then firmly. It gets this
    process's environment less its ``HPO_`` settings, plus ``env``: a shell's own (an
    ``HPO_TOKEN`` for the CLI, a production ``HPO_DATABASE_URL``) would make the local stack's API
    refuse its own worker, or reach another database."""

    def __init__(self, name: str, argv: Sequence[str], env: dict[str, str], log_path: Path) -> None:
        self.name = name
        self.log_path = log_path
        log_path.parent.mkdir(parents=True, exist_ok=True)
        self._log = log_path.open("ab")
        self.process = subprocess.Popen(
            list(argv),
            env={**_without_hpo_settings(os.environ), **env},
            stdout=self._log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )

    def alive(self) -> bool:
        return self.process.poll() is None

    def stop(self, timeout_s: float = 15) -> None:
        """SIGTERM the process group, then SIGKILL what is left after ``timeout_s``."""
        self._signal(signal.SIGTERM)
        try:
            self.process.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            self._signal(signal.SIGKILL)
            self.process.wait(timeout=5)
        self._log.close()

    def _signal(self, sig: signal.Signals) -> None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.process.pid, sig)


def _without_hpo_settings(environ: Mapping[str, str]) -> dict[str, str]:
    return {name: value for name, value in environ.items() if not name.startswith("HPO_")}
