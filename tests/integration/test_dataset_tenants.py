"""Data set names are each tenant's own: two tenants register one name, and each one's study
trains on that tenant's file (a worker reads a data set in the tenant of the study it runs for)."""

from __future__ import annotations

import hashlib
import time
from typing import Any

import pytest

from client import HPOError
from tests.integration.test_tenants import tenants
from tests.support.datasets import blobs, csv_bytes, registered_study
from tests.support.studies import wait_for_end

pytestmark = [pytest.mark.integration, pytest.mark.slow]
__all__ = ["tenants"]  # the token stack of the tenant tests, shared as a fixture
SPACE = {"x": {"type": "float", "low": 0, "high": 1}}


def status_and_field(refused: pytest.ExceptionInfo[HPOError]) -> tuple[int, str]:
    """A refusal's status and the field its first problem names."""
    return refused.value.status, refused.value.body["problems"][0]["field"]


@pytest.fixture(scope="module")
def registered(tenants: dict[str, Any]) -> dict[str, Any]:
    """One name, registered by tenant a and by tenant b with different files."""
    stack, tokens = tenants["stack"], tenants["tokens"]
    name = f"shared-{time.time_ns()}"
    views = {
        tenant: stack.client(tokens[tenant]).register_dataset(
            name, csv_bytes(*blobs(seed=seed)), "csv", "species"
        )
        for tenant, seed in (("a", 0), ("b", 1))
    }
    return {"name": name, "views": views}


def test_two_tenants_register_one_name_and_each_sees_its_own(
    tenants: dict[str, Any], registered: dict[str, Any]
) -> None:
    stack, tokens = tenants["stack"], tenants["tokens"]
    name, views = registered["name"], registered["views"]
    assert views["a"]["sha256"] != views["b"]["sha256"]
    for tenant in ("a", "b"):
        client = stack.client(tokens[tenant])
        assert client.dataset(name) == views[tenant]
        assert [found["dataset_id"] for found in client.datasets() if found["name"] == name] == [
            views[tenant]["dataset_id"]
        ]


def test_a_name_is_still_taken_within_its_tenant(
    tenants: dict[str, Any], registered: dict[str, Any]
) -> None:
    client = tenants["stack"].client(tenants["tokens"]["a"])
    with pytest.raises(HPOError) as refused:
        client.register_dataset(registered["name"], csv_bytes(*blobs(seed=2)), "csv", "species")
    assert status_and_field(refused) == (409, "name")


def test_each_tenants_study_keeps_and_trains_on_its_own_data_set(
    tenants: dict[str, Any], registered: dict[str, Any]
) -> None:
    stack, tokens = tenants["stack"], tenants["tokens"]
    name, views = registered["name"], registered["views"]
    for tenant in ("a", "b"):
        client = stack.client(tokens[tenant])
        spec = registered_study(f"on-{tenant}-{time.time_ns()}", f"registered:{name}", 1, 1)
        created = client.create_study(spec)
        own = views[tenant]
        assert created["spec"]["trainer"]["dataset"] == f"registered:{name}"  # as given
        study = wait_for_end(client, created["study_id"], stack, timeout_s=120, poll_s=0.3)
        assert study["state"] == "complete", stack.logs()
        [trial] = client.trials(created["study_id"])
        assert trial["state"] == "complete", trial["fail_reason"]
        assert trial["provenance"]["data_sha256"] == own["sha256"]


def test_a_worker_reads_a_name_in_the_tenant_of_the_study_it_names(
    tenants: dict[str, Any], registered: dict[str, Any]
) -> None:
    stack, tokens = tenants["stack"], tenants["tokens"]
    name, views = registered["name"], registered["views"]
    worker = stack.client(tokens["worker"])
    studies = {}
    for tenant in ("a", "b"):
        spec = {"name": f"scope-{tenant}-{time.time_ns()}", "space": SPACE}
        studies[tenant] = stack.client(tokens[tenant]).create_study(spec)["study_id"]
        assert worker.dataset(name, studies[tenant]) == views[tenant]
        content = worker.dataset_content(name, studies[tenant])
        assert hashlib.sha256(content).hexdigest() == views[tenant]["sha256"]
    with pytest.raises(HPOError) as unknown:  # a user names a study of its own tenant only
        stack.client(tokens["b"]).dataset(name, studies["a"])
    assert unknown.value.status == 404
    with pytest.raises(HPOError) as unscoped:  # a name is a tenant's: the worker names the study
        worker.dataset(name)
    assert status_and_field(unscoped) == (422, "study_id")
    assert worker.dataset(views["b"]["dataset_id"]) == views["b"]  # an id is one data set


def test_a_study_cannot_name_another_tenants_data_set_by_id(
    tenants: dict[str, Any], registered: dict[str, Any]
) -> None:
    client = tenants["stack"].client(tenants["tokens"]["b"])
    theirs = registered["views"]["a"]["dataset_id"]
    spec = registered_study(f"by-id-{time.time_ns()}", f"registered:{theirs}", 1, 1)
    with pytest.raises(HPOError) as refused:
        client.create_study(spec)
    assert status_and_field(refused) == (422, "trainer.dataset")


def test_only_its_tenant_deletes_a_data_set(
    tenants: dict[str, Any], registered: dict[str, Any]
) -> None:
    stack, tokens = tenants["stack"], tenants["tokens"]
    own = registered["views"]["a"]
    with pytest.raises(HPOError) as theirs:  # tenant b names a's data set by id
        stack.client(tokens["b"]).delete_dataset(own["dataset_id"])
    assert theirs.value.status == 404
    with pytest.raises(HPOError) as worker:
        stack.client(tokens["worker"]).delete_dataset(own["dataset_id"])
    assert worker.value.status == 403
    assert stack.client(tokens["a"]).dataset(own["dataset_id"]) == own
