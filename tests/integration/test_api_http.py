"""The HTTP API served by gunicorn over a real socket: bad input, external programs, the API document."""

from __future__ import annotations

import gzip
import json
from typing import Any

import pytest
import requests

from cli.local_stack import LocalStack
from client import HPOJSONClient
from tests.integration.conftest import unique
from tests.support.answer_dropper import dropping_answers

pytestmark = pytest.mark.integration
SPACE = {"x": {"type": "float", "low": 0.0, "high": 1.0}}
LR = {"lr": {"type": "float", "low": 1e-4, "high": 0.1, "log": True}}


def good_study(**changes: Any) -> dict[str, Any]:
    return {"name": unique("api"), "space": SPACE, **changes}


BAD_STUDIES: list[tuple[str, Any, str, str]] = [
    # (case, body, field named, words of the problem)
    ("unknown sampler", good_study(sampler={"name": "annealing"}), "sampler", "annealing"),
    (
        "refusal without checks",
        good_study(preflight={"enabled": False, "refuse_on_failure": True}),
        "preflight.refuse_on_failure",
        "enabled: false turns off",
    ),
    ("unknown pruner", good_study(pruner={"name": "median-ish"}), "pruner", "median-ish"),
    (
        "low >= high",
        good_study(space={"x": {"type": "float", "low": 2, "high": 1}}),
        "space.x",
        "below high",
    ),
    (
        "log with low <= 0",
        good_study(space={"lr": {"type": "float", "low": 0, "high": 1, "log": True}}),
        "space.lr",
        "low > 0",
    ),
    (
        "empty choices",
        good_study(space={"c": {"type": "categorical", "choices": []}}),
        "space.c.choices",
        "at least 1",
    ),
    ("unknown parameter type", good_study(space={"x": {"type": "complex"}}), "space.x", "complex"),
    ("continuous float in a derived grid", good_study(sampler={"name": "grid"}), "space.x", "step"),
    (
        "grid value outside the space",
        good_study(sampler={"name": "grid", "grid": {"x": [0.5, 7]}}),
        "sampler.grid.x",
        "outside",
    ),
    (
        "grid missing a parameter",
        good_study(
            space={**SPACE, "y": {"type": "int", "low": 1, "high": 3}},
            sampler={"name": "grid", "grid": {"x": [0.5]}},
        ),
        "sampler.grid",
        "missing",
    ),
    (
        "grid smaller than n_trials",
        good_study(
            space={"c": {"type": "categorical", "choices": [1, 2]}},
            sampler={"name": "grid"},
            budget={"n_trials": 5},
        ),
        "budget.n_trials",
        "exceeds",
    ),
    (
        "unknown trainer",
        good_study(trainer={"name": "resnet-from-a-url"}),
        "trainer.name",
        "unknown trainer",
    ),
    (
        "unknown dataset",
        good_study(space=LR, trainer={"name": "mlp", "dataset": "mnist"}),
        "trainer.dataset",
        "digits",
    ),
    (
        "parameter the trainer does not read",
        good_study(trainer={"name": "mlp"}),
        "space.x",
        "no hyperparameter",
    ),
    (
        "a range past what the trainer accepts",
        good_study(
            space={"dropout": {"type": "float", "low": 0.0, "high": 1.0}},
            trainer={"name": "mlp"},
        ),
        "space.dropout.high",
        "outside what the trainer accepts",
    ),
    ("negative n_trials", good_study(budget={"n_trials": -1}), "budget.n_trials", "greater than"),
    (
        "negative concurrency",
        good_study(budget={"max_concurrent_trials": -2}),
        "budget.max_concurrent_trials",
        "greater than",
    ),
    (
        "negative timeout",
        good_study(budget={"timeout_seconds": -5}),
        "budget.timeout_seconds",
        "greater than",
    ),
    (
        "max_resource past the epochs",
        good_study(
            space=LR,
            trainer={"name": "mlp", "epochs": 5},
            pruner={"max_resource": 9},
        ),
        "pruner.max_resource",
        "exceeds",
    ),
    (
        "a test part of fewer rows than classes",
        good_study(space=LR, trainer={"name": "mlp", "dataset": "wine", "test_fraction": 0.01}),
        "trainer.test_fraction",
        "fewer than its 3 classes",
    ),
    (
        "an empty parameter name",
        good_study(space={"": {"type": "float", "low": 0.0, "high": 1.0}}),
        "space",
        "the key '': ",
    ),
    ("no name", {"space": SPACE}, "name", "required"),
    ("no space", {"name": "x"}, "space", "required"),
    ("unknown field", good_study(n_trials=5), "n_trials", "not permitted"),
    ("a list instead of an object", [1, 2], "body", "must be a JSON object, not an array"),
    (
        "a boolean for a count",
        good_study(budget={"n_trials": True}),
        "budget.n_trials",
        "must be an integer, not a boolean",
    ),
    (
        "a boolean for a bound",
        good_study(space={"x": {"type": "float", "low": False, "high": 1}}),
        "space.x.low",
        "must be a number, not a boolean",
    ),
]


