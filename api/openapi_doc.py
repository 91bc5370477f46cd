"""The API document (``/openapi.json``) as an integrator reads it, and a client generator.

flask-openapi3 builds it from the same pydantic models that validate the requests, but its
schema model drops what it does not know: ``patternProperties`` (a study's ``space``, its
``enqueue``, a completion's ``metrics`` became bare objects), and a model that is both a request
body and part of a response is described once, as the response has it. So the request bodies'
schemas are put back as pydantic writes them. Beside that: operation ids named after the views
(``create_study``, not ``studies_create_study_studies_post``), summaries of whole sentences, the
file downloads' and the figures' 200 answers, the headers answers carry (``Location``, ``ETag``,
``X-HPO-Trial-Id``, ``X-Content-SHA256``, ``Content-Disposition``, a 401's ``WWW-Authenticate``,
a 415's ``Accept-Encoding``, a 503's ``Retry-After``) and ``GET /studies/{id}/best``'s 304 and 412, each
operation's errors cut to those it can answer, and a study that ``POST /studies`` takes as its
example (Swagger UI's "Try it out").
"""

from __future__ import annotations

import inspect
import json
import re
import typing
from collections.abc import Callable, Iterable
from typing import Any

from flask_openapi3 import OpenAPI
from pydantic import BaseModel

REF_TEMPLATE = "#/components/schemas/{model}"
UNUSED_MODEL = "ValidationErrorModel"
SUMMARY_CHARS = 100
# What the views that answer with bytes send (view name: media type).
BINARY_ANSWERS = {
    "dataset_content": "application/octet-stream",
    "get_checkpoint": "application/octet-stream",
    "best_model": "application/octet-stream",
    "get_plot": "image/png",
}
# Headers an answer carries (view name, status: header, what it holds).
ANSWER_HEADERS: dict[tuple[str, str], dict[str, str]] = {
    ("create_study", "201"): {"Location": "the study's address"},
    ("evaluate", "200"): {"Location": "the job's address"},
    ("evaluate", "202"): {"Location": "the job's address"},
    ("ensemble", "200"): {"Location": "the job's address"},
    ("ensemble", "202"): {"Location": "the job's address"},
    ("get_best", "200"): {
        "ETag": "a hash of the answer: send it in If-None-Match to be told 304 while unchanged",
        "Cache-Control": "no-cache: a cache must ask again, the best moves",
    },
    ("best_model", "200"): {
        "X-HPO-Trial-Id": "the id of the trial the checkpoint is of",
        "Content-Disposition": "attachment, with a file name",
    },
    ("get_checkpoint", "200"): {"Content-Disposition": "attachment, with a file name"},
    ("dataset_content", "200"): {
        "X-Content-SHA256": "the file's SHA-256, as registered",
        "Content-Disposition": "attachment, with a file name",
    },
}
# Headers of an error status, whichever operation answers it.
ERROR_HEADERS: dict[str, dict[str, str]] = {
    "401": {"WWW-Authenticate": "Bearer: the scheme a token is sent in"},
    "415": {"Accept-Encoding": "identity, where the body was sent in a content coding (gzip…)"},
    "503": {"Retry-After": "seconds to wait before trying again"},
}
# Answers without a body (view name: status, when).
BODILESS_ANSWERS: dict[str, dict[str, str]] = {
    "get_best": {
        "304": "the best is unchanged: If-None-Match holds its ETag",
        "412": "the best has changed: If-Match does not hold its ETag",
    },
}
# What no documented operation answers (405: a method the path has no operation for), and what
# one answers only where it reads a body (malformed JSON; a body too large, or sent encoded, is
# refused before any operation reads it: 413 and 415 are every operation's).
NEVER_ANSWERED = ("405",)
ANSWERED_TO_BODIES = ("400",)
ANSWERED_TO_PATHS_OR_BODIES = ("404", "409", "422")
UNGUARDED_OPERATIONS = ("health_check",)  # open without a token: no 401 or 403
ANSWERED_TO_TOKENS = ("401", "403")
EXAMPLE_STUDY: dict[str, Any] = {
    "name": "wine-mlp",
    "space": {
        "lr": {"type": "float", "low": 1e-4, "high": 0.1, "log": True},
        "hidden": {"type": "int", "low": 16, "high": 128, "step": 16},
        "optimizer": {"type": "categorical", "choices": ["adam", "sgd_momentum"]},
    },
    "sampler": {"name": "tpe", "seed": 1},
    "pruner": {"name": "hyperband"},
    "budget": {"n_trials": 20, "max_concurrent_trials": 2},
    "trainer": {"name": "mlp", "dataset": "wine", "epochs": 9},
}


class DocumentedOpenAPI(OpenAPI):
    """flask-openapi3's app, whose document is completed once made (see the module)."""

    def generate_spec_json(self) -> None:
        """flask-openapi3's document, completed."""
        super().generate_spec_json()  # type: ignore[no-untyped-call]
        complete_document(self.spec_json, self.view_functions.values(), _view_names(self))


def _view_names(app: OpenAPI) -> dict[tuple[str, str], str]:
    """Each operation's view name, by its path as the document writes it and its method: the
    operation's id (the API's views have unique names)."""
    names = {}
    for rule in app.url_map.iter_rules():
        path = re.sub(r"<(?:[^:<>]+:)?([^<>]+)>", r"{\1}", rule.rule)
        for method in rule.methods or ():
            names[(path, method.lower())] = rule.endpoint.rsplit(".", 1)[-1]
    return names


