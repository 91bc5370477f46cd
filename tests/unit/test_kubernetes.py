"""The Kubernetes manifests (deploy/kubernetes/) are valid and agree with the code and each other.

Core objects are validated offline, strictly (an unknown field is an error), against the
Kubernetes JSON schemas that the ``kubernetes-validate`` package ships; KEDA's ScaledObject, a
custom resource, against a schema written from KEDA's documented fields. Runs nothing.
"""

from __future__ import annotations

import json
import re
import tomllib
from functools import cache
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import jsonschema
import kubernetes_validate
import pytest
import typer
import yaml

from cli.main import app as hpo_app
from service.queue_contract import TRIALS_QUEUE
from service.settings import Settings

ROOT = Path(__file__).resolve().parents[2]
MANIFESTS = ROOT / "deploy" / "kubernetes"
KUSTOMIZATION = MANIFESTS / "kustomization.yaml"
KUBERNETES_VERSION = kubernetes_validate.latest_version()
SETTING_VARS = {f"HPO_{name.upper()}" for name in Settings.model_fields}
WORKLOAD_KINDS = {"Deployment", "StatefulSet", "Job"}

_STRING_MAP = {"type": "object", "additionalProperties": {"type": "string"}}
# KEDA's ScaledObject (keda.sh/v1alpha1), from https://keda.sh/docs/latest/reference/scaledobject-spec/
# and the Redis Lists scaler's parameters (https://keda.sh/docs/latest/scalers/redis-lists/).
# advanced.horizontalPodAutoscalerConfig.behavior is Kubernetes' own type: checked separately.
SCALED_OBJECT_SCHEMA: dict[str, Any] = {
    "type": "object",
    "additionalProperties": False,
    "required": ["apiVersion", "kind", "metadata", "spec"],
    "properties": {
        "apiVersion": {"const": "keda.sh/v1alpha1"},
        "kind": {"const": "ScaledObject"},
        "metadata": {
            "type": "object",
            "additionalProperties": False,
            "required": ["name"],
            "properties": {
                "name": {"type": "string"},
                "namespace": {"type": "string"},
                "labels": _STRING_MAP,
                "annotations": _STRING_MAP,
            },
        },
        "spec": {
            "type": "object",
            "additionalProperties": False,
            "required": ["scaleTargetRef", "triggers"],
            "properties": {
                "scaleTargetRef": {
                    "type": "object",
                    "additionalProperties": False,
                    "required": ["name"],
                    "properties": {
                        "apiVersion": {"type": "string"},
                        "kind": {"type": "string"},
                        "name": {"type": "string"},
                        "envSourceContainerName": {"type": "string"},
                    },
                },
                **{
                    field: {"type": "integer", "minimum": 0}
                    for field in (
                        "pollingInterval",
                        "cooldownPeriod",
                        "initialCooldownPeriod",
                        "idleReplicaCount",
                        "minReplicaCount",
                        "maxReplicaCount",
                    )
                },
                "fallback": {
                    "type": "object",
                    "additionalProperties": False,
                    "required": ["failureThreshold", "replicas"],
                    "properties": {
                        "failureThreshold": {"type": "integer"},
                        "replicas": {"type": "integer"},
                        "behavior": {"type": "string"},
                    },
                },
                "advanced": {
                    "type": "object",
                    "additionalProperties": False,
                    "properties": {
                        "restoreToOriginalReplicaCount": {"type": "boolean"},
                        "horizontalPodAutoscalerConfig": {
                            "type": "object",
                            "additionalProperties": False,
                            "properties": {"name": {"type": "string"}, "behavior": {}},
                        },
                        "scalingModifiers": {"type": "object"},
                    },
                },
                "triggers": {"type": "array", "minItems": 1, "items": {"$ref": "#/$defs/trigger"}},
            },
        },
    },
    "$defs": {
        "trigger": {
            "type": "object",
            "additionalProperties": False,
            "required": ["type", "metadata"],
            "properties": {
                "type": {"type": "string"},
                "name": {"type": "string"},
                "metadata": _STRING_MAP,
                "metricType": {"enum": ["AverageValue", "Value", "Utilization"]},
                "useCachedMetrics": {"type": "boolean"},
                "authenticationRef": {
                    "type": "object",
                    "additionalProperties": False,
                    "required": ["name"],
                    "properties": {"name": {"type": "string"}, "kind": {"type": "string"}},
                },
            },
            "allOf": [
                {
                    "if": {"properties": {"type": {"const": "redis"}}},
                    "then": {"properties": {"metadata": {"$ref": "#/$defs/redisListMetadata"}}},
                },
                {
                    "if": {"properties": {"type": {"const": "metrics-api"}}},
                    "then": {"properties": {"metadata": {"$ref": "#/$defs/metricsApiMetadata"}}},
                },
            ],
        },
        # https://keda.sh/docs/2.14/scalers/metrics-api/ (format: KEDA 2.14 on)
        "metricsApiMetadata": {
            "type": "object",
            "additionalProperties": False,
            "required": ["url", "valueLocation", "targetValue"],
            "properties": {
                "format": {"enum": ["json", "xml", "yaml", "prometheus"]},
                "authMode": {"enum": ["apiKey", "basic", "tls", "bearer"]},
                **{
                    name: {"type": "string"}
                    for name in (
                        "url",
                        "valueLocation",
                        "targetValue",
                        "activationTargetValue",
                        "unsafeSsl",
                        "method",
                        "keyParamName",
                    )
                },
            },
        },
        "redisListMetadata": {
            "type": "object",
            "additionalProperties": False,
            "required": ["listName", "listLength"],
            "properties": {
                name: {"type": "string"}
                for name in (
                    "address",
                    "host",
                    "port",
                    "addressFromEnv",
                    "hostFromEnv",
                    "portFromEnv",
                    "usernameFromEnv",
                    "passwordFromEnv",
                    "listName",
                    "listLength",
                    "activationListLength",
                    "enableTLS",
                    "unsafeSsl",
                    "databaseIndex",
                )
            },
        },
    },
}


