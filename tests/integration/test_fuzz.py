"""Fuzzing every operation of the API from its own OpenAPI document, with schemathesis.

What must hold for anything a client sends (the API's rule): never a 5xx; a 4xx is JSON in the
usual shape ``{"error", "problems": [{"field", "problem"}]}``; every answer is JSON; and the
status is one the document names or one of the error statuses every endpoint may give.

How many examples, and why that is enough to mean something:

- In process (Flask's test client, a fresh seeded SQLite file per operation, a dispatcher that
  does nothing): ``IN_PROCESS_EXAMPLES`` = 100 generated requests per operation (valid and
  invalid ones, path ids half the time among the seeded objects), plus schemathesis's coverage
  cases (each field's boundaries, wrong types, missing and extra fields, other methods): about
  1,650 requests for the 12 operations, in 20 to 30 s. An operation's input is a path id and a
  small body of a few JSON types, so 100 draws plus the coverage cases reach every type and
  boundary of each field several times over. Evidence: with the request limits of
  ``api/limits.py`` switched off, this test fails on 7 of the 12 operations (an id past what
  the database's id columns hold, a 500), found by coverage cases and by random draws alike.
- Served (gunicorn over a socket, Redis, no worker), once on SQLite and once on PostgreSQL:
  ``SERVED_EXAMPLES`` = 25 per operation, no coverage cases, about 250 requests per backend, in
  about 20 s with the start of both stacks. What differs from in process is the transport
  (gunicorn's reading of odd paths and bodies) and the database; such a difference fails on the
  first request of its kind, not the 100th: PostgreSQL's 32-bit ids (a 503) were found here.

What a fuzzer from this document does not reach (each has its own test in
``tests/unit/test_limits.py``): bodies nested past Python's recursion limit, and search spaces
whose bounds overflow the samplers only when a trial is asked of the study later.

Generation is derandomized: the same requests every run, so a failure is never a fluke of one
run. Every answer is checked against what the document says: status documented, body of the
documented schema.
"""

from __future__ import annotations

import copy
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import requests
import schemathesis
from flask import Flask
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from schemathesis import BaseSchema, HookContext
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from api.app import create_app
from api.schemas import MAX_ID
from cli.local_stack import LocalStack
from service.settings import Settings
from tests.conftest import BACKENDS
from tests.support.dispatchers import DoNothingDispatcher

pytestmark = pytest.mark.integration

IN_PROCESS_EXAMPLES = 100
SERVED_EXAMPLES = 25
FUZZ_TIMEOUT_S = 120  # per operation: a request that hangs fails the test, not the whole run
# The error statuses an answer may have (every blueprint documents them all).
ERROR_STATUSES = {400, 401, 403, 404, 405, 409, 413, 422}
# Path ids are drawn half the time from 1 to this, where the seeded studies and trials are.
MAX_SEEDED_ID = 8
FUZZ_SETTINGS = settings(
    deadline=None,
    # function_scoped_fixture: on purpose, one fresh app per operation, shared by its examples.
    suppress_health_check=[
        HealthCheck.too_slow,
        HealthCheck.filter_too_much,
        HealthCheck.function_scoped_fixture,
    ],
    derandomize=True,
)


def published_document() -> dict[str, Any]:
    """The API document as ``/openapi.json`` serves it (from an app on an in-memory database)."""
    config = Settings(database_url="sqlite://", reaper_interval_s=0, require_tokens=False)
    app = create_app(config, dispatcher=DoNothingDispatcher())
    document: dict[str, Any] = app.test_client().get("/openapi.json").get_json()
    return document


def fuzzable(document: dict[str, Any]) -> dict[str, Any]:
    """The document with its known defects worked around, for generating requests:
    ``components.securitySchemes`` is ``null``: not OpenAPI, and schemathesis refuses it."""
    fixed = copy.deepcopy(document)
    components = fixed.setdefault("components", {})
    if components.get("securitySchemes") is None:
        components.pop("securitySchemes", None)
    return fixed


def with_seeded_ids(schema: BaseSchema) -> BaseSchema:
    """``schema``, drawing path ids half the time among the seeded objects.

    Random ids are almost never an existing study or trial: without this, nearly every request
    to ``/studies/{study_id}/...`` and ``/trials/{trial_id}/...`` would stop at its 404.
    """

    @schema.hook
    def flatmap_path_parameters(context: HookContext, path_parameters: Any) -> Any:
        if not isinstance(path_parameters, dict) or not path_parameters:
            return st.just(path_parameters)
        ids = {name: st.integers(1, MAX_SEEDED_ID) for name in path_parameters}
        return st.one_of(st.just(path_parameters), st.fixed_dictionaries(ids))

    return schema