def study_names(stack: LocalStack) -> list[str]:
    return [s["name"] for s in requests.get(f"{stack.url}/studies", timeout=10).json()["studies"]]


@pytest.mark.parametrize(
    ("case", "body", "field", "words"), BAD_STUDIES, ids=[c[0] for c in BAD_STUDIES]
)
def test_a_bad_study_gets_a_4xx_naming_field_and_problem_and_changes_nothing(
    stack: LocalStack, case: str, body: Any, field: str, words: str
) -> None:
    before = study_names(stack)
    response = requests.post(f"{stack.url}/studies", json=body, timeout=10)
    assert response.status_code == 422, response.text
    problems = response.json()["problems"]
    assert any(p["field"] == field and words in p["problem"] for p in problems), problems
    assert study_names(stack) == before


def test_malformed_json_gets_400(stack: LocalStack) -> None:
    response = requests.post(
        f"{stack.url}/studies",
        data=b'{"name": "x", "space": {',
        headers={"Content-Type": "application/json"},
        timeout=10,
    )
    assert response.status_code == 400
    assert response.json()["problems"] == [{"field": "body", "problem": "malformed JSON"}]


def test_a_number_written_as_a_string_is_taken_as_yaml_1_1_writes_1e_5(stack: LocalStack) -> None:
    space = {"lr": {"type": "float", "low": "1e-5", "high": "0.3", "log": True}}
    response = requests.post(f"{stack.url}/studies", json=good_study(space=space), timeout=10)
    assert response.status_code == 201, response.text
    assert response.json()["spec"]["space"]["lr"]["low"] == 1e-5


def test_a_boolean_for_the_budget_s_extension_is_refused_and_changes_nothing(
    stack: LocalStack,
) -> None:
    study = requests.post(f"{stack.url}/studies", json=good_study(), timeout=10).json()
    url = f"{stack.url}/studies/{study['study_id']}/budget"
    response = requests.post(url, json={"n_trials": True}, timeout=10)
    assert response.status_code == 422
    assert response.json()["problems"] == [
        {"field": "n_trials", "problem": "must be an integer, not a boolean"}
    ]
    after = requests.get(f"{stack.url}/studies/{study['study_id']}", timeout=10).json()
    assert after["n_trials"] == study["n_trials"]


def test_a_trial_s_steps_come_in_order_of_step_not_of_text(stack: LocalStack) -> None:
    study = requests.post(
        f"{stack.url}/studies", json=good_study(pruner={"name": "none"}), timeout=10
    ).json()
    trial = requests.post(f"{stack.url}/studies/{study['study_id']}/trials", json={}, timeout=10)
    asked = trial.json()
    for step in range(1, 13):
        report = {"step": step, "value": 1.0 / step, "lease": asked["lease"]}
        requests.post(f"{stack.url}/trials/{asked['trial_id']}/report", json=report, timeout=10)
    answer = requests.get(f"{stack.url}/studies/{study['study_id']}/trials", timeout=10)
    steps = list(json.loads(answer.text)["trials"][0]["intermediate_values"])
    assert steps == [str(step) for step in range(1, 13)]  # "2" before "10"


@pytest.mark.parametrize(
    ("content_type", "named"),
    [("text/plain", "text/plain"), ("application/x-www-form-urlencoded", "application/x-www")],
)
def test_json_sent_as_another_content_type_gets_415_naming_it(
    stack: LocalStack, content_type: str, named: str
) -> None:
    """As ``curl -d`` sends it (form-encoded), or ``requests.post(url, data=json.dumps(...))``."""
    before = study_names(stack)
    body = json.dumps(
        {"name": unique("typed"), "space": {"x": {"type": "int", "low": 0, "high": 1}}}
    )
    response = requests.post(
        f"{stack.url}/studies", data=body, headers={"Content-Type": content_type}, timeout=10
    )
    assert response.status_code == 415
    problem = response.json()["problems"][0]
    assert problem["field"] == "Content-Type"
    assert problem["problem"].startswith(named) and "application/json" in problem["problem"]
    assert study_names(stack) == before


