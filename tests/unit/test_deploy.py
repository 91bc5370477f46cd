"""The deployment files agree with the settings, the package and each other.

Parses deploy/compose.yaml, deploy/Dockerfile.{api,worker} and deploy/.env.example; runs nothing.
"""

from __future__ import annotations

import json
import re
import shlex
import tomllib
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
import yaml

from service.settings import Settings

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"
SERVICES = {"db-upgrade", "api", "worker", "redis", "postgres", "flower", "dashboard"}
SETTING_VARS = {f"HPO_{name.upper()}" for name in Settings.model_fields}
# ${NAME}, ${NAME:-default}, ${NAME-default}, ${NAME:?message}, ${NAME?message}
INTERPOLATION = re.compile(r"\$\{(\w+)(?::?([-?])([^}]*))?\}")


@dataclass
class Dockerfile:
    """The instructions of a Dockerfile that these tests read."""

    base: str = ""
    env: dict[str, str] = field(default_factory=dict)
    expose: list[int] = field(default_factory=list)
    cmd: list[str] = field(default_factory=list)
    entrypoint: list[str] = field(default_factory=list)
    user: str = ""
    run: list[str] = field(default_factory=list)
    healthcheck: str = ""


def _instructions(text: str) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) pairs, comments dropped and continuation lines joined."""
    result: list[tuple[str, str]] = []
    pending = ""
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        keyword, _, args = (pending + line).partition(" ")
        result.append((keyword.upper(), args.strip()))
        pending = ""
    return result


def _argv(args: str) -> list[str]:
    """Exec form (JSON array) or shell form, as a list of words."""
    return list(json.loads(args)) if args.startswith("[") else shlex.split(args)


def parse_dockerfile(text: str) -> Dockerfile:
    parsed = Dockerfile()
    for keyword, args in _instructions(text):
        if keyword == "FROM":
            parsed.base = args.split()[0]
        elif keyword == "ENV":
            words = shlex.split(args)
            if "=" in words[0]:  # ENV KEY=VALUE [KEY=VALUE ...]
                for word in words:
                    key, _, value = word.partition("=")
                    parsed.env[key] = value
            else:  # ENV KEY VALUE
                key, _, value = args.partition(" ")
                parsed.env[key] = " ".join(shlex.split(value))
        elif keyword == "EXPOSE":
            parsed.expose += [int(port.split("/")[0]) for port in args.split()]
        elif keyword == "CMD":
            parsed.cmd = _argv(args)
        elif keyword == "ENTRYPOINT":
            parsed.entrypoint = _argv(args)
        elif keyword == "USER":
            parsed.user = args
        elif keyword == "RUN":
            parsed.run.append(args)
        elif keyword == "HEALTHCHECK":
            parsed.healthcheck = args
    return parsed


@cache
def dotenv() -> dict[str, str]:
    """deploy/.env.example as compose reads it (quotes around a value stripped)."""
    values: dict[str, str] = {}
    for raw in (DEPLOY / ".env.example").read_text().splitlines():
        line = raw.strip()
        if line and not line.startswith("#"):
            key, _, value = line.partition("=")
            if len(value) >= 2 and value[0] == value[-1] and value[0] in "'\"":
                value = value[1:-1]
            values[key.strip()] = value
    return values


def interpolate(value: Any, variables: dict[str, str]) -> Any:
    """Compose's ${VAR} substitution, applied to every string of a parsed compose file."""
    if isinstance(value, dict):
        return {key: interpolate(item, variables) for key, item in value.items()}
    if isinstance(value, list):
        return [interpolate(item, variables) for item in value]
    if not isinstance(value, str):
        return value

    def substitute(match: re.Match[str]) -> str:
        name, kind, rest = match.groups()
        if name in variables:
            return variables[name]
        assert kind == "-", f"${{{name}}} has no default and .env.example does not set it"
        return str(rest)

    return INTERPOLATION.sub(substitute, value)


@cache
def raw_compose() -> dict[str, Any]:
    loaded = yaml.safe_load((DEPLOY / "compose.yaml").read_text())
    assert isinstance(loaded, dict)
    return loaded


