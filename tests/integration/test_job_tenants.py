"""Study jobs belong to their study's tenant: another tenant's job is not found."""

from __future__ import annotations

import time
from typing import Any

import pytest

from tests.integration.test_tenants import call, tenants
from tests.support.studies import wait_for_end

pytestmark = pytest.mark.integration
__all__ = ["tenants"]  # the token stack of the tenant tests, shared as a fixture


def a_job(t: dict[str, Any]) -> dict[str, Any]:
    """An ensemble job of tenant a, over the two trials of a small study."""
    stack, token = t["stack"], t["tokens"]["a"]
    spec = {
        "name": f"jobs-{time.time_ns()}",
        "space": {"lr": {"type": "float", "low": 1e-3, "high": 1e-2, "log": True}},
        "pruner": {"name": "none"},
        "budget": {"n_trials": 2},
        "trainer": {"name": "mlp", "dataset": "wine", "epochs": 1},
        "preflight": {"enabled": False},
    }
    study = call(stack, token, "POST", "/studies", spec).json()
    wait_for_end(stack.client(token), study["study_id"], stack, timeout_s=120, poll_s=0.3)
    job = call(stack, token, "POST", f"/studies/{study['study_id']}/ensemble", {"k": 2})
    assert job.status_code == 202, job.text
    found: dict[str, Any] = job.json()
    return found


def test_another_tenant_cannot_see_or_finish_a_job(tenants: dict[str, Any]) -> None:
    stack, tokens = tenants["stack"], tenants["tokens"]
    job = a_job(tenants)
    path = f"/jobs/{job['job_id']}"
    assert call(stack, tokens["b"], "GET", path).status_code == 404
    assert call(stack, tokens["b"], "GET", f"/studies/{job['study_id']}/jobs").status_code == 404
    mine = call(stack, tokens["a"], "GET", path).json()
    assert mine["job_id"] == job["job_id"]


def test_only_a_worker_starts_a_job_or_gives_its_outcome(tenants: dict[str, Any]) -> None:
    """Not even the study's own tenant: it would pass its pre-flight checks or forge a score."""
    stack, tokens = tenants["stack"], tenants["tokens"]
    job = a_job(tenants)
    path = f"/jobs/{job['job_id']}"
    forged = {"result": {"validation": {"loss": 0.0, "accuracy": 1.0, "samples": 1}}}
    for token in (tokens["a"], tokens["b"]):
        assert call(stack, token, "POST", f"{path}/start").status_code == 403
        refused = call(stack, token, "POST", f"{path}/result", forged)
        assert refused.status_code == 403
        assert refused.json()["problems"][0]["field"] == "Authorization"
    assert call(stack, tokens["a"], "GET", path).json()["result"] != forged["result"]


def test_a_worker_token_runs_jobs_but_creates_none(tenants: dict[str, Any]) -> None:
    stack, tokens = tenants["stack"], tenants["tokens"]
    job = a_job(tenants)
    worker = tokens["worker"]
    assert (
        call(stack, worker, "GET", f"/jobs/{job['job_id']}").status_code == 403
    )  # not its to read
    refused = call(stack, worker, "POST", f"/studies/{job['study_id']}/ensemble", {"k": 2})
    assert refused.status_code == 403