def error_body_shape(ctx: Any, response: schemathesis.Response, case: schemathesis.Case) -> None:
    """Every 4xx is JSON ``{"error": str, "problems": [{"field": str, "problem": str}, ...]}``."""
    if not 400 <= response.status_code < 500:
        return
    body = response.json()
    assert isinstance(body, dict) and set(body) == {"error", "problems"}, body
    assert isinstance(body["error"], str) and body["error"], body
    problems = body["problems"]
    assert isinstance(problems, list) and problems, body
    for problem in problems:
        assert set(problem) == {"field", "problem"}, body
        assert all(isinstance(problem[key], str) and problem[key] for key in problem), body


def known_status(ctx: Any, response: schemathesis.Response, case: schemathesis.Case) -> None:
    """The status is a documented one or one of ``ERROR_STATUSES`` (no 3xx, no 418, no 5xx).

    Other methods than the operation's (schemathesis sends them too) get 405, or 200 to OPTIONS,
    or 401 when they carry a bad token (the token is checked before the method).
    An operation that documents no success at all (``/health``) may answer 200.
    """
    if case.method.upper() != case.operation.method.upper():
        allowed = {405, 401, 200 if case.method.upper() == "OPTIONS" else 405}
        assert response.status_code in allowed
        return
    documented = {int(code) for code in case.operation.definition.raw.get("responses", {})}
    successes = {code for code in documented if 200 <= code < 300} or {200}
    assert response.status_code in successes | ERROR_STATUSES, response.status_code


CHECKS = [
    not_a_server_error,
    content_type_conformance,
    status_code_conformance,
    response_schema_conformance,
    error_body_shape,
    known_status,
]
DOCUMENT = published_document()
IN_PROCESS = with_seeded_ids(schemathesis.openapi.from_dict(fuzzable(DOCUMENT)))
SERVED = with_seeded_ids(schemathesis.openapi.from_dict(fuzzable(DOCUMENT)))
# Served: the same generation, without the coverage phase's ~100 deterministic cases per
# operation, which the in-process run already sends.
SERVED.config.phases.update(phases=["examples", "fuzzing"])


Caller = Callable[..., tuple[int, Any]]  # (method, url, json=...) -> (status, JSON body)


SEED_STUDIES: list[dict[str, Any]] = [
    {"pruner": {"name": "none"}},  # open: asks succeed
    {"trainer": {"name": "mlp", "epochs": 3}, "budget": {"n_trials": 3}},  # trials dispatched
    {"sampler": {"name": "grid", "grid": {"lr": [0.1, 0.01]}}, "budget": {"n_trials": 2}},
    {"pruner": {"name": "none"}},  # stopped below
]


def seed(base_url: str, call: Caller) -> None:
    """Studies and trials in several states, so that fuzzed ids find objects past the 404."""
    space = {"lr": {"type": "float", "low": 1e-4, "high": 1.0, "log": True}}
    study_id = 0
    for index, kind in enumerate(SEED_STUDIES):
        body = {"name": f"seed-{index}-{uuid.uuid4().hex[:6]}", "space": space, **kind}
        status, created = call("POST", f"{base_url}/studies", json=body)
        assert status == 201, created
        study_id = created["study_id"]
        for step, value in enumerate((0.5, 0.4)):
            status, asked = call("POST", f"{base_url}/studies/{study_id}/trials")
            if status != 201:
                break
            trial = f"{base_url}/trials/{asked['trial_id']}"
            call("POST", f"{trial}/report", json={"step": step, "value": value})
            if step == 0:
                call("POST", f"{trial}/complete", json={"value": value})
    status, stopped = call("POST", f"{base_url}/studies/{study_id}/stop")
    assert status == 200, stopped


@pytest.fixture
def app(tmp_path: Path) -> Flask:
    """The API in process, on a fresh SQLite file, seeded: one per operation fuzzed.

    Fresh for each operation, so that fuzzing one (``stop``) leaves nothing for the next (``ask``).
    """
    database = tmp_path / "hpo.db"
    config = Settings(
        database_url=f"sqlite:///{database}", reaper_interval_s=0, require_tokens=False
    )
    application = create_app(config, dispatcher=DoNothingDispatcher())
    client = application.test_client()

    def call(method: str, url: str, **kwargs: Any) -> tuple[int, Any]:
        response = client.open(url, method=method, **kwargs)
        return response.status_code, response.get_json()

    seed("", call)
    return application