@pytest.mark.parametrize(
    ("content_type", "sent", "status", "field"),
    [
        ("application/x-www-form-urlencoded", b'{"trial_id": 4}', 415, "Content-Type"),
        ("application/json", b'{"trial_id": 4', 400, "body"),
    ],
)
def test_a_body_of_optional_fields_that_is_no_json_is_refused_not_read_as_none(
    stack: LocalStack, content_type: str, sent: bytes, status: int, field: str
) -> None:
    """``curl -d '{"trial_id": 4}' .../evaluate`` (a form): read as no body, it asked for the
    best trial's test split, not trial 4's."""
    study = requests.post(f"{stack.url}/studies", json=good_study(), timeout=10).json()
    url = f"{stack.url}/studies/{study['study_id']}/evaluate"
    response = requests.post(url, data=sent, headers={"Content-Type": content_type}, timeout=10)
    assert response.status_code == status, response.text
    assert response.json()["problems"][0]["field"] == field
    jobs = requests.get(f"{stack.url}/studies/{study['study_id']}/jobs", timeout=10).json()
    assert jobs["jobs"] == []


@pytest.mark.parametrize(
    ("path", "content_type"),
    [("/studies", "application/json"), ("/datasets?name=zipped", "application/octet-stream")],
)
def test_a_compressed_body_gets_415_naming_content_encoding(
    stack: LocalStack, path: str, content_type: str
) -> None:
    before = study_names(stack)
    body = gzip.compress(json.dumps(good_study()).encode())
    headers = {"Content-Type": content_type, "Content-Encoding": "gzip"}
    response = requests.post(f"{stack.url}{path}", data=body, headers=headers, timeout=10)
    assert response.status_code == 415
    assert response.headers["Accept-Encoding"] == "identity"
    [problem] = response.json()["problems"]
    assert problem["field"] == "Content-Encoding" and problem["problem"].startswith("gzip:")
    assert study_names(stack) == before
    datasets = requests.get(f"{stack.url}/datasets", timeout=10).json()["datasets"]
    assert "zipped" not in [dataset["name"] for dataset in datasets]


@pytest.mark.parametrize(
    ("action", "body", "headers"),
    [
        ("trials", json.dumps({"params": {"x": 0.5}}), {"Content-Type": "application/json"}),
        ("trials", "hello", {"Content-Type": "text/plain"}),
        ("stop", json.dumps({"force": True}), {"Content-Type": "application/json"}),
        ("pause", "[1, 2", {"Content-Type": "application/json"}),
        ("stop", "[" * 100_000, {"Content-Type": "application/json"}),  # no decoder overflows
    ],
)
def test_a_body_sent_where_none_goes_is_refused_and_changes_nothing(
    stack: LocalStack, action: str, body: str, headers: dict[str, str]
) -> None:
    study = requests.post(f"{stack.url}/studies", json=good_study(), timeout=10).json()
    url = f"{stack.url}/studies/{study['study_id']}"
    response = requests.post(f"{url}/{action}", data=body, headers=headers, timeout=10)
    assert response.status_code == 422, response.text
    [problem] = response.json()["problems"]
    assert problem["field"] == "body" and "takes no body" in problem["problem"]
    after = requests.get(url, timeout=10).json()
    assert after["state"] == "running" and after["counts"]["running"] == 0


@pytest.mark.parametrize("body", [None, "{}", "null", " "])
def test_an_empty_body_where_none_goes_is_taken(stack: LocalStack, body: str | None) -> None:
    study = requests.post(f"{stack.url}/studies", json=good_study(), timeout=10).json()
    headers = {"Content-Type": "application/json"}
    url = f"{stack.url}/studies/{study['study_id']}/trials"
    assert requests.post(url, data=body, headers=headers, timeout=10).status_code == 201


def test_a_content_encoding_without_a_body_is_no_matter(stack: LocalStack) -> None:
    headers = {"Content-Encoding": "gzip"}
    assert requests.get(f"{stack.url}/studies", headers=headers, timeout=10).status_code == 200


