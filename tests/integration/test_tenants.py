"""Who may see what: tokens are stored hashed and belong to tenants; workers only run trials."""

from __future__ import annotations

import hashlib
import os
import sqlite3
import subprocess
import sys
import time
from collections.abc import Iterator
from typing import Any

import pytest
import requests

from cli.local_stack import LocalStack
from tests.support.studies import wait_for_end

pytestmark = pytest.mark.integration
BODIES: dict[str, Any] = {
    "report": {"step": 1, "value": 0.5},
    "reports": {"reports": [{"step": 1, "value": 0.5}]},
    "complete": {"value": 0.5},
    "claim": {"holder": "intruder"},
    "heartbeat": {},
    "budget": {"n_trials": 100},
    "ensemble": {"k": 2},
    "checkpoint": "a body that is not a checkpoint",
    "provenance": {},
}


def hpo_token(database_url: str, *args: str) -> str:
    env = {**os.environ, "HPO_DATABASE_URL": database_url}
    done = subprocess.run(
        [sys.executable, "-m", "cli", "token", *args],
        env=env,
        capture_output=True,
        text=True,
        check=True,
    )
    return done.stdout.strip()


@pytest.fixture(scope="module")
def tenants(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    path = tmp_path_factory.mktemp("tenants") / "hpo.db"
    url = f"sqlite:///{path}"
    tokens = {
        "a": hpo_token(url, "create", "--tenant", "a"),
        "b": hpo_token(url, "create", "--tenant", "b"),
        "worker": hpo_token(url, "create", "--worker"),
    }
    settings = {"HPO_REQUIRE_TOKENS": "true", "HPO_TOKEN": tokens["worker"]}
    stack = LocalStack(url, workers=1, settings=settings).start()
    yield {"stack": stack, "tokens": tokens, "db": path, "url": url}
    stack.stop()


def call(
    stack: LocalStack, token: str | None, method: str, path: str, body: Any = None
) -> requests.Response:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    return requests.request(method, stack.url + path, json=body, headers=headers, timeout=30)


def a_objects(t: dict[str, Any]) -> dict[str, int]:
    """A study of tenant a with a running trial (asked by a), and a study its worker finished."""
    stack, token = t["stack"], t["tokens"]["a"]
    spec = {"name": f"a-{time.time_ns()}", "space": {"x": {"type": "float", "low": 0, "high": 1}}}
    study = call(stack, token, "POST", "/studies", spec).json()
    trial = call(stack, token, "POST", f"/studies/{study['study_id']}/trials").json()
    return {"study_id": study["study_id"], "trial_id": trial["trial_id"]}


def object_scoped_operations(stack: LocalStack) -> list[tuple[str, str]]:
    document = requests.get(f"{stack.url}/openapi.json", timeout=10).json()
    return [
        (method.upper(), path)
        for path, operations in document["paths"].items()
        if "{study_id}" in path or "{trial_id}" in path
        for method in operations
    ]


def test_another_tenant_gets_404_on_every_object_scoped_endpoint(tenants: dict[str, Any]) -> None:
    stack, tokens = tenants["stack"], tenants["tokens"]
    ids = a_objects(tenants)
    operations = object_scoped_operations(stack)
    assert len(operations) >= 9
    for method, template in operations:
        path = template.format(**ids, kind="history")
        response = call(stack, tokens["b"], method, path, BODIES.get(path.rsplit("/", 1)[-1]))
        expected = 403 if path.endswith("/claim") else 404  # a worker's alone, whoever's trial
        assert response.status_code == expected, (method, path, response.status_code, response.text)
    trials = call(stack, tokens["a"], "GET", f"/studies/{ids['study_id']}/trials").json()["trials"]
    assert trials[0]["state"] == "running" and trials[0]["intermediate_values"] == {}
    assert (
        call(stack, tokens["a"], "GET", f"/studies/{ids['study_id']}").json()["state"] == "running"
    )


def test_only_a_worker_claims_a_trial(tenants: dict[str, Any]) -> None:
    stack, tokens = tenants["stack"], tenants["tokens"]
    ids = a_objects(tenants)
    refused = call(stack, tokens["a"], "POST", f"/trials/{ids['trial_id']}/claim", BODIES["claim"])
    assert refused.status_code == 403
    assert refused.json()["problems"][0]["field"] == "Authorization"
    assert "only a worker token" in refused.json()["problems"][0]["problem"]


def test_a_worker_writes_to_a_trial_only_with_its_lease(tenants: dict[str, Any]) -> None:
    stack, tokens = tenants["stack"], tenants["tokens"]
    ids = a_objects(tenants)  # a trial tenant a asked for: no worker claimed it
    trial = f"/trials/{ids['trial_id']}"
    for path, body in (
        (f"{trial}/report", BODIES["report"]),
        (f"{trial}/reports", BODIES["reports"]),
        (f"{trial}/heartbeat", {}),
        (f"{trial}/provenance", {"seed": 1}),
        (f"{trial}/complete", {"state": "failed", "reason": "not the lease holder"}),
    ):
        refused = call(stack, tokens["worker"], "POST", path, body)
        assert refused.status_code == 422, (path, refused.text)
        assert refused.json()["problems"][0]["field"] == "lease"
    stolen = call(stack, tokens["worker"], "POST", f"{trial}/complete", {"lease": "0" * 32})
    assert stolen.status_code == 409
    trials = call(stack, tokens["a"], "GET", f"/studies/{ids['study_id']}/trials").json()["trials"]
    assert trials[0]["state"] == "running" and trials[0]["intermediate_values"] == {}
    assert trials[0]["provenance"] is None


def test_a_tenant_lists_only_its_own_studies(tenants: dict[str, Any]) -> None:
    stack, tokens = tenants["stack"], tenants["tokens"]
    ids = a_objects(tenants)
    listed_by_b = call(stack, tokens["b"], "GET", "/studies").json()["studies"]
    listed_by_a = call(stack, tokens["a"], "GET", "/studies").json()["studies"]
    assert ids["study_id"] not in {s["study_id"] for s in listed_by_b}
    assert ids["study_id"] in {s["study_id"] for s in listed_by_a}


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("GET", "/studies"),
        ("POST", "/studies"),
        ("GET", "/studies/1"),
        ("POST", "/studies/1/trials"),
    ],
)
def test_a_worker_token_may_not_create_or_read_studies(
    tenants: dict[str, Any], method: str, path: str
) -> None:
    response = call(tenants["stack"], tenants["tokens"]["worker"], method, path, {})
    assert response.status_code == 403


