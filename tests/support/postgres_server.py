"""A throwaway PostgreSQL server for the tests: initdb into a temporary folder, pg_ctl start.

Uses the PostgreSQL binaries of the machine (``make test`` installs them where missing).
PostgreSQL refuses to run as root, so as root the server runs as the ``postgres`` user.
"""

from __future__ import annotations

import glob
import os
import pwd
import shutil
import subprocess
import tempfile
from pathlib import Path

import psycopg

from cli.processes import free_port

SERVER_USER = "postgres"


def find_bindir() -> Path:
    """The folder holding ``initdb`` and ``pg_ctl``."""
    if shutil.which("pg_config"):
        candidate = subprocess.run(
            ["pg_config", "--bindir"], capture_output=True, text=True
        ).stdout.strip()
        if (Path(candidate) / "initdb").exists():
            return Path(candidate)
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"))
    if not found:
        raise RuntimeError(
            "no PostgreSQL server binaries found: run `make test`, which installs them"
        )
    return Path(found[-1]).parent


class PostgresServer:
    """One PostgreSQL cluster on a free loopback port, with trust authentication."""

    def __init__(self) -> None:
        self.bindir = find_bindir()
        self.port = free_port()
        self.root = Path(tempfile.mkdtemp(prefix="hpo-pg-"))
        self.data = self.root / "data"
        self._as_root = os.geteuid() == 0

    def start(self) -> PostgresServer:
        """initdb and start; returns when the server accepts connections."""
        if self._as_root:
            user = pwd.getpwnam(SERVER_USER)
            os.chown(self.root, user.pw_uid, user.pw_gid)
        self._run("initdb", "-D", str(self.data), "-U", "postgres", "--auth=trust", "-E", "UTF8")
        self.start_server()
        return self

    def start_server(self) -> None:
        """Start the (initialised) cluster; returns when it accepts connections."""
        options = (
            f"-p {self.port} -k {self.root} -c listen_addresses=127.0.0.1 -c max_connections=200"
        )
        self._run(
            "pg_ctl",
            "-D",
            str(self.data),
            "-o",
            options,
            "-l",
            str(self.root / "server.log"),
            "-w",
            "start",
        )

    def url(self, database: str = "postgres") -> str:
        """SQLAlchemy URL of ``database`` on this server."""
        return f"postgresql+psycopg://postgres@127.0.0.1:{self.port}/{database}"

    def create_database(self, name: str) -> str:
        """Create an empty database; returns its URL."""
        with psycopg.connect(
            f"postgresql://postgres@127.0.0.1:{self.port}/postgres", autocommit=True
        ) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
        return self.url(name)

    def stop(self, mode: str = "fast") -> None:
        """Stop the server (``fast``: roll back open transactions and close connections)."""
        self._run("pg_ctl", "-D", str(self.data), "-m", mode, "-w", "stop")

    def remove(self) -> None:
        """Stop if running and delete the cluster's files."""
        subprocess.run(
            self._argv("pg_ctl", "-D", str(self.data), "-m", "immediate", "stop"),
            capture_output=True,
        )
        shutil.rmtree(self.root, ignore_errors=True)

    def _run(self, program: str, *args: str) -> None:
        subprocess.run(self._argv(program, *args), check=True, capture_output=True, cwd=self.root)

    def _argv(self, program: str, *args: str) -> list[str]:
        command = [str(self.bindir / program), *args]
        return ["runuser", "-u", SERVER_USER, "--", *command] if self._as_root else command