def compose() -> dict[str, Any]:
    """The compose file with the variables of .env.example substituted."""
    return dict(interpolate(raw_compose(), dotenv()))


def service(name: str) -> dict[str, Any]:
    return dict(compose()["services"][name])


def dockerfile_of(name: str) -> Dockerfile:
    build = service(name)["build"]
    context = (DEPLOY / build["context"]).resolve()
    return parse_dockerfile((context / build["dockerfile"]).read_text())


def environment(name: str) -> dict[str, str]:
    """What the container sees: the Dockerfile's ENV, overridden by compose's environment."""
    env = dict(dockerfile_of(name).env) if "build" in service(name) else {}
    block = service(name).get("environment") or {}
    if isinstance(block, list):
        block = dict(item.split("=", 1) for item in block)
    env.update({key: str(value) for key, value in block.items()})
    return env


def command(name: str) -> list[str]:
    """ENTRYPOINT + CMD as the container runs them, compose overriding the Dockerfile."""
    spec, image = service(name), dockerfile_of(name)
    entrypoint = spec.get("entrypoint", image.entrypoint)
    cmd = spec.get("command", image.cmd)
    as_list = [_argv(part) if isinstance(part, str) else part for part in (entrypoint, cmd)]
    return [*as_list[0], *as_list[1]]


def api_port() -> int:
    """The container port compose publishes for the API."""
    ports = service("api")["ports"]
    assert len(ports) == 1, ports
    port = ports[0]
    target = port["target"] if isinstance(port, dict) else str(port).rsplit(":", 1)[-1]
    return int(str(target).split("/")[0])


@cache
def torch_pin() -> str:
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text())
    worker = pyproject["project"]["optional-dependencies"]["worker"]
    pins = [m.group(1) for dep in worker if (m := re.fullmatch(r"torch\s*==\s*(\S+)", dep))]
    assert len(pins) == 1, f"pyproject's [worker] extra pins no single torch: {worker}"
    return pins[0]


def test_dockerfile_parser_reads_both_env_forms_and_exec_form() -> None:
    parsed = parse_dockerfile(
        'FROM x:1 AS y\nENV A=1 \\\n    B="two words"\n# ENV C=3\nENV D some value\n'
        'EXPOSE 8000/tcp 9000\nCMD ["hpo", "serve"]\n'
    )
    assert parsed.base == "x:1"
    assert parsed.env == {"A": "1", "B": "two words", "D": "some value"}
    assert parsed.expose == [8000, 9000]
    assert parsed.cmd == ["hpo", "serve"]


def test_compose_has_its_services() -> None:
    assert set(raw_compose()["services"]) == SERVICES


def test_every_hpo_variable_is_a_setting() -> None:
    named = set(environment("api")) | set(environment("worker"))
    for path in [*DEPLOY.glob("Dockerfile.*"), DEPLOY / "compose.yaml", DEPLOY / ".env.example"]:
        named |= set(re.findall(r"\bHPO_[A-Z0-9_]+\b", path.read_text()))
    named = {name for name in named if name.startswith("HPO_")}
    assert named, "no HPO_ variable found: the parser is broken"
    assert named <= SETTING_VARS, f"not fields of Settings: {sorted(named - SETTING_VARS)}"


@pytest.mark.parametrize("name", ["api", "worker", "dashboard"])
def test_container_environment_builds_settings(name: str, monkeypatch: pytest.MonkeyPatch) -> None:
    for var in SETTING_VARS:
        monkeypatch.delenv(var, raising=False)
    for key, value in environment(name).items():
        monkeypatch.setenv(key, value)
    Settings()  # raises on a value the settings reject (a bad port, API tokens not JSON)


def test_worker_holds_no_database_credentials() -> None:
    worker, env = service("worker"), environment("worker")
    assert "HPO_DATABASE_URL" not in env
    assert "env_file" not in worker, "an env_file could hand the worker the database URL"
    password = service("postgres")["environment"]["POSTGRES_PASSWORD"]
    assert all(password not in value for value in env.values())


