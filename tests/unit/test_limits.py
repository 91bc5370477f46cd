"""Limits on one request: 413 past the body size, 422 naming the field past a field's limit.

Through Flask's test client (no server, no worker): what a client sends, what it gets back.
"""

from __future__ import annotations

import io
import json
from pathlib import Path
from typing import Any

import pytest
from flask.testing import FlaskClient

from api.app import create_app
from api.limits import MAX_BODY_BYTES, MAX_ID, MAX_JSON_DEPTH, json_depth
from service.settings import Settings
from service.spec.grid import MAX_GRID_POINTS
from service.spec.space import (
    MAX_CHOICE_LENGTH,
    MAX_CHOICES,
    MAX_FLOAT_MAGNITUDE,
    MAX_INT_MAGNITUDE,
    FloatParam,
    IntParam,
)
from service.spec.study_spec import MAX_PARAMETERS, MAX_TRAINER_BYTES, MAX_TRIALS
from tests.support.dispatchers import DoNothingDispatcher

SPACE = {"x": {"type": "float", "low": 0.0, "high": 1.0}}


@pytest.fixture
def client(tmp_path: Path) -> FlaskClient:
    """The API on a fresh SQLite file, in process."""
    settings = Settings(
        database_url=f"sqlite:///{tmp_path / 'hpo.db'}", reaper_interval_s=0, require_tokens=False
    )
    return create_app(settings, dispatcher=DoNothingDispatcher()).test_client()


def study(**changes: Any) -> dict[str, Any]:
    """A valid study body, with ``changes``."""
    return {"name": "limits", "space": SPACE, **changes}


def problems_of(response: Any) -> list[dict[str, str]]:
    """The problems of an error answer, after checking its shape."""
    body = response.get_json()
    assert isinstance(body["error"], str) and body["error"], body
    assert all(set(p) == {"field", "problem"} for p in body["problems"]), body
    return list(body["problems"])


TOO_LARGE: list[tuple[str, dict[str, Any], str, str]] = [
    # (case, body, field named, words of the problem)
    (
        "a choice string past its length",
        study(
            space={"c": {"type": "categorical", "choices": ["a", "b" * (MAX_CHOICE_LENGTH + 1)]}}
        ),
        "space.c.choices.1",
        f"limit of {MAX_CHOICE_LENGTH}",
    ),
    (
        "too many choices",
        study(space={"c": {"type": "categorical", "choices": list(range(MAX_CHOICES + 1))}}),
        "space.c.choices",
        f"at most {MAX_CHOICES}",
    ),
    (
        "an integer choice past 2**53",
        study(space={"c": {"type": "categorical", "choices": [MAX_INT_MAGNITUDE + 1]}}),
        "space.c.choices.0",
        "2**53",
    ),
    (
        "an int bound past 2**53",
        study(space={"n": {"type": "int", "low": 0, "high": 10**400}}),
        "space.n.high",
        "less than or equal",
    ),
    (
        "a float bound past 1e100",
        study(space={"x": {"type": "float", "low": -1e300, "high": 1.0}}),
        "space.x.low",
        f"±{MAX_FLOAT_MAGNITUDE:g}",
    ),
    (
        "a float step too small for its range",
        study(space={"x": {"type": "float", "low": 0, "high": 1, "step": 1e-300}}),
        "space.x",
        "too small",
    ),
    (
        "trainer settings past their size",
        study(trainer={"name": "my-trainer", "notes": "n" * MAX_TRAINER_BYTES}),
        "trainer",
        f"limit of {MAX_TRAINER_BYTES}",
    ),
    (
        "a metric name past its length",
        study(metric="m" * 65),
        "metric",
        "at most 64",
    ),
    (
        "too many parameters",
        study(
            space={f"p{i}": SPACE["x"] for i in range(MAX_PARAMETERS + 1)},
        ),
        "space",
        f"at most {MAX_PARAMETERS}",
    ),
    ("too many trials", study(budget={"n_trials": MAX_TRIALS + 1}), "budget.n_trials", "less than"),
    (
        "a Hyperband resource past the largest step",
        study(pruner={"name": "hyperband", "max_resource": 10**400}),
        "pruner.max_resource",
        "at most",
    ),
    (
        "a Hyperband minimum past the largest step",
        study(pruner={"name": "hyperband", "min_resource": 10**10}),
        "pruner.min_resource",
        "at most",
    ),
    (
        "a grid past its points",
        study(
            space={f"c{i}": {"type": "categorical", "choices": list(range(100))} for i in range(3)},
            sampler={"name": "grid"},
        ),
        "sampler.grid",
        f"limit of {MAX_GRID_POINTS}",
    ),
]