def test_a_body_marked_identity_is_read_as_it_stands(stack: LocalStack) -> None:
    headers = {"Content-Encoding": "Identity"}
    response = requests.post(f"{stack.url}/studies", json=good_study(), headers=headers, timeout=10)
    assert response.status_code == 201, response.text


@pytest.mark.parametrize(
    ("body", "kind"),
    [
        (None, "null (or nothing)"),
        (b"null", "null (or nothing)"),
        (b"[1, 2]", "an array"),
        (b'"study"', "a string"),
    ],
)
def test_a_body_that_is_no_json_object_is_told_so(
    stack: LocalStack, body: bytes | None, kind: str
) -> None:
    headers = {} if body is None else {"Content-Type": "application/json"}
    response = requests.post(f"{stack.url}/studies", data=body, headers=headers, timeout=10)
    assert response.status_code == 422
    assert response.json()["problems"] == [
        {"field": "body", "problem": f"must be a JSON object, not {kind}"}
    ]


def test_a_key_named_twice_in_one_object_gets_400_naming_it(stack: LocalStack) -> None:
    before = study_names(stack)
    body = '{"name": "once", "space": {"x": {"type": "int", "low": 0, "high": 1, "low": 1}}}'
    response = requests.post(
        f"{stack.url}/studies",
        data=body.encode(),
        headers={"Content-Type": "application/json"},
        timeout=10,
    )
    assert response.status_code == 400
    assert response.json()["problems"] == [
        {"field": "body", "problem": "the JSON body names the key 'low' twice in one object"}
    ]
    assert study_names(stack) == before


@pytest.mark.parametrize(
    "path", ["/studies/999999", "/studies/999999/trials", "/studies/999999/best"]
)
def test_unknown_study_ids_get_404(stack: LocalStack, path: str) -> None:
    response = requests.get(stack.url + path, timeout=10)
    assert response.status_code == 404
    assert response.json()["problems"][0]["field"] == "study_id"


@pytest.mark.parametrize(
    ("method", "path", "field"),
    [
        ("GET", "/studies/abc", "study_id"),
        ("GET", "/studies/-1", "study_id"),
        ("DELETE", "/studies/1.5", "study_id"),
        ("POST", "/trials/abc/report", "trial_id"),
        ("GET", "/jobs/x", "job_id"),
    ],
)
def test_an_id_that_is_no_whole_number_gets_422_naming_it(
    stack: LocalStack, method: str, path: str, field: str
) -> None:
    response = requests.request(method, stack.url + path, json={}, timeout=10)
    assert response.status_code == 422
    [problem] = response.json()["problems"]
    assert problem["field"] == field
    assert problem["problem"].startswith("must be a whole number above 0, not ")


def test_unknown_trial_ids_get_404(stack: LocalStack) -> None:
    response = requests.post(
        f"{stack.url}/trials/999999/report", json={"step": 1, "value": 0.5}, timeout=10
    )
    assert response.status_code == 404
    assert response.json()["problems"][0]["field"] == "trial_id"


def test_an_external_program_asks_reports_and_completes(stack: LocalStack) -> None:
    client = stack.client()
    study = client.create_study(
        good_study(budget={"n_trials": 2, "max_concurrent_trials": 1}, pruner={"name": "none"})
    )
    assert study["counts"]["running"] == 0  # no trainer: nothing is dispatched
    for value in (0.4, 0.2):
        trial = client.ask(study["study_id"])
        assert 0.0 <= trial["params"]["x"] <= 1.0
        assert client.report(trial["trial_id"], 1, value + 1) is False
        renewed = requests.post(
            f"{stack.url}/trials/{trial['trial_id']}/heartbeat", json={}, timeout=10
        )
        assert renewed.status_code == 200, renewed.text
        assert renewed.json()["lease"] is None  # its own program's: no lease ("" was answered)
        client.complete(trial["trial_id"], value=value)
    final = client.study(study["study_id"])
    assert final["state"] == "complete" and final["counts"]["complete"] == 2
    assert client.best(study["study_id"])["value"] == 0.2