@pytest.mark.slow
def test_a_worker_token_runs_any_tenants_trials(tenants: dict[str, Any]) -> None:
    stack, token = tenants["stack"], tenants["tokens"]["b"]
    spec = {
        "name": f"b-{time.time_ns()}",
        "space": {"lr": {"type": "float", "low": 1e-3, "high": 1e-1, "log": True}},
        "budget": {"n_trials": 2, "max_concurrent_trials": 1},
        "trainer": {"name": "mlp", "dataset": "wine", "epochs": 3},
    }
    study_id = call(stack, token, "POST", "/studies", spec).json()["study_id"]
    counts = wait_for_end(stack.client(token), study_id, stack, timeout_s=120)["counts"]
    assert counts["complete"] + counts["pruned"] == 2


def test_requests_without_a_token_are_refused(tenants: dict[str, Any]) -> None:
    assert call(tenants["stack"], None, "GET", "/studies").status_code == 401
    assert call(tenants["stack"], None, "GET", "/health").status_code == 200


def test_tokens_are_stored_hashed(tenants: dict[str, Any]) -> None:
    rows = sqlite3.connect(tenants["db"]).execute("SELECT * FROM hpo_tokens").fetchall()
    stored = repr(rows)
    for token in tenants["tokens"].values():
        assert token not in stored
        assert hashlib.sha256(token.encode()).hexdigest() in stored


def test_a_revoked_token_stops_working(tenants: dict[str, Any]) -> None:
    url = tenants["url"]
    token = hpo_token(url, "create", "--tenant", "short-lived")
    assert call(tenants["stack"], token, "GET", "/studies").status_code == 200
    listed = hpo_token(url, "list").splitlines()
    token_id = next(line.split("\t")[0] for line in listed if "short-lived" in line)
    hpo_token(url, "revoke", token_id)
    assert call(tenants["stack"], token, "GET", "/studies").status_code == 401


def test_a_token_stops_working_once_its_lifetime_is_over(tenants: dict[str, Any]) -> None:
    url, stack = tenants["url"], tenants["stack"]
    brief = hpo_token(url, "create", "--tenant", "brief", "--expires-in", "1s")
    lasting = hpo_token(url, "create", "--tenant", "lasting", "--expires-in", "90d")
    time.sleep(1.1)
    refused = call(stack, brief, "GET", "/studies")
    assert refused.status_code == 401
    assert "expired" in refused.json()["problems"][0]["problem"]
    assert call(stack, lasting, "GET", "/studies").status_code == 200
    listed = hpo_token(url, "list").splitlines()
    assert " expired " in next(line for line in listed if "\tbrief" in line)
    assert " expires " in next(line for line in listed if "\tlasting" in line)


@pytest.mark.parametrize("lifetime", ["0d", "10", "1w", "-5m", "soon"])
def test_a_lifetime_that_is_not_one_is_refused_and_makes_no_token(
    tenants: dict[str, Any], lifetime: str
) -> None:
    env = {**os.environ, "HPO_DATABASE_URL": tenants["url"]}
    command = [sys.executable, "-m", "cli", "token", "create", "--tenant", "x"]
    done = subprocess.run(
        [*command, "--expires-in", lifetime], env=env, capture_output=True, text=True
    )
    assert done.returncode == 2 and "not a lifetime" in done.stderr
    assert not any("\tx\t" in line for line in hpo_token(tenants["url"], "list").splitlines())