@cache
def documents() -> tuple[tuple[str, dict[str, Any]], ...]:
    """(file name, object) for every object of every manifest but the kustomization."""
    found = []
    for path in sorted(MANIFESTS.glob("*.yaml")):
        if path == KUSTOMIZATION:
            continue
        for document in yaml.safe_load_all(path.read_text()):
            assert isinstance(document, dict), f"{path.name}: not a mapping"
            found.append((path.name, document))
    return tuple(found)


def objects(kind: str) -> dict[str, dict[str, Any]]:
    """The objects of one kind, by name."""
    return {doc["metadata"]["name"]: doc for _, doc in documents() if doc["kind"] == kind}


def one(kind: str, name: str) -> dict[str, Any]:
    found = objects(kind)
    assert name in found, f"no {kind} {name}: {sorted(found)}"
    return found[name]


@cache
def kustomization() -> dict[str, Any]:
    loaded = yaml.safe_load(KUSTOMIZATION.read_text())
    assert isinstance(loaded, dict)
    return loaded


def pod_spec(workload: dict[str, Any]) -> dict[str, Any]:
    return dict(workload["spec"]["template"]["spec"])


def containers(workload: dict[str, Any]) -> list[dict[str, Any]]:
    spec = pod_spec(workload)
    return [*spec.get("initContainers", []), *spec["containers"]]


def container(workload_name: str, name: str) -> dict[str, Any]:
    workloads = {**objects("Deployment"), **objects("StatefulSet"), **objects("Job")}
    found = [c for c in containers(workloads[workload_name]) if c["name"] == name]
    assert len(found) == 1, f"{workload_name} has no single container {name}"
    return found[0]


def string_data(kind: str, name: str) -> dict[str, str]:
    """A ConfigMap's data or a Secret's stringData (the placeholders these files carry)."""
    obj = one(kind, name)
    return dict(obj.get("data" if kind == "ConfigMap" else "stringData", {}))