def test_an_ask_whose_answer_is_lost_is_asked_again_and_gets_the_same_trial(
    stack: LocalStack,
) -> None:
    client = stack.client()
    study = client.create_study(
        good_study(budget={"n_trials": 3, "max_concurrent_trials": 3}, pruner={"name": "none"})
    )
    with dropping_answers(stack.url, drops=0) as proxy:
        asking = HPOJSONClient(proxy.url)
        asking.ask(study["study_id"])
        proxy.drop_next(1)
        trial = asking.ask(study["study_id"])
    assert proxy.dropped == 1  # the second ask was made, and its first answer lost
    started = client.trials(study["study_id"])
    assert len(started) == 2 and started[1]["trial_id"] == trial["trial_id"]
    client.complete(trial["trial_id"], value=0.5, lease=trial["lease"])  # its lease works


def test_a_new_client_s_first_ask_whose_answer_is_lost_gets_the_same_trial(
    stack: LocalStack,
) -> None:
    """A program that runs one trial a process makes one ask a client: that one was not asked
    again (until an answer had shown the API keeps keys), and its trial expired unheard."""
    client = stack.client()
    study = client.create_study(good_study(pruner={"name": "none"}))
    with dropping_answers(stack.url, drops=1) as proxy:
        trial = HPOJSONClient(proxy.url).ask(study["study_id"])
    assert proxy.dropped == 1
    [started] = client.trials(study["study_id"])  # asked twice, one trial
    assert started["trial_id"] == trial["trial_id"]
    client.complete(trial["trial_id"], value=0.5, lease=trial["lease"])


def test_an_ask_with_a_key_is_answered_with_it(stack: LocalStack) -> None:
    study = stack.client().create_study(good_study())
    url = f"{stack.url}/studies/{study['study_id']}/trials"
    response = requests.post(url, headers={"Idempotency-Key": "k-1"}, timeout=30)
    assert response.status_code == 201 and response.headers["Idempotency-Key"] == "k-1"
    assert "Idempotency-Key" not in requests.post(url, timeout=30).headers


@pytest.mark.parametrize(
    ("key", "problem"),
    [("two words", "visible ASCII"), ("k" * 201, "at most 200"), ("", "at least 1")],
)
def test_an_ask_with_a_bad_idempotency_key_is_refused_naming_it(
    stack: LocalStack, key: str, problem: str
) -> None:
    study = stack.client().create_study(good_study())
    url = f"{stack.url}/studies/{study['study_id']}/trials"
    response = requests.post(url, headers={"Idempotency-Key": key}, timeout=30)
    assert response.status_code == 422
    [named] = response.json()["problems"]
    assert named["field"] == "Idempotency-Key" and problem in named["problem"]
    assert stack.client().trials(study["study_id"]) == []


@pytest.mark.parametrize(
    ("pruner", "next_steps"),
    [
        # Hyperband (min 1, max 3, factor 3): rungs at steps 1, 3, 9 (bracket 0) or 3, 9
        # (bracket 1); the lone first trial completes each rung it reaches.
        ({"name": "hyperband", "min_resource": 1, "max_resource": 3}, [3, 3, 9, 9]),
        ({"name": "median", "n_startup_trials": 0}, [2, 3, 4, 5]),
        ({"name": "none"}, [None, None, None, None]),
    ],
)
def test_a_report_answer_names_the_next_step_that_can_prune(
    stack: LocalStack, pruner: dict[str, Any], next_steps: list[int | None]
) -> None:
    client = stack.client()
    spec = good_study(pruner=pruner, sampler={"name": "random", "seed": 0})
    study = client.create_study(spec)
    trial = client.ask(study["study_id"])
    answers = [client.report_decision(trial["trial_id"], step, 0.5) for step in (1, 2, 3, 4)]
    assert [answer["prune"] for answer in answers] == [False] * 4  # the first trial is kept
    assert [answer["next_decision_step"] for answer in answers] == next_steps


@pytest.mark.parametrize("pruner", [{"name": "none"}, {"name": "hyperband", "max_resource": 9}])
def test_reports_to_a_finished_trial_get_409_and_change_nothing(
    stack: LocalStack, pruner: dict[str, Any]
) -> None:
    client = stack.client()
    study = client.create_study(good_study(pruner=pruner))
    trial = client.ask(study["study_id"])
    client.complete(trial["trial_id"], value=0.3)
    response = requests.post(
        f"{stack.url}/trials/{trial['trial_id']}/report", json={"step": 2, "value": 0.1}, timeout=10
    )
    assert response.status_code == 409
    assert "complete" in response.json()["error"]
    [stored] = client.trials(study["study_id"])
    assert stored["intermediate_values"] == {} and stored["value"] == 0.3


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"step": -1, "value": 0.1}, "step"),
        ({"step": 1}, "value"),
        ({"step": 1, "value": "NaN"}, "value"),
        ({"step": "one", "value": 1}, "step"),
        ({"step": True, "value": 0.1}, "step"),
        ({"step": 1, "value": True}, "value"),
    ],
)
def test_bad_reports_get_422(stack: LocalStack, body: dict[str, Any], field: str) -> None:
    client = stack.client()
    study = client.create_study(good_study())
    trial = client.ask(study["study_id"])
    response = requests.post(
        f"{stack.url}/trials/{trial['trial_id']}/report", json=body, timeout=10
    )
    assert response.status_code == 422
    assert response.json()["problems"][0]["field"] == field
    assert client.trials(study["study_id"])[0]["intermediate_values"] == {}


