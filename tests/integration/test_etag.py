"""``GET /studies/{id}/best`` over real HTTP: an ETag, 304 while the best holds, a new one after."""

from __future__ import annotations

import pytest
import requests

from cli.local_stack import LocalStack
from tests.integration.conftest import unique

pytestmark = pytest.mark.integration


def finish_trial(stack: LocalStack, study_id: int, value: float) -> int:
    """Ask for a trial of ``study_id`` and complete it with ``value``; its id."""
    client = stack.client()
    trial = client.ask(study_id)
    client.complete(trial["trial_id"], value=value, lease=trial["lease"])
    return int(trial["trial_id"])


def get_best(
    stack: LocalStack, study_id: int, etag: str | None = None, if_match: str | None = None
) -> requests.Response:
    headers = {"If-None-Match": etag} if etag else {}
    if if_match:
        headers["If-Match"] = if_match
    return requests.get(f"{stack.url}/studies/{study_id}/best", headers=headers, timeout=10)


def test_best_answers_304_while_unchanged_and_a_new_etag_when_it_changes(
    stack: LocalStack,
) -> None:
    spec = {"name": unique("etag"), "space": {"x": {"type": "float", "low": 0.0, "high": 1.0}}}
    study_id = stack.client().create_study(spec)["study_id"]
    first_best = finish_trial(stack, study_id, 0.5)

    first = get_best(stack, study_id)
    assert first.status_code == 200
    etag = first.headers["ETag"]
    assert first.json()["trial_id"] == first_best

    unchanged = get_best(stack, study_id, etag)
    assert unchanged.status_code == 304
    assert unchanged.content == b""
    assert unchanged.headers["ETag"] == etag

    finish_trial(stack, study_id, 0.9)  # worse: the best stays
    assert get_best(stack, study_id, etag).status_code == 304

    new_best = finish_trial(stack, study_id, 0.1)
    changed = get_best(stack, study_id, etag)
    assert changed.status_code == 200
    assert changed.json()["trial_id"] == new_best
    assert changed.json()["value"] == 0.1
    assert changed.headers["ETag"] != etag
    assert get_best(stack, study_id, changed.headers["ETag"]).status_code == 304


def test_if_match_star_matches_the_best_and_another_etag_does_not(stack: LocalStack) -> None:
    spec = {"name": unique("etag"), "space": {"x": {"type": "float", "low": 0.0, "high": 1.0}}}
    study_id = stack.client().create_study(spec)["study_id"]
    finish_trial(stack, study_id, 0.5)
    etag = get_best(stack, study_id).headers["ETag"]

    star = get_best(stack, study_id, if_match="*")
    assert star.status_code == 200
    assert star.json()["value"] == 0.5
    assert get_best(stack, study_id, if_match=etag).status_code == 200
    assert get_best(stack, study_id, if_match='"another"').status_code == 412
    assert get_best(stack, study_id, etag, if_match="*").status_code == 304


def test_best_of_a_study_without_a_complete_trial_is_still_404(stack: LocalStack) -> None:
    spec = {"name": unique("etag"), "space": {"x": {"type": "float", "low": 0.0, "high": 1.0}}}
    study_id = stack.client().create_study(spec)["study_id"]
    answer = get_best(stack, study_id, '"anything"')
    assert answer.status_code == 404
    assert "ETag" not in answer.headers