def environment(item: dict[str, Any]) -> dict[str, str]:
    """What a container sees: envFrom first, env over it, references resolved to the values in
    these files' ConfigMaps and Secrets."""
    env: dict[str, str] = {}
    for source in item.get("envFrom", []):
        if "configMapRef" in source:
            env.update(string_data("ConfigMap", source["configMapRef"]["name"]))
        else:
            env.update(string_data("Secret", source["secretRef"]["name"]))
    for entry in item.get("env", []):
        if "value" in entry:
            env[entry["name"]] = str(entry["value"])
            continue
        ref = entry["valueFrom"]
        if "configMapKeyRef" in ref:
            env[entry["name"]] = string_data("ConfigMap", ref["configMapKeyRef"]["name"])[
                ref["configMapKeyRef"]["key"]
            ]
        else:
            env[entry["name"]] = string_data("Secret", ref["secretKeyRef"]["name"])[
                ref["secretKeyRef"]["key"]
            ]
    return env


def argv(item: dict[str, Any]) -> list[str]:
    """The container's command line, $(VAR) references expanded from its environment."""
    env = environment(item)
    words = [*item.get("command", []), *item.get("args", [])]
    return [re.sub(r"\$\((\w+)\)", lambda m: env[m.group(1)], word) for word in words]


def service_port(name: str) -> int:
    ports = one("Service", name)["spec"]["ports"]
    assert len(ports) == 1, ports
    return int(ports[0]["port"])


def hpo_command(words: list[str]) -> Any:
    """The click command that ``hpo WORDS...`` runs (fails if the CLI has no such command)."""
    command: Any = typer.main.get_command(hpo_app)
    for word in words:
        if word.startswith("-"):
            break
        assert word in command.commands, f"hpo has no command {words}"
        command = command.commands[word]
    return command


# --- schemas ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("path", "document"),
    [(path, doc) for path, doc in documents() if doc["apiVersion"] != "keda.sh/v1alpha1"],
    ids=lambda value: value if isinstance(value, str) else value["metadata"]["name"],
)
def test_core_objects_match_the_kubernetes_schemas_strictly(
    path: str, document: dict[str, Any]
) -> None:
    kubernetes_validate.validate(document, KUBERNETES_VERSION, strict=True)


def test_the_schema_check_is_strict() -> None:
    broken = yaml.safe_load((MANIFESTS / "worker.yaml").read_text())
    pod_spec(broken)["containers"][0]["enviroment"] = []  # a typo Kubernetes would drop
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(broken, KUBERNETES_VERSION, strict=True)


def test_the_scaled_object_matches_kedas_documented_fields() -> None:
    scaled = one("ScaledObject", "hpo-worker")
    jsonschema.Draft202012Validator(SCALED_OBJECT_SCHEMA).validate(scaled)
    behavior = scaled["spec"]["advanced"]["horizontalPodAutoscalerConfig"]["behavior"]
    # KEDA hands the behavior to the HorizontalPodAutoscaler it makes: check it as Kubernetes'.
    hpa = {
        "apiVersion": "autoscaling/v2",
        "kind": "HorizontalPodAutoscaler",
        "metadata": {"name": "keda-hpa-hpo-worker"},
        "spec": {
            "scaleTargetRef": scaled["spec"]["scaleTargetRef"],
            "minReplicas": 1,
            "maxReplicas": scaled["spec"]["maxReplicaCount"],
            "behavior": behavior,
        },
    }
    kubernetes_validate.validate(hpa, KUBERNETES_VERSION, strict=True)


def test_the_keda_schema_refuses_an_unknown_redis_parameter() -> None:
    scaled = yaml.safe_load(yaml.safe_dump(one("ScaledObject", "hpo-worker")))  # a copy
    (redis_trigger,) = [t for t in scaled["spec"]["triggers"] if t["type"] == "redis"]
    redis_trigger["metadata"]["listname"] = TRIALS_QUEUE
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.Draft202012Validator(SCALED_OBJECT_SCHEMA).validate(scaled)