def complete_document(
    document: dict[str, Any],
    views: Iterable[Callable[..., Any]],
    view_names: dict[tuple[str, str], str],
) -> None:
    """Put the request bodies' schemas back as pydantic writes them, and the rest (module)."""
    schemas = document.setdefault("components", {}).setdefault("schemas", {})
    for model in _body_models(views):
        if model.__name__ in schemas:
            _put_back(schemas, model)
    for (path, method), operation in _operations(document):
        operation["operationId"] = view_names.get((path, method), operation.get("operationId"))
        _whole_sentences(operation)
        media_type = BINARY_ANSWERS.get(str(operation.get("operationId")))
        if media_type is not None:
            _binary_answer(operation, media_type)
        _answers_as_served(operation)
        if operation.get("operationId") == "create_study":
            content = operation.get("requestBody", {}).get("content", {})
            content.get("application/json", {})["example"] = EXAMPLE_STUDY
    # flask-openapi3's own error model: the API answers ErrorBody, which refers to it nowhere.
    if f'"{REF_TEMPLATE.format(model=UNUSED_MODEL)}"' not in json.dumps(document):
        schemas.pop(UNUSED_MODEL, None)


def _body_models(views: Iterable[Callable[..., Any]]) -> list[type[BaseModel]]:
    """The models of the views' JSON bodies (their ``body`` argument)."""
    found: list[type[BaseModel]] = []
    for view in views:
        try:
            body = typing.get_type_hints(view).get("body")
        except (NameError, TypeError):  # a view outside the API (docs' pages): no body
            continue
        if inspect.isclass(body) and issubclass(body, BaseModel) and body not in found:
            found.append(body)
    return found


def _put_back(schemas: dict[str, Any], model: type[BaseModel]) -> None:
    """The model's schema, and those of the models it holds, as pydantic makes them for a
    request (validation)."""
    schema = model.model_json_schema(ref_template=REF_TEMPLATE, mode="validation")
    for name, held in schema.pop("$defs", {}).items():
        schemas[name] = held
    schemas[model.__name__] = schema


def _operations(document: dict[str, Any]) -> list[tuple[tuple[str, str], dict[str, Any]]]:
    return [
        ((path, method), operation)
        for path, item in document.get("paths", {}).items()
        for method, operation in item.items()
        if isinstance(operation, dict) and "responses" in operation
    ]


def _whole_sentences(operation: dict[str, Any]) -> None:
    """The view's docstring as one text (flask-openapi3 cut it at its first line break, mid
    sentence, and joined the rest with <br/>): the description; its first sentence (or clause,
    if long): the summary. reStructuredText's ````code```` becomes Markdown's ```code```."""
    lines = [operation.get("summary", ""), *operation.get("description", "").split("<br/>")]
    text = " ".join(line.strip() for line in lines if line.strip()).replace("``", "`")
    if not text:
        return
    operation["description"] = text
    operation["summary"] = _summary(text)


def _summary(text: str) -> str:
    sentence = re.split(r"(?<=[.;])\s", text, maxsplit=1)[0].rstrip(".;")
    if len(sentence) <= SUMMARY_CHARS:
        return sentence
    clause = re.split(r"(?<=[:,])\s", sentence, maxsplit=1)[0].rstrip(":,")
    if len(clause) <= SUMMARY_CHARS:
        return clause
    return sentence[: SUMMARY_CHARS - 1].rsplit(" ", 1)[0] + "…"


def _answers_as_served(operation: dict[str, Any]) -> None:
    """The operation's errors cut to those it can answer, its headers, and its bodiless answers."""
    view = str(operation.get("operationId"))
    responses: dict[str, Any] = operation.setdefault("responses", {})
    takes_body = "requestBody" in operation
    for status in _unanswered(view, takes_body, bool(operation.get("parameters"))):
        responses.pop(status, None)
    for status, response in responses.items():
        headers = ANSWER_HEADERS.get((view, status)) or ERROR_HEADERS.get(status, {})
        if headers:
            response["headers"] = {
                name: {"description": text, "schema": {"type": "string"}}
                for name, text in headers.items()
            }
    for status, when in BODILESS_ANSWERS.get(view, {}).items():
        responses[status] = {"description": when}


def _unanswered(view: str, takes_body: bool, has_parameters: bool) -> list[str]:
    """The error statuses the operation never answers (the module's constants say why)."""
    statuses = list(NEVER_ANSWERED)
    if not takes_body:
        statuses += ANSWERED_TO_BODIES
        if not has_parameters:
            statuses += ANSWERED_TO_PATHS_OR_BODIES
    if view in UNGUARDED_OPERATIONS:
        statuses += ANSWERED_TO_TOKENS
    return statuses


def _binary_answer(operation: dict[str, Any], media_type: str) -> None:
    responses = operation.setdefault("responses", {})
    described = "the figure" if media_type == "image/png" else "the file's bytes"
    responses["200"] = {
        "description": described,
        "content": {media_type: {"schema": {"type": "string", "format": "binary"}}},
    }