def test_worker_reserves_gpus_and_runs_one_process_per_gpu() -> None:
    devices = service("worker")["deploy"]["resources"]["reservations"]["devices"]
    gpus = [d for d in devices if d.get("driver") == "nvidia" and "gpu" in d["capabilities"]]
    assert len(gpus) == 1, devices
    count = gpus[0].get("count", len(gpus[0].get("device_ids", [])))
    assert count == "all" or int(count) >= 1
    # One process per GPU, each seeing its own: HPO_GPUS lists the reserved ones (without it
    # every process would train on GPU 0).
    listed = [gpu for gpu in environment("worker")["HPO_GPUS"].split(",") if gpu.strip()]
    if count != "all":
        assert listed == [str(index) for index in range(int(count))]


def test_redis_persists_with_append_only_file() -> None:
    redis = service("redis")
    args = redis["command"] if isinstance(redis["command"], list) else redis["command"].split()
    assert args[args.index("--appendonly") + 1] == "yes"
    assert any(str(volume).endswith(":/data") for volume in redis["volumes"])


@pytest.mark.parametrize(("name", "subcommand"), [("api", "serve"), ("worker", "worker")])
def test_containers_run_the_hpo_cli(name: str, subcommand: str) -> None:
    image = dockerfile_of(name)
    for argv in (command(name), [*image.entrypoint, *image.cmd]):  # in compose, and standalone
        assert "hpo" in argv, argv
        assert argv[argv.index("hpo") + 1] == subcommand, argv


def test_api_port_agrees_across_compose_dockerfile_and_settings() -> None:
    port = api_port()
    assert dockerfile_of("api").expose == [port]
    default = Settings.model_fields["port"].default
    assert int(environment("api").get("HPO_PORT", default)) == port
    assert environment("api")["HPO_HOST"] == "0.0.0.0", "the API must listen beyond loopback"


def test_worker_service_url_points_at_the_api() -> None:
    url = urlsplit(environment("worker")["HPO_SERVICE_URL"])
    assert url.hostname == "api"
    assert (url.port or {"http": 80, "https": 443}[url.scheme]) == api_port()


def test_api_and_worker_agree_on_the_queue() -> None:
    api, worker = environment("api"), environment("worker")
    for key in ("HPO_BROKER_URL", "HPO_TASK_TIME_LIMIT_S"):
        assert api.get(key) == worker.get(key), key
    assert urlsplit(api["HPO_BROKER_URL"]).hostname == "redis"


def test_api_database_is_the_postgres_service() -> None:
    url = urlsplit(environment("api")["HPO_DATABASE_URL"])
    postgres = service("postgres")["environment"]
    # psycopg 3 is the driver pyproject installs; a bare postgresql:// means psycopg2.
    assert url.scheme == "postgresql+psycopg"
    assert url.hostname == "postgres"
    assert url.username == postgres["POSTGRES_USER"]
    assert url.password == postgres["POSTGRES_PASSWORD"]
    assert url.path == "/" + postgres["POSTGRES_DB"]
    assert "pg_isready" in " ".join(service("postgres")["healthcheck"]["test"])


def test_services_wait_for_healthy_dependencies() -> None:
    for name, needs in {"api": {"postgres", "redis"}, "worker": {"api", "redis"}}.items():
        depends = service(name)["depends_on"]
        assert {d for d in needs if depends[d]["condition"] == "service_healthy"} == needs


def test_worker_image_installs_the_worker_extra_with_the_cuda_torch_pin() -> None:
    image = dockerfile_of("worker")
    installs = " ".join(run for run in image.run if "pip install" in run)
    assert ".[worker]" in installs
    assert f"torch=={torch_pin()}" in installs
    repository, _, tag = image.base.partition(":")
    if repository == "pytorch/pytorch":  # its torch satisfies the pin: pip keeps the CUDA build
        assert tag.startswith(f"{torch_pin()}-cuda") and tag.endswith("-runtime"), tag
    else:  # torch must come from the PyTorch CUDA index, not PyPI's default
        assert repository == "nvidia/cuda" and "runtime" in tag, image.base
        assert "--index-url https://download.pytorch.org/whl/cu" in installs


