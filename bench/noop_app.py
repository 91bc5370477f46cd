"""The broker benchmark's worker side: a Celery app with one no-op task, built from ``BENCH_*`` variables.

Run as ``python -m bench.noop_app worker --pool=prefork ...`` (the arguments of ``celery worker``).
The app carries the service's own Celery settings (:func:`service.queue_contract.celery_config`);
only the broker differs. The no-op task reports that it ran by sending its token in a UDP
datagram to ``127.0.0.1:$BENCH_NOTIFY_PORT``: no result backend, no polling on that side.
Given ``sleep_s``, it first reports that it started, then sleeps (to be killed mid-task).
"""

from __future__ import annotations

import json
import os
import socket
import sys
import time
from dataclasses import dataclass
from typing import Any

from celery import Celery
from celery.signals import worker_ready
from kombu.transport import sqlalchemy as kombu_sqlalchemy
from sqlalchemy import Engine, create_engine

from service.queue_contract import celery_config
from service.settings import Settings

NOOP_TASK = "bench.noop"
READY_TOKEN = "worker-ready"

ENV_BROKER_URL = "BENCH_BROKER_URL"
ENV_TRANSPORT = "BENCH_BROKER_TRANSPORT"
ENV_TRANSPORT_OPTIONS = "BENCH_TRANSPORT_OPTIONS"
ENV_NOTIFY_PORT = "BENCH_NOTIFY_PORT"

# Options that kombu itself reads. The stock SQLAlchemy channel passes every transport option
# it does not know to ``create_engine()``, which rejects these with a TypeError.
_KOMBU_LEVEL_OPTIONS = frozenset(
    {
        "queue_tablename",
        "message_tablename",
        "callback",
        "errback",
        "max_retries",
        "interval_start",
        "interval_step",
        "interval_max",
        "retry_errors",
        "polling_interval",
        "visibility_timeout",
    }
)


class LenientSQLAlchemyChannel(kombu_sqlalchemy.Channel):
    """kombu's SQLAlchemy channel that keeps kombu-level options away from ``create_engine``."""

    def _engine_from_config(self) -> Engine:
        conninfo = self.connection.client
        engine_options = {
            key: value
            for key, value in conninfo.transport_options.items()
            if key not in _KOMBU_LEVEL_OPTIONS
        }
        return create_engine(conninfo.hostname, **engine_options)


class LenientSQLAlchemyTransport(kombu_sqlalchemy.Transport):
    """kombu's SQLAlchemy transport on which ``polling_interval`` can be set (URL ``sqlite:///...``)."""

    Channel = LenientSQLAlchemyChannel


LENIENT_SQLALCHEMY_TRANSPORT = f"{__name__}:{LenientSQLAlchemyTransport.__name__}"


@dataclass(frozen=True)
class BrokerChoice:
    """Which broker an app talks to: a URL, an optional transport class, optional options.

    ``transport_options=None`` keeps the service's ``broker_transport_options``.
    """

    url: str
    transport: str | None = None
    transport_options: dict[str, Any] | None = None

    def env(self) -> dict[str, str]:
        """The ``BENCH_*`` variables that :meth:`from_env` reads back."""
        env = {ENV_BROKER_URL: self.url}
        if self.transport is not None:
            env[ENV_TRANSPORT] = self.transport
        if self.transport_options is not None:
            env[ENV_TRANSPORT_OPTIONS] = json.dumps(self.transport_options)
        return env

    @classmethod
    def from_env(cls) -> BrokerChoice:
        """The choice described by the ``BENCH_*`` environment variables."""
        options = os.environ.get(ENV_TRANSPORT_OPTIONS)
        return cls(
            url=os.environ[ENV_BROKER_URL],
            transport=os.environ.get(ENV_TRANSPORT),
            transport_options=json.loads(options) if options is not None else None,
        )


def notify(port: int, token: str) -> None:
    """Send ``token`` in one UDP datagram to ``127.0.0.1:port``."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.sendto(token.encode(), ("127.0.0.1", port))


def make_app(choice: BrokerChoice, notify_port: int | None = None) -> Celery:
    """A Celery app with the service's settings on ``choice``'s broker.

    With ``notify_port`` it is a worker app: it registers the no-op task and announces
    ``READY_TOKEN`` when the worker is ready. Without, it is a sender (``send_task`` by name).
    """
    config = celery_config(Settings(broker_url=choice.url))
    if choice.transport_options is not None:
        config["broker_transport_options"] = choice.transport_options
    if choice.transport is not None:
        config["broker_transport"] = choice.transport
    app = Celery("hpo-bench", set_as_current=False)
    app.conf.update(config)
    if notify_port is not None:
        _add_noop_task(app, notify_port)
    return app


def ready_token(pid: int) -> str:
    """What the worker whose main process is ``pid`` sends when it is ready."""
    return f"{READY_TOKEN}:{pid}"


def started_token(token: str) -> str:
    """What a task that sleeps sends when it starts."""
    return f"{token}:started"


def _add_noop_task(app: Celery, port: int) -> None:
    @app.task(name=NOOP_TASK)
    def noop(token: str, sleep_s: float = 0.0) -> None:
        if sleep_s > 0:
            notify(port, started_token(token))
            time.sleep(sleep_s)
        notify(port, token)

    def announce_ready(**_: Any) -> None:
        notify(port, ready_token(os.getpid()))

    worker_ready.connect(announce_ready, weak=False)


def main() -> None:
    """Run a worker: ``python -m bench.noop_app worker [celery worker options]``."""
    app = make_app(BrokerChoice.from_env(), int(os.environ[ENV_NOTIFY_PORT]))
    app.worker_main(argv=sys.argv[1:])


if __name__ == "__main__":
    main()