def test_the_keda_schema_refuses_an_unknown_metrics_api_parameter() -> None:
    scaled = yaml.safe_load(yaml.safe_dump(one("ScaledObject", "hpo-worker")))
    (metrics_trigger,) = [t for t in scaled["spec"]["triggers"] if t["type"] == "metrics-api"]
    metrics_trigger["metadata"]["valuelocation"] = "hpo_workers_wanted"
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.Draft202012Validator(SCALED_OBJECT_SCHEMA).validate(scaled)


# --- the manifests agree with each other -----------------------------------------------------


def test_kustomization_applies_every_manifest_but_the_one_off_job() -> None:
    files = {path.name for path in MANIFESTS.glob("*.yaml")} - {KUSTOMIZATION.name}
    assert set(kustomization()["resources"]) == files - {"db-upgrade-job.yaml"}
    assert kustomization()["namespace"] == "hpo"
    assert set(objects("Namespace")) == {"hpo"}


def test_images_are_the_two_of_the_dockerfiles_and_set_by_the_kustomization() -> None:
    images = {image["name"]: image for image in kustomization()["images"]}
    assert set(images) == {"hpo-api", "hpo-worker"}
    for _, doc in documents():
        if doc["kind"] not in WORKLOAD_KINDS:
            continue
        for item in containers(doc):
            image = item["image"]
            if doc["kind"] == "Job":  # applied alone, not through the kustomization
                expected = images["hpo-api"]
                assert image == f"{expected['newName']}:{expected['newTag']}"
            elif doc["metadata"]["name"] == "hpo-worker":
                assert image == "hpo-worker"
            elif not doc["metadata"]["name"].startswith(("hpo-redis", "hpo-postgres")):
                assert image == "hpo-api", (doc["metadata"]["name"], image)


def test_every_service_selects_exactly_one_workload_and_a_named_port() -> None:
    workloads = [doc for _, doc in documents() if doc["kind"] in {"Deployment", "StatefulSet"}]
    for name, svc in objects("Service").items():
        selector = svc["spec"]["selector"]
        chosen = [
            w
            for w in workloads
            if selector.items() <= w["spec"]["template"]["metadata"]["labels"].items()
        ]
        assert [w["metadata"]["name"] for w in chosen] == [name], name
        port_names = {p["name"] for c in containers(chosen[0]) for p in c.get("ports", [])}
        assert {p["targetPort"] for p in svc["spec"]["ports"]} <= port_names, name


def test_workload_selectors_match_their_pod_labels() -> None:
    for _, doc in documents():
        if doc["kind"] in {"Deployment", "StatefulSet"}:
            labels = doc["spec"]["template"]["metadata"]["labels"]
            assert doc["spec"]["selector"]["matchLabels"].items() <= labels.items()
            if doc["kind"] == "StatefulSet":
                assert doc["spec"]["serviceName"] in objects("Service")


def test_every_secret_and_config_reference_exists() -> None:
    for _, doc in documents():
        if doc["kind"] not in WORKLOAD_KINDS:
            continue
        for item in containers(doc):
            environment(item)  # raises KeyError on a missing ConfigMap, Secret or key
            argv(item)  # and on a $(VAR) the container does not have


def test_every_hpo_variable_is_a_setting() -> None:
    named = set()
    for path in MANIFESTS.glob("*.yaml"):
        named |= set(re.findall(r"\bHPO_[A-Z0-9_]+\b", path.read_text()))
    assert named, "no HPO_ variable found"
    assert named <= SETTING_VARS, f"not fields of Settings: {sorted(named - SETTING_VARS)}"


