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
    assert call(stack, brief, "GET", "/studies").status_code == 401
    assert call(stack, lasting, "GET", "/studies").status_code == 200
    listed = hpo_token(url, "list").splitlines()
    assert listed[0] == "id\trole\ttenant\tname\tstatus"
    assert "\texpired " in next(line for line in listed if "\tbrief" in line)
    assert "\texpires " in next(line for line in listed if "\tlasting" in line)


@pytest.mark.parametrize(
    ("lifetime", "refusal"),
    [
        ("0d", "not a lifetime"),
        ("10", "not a lifetime"),
        ("1w", "not a lifetime"),
        ("-5m", "not a lifetime"),
        ("soon", "not a lifetime"),
        # A lifetime, too long for a date to hold (it was "not a lifetime" past six digits).
        ("99999999d", "longer than a token may live: at most 36500d"),
        ("3153600001s", "longer than a token may live"),
    ],
)
def test_a_lifetime_that_is_not_one_is_refused_and_makes_no_token(
    tenants: dict[str, Any], lifetime: str, refusal: str
) -> None:
    env = {**os.environ, "HPO_DATABASE_URL": tenants["url"]}
    command = [sys.executable, "-m", "cli", "token", "create", "--tenant", "x"]
    done = subprocess.run(
        [*command, "--expires-in", lifetime], env=env, capture_output=True, text=True
    )
    assert done.returncode == 2 and refusal in " ".join(done.stderr.split()), done.stderr
    assert not any("\tx\t" in line for line in hpo_token(tenants["url"], "list").splitlines())


def optuna_name_of(t: dict[str, Any], study_id: int) -> str:
    """The name Optuna's own table gives the study (what optuna-dashboard and load_study see)."""
    row = sqlite3.connect(t["db"]).execute(
        "SELECT study_name FROM studies WHERE study_id = ?", (study_id,)
    )
    return str(row.fetchone()[0])


def run_one_trial(stack: LocalStack, token: str, study_id: int, value: float) -> int:
    """Ask, report and complete one trial of the study through the API; the trial's id."""
    asked = call(stack, token, "POST", f"/studies/{study_id}/trials")
    assert asked.status_code == 201, asked.text
    trial_id, lease = asked.json()["trial_id"], asked.json()["lease"]
    report = {"step": 1, "value": value + 1, "lease": lease}
    assert call(stack, token, "POST", f"/trials/{trial_id}/report", report).status_code == 200
    done = call(
        stack, token, "POST", f"/trials/{trial_id}/complete", {"value": value, "lease": lease}
    )
    assert done.status_code == 200, done.text
    return int(trial_id)


def test_two_tenants_each_have_and_run_their_own_study_of_one_name(tenants: dict[str, Any]) -> None:
    stack, tokens = tenants["stack"], tenants["tokens"]
    name = f"mnist-sweep-{time.time_ns()}"
    spec = {"name": name, "space": {"x": {"type": "float", "low": 0, "high": 1}}}
    created = {tenant: call(stack, tokens[tenant], "POST", "/studies", spec) for tenant in "ab"}
    assert {tenant: r.status_code for tenant, r in created.items()} == {"a": 201, "b": 201}
    ids = {tenant: int(r.json()["study_id"]) for tenant, r in created.items()}
    assert ids["a"] != ids["b"]
    trials = {"a": run_one_trial(stack, tokens["a"], ids["a"], 0.25)}
    trials["b"] = run_one_trial(stack, tokens["b"], ids["b"], 0.75)
    for tenant in "ab":
        token, study_id = tokens[tenant], ids[tenant]
        assert call(stack, token, "GET", f"/studies/{study_id}").json()["name"] == name
        listed = call(stack, token, "GET", "/studies").json()["studies"]
        assert [s["study_id"] for s in listed if s["name"] == name] == [study_id]
        best = call(stack, token, "GET", f"/studies/{study_id}/best").json()
        assert best["trial_id"] == trials[tenant]
        own = call(stack, token, "GET", f"/studies/{study_id}/trials").json()["trials"]
        assert [trial["trial_id"] for trial in own] == [trials[tenant]]
    assert optuna_name_of(tenants, ids["a"]) == f"a/{name}"
    assert optuna_name_of(tenants, ids["b"]) == f"b/{name}"

    assert call(stack, tokens["a"], "DELETE", f"/studies/{ids['a']}").status_code == 204
    assert call(stack, tokens["a"], "GET", f"/studies/{ids['a']}").status_code == 404
    kept = call(stack, tokens["b"], "GET", f"/studies/{ids['b']}")
    assert kept.status_code == 200 and kept.json()["counts"]["complete"] == 1
    assert call(stack, tokens["b"], "GET", f"/studies/{ids['b']}/best").json()["value"] == 0.75


def test_a_tenant_s_second_study_of_a_name_is_a_conflict(tenants: dict[str, Any]) -> None:
    stack, tokens = tenants["stack"], tenants["tokens"]
    spec = {
        "name": f"twice-{time.time_ns()}",
        "space": {"x": {"type": "float", "low": 0, "high": 1}},
    }
    assert call(stack, tokens["a"], "POST", "/studies", spec).status_code == 201
    again = call(stack, tokens["a"], "POST", "/studies", spec)
    assert again.status_code == 409
    assert again.json()["problems"][0]["field"] == "name"
    assert "already exists" in again.json()["problems"][0]["problem"]
    assert call(stack, tokens["b"], "POST", "/studies", spec).status_code == 201


def test_the_default_tenant_s_study_keeps_its_name_in_optuna(tenants: dict[str, Any]) -> None:
    stack, url = tenants["stack"], tenants["url"]
    default_token = hpo_token(url, "create", "--tenant", "default")
    name = f"plain-{time.time_ns()}"
    spec = {"name": name, "space": {"x": {"type": "float", "low": 0, "high": 1}}}
    ours = call(stack, default_token, "POST", "/studies", spec)
    theirs = call(stack, tenants["tokens"]["a"], "POST", "/studies", spec)
    assert (ours.status_code, theirs.status_code) == (201, 201)
    assert optuna_name_of(tenants, ours.json()["study_id"]) == name
    assert optuna_name_of(tenants, theirs.json()["study_id"]) == f"a/{name}"