def test_several_reports_in_one_request_are_each_recorded_and_answered_as_the_last(
    stack: LocalStack,
) -> None:
    client = stack.client()
    pruner = {"name": "hyperband", "min_resource": 1, "max_resource": 3}
    study = client.create_study(good_study(pruner=pruner, sampler={"name": "random", "seed": 0}))
    trial = client.ask(study["study_id"])
    answer = client.report_many(trial["trial_id"], [(1, 0.9), (2, 0.8), (3, 0.7)])
    assert answer == {"prune": False, "next_decision_step": 9}  # as a report at step 3 alone
    [stored] = client.trials(study["study_id"])
    assert {int(step): v for step, v in stored["intermediate_values"].items()} == {
        1: 0.9,
        2: 0.8,
        3: 0.7,
    }


@pytest.mark.parametrize("pruner", [{"name": "none"}, {"name": "hyperband"}])
def test_a_step_again_or_back_in_a_request_of_its_own_is_recorded(
    stack: LocalStack, pruner: dict[str, Any]
) -> None:
    """What the workers send for a trainer that repeats a step or goes back (they send it
    apart from the steps held around it)."""
    client = stack.client()
    study = client.create_study(good_study(pruner=pruner))
    trial = client.ask(study["study_id"])
    client.report_many(trial["trial_id"], [(1, 0.9), (3, 0.7)], trial["lease"])
    client.report_many(trial["trial_id"], [(2, 0.8)], trial["lease"])
    client.report_many(trial["trial_id"], [(2, 0.75)], trial["lease"])
    done = client.complete(trial["trial_id"], value=0.6, lease=trial["lease"], reports=[(4, 0.6)])
    assert done["state"] == "complete"
    assert done["intermediate_values"] == {"1": 0.9, "2": 0.75, "3": 0.7, "4": 0.6}


def test_a_value_that_prunes_ends_the_trial_there_and_later_ones_are_not_recorded(
    stack: LocalStack,
) -> None:
    client = stack.client()
    pruner = {"name": "median", "n_startup_trials": 0, "n_warmup_steps": 0}
    study = client.create_study(good_study(pruner=pruner))
    first = client.ask(study["study_id"])
    client.report_many(first["trial_id"], [(1, 0.1), (2, 0.1), (3, 0.1)])
    client.complete(first["trial_id"], value=0.1)
    second = client.ask(study["study_id"])
    answer = client.report_many(second["trial_id"], [(1, 0.9), (2, 0.9), (3, 0.9)])
    assert answer == {"prune": True, "next_decision_step": None}  # nothing left to decide
    stored = client.trials(study["study_id"])[1]
    assert stored["state"] == "pruned"
    assert list(stored["intermediate_values"]) == ["1"]


@pytest.mark.parametrize(
    ("reports", "field", "words"),
    [
        ([], "reports", "at least 1"),
        ([{"step": 2, "value": 0.1}, {"step": 1, "value": 0.2}], "reports", "rise"),
        ([{"step": 1, "value": 0.1}, {"step": 1, "value": 0.2}], "reports", "rise"),
        ([{"step": 1, "value": "NaN"}], "reports.0.value", ""),
        ([{"step": 1, "value": False}], "reports.0.value", "must be a number, not a boolean"),
        ([{"step": 1, "value": "0.5"}], "reports.0.value", "must be a number, not a string"),
        ([{"step": "1", "value": 0.5}], "reports.0.step", "must be an integer, not a string"),
        ([{"step": 1, "value": 0.1, "extra": 1}], "reports.0.extra", ""),
        ([{"step": 1, "value": 0.1}], "provenance.seed", "greater than or equal to 0"),
        ([{"step": 1, "value": 0.1}], "provenance.colour", ""),
    ],
)
def test_bad_report_batches_get_422_naming_the_field_and_change_nothing(
    stack: LocalStack, reports: list[dict[str, Any]], field: str, words: str
) -> None:
    client = stack.client()
    study = client.create_study(good_study())
    trial = client.ask(study["study_id"])
    body: dict[str, Any] = {"reports": reports}
    if field.startswith("provenance."):  # the batch is good, what it states is not
        body["provenance"] = {"seed": 1, field.split(".")[1]: -1}
    response = requests.post(
        f"{stack.url}/trials/{trial['trial_id']}/reports", json=body, timeout=10
    )
    assert response.status_code == 422
    problem = response.json()["problems"][0]
    assert problem["field"] == field and words in problem["problem"]
    [stored] = client.trials(study["study_id"])
    assert stored["intermediate_values"] == {} and stored["provenance"] is None