@pytest.mark.parametrize(
    ("workload", "name"),
    [
        ("hpo-api", "api"),
        ("hpo-api", "db-upgrade"),
        ("hpo-worker", "worker"),
        ("hpo-dashboard", "dashboard"),
        ("hpo-db-upgrade", "db-upgrade"),
    ],
)
def test_each_hpo_container_environment_builds_settings(
    workload: str, name: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    for var in SETTING_VARS:
        monkeypatch.delenv(var, raising=False)
    for key, value in environment(container(workload, name)).items():
        monkeypatch.setenv(key, value)
    Settings()  # raises on a value the settings refuse (a bad port, tokens not a JSON list)


def test_containers_run_commands_the_hpo_cli_has() -> None:
    expected = {
        ("hpo-api", "api"): ["hpo", "serve"],
        ("hpo-api", "db-upgrade"): ["hpo", "db", "upgrade", "--wait", "120"],
        ("hpo-db-upgrade", "db-upgrade"): ["hpo", "db", "upgrade", "--wait", "120"],
        ("hpo-worker", "worker"): ["hpo", "worker"],
    }
    for (workload, name), words in expected.items():
        assert argv(container(workload, name)) == words
        options = {opt for param in hpo_command(words[1:]).params for opt in param.opts}
        assert {word for word in words if word.startswith("--")} <= options
    dashboard = argv(container("hpo-dashboard", "dashboard"))
    options = {opt for param in hpo_command(["dashboard"]).params for opt in param.opts}
    assert dashboard[:2] == ["hpo", "dashboard"]
    assert {word for word in dashboard if word.startswith("--")} <= options
    port = int(dashboard[dashboard.index("--port") + 1])
    assert dashboard[dashboard.index("--host") + 1] == "0.0.0.0"
    assert {p["containerPort"] for p in container("hpo-dashboard", "dashboard")["ports"]} == {port}
    assert service_port("hpo-dashboard") == port


def test_api_port_agrees_across_service_container_and_settings() -> None:
    api = container("hpo-api", "api")
    env = environment(api)
    assert [p["containerPort"] for p in api["ports"]] == [int(env["HPO_PORT"])]
    assert service_port("hpo-api") == int(env["HPO_PORT"])
    assert env["HPO_HOST"] == "0.0.0.0", "the API must listen beyond loopback"
    assert api["readinessProbe"]["httpGet"]["path"] == "/health"


def test_workers_reach_the_api_service_with_a_worker_token_and_no_database() -> None:
    worker = container("hpo-worker", "worker")
    env = environment(worker)
    url = urlsplit(env["HPO_SERVICE_URL"])
    assert url.hostname == "hpo-api" and url.port == service_port("hpo-api")
    secret = string_data("Secret", "hpo-worker-token")
    assert env["HPO_TOKEN"] == secret["HPO_TOKEN"]
    # The API takes that token as a worker's (not as a user's of the tenant `default`).
    api = environment(container("hpo-api", "api"))
    assert env["HPO_TOKEN"] in json.loads(api["HPO_WORKER_TOKENS"])
    assert env["HPO_TOKEN"] not in json.loads(api["HPO_API_TOKENS"])
    assert "HPO_DATABASE_URL" not in env
    assert "hpo-database" not in yaml.safe_dump(one("Deployment", "hpo-worker"))
    password = string_data("Secret", "hpo-database")["POSTGRES_PASSWORD"]
    assert all(password not in value for value in env.values())


def test_worker_pods_take_one_gpu_and_run_one_celery_process_on_it() -> None:
    worker = container("hpo-worker", "worker")
    env = environment(worker)
    assert worker["resources"]["limits"]["nvidia.com/gpu"] == 1
    settings = Settings.model_validate(
        {k[4:].lower(): v for k, v in env.items() if k in SETTING_VARS}
    )
    processes = len(settings.gpu_list()) or settings.worker_concurrency
    assert processes == 1 == settings.worker_concurrency
    assert settings.gpu_list() == ["0"], "the pod sees its one GPU as device 0"
    tolerations = pod_spec(one("Deployment", "hpo-worker"))["tolerations"]
    assert any(t["key"] == "nvidia.com/gpu" for t in tolerations)
    # PyTorch's CPU threads: the pod's CPUs (its default is every core of the node).
    assert settings.worker_torch_threads == int(worker["resources"]["requests"]["cpu"])


def test_a_scaled_down_worker_has_time_to_finish_its_trial() -> None:
    grace = pod_spec(one("Deployment", "hpo-worker"))["terminationGracePeriodSeconds"]
    limit = int(string_data("ConfigMap", "hpo-common")["HPO_TASK_TIME_LIMIT_S"])
    assert grace > limit


def test_api_and_worker_agree_on_the_broker_and_time_limit() -> None:
    api, worker = (
        environment(container("hpo-api", "api")),
        environment(container("hpo-worker", "worker")),
    )
    for key in ("HPO_BROKER_URL", "HPO_TASK_TIME_LIMIT_S"):
        assert api[key] == worker[key], key
    broker = urlsplit(api["HPO_BROKER_URL"])
    assert broker.hostname == "hpo-redis" and broker.port == service_port("hpo-redis")


def keda_trigger(kind: str) -> dict[str, Any]:
    scaled = one("ScaledObject", "hpo-worker")
    target = scaled["spec"]["scaleTargetRef"]
    assert (target.get("kind", "Deployment"), target["name"]) == ("Deployment", "hpo-worker")
    (trigger,) = [t for t in scaled["spec"]["triggers"] if t["type"] == kind]
    return trigger


def test_keda_scales_on_the_apis_count_of_workers_wanted_with_the_metrics_token() -> None:
    trigger = keda_trigger("metrics-api")
    metadata = trigger["metadata"]
    url = urlsplit(metadata["url"])
    namespace = kustomization()["namespace"]
    assert url.hostname == f"hpo-api.{namespace}.svc.cluster.local"  # KEDA's own namespace
    assert (url.port, url.path) == (service_port("hpo-api"), "/metrics")
    assert (metadata["format"], metadata["valueLocation"]) == ("prometheus", "hpo_workers_wanted")
    assert float(metadata["targetValue"]) == 1  # one pod (one Celery process) per trial
    assert metadata["authMode"] == "bearer"
    auth = one("TriggerAuthentication", trigger["authenticationRef"]["name"])
    (secret,) = auth["spec"]["secretTargetRef"]
    assert secret["parameter"] == "token"
    assert secret["key"] == "HPO_METRICS_TOKEN"
    sent = string_data("Secret", secret["name"])[secret["key"]]
    assert environment(container("hpo-api", "api"))["HPO_METRICS_TOKEN"] == sent


def test_keda_watches_the_celery_queue_on_the_brokers_redis() -> None:
    scaled = one("ScaledObject", "hpo-worker")
    metadata = keda_trigger("redis")["metadata"]
    assert metadata["listName"] == TRIALS_QUEUE
    host, _, port = metadata["address"].partition(":")
    namespace = kustomization()["namespace"]
    assert host in {
        "hpo-redis",
        f"hpo-redis.{namespace}.svc",
        f"hpo-redis.{namespace}.svc.cluster.local",
    }
    assert int(port) == service_port("hpo-redis")
    broker = urlsplit(string_data("ConfigMap", "hpo-common")["HPO_BROKER_URL"])
    assert metadata.get("databaseIndex", "0") == (broker.path.strip("/") or "0")
    assert int(metadata["listLength"]) >= 1
    assert 0 <= scaled["spec"]["minReplicaCount"] <= scaled["spec"]["maxReplicaCount"]


def test_database_url_is_the_postgres_statefulset() -> None:
    url = urlsplit(string_data("Secret", "hpo-database")["HPO_DATABASE_URL"])
    postgres = environment(container("hpo-postgres", "postgres"))
    assert url.scheme == "postgresql+psycopg"  # psycopg 3, the driver pyproject installs
    assert url.hostname == "hpo-postgres" and url.port == service_port("hpo-postgres")
    assert url.username == postgres["POSTGRES_USER"]
    assert url.password == postgres["POSTGRES_PASSWORD"]
    assert url.path == "/" + postgres["POSTGRES_DB"]


@pytest.mark.parametrize(("name", "path"), [("hpo-redis", "/data"), ("hpo-postgres", None)])
def test_redis_and_postgres_keep_their_data_on_a_claimed_volume(
    name: str, path: str | None
) -> None:
    statefulset = one("StatefulSet", name)
    claims = {claim["metadata"]["name"] for claim in statefulset["spec"]["volumeClaimTemplates"]}
    (item,) = pod_spec(statefulset)["containers"]
    mounts = {mount["name"]: mount["mountPath"] for mount in item["volumeMounts"]}
    assert claims <= set(mounts)
    if path:  # Redis: append-only file in the claimed folder
        words = argv(item)
        assert words[words.index("--appendonly") + 1] == "yes"
        assert words[words.index("--dir") + 1] == path == mounts[next(iter(claims))]
    else:
        assert environment(item)["PGDATA"].startswith(mounts[next(iter(claims))] + "/")


def test_flower_watches_the_brokers_queue_and_is_installed_by_the_ops_extra() -> None:
    flower = container("hpo-flower", "flower")
    words = argv(flower)
    assert words[0] == "celery" and "flower" in words
    assert f"--broker={environment(container('hpo-api', 'api'))['HPO_BROKER_URL']}" in words
    port = int(next(w for w in words if w.startswith("--port=")).split("=", 1)[1])
    assert service_port("hpo-flower") == port
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text())
    assert any(
        re.fullmatch(r"flower==\S+", dep)
        for dep in pyproject["project"]["optional-dependencies"]["ops"]
    )
    dockerfile = (ROOT / "deploy" / "Dockerfile.api").read_text()
    assert ".[ops]" in dockerfile


