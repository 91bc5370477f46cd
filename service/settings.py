"""The one settings object, read from ``HPO_``-prefixed environment variables.

Built once per process (API, worker, CLI) and passed down; nothing here is a global.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict
from sqlalchemy import make_url
from sqlalchemy.exc import ArgumentError

from service.webhook_transport import PROXY_FORM, Proxy

DEFAULT_DATA_DIR = Path(".hpo")
DEFAULT_DATASET_CACHE_BYTES = 8 * 1024**3
VISIBILITY_MARGIN_S = 600
PLACEHOLDER = "change-me"  # what deploy/'s secrets hold until replaced
_LEVEL_ALIASES = {"WARN": "WARNING", "FATAL": "CRITICAL"}


class Settings(BaseSettings):
    """Every setting the API, the workers and the CLI read. Env names: ``HPO_<FIELD>``."""

    # A refused setting's error names the field and the rule, not the value: it may be a secret
    # (a token, the webhook proxy's password) and the error goes to the start-up log.
    model_config = SettingsConfigDict(env_prefix="HPO_", extra="ignore", hide_input_in_errors=True)

    database_url: str = Field(
        default=f"sqlite:///{DEFAULT_DATA_DIR / 'hpo.db'}",
        description="SQLAlchemy URL of the study database (SQLite embedded, PostgreSQL in production).",
    )
    broker_url: str = Field(
        default="redis://127.0.0.1:6379/0", description="Celery broker (Redis) URL."
    )
    service_url: str = Field(
        default="http://127.0.0.1:8000", description="Where workers and the CLI reach the API."
    )
    token: SecretStr | None = Field(
        default=None, description="Bearer token that workers and the CLI send to the API."
    )
    api_tokens: list[SecretStr] = Field(
        default_factory=list,
        description="Tokens the API accepts besides those made by `hpo token create` (JSON list); "
        "they act for the tenant 'default'.",
    )
    worker_tokens: list[SecretStr] = Field(
        default_factory=list,
        description="Worker tokens the API accepts besides those made by `hpo token create "
        "--worker` (JSON list): for a deployment whose workers start with it, before any token "
        "is in the database.",
    )
    require_tokens: bool = Field(
        default=True,
        description="Every endpoint but health and the API document needs a token; the one-machine "
        "stack (demo, tests) turns it off, a deployment keeps it.",
    )
    host: str = Field(default="127.0.0.1", description="Address `hpo serve` binds.")
    port: int = Field(default=8000, ge=1, le=65535, description="Port `hpo serve` binds.")
    api_processes: int = Field(default=1, ge=1, description="gunicorn worker processes.")
    api_threads: int = Field(default=8, ge=1, description="Threads per API process.")
    worker_concurrency: int = Field(
        default=1, ge=1, description="Celery processes per worker node (one per GPU)."
    )
    worker_torch_threads: int = Field(
        default=0,
        ge=0,
        description="PyTorch's CPU threads per worker process; 0: on the CPU, the node's cores "
        "shared out between the processes, and with GPUs, PyTorch's default (every core: set it "
        "to the CPUs a GPU pod is given). Small models train faster on 1, and so does a machine "
        "whose cores also serve the API (the one-machine stack sets 1).",
    )
    gpus: str = Field(
        default="",
        description="Comma-separated GPU indices of this node; worker process i is pinned to GPU i.",
    )
    task_time_limit_s: int = Field(
        default=6 * 3600, ge=1, description="Hard time limit of one trial task."
    )
    broker_visibility_timeout_s: int = Field(
        default=6 * 3600 + VISIBILITY_MARGIN_S,
        ge=1,
        description="Redis re-delivers an unacknowledged task after this; must exceed the time limit.",
    )
    lease_ttl_s: float = Field(
        default=120,
        gt=0,
        description="A running trial's lease lasts this long past its last report or heartbeat. "
        "Workers read it too (their calls retry for longer): give them the API's value.",
    )
    dispatch_timeout_s: float = Field(
        default=3600,
        gt=0,
        description="How long a dispatched trial may wait in the queue for a worker to claim it.",
    )
    reaper_interval_s: float = Field(
        default=5, ge=0, description="How often the API expires leases (0: never, for tests)."
    )
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"] = Field(
        default="INFO", description="Python logging level."
    )
    max_file_bytes: int = Field(
        default=64 * 1024 * 1024,
        ge=1024,
        le=1024**3,
        description="Largest file the API takes: a data set upload or a trial's checkpoint.",
    )
    metrics_token: SecretStr | None = Field(
        default=None, description="Bearer token `/metrics` asks for; unset, `/metrics` is open."
    )
    worker_dataset_cache_bytes: int = Field(
        default=DEFAULT_DATASET_CACHE_BYTES,
        ge=0,
        description="Most bytes of registered data set files a worker node keeps on disk, beyond "
        "those used in the last 10 minutes: after each download the files used longest ago go "
        "(0: keep only those).",
    )
    worker_metrics_port: int = Field(
        default=0, ge=0, le=65535, description="Port of a worker node's metrics (0: off)."
    )
    webhook_allow_private: bool = Field(
        default=False,
        description="Deliver webhooks to loopback, private and link-local addresses (one machine).",
    )
    webhook_proxy: SecretStr | None = Field(
        default=None,
        description=f"HTTP proxy webhooks leave through ({PROXY_FORM}): it is asked to open a "
        "tunnel (CONNECT) to the receiver's address as checked, whose name must resolve here.",
    )

    @field_validator("log_level", mode="before")
    @classmethod
    def _a_level_in_any_case(cls, level: object) -> object:
        if not isinstance(level, str):
            return level
        named = level.strip().upper()
        return _LEVEL_ALIASES.get(named, named)  # Python's logging takes these two names too

    @field_validator("gpus")
    @classmethod
    def _gpu_indices(cls, gpus: str) -> str:
        for gpu in (part.strip() for part in gpus.split(",") if part.strip()):
            if not (gpu.isascii() and gpu.isdigit()) and not gpu.startswith(("GPU-", "MIG-")):
                raise ValueError(
                    f"{gpu!r} is no GPU: a comma-separated list of indices (0,1) or GPU-/MIG- UUIDs"
                )
        return gpus

    @field_validator("token", "api_tokens", "worker_tokens", "metrics_token")
    @classmethod
    def _one_word_tokens(
        cls, tokens: SecretStr | list[SecretStr] | None
    ) -> SecretStr | list[SecretStr] | None:
        listed = tokens if isinstance(tokens, list) else [tokens] if tokens else []
        for index, token in enumerate(listed):
            if any(character.isspace() for character in token.get_secret_value()):
                where = f"item {index} " if isinstance(tokens, list) else ""
                raise ValueError(
                    f"{where}holds a space or line break: a bearer header carries a token as one "
                    "word, so it could never match"
                )
        return tokens

    @field_validator("webhook_proxy")
    @classmethod
    def _a_proxy_url(cls, proxy: SecretStr | None) -> SecretStr | None:
        if proxy is not None:
            Proxy.from_url(proxy.get_secret_value())  # ValueError naming the form
        return proxy

    @model_validator(mode="after")
    def _redelivery_after_the_time_limit(self) -> Settings:
        # A visibility timeout shorter than a task's time limit re-delivers trials that are still
        # running: left unset it follows the limit; set too short, the service refuses to start.
        if "broker_visibility_timeout_s" not in self.model_fields_set:
            self.broker_visibility_timeout_s = self.task_time_limit_s + VISIBILITY_MARGIN_S
        if self.broker_visibility_timeout_s <= self.task_time_limit_s:
            raise ValueError(
                f"HPO_BROKER_VISIBILITY_TIMEOUT_S ({self.broker_visibility_timeout_s}) must exceed "
                f"HPO_TASK_TIME_LIMIT_S ({self.task_time_limit_s})"
            )
        return self

    def tokens_required(self) -> bool:
        """Whether requests without a token are refused."""
        return self.require_tokens or bool(self.api_tokens) or bool(self.worker_tokens)

    def accepted_tokens(self) -> set[str]:
        """The API's accepted tokens as plain strings."""
        return {token.get_secret_value() for token in self.api_tokens}

    def accepted_worker_tokens(self) -> set[str]:
        """The API's accepted worker tokens as plain strings."""
        return {token.get_secret_value() for token in self.worker_tokens}

    def placeholder_settings(self) -> list[str]:
        """The secrets still holding one of deploy/'s placeholders (``change-me…``), by their
        variables' names: a deployment applied as it stands would take the tokens anyone who
        read the repository knows."""
        held = {
            "HPO_API_TOKENS": [token.get_secret_value() for token in self.api_tokens],
            "HPO_WORKER_TOKENS": [token.get_secret_value() for token in self.worker_tokens],
            "HPO_METRICS_TOKEN": [self.metrics_token.get_secret_value()]
            if self.metrics_token
            else [],
            "HPO_DATABASE_URL": [_password_of(self.database_url)],
        }
        return [name for name, values in held.items() if any(PLACEHOLDER in v for v in values)]

    def gpu_list(self) -> list[str]:
        """The node's GPU indices, in order."""
        return [gpu.strip() for gpu in self.gpus.split(",") if gpu.strip()]

    def bearer_token(self) -> str | None:
        """The token this process sends, if any."""
        return self.token.get_secret_value() if self.token else None


def _password_of(database_url: str) -> str:
    """The URL's password ("" without one, or for a URL SQLAlchemy cannot read): a folder or a
    host named change-me… is no placeholder."""
    try:
        return make_url(database_url).password or ""
    except ArgumentError:
        return ""
