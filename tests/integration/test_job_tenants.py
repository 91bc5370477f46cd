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
    assert call(stack, tokens["b"], "POST", f"{path}/start").status_code == 404
    forged = {"reason": "forged by another tenant"}
    assert call(stack, tokens["b"], "POST", f"{path}/result", forged).status_code == 404
    assert call(stack, tokens["b"], "GET", f"/studies/{job['study_id']}/jobs").status_code == 404
    mine = call(stack, tokens["a"], "GET", path).json()
    assert mine["reason"] != forged["reason"]


def test_a_worker_token_runs_jobs_but_creates_none(tenants: dict[str, Any]) -> None:
    stack, tokens = tenants["stack"], tenants["tokens"]
    job = a_job(tenants)
    worker = tokens["worker"]
    assert call(stack, worker, "GET", f"/jobs/{job['job_id']}").status_code == 200
    refused = call(stack, worker, "POST", f"/studies/{job['study_id']}/ensemble", {"k": 2})
    assert refused.status_code == 403