@pytest.mark.parametrize(
    ("case", "body", "field", "words"), TOO_LARGE, ids=[c[0] for c in TOO_LARGE]
)
def test_a_field_past_its_limit_gets_422_naming_it(
    client: FlaskClient, case: str, body: dict[str, Any], field: str, words: str
) -> None:
    response = client.post("/studies", json=body)
    assert response.status_code == 422, response.get_data(as_text=True)
    problems = problems_of(response)
    assert any(p["field"] == field and words in p["problem"] for p in problems), problems
    assert client.get("/studies").get_json()["studies"] == []


def test_values_at_the_limits_are_accepted(client: FlaskClient) -> None:
    body = study(
        space={
            "c": {"type": "categorical", "choices": ["b" * MAX_CHOICE_LENGTH, MAX_INT_MAGNITUDE]},
            "n": {"type": "int", "low": -MAX_INT_MAGNITUDE, "high": MAX_INT_MAGNITUDE},
            "x": {"type": "float", "low": -MAX_FLOAT_MAGNITUDE, "high": MAX_FLOAT_MAGNITUDE},
        },
        trainer={"name": "my-trainer", "notes": "n" * (MAX_TRAINER_BYTES // 2)},
    )
    # my-trainer is not installed: the spec passes every limit and fails only on the name.
    problems = problems_of(client.post("/studies", json=body))
    assert [p["field"] for p in problems] == ["trainer.name"]


def test_a_space_at_its_limits_can_be_sampled(client: FlaskClient) -> None:
    body = study(
        space={
            "n": {"type": "int", "low": -MAX_INT_MAGNITUDE, "high": MAX_INT_MAGNITUDE},
            "x": {"type": "float", "low": -MAX_FLOAT_MAGNITUDE, "high": MAX_FLOAT_MAGNITUDE},
            "s": {"type": "float", "low": 0.0, "high": 1e15 * 1e-3, "step": 1e-3},
        },
        sampler={"name": "random"},
        pruner={"name": "none"},
    )
    created = client.post("/studies", json=body)
    assert created.status_code == 201, created.get_data(as_text=True)
    asked = client.post(f"/studies/{created.get_json()['study_id']}/trials")
    assert asked.status_code == 201, asked.get_data(as_text=True)
    assert abs(asked.get_json()["params"]["n"]) <= MAX_INT_MAGNITUDE


def test_a_body_past_the_size_limit_gets_413(client: FlaskClient) -> None:
    body = json.dumps(study(padding="p" * MAX_BODY_BYTES))
    response = client.post("/studies", data=body, content_type="application/json")
    assert response.status_code == 413
    assert problems_of(response)[0]["field"] == "body"
    assert str(MAX_BODY_BYTES) in problems_of(response)[0]["problem"]


@pytest.mark.parametrize("path", ["/studies", "/studies/1/stop", "/trials/1/report"])
def test_413_does_not_depend_on_the_endpoint_or_content_type(
    client: FlaskClient, path: str
) -> None:
    response = client.post(path, data=b"x" * (MAX_BODY_BYTES + 1), content_type="text/plain")
    assert response.status_code == 413
    assert problems_of(response)[0]["field"] == "body"


def post_chunked(client: FlaskClient, body: bytes) -> Any:
    """POST ``body`` as a server hands on a chunked request: no length, the stream ends itself."""
    return client.post(
        "/studies",
        input_stream=io.BytesIO(body),
        content_type="application/json",
        headers={"Transfer-Encoding": "chunked"},
        environ_overrides={"wsgi.input_terminated": True, "CONTENT_LENGTH": ""},
    )


def test_a_chunked_body_past_the_size_limit_gets_413(client: FlaskClient) -> None:
    response = post_chunked(client, json.dumps(study(padding="p" * MAX_BODY_BYTES)).encode())
    assert response.status_code == 413
    assert problems_of(response)[0]["field"] == "body"


def test_a_chunked_body_under_the_size_limit_is_read_whole(client: FlaskClient) -> None:
    body = json.dumps(study(padding="p" * (MAX_BODY_BYTES - 1000))).encode()
    response = post_chunked(client, body)
    assert response.status_code == 422
    assert problems_of(response)[0]["field"] == "padding"


def test_a_body_under_the_size_limit_is_read(client: FlaskClient) -> None:
    body = json.dumps(study(padding="p" * (MAX_BODY_BYTES - 1000)))
    assert len(body) <= MAX_BODY_BYTES
    response = client.post("/studies", data=body, content_type="application/json")
    assert response.status_code == 422
    assert problems_of(response)[0]["field"] == "padding"


@pytest.mark.parametrize("depth", [MAX_JSON_DEPTH + 1, 100_000])
def test_json_nested_too_deeply_gets_400(client: FlaskClient, depth: int) -> None:
    nested = "[" * depth + "]" * depth
    data = '{"name": "deep", "space": {}, "trainer": {"name": "t", "deep": ' + nested + "}}"
    response = client.post("/studies", data=data, content_type="application/json")
    assert response.status_code == 400, response.get_data(as_text=True)
    assert problems_of(response) == [
        {
            "field": "body",
            "problem": f"the JSON body is nested more than {MAX_JSON_DEPTH} levels deep",
        }
    ]


@pytest.mark.parametrize(
    "where",
    [
        '"space": {"x": {"type": "categorical", "choices": ["\\ud800"]}}',
        '"space": {"x": {"type": "int", "low": 0, "high": 1}}, "preflight": {"params": {"a": "\\udfff"}}',
    ],
)
def test_a_lone_surrogate_gets_400_and_leaves_nothing_behind(
    client: FlaskClient, where: str
) -> None:
    data = '{"name": "surrogate", ' + where + "}"
    response = client.post("/studies", data=data, content_type="application/json")
    assert response.status_code == 400, response.get_data(as_text=True)
    assert problems_of(response)[0]["field"] == "body"
    assert "lone surrogate" in problems_of(response)[0]["problem"]
    # The name is free: the same study with a pair of surrogates (one character) is created.
    paired = where.replace("\\ud800", "\\ud83d\\ude00").replace("\\udfff", "\\ud83d\\ude00")
    created = client.post(
        "/studies", data='{"name": "surrogate", ' + paired + "}", content_type="application/json"
    )
    assert created.status_code == 201, created.get_data(as_text=True)


@pytest.mark.parametrize(
    "body",
    [
        b'{"name": "raw", "space": {"x": {"type": "categorical", "choices": ["\xed\xa0\x80"]}}}',
        '{"name": "wide", "space": {"x": {"type": "categorical", "choices": ["\\ud800"]}}}'.encode(
            "utf-16"
        ),
    ],
    ids=["utf-8 bytes of a surrogate", "utf-16 with an escaped one"],
)
def test_a_surrogate_in_any_encoding_gets_400(client: FlaskClient, body: bytes) -> None:
    response = client.post("/studies", data=body, content_type="application/json")
    assert response.status_code == 400, response.get_data(as_text=True)
    assert problems_of(response)[0]["field"] == "body"
    assert client.get("/studies").get_json()["studies"] == []


@pytest.mark.parametrize(
    ("method", "path", "field"),
    [
        ("get", f"/studies/{MAX_ID + 1}", "study_id"),
        ("get", f"/studies/{10**30}/trials", "study_id"),
        ("post", f"/trials/{MAX_ID + 1}/complete", "trial_id"),
    ],
)
def test_an_id_no_database_can_hold_gets_422(
    client: FlaskClient, method: str, path: str, field: str
) -> None:
    response = client.open(path, method=method.upper(), json={"state": "failed"})
    assert response.status_code == 422
    assert problems_of(response)[0]["field"] == field


@pytest.mark.parametrize("path", ["/studies/0", "/studies/-1", "/trials/0/checkpoint"])
def test_an_id_below_1_gets_422_in_one_wording(client: FlaskClient, path: str) -> None:
    """0 got the schema's words (greater than or equal to 1), -1 these."""
    problem = problems_of(client.get(path))[0]
    assert problem["problem"].startswith("must be a whole number above 0, not '")


def test_the_largest_id_is_simply_unknown(client: FlaskClient) -> None:
    assert client.get(f"/studies/{MAX_ID}").status_code == 404


@pytest.mark.parametrize(
    ("value", "depth"),
    [(1, 0), ([], 1), ({"a": [1, {"b": []}]}, 4), ([[[]], 2, [3]], 3)],
)
def test_json_depth_counts_levels_of_containers(value: Any, depth: int) -> None:
    assert json_depth(value) == depth


def test_json_depth_stops_counting_past_its_limit() -> None:
    value: list[Any] = []
    for _ in range(1000):
        value = [value]
    assert json_depth(value, stop_after=5) == 6


@pytest.mark.parametrize(
    ("param", "count"),
    [
        (IntParam(type="int", low=0, high=MAX_INT_MAGNITUDE), MAX_INT_MAGNITUDE + 1),
        (IntParam(type="int", low=1, high=10, step=3), 4),
        (FloatParam(type="float", low=0, high=1, step=0.25), 5),
        (FloatParam(type="float", low=0, high=1), None),
    ],
)
def test_grid_count_says_how_many_values_without_listing_them(param: Any, count: int) -> None:
    assert param.grid_count() == count


@pytest.mark.parametrize(
    ("outcome", "words"),
    [
        ({}, "give the result, or the reason there is none"),
        ({"result": None, "reason": None}, "give the result, or the reason there is none"),
        ({"result": {}, "reason": "both"}, "not both"),
        ({"reason": ""}, "at least 1 character"),
    ],
)
def test_a_job_outcome_needs_a_result_or_a_reason(
    client: FlaskClient, outcome: dict[str, Any], words: str
) -> None:
    response = client.post("/jobs/1/result", json=outcome)
    assert response.status_code == 422, response.get_data(as_text=True)
    assert words in problems_of(response)[0]["problem"]