def test_pods_run_as_the_images_non_root_user() -> None:
    uids = set()
    for name in ("Dockerfile.api", "Dockerfile.worker"):
        text = (ROOT / "deploy" / name).read_text()
        uids |= set(re.findall(r"useradd[^\n]*--uid (\d+)", text))
    assert len(uids) == 1, uids
    for _, doc in documents():
        if doc["kind"] in WORKLOAD_KINDS and any(
            c["image"].split("/")[-1].startswith(("hpo-api", "hpo-worker")) for c in containers(doc)
        ):
            context = pod_spec(doc)["securityContext"]
            assert context["runAsNonRoot"] is True
            assert str(context["runAsUser"]) in uids


def selects(selector: dict[str, Any], labels: dict[str, str]) -> bool:
    """Whether a label selector (matchLabels, matchExpressions In/NotIn) takes ``labels``."""
    if not selector.get("matchLabels", {}).items() <= labels.items():
        return False
    for expression in selector.get("matchExpressions", []):
        held = labels.get(expression["key"]) in expression["values"]
        if held != (expression["operator"] == "In"):
            return False
    return True


def admitted(server: str, labels: dict[str, str]) -> bool:
    """Whether the NetworkPolicy guarding ``server``'s pods lets a pod of this namespace with
    ``labels`` in."""
    (policy,) = [
        p
        for p in objects("NetworkPolicy").values()
        if p["spec"]["podSelector"]["matchLabels"] == {"app.kubernetes.io/name": server}
    ]
    return any(
        "podSelector" in peer and selects(peer["podSelector"], labels)
        for rule in policy["spec"]["ingress"]
        for peer in rule["from"]
    )


@pytest.mark.parametrize(
    ("server", "variable"), [("hpo-postgres", "HPO_DATABASE_URL"), ("hpo-redis", "HPO_BROKER_URL")]
)
def test_network_policies_let_in_each_pod_given_the_servers_url_and_no_other(
    server: str, variable: str
) -> None:
    workloads = {**objects("Deployment"), **objects("StatefulSet"), **objects("Job")}
    for name, workload in workloads.items():
        if name == server:
            continue
        labels = workload["spec"]["template"]["metadata"]["labels"]
        given = any(variable in environment(c) for c in containers(workload))
        assert admitted(server, labels) == given, (name, server)


def test_keda_reaches_the_broker_from_its_own_namespace() -> None:
    policy = one("NetworkPolicy", "hpo-redis")
    peers = [peer for rule in policy["spec"]["ingress"] for peer in rule["from"]]
    assert {"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "keda"}}} in peers