@pytest.fixture(scope="module", params=BACKENDS)
def served(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[LocalStack]:
    """The API under gunicorn with Redis and no worker, on a fresh database of each backend, seeded."""
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path_factory.mktemp('fuzz-served') / 'hpo.db'}"
    else:
        url = request.getfixturevalue("postgres_server").create_database(
            f"fuzz_{uuid.uuid4().hex[:10]}"
        )
    stack = LocalStack(url, workers=0, log_level="WARNING").start()

    def call(method: str, url: str, **kwargs: Any) -> tuple[int, Any]:
        response = requests.request(method, url, timeout=30, **kwargs)
        return response.status_code, response.json()

    try:
        seed(stack.url, call)
        yield stack
    finally:
        stack.stop()


@pytest.mark.timeout(FUZZ_TIMEOUT_S)
@IN_PROCESS.parametrize()
@settings(FUZZ_SETTINGS, max_examples=IN_PROCESS_EXAMPLES)
def test_in_process_no_input_gets_a_5xx_or_an_error_off_the_shape(
    case: schemathesis.Case, app: Flask
) -> None:
    case.validate_response(case.call(app=app), checks=CHECKS)


@pytest.mark.slow
@pytest.mark.timeout(FUZZ_TIMEOUT_S)
@SERVED.parametrize()
@settings(FUZZ_SETTINGS, max_examples=SERVED_EXAMPLES)
def test_served_no_input_gets_a_5xx(case: schemathesis.Case, served: LocalStack) -> None:
    response = case.call(base_url=served.url, timeout=30)
    case.validate_response(response, checks=CHECKS)


@pytest.mark.slow
@pytest.mark.parametrize(
    ("method", "path", "field"),
    [
        ("GET", "/studies/{id}", "study_id"),
        ("POST", "/studies/{id}/trials", "study_id"),
        ("POST", "/trials/{id}/heartbeat", "trial_id"),
    ],
)
def test_served_an_id_past_32_bits_gets_422_on_every_backend(
    served: LocalStack, method: str, path: str, field: str
) -> None:
    """Found by the fuzzing: on PostgreSQL (INTEGER ids) this was a DataError, answered 503."""
    url = served.url + path.format(id=MAX_ID + 1)
    response = requests.request(method, url, json={}, timeout=30)
    assert response.status_code == 422, response.text
    assert response.json()["problems"][0]["field"] == field


def test_the_workarounds_leave_the_answers_alone() -> None:
    """``fuzzable`` changes only how requests are generated, never a documented answer."""
    fixed = fuzzable(DOCUMENT)
    for path, operations in DOCUMENT["paths"].items():
        for method, operation in operations.items():
            assert fixed["paths"][path][method]["responses"] == operation["responses"]
    schemas = DOCUMENT["components"]["schemas"]
    changed = {name for name in schemas if fixed["components"]["schemas"][name] != schemas[name]}
    assert changed <= {"StudySpec"}


# What the fuzzing above once found wrong with the document, kept as tests of their own.


def test_the_document_is_valid_openapi() -> None:
    schemathesis.openapi.from_dict(DOCUMENT).validate()


@pytest.mark.parametrize(
    ("method", "path", "path_parameters", "body"),
    [
        ("POST", "/studies", {}, [1]),  # 422
        ("GET", "/studies/{study_id}", {"study_id": 99_999}, None),  # 404
        ("POST", "/studies/{study_id}/trials", {"study_id": len(SEED_STUDIES)}, None),  # 409
        ("GET", "/health", {}, None),  # 200
    ],
)
def test_every_answer_is_documented_as_it_is(
    app: Flask, method: str, path: str, path_parameters: dict[str, int], body: Any
) -> None:
    operation = IN_PROCESS[path][method]
    case = operation.Case(
        path_parameters=path_parameters, **({} if body is None else {"body": body})
    )
    checks = [status_code_conformance, response_schema_conformance]
    case.validate_response(case.call(app=app), checks=checks)


@pytest.mark.parametrize("path", ["/studies/{study_id}", "/studies/{study_id}/trials"])
def test_timestamps_are_the_documented_date_times(app: Flask, path: str) -> None:
    case = IN_PROCESS[path]["GET"].Case(path_parameters={"study_id": 1})
    case.validate_response(case.call(app=app), checks=[response_schema_conformance])


def test_a_405_names_the_allowed_methods(app: Flask) -> None:
    response = app.test_client().delete("/studies")
    assert response.status_code == 405
    assert {"GET", "POST"} <= set(response.headers.get("Allow", "").replace(" ", "").split(","))