def test_api_image_is_slim_and_has_no_torch() -> None:
    image = dockerfile_of("api")
    assert image.base.startswith("python:3.11-slim")
    installs = " ".join(run for run in image.run if "pip install" in run)
    assert "pip install" in installs
    assert "[worker]" not in installs and "torch" not in installs
    assert "/health" in image.healthcheck


@pytest.mark.parametrize("name", ["api", "worker"])
def test_images_run_as_a_non_root_user(name: str) -> None:
    assert dockerfile_of(name).user not in {"", "root", "0"}


def test_env_example_matches_the_variables_compose_reads() -> None:
    text = (DEPLOY / "compose.yaml").read_text()
    used = {m.group(1) for m in INTERPOLATION.finditer(text)}
    required = {m.group(1) for m in INTERPOLATION.finditer(text) if m.group(2) == "?"}
    assert required <= set(dotenv()), f"missing from .env.example: {required - set(dotenv())}"
    assert set(dotenv()) <= used, f"not read by compose: {set(dotenv()) - used}"
    # The example works as copied: the API takes the token the worker sends as a worker's, and
    # not as a user's of the tenant `default` (which could reach that tenant's trials only).
    sent = environment("worker")["HPO_TOKEN"]
    assert sent in json.loads(environment("api")["HPO_WORKER_TOKENS"])
    assert sent not in json.loads(environment("api")["HPO_API_TOKENS"])


def test_the_schema_is_upgraded_before_the_api_starts() -> None:
    # it waits for PostgreSQL's first start (a socket-only setup server, then the real one)
    assert command("db-upgrade") == ["hpo", "db", "upgrade", "--wait", "120"]
    assert "127.0.0.1" in service("postgres")["healthcheck"]["test"][-1]  # over TCP
    upgrade = environment("db-upgrade")["HPO_DATABASE_URL"]
    assert upgrade == environment("api")["HPO_DATABASE_URL"]
    needs = service("api")["depends_on"]["db-upgrade"]
    assert needs["condition"] == "service_completed_successfully"


def test_a_worker_finishes_its_trial_before_compose_stops_it() -> None:
    grace = service("worker")["stop_grace_period"]
    hours, _, minutes = grace.removesuffix("m").partition("h")
    limit = int(environment("worker")["HPO_TASK_TIME_LIMIT_S"])
    assert int(hours) * 3600 + int(minutes or 0) * 60 > limit


def test_flower_watches_the_brokers_redis_from_the_api_image() -> None:
    argv = command("flower")
    assert argv[0] == "celery" and "flower" in argv
    assert f"--broker={environment('api')['HPO_BROKER_URL']}" in argv
    assert service("flower")["build"] == service("api")["build"]
    assert ".[ops]" in " ".join(dockerfile_of("flower").run)
    assert environment("flower")["FLOWER_BASIC_AUTH"], "Flower must not be open"
    port = int(next(word for word in argv if word.startswith("--port=")).split("=", 1)[1])
    assert service("flower")["ports"] == [f"127.0.0.1:{port}:{port}"]


def test_dashboard_runs_hpo_dashboard_on_the_apis_database_and_tokens() -> None:
    from typer.main import get_command

    from cli.main import app

    argv = command("dashboard")
    assert argv[:2] == ["hpo", "dashboard"]
    hpo: Any = get_command(app)
    options = {opt for param in hpo.commands["dashboard"].params for opt in param.opts}
    assert {word for word in argv if word.startswith("--")} <= options
    assert argv[argv.index("--host") + 1] == "0.0.0.0"
    port = int(argv[argv.index("--port") + 1])
    assert service("dashboard")["ports"] == [f"127.0.0.1:{port}:{port}"]
    for key in ("HPO_DATABASE_URL", "HPO_API_TOKENS"):
        assert environment("dashboard")[key] == environment("api")[key], key