@pytest.mark.parametrize(
    ("body", "field", "kind"),
    [
        ({"value": True}, "value", "boolean"),
        ({"values": [0.1, True]}, "values.1", "boolean"),
        ({"value": 0.1, "metrics": {"accuracy": True}}, "metrics.accuracy", "boolean"),
        # str(loss) sent by mistake: it completed the trial with the number.
        ({"value": "0.1"}, "value", "string"),
        ({"value": 0.1, "metrics": {"accuracy": "0.9"}}, "metrics.accuracy", "string"),
    ],
)
def test_a_boolean_or_a_string_in_a_completion_is_refused_and_the_trial_runs_on(
    stack: LocalStack, body: dict[str, Any], field: str, kind: str
) -> None:
    client = stack.client()
    study = client.create_study(good_study())
    trial = client.ask(study["study_id"])
    url = f"{stack.url}/trials/{trial['trial_id']}/complete"
    response = requests.post(url, json=body, timeout=10)
    assert response.status_code == 422
    assert response.json()["problems"] == [
        {"field": field, "problem": f"must be a number, not a {kind}"}
    ]
    assert client.trials(study["study_id"])[0]["state"] == "running"


@pytest.mark.parametrize(
    ("endpoint", "body", "field", "problem"),
    [
        ("evaluate", {"trial_id": True}, "trial_id", "must be an integer, not a boolean"),
        ("ensemble", {"k": True}, "k", "must be a number, not a boolean"),  # 1, below 2
    ],
)
def test_a_boolean_for_a_job_s_count_is_refused_and_no_job_starts(
    stack: LocalStack, endpoint: str, body: dict[str, Any], field: str, problem: str
) -> None:
    study = stack.client().create_study(good_study())
    url = f"{stack.url}/studies/{study['study_id']}"
    response = requests.post(f"{url}/{endpoint}", json=body, timeout=10)
    assert response.status_code == 422
    assert response.json()["problems"] == [{"field": field, "problem": problem}]
    assert requests.get(f"{url}/jobs", timeout=10).json()["jobs"] == []


def test_a_spent_budget_gets_409_on_ask(stack: LocalStack) -> None:
    client = stack.client()
    study = client.create_study(good_study(budget={"n_trials": 1}))
    client.ask(study["study_id"])
    response = requests.post(f"{stack.url}/studies/{study['study_id']}/trials", timeout=10)
    assert response.status_code == 409
    assert "budget" in response.json()["error"]


def test_stop_starts_nothing_more(stack: LocalStack) -> None:
    client = stack.client()
    study = client.create_study(good_study())
    assert client.stop(study["study_id"])["state"] == "stopped"
    response = requests.post(f"{stack.url}/studies/{study['study_id']}/trials", timeout=10)
    assert response.status_code == 409


def test_the_api_document_is_openapi_3_and_lists_every_endpoint(stack: LocalStack) -> None:
    document = requests.get(f"{stack.url}/openapi.json", timeout=10).json()
    assert document["openapi"].startswith("3.")
    assert set(document["paths"]) >= {
        "/studies",
        "/studies/{study_id}",
        "/studies/{study_id}/trials",
        "/studies/{study_id}/best",
        "/studies/{study_id}/stop",
        "/trials/{trial_id}/report",
        "/trials/{trial_id}/complete",
        "/health",
    }
    request_schema = document["paths"]["/studies"]["post"]["requestBody"]["content"][
        "application/json"
    ]["schema"]
    assert request_schema["$ref"].endswith("/StudySpec")
