"""The one place where domain errors and bad requests become HTTP answers.

Every error body has the same shape: ``{"error": "...", "problems": [{"field", "problem"}]}``.
"""

from __future__ import annotations

import json
import logging
import re
from typing import Any, TypeVar

from flask import Flask, Response, abort, jsonify, request
from optuna.exceptions import UpdateFinishedTrialError
from pydantic import BaseModel, ValidationError
from pydantic_core import ErrorDetails
from sqlalchemy.exc import DataError, IntegrityError
from werkzeug.exceptions import HTTPException

from api.schemas import FILE_ENDPOINTS
from service.errors import (
    RETRY_AFTER_S,
    Conflict,
    InvalidSpec,
    NotFound,
    ServiceError,
    Unavailable,
)
from service.spec.problems import Problem, problems_from_errors, problems_from_validation_error
from service.storage.database import DATABASE_OUTAGES, RETRY_LATER

Body = TypeVar("Body", bound=BaseModel)
logger = logging.getLogger(__name__)
_STATUS_OF: list[tuple[type[ServiceError], int]] = [
    (InvalidSpec, 422),
    (NotFound, 404),
    (Conflict, 409),
    (Unavailable, 503),
]


def error_response(status: int, message: str, problems: list[Problem]) -> Response:
    """A JSON error answer."""
    response = jsonify({"error": message, "problems": problems})
    response.status_code = status
    if status == 503:
        response.headers["Retry-After"] = str(RETRY_AFTER_S)
    return response


def no_content() -> Response:
    """A 204: no body, so no Content-Type (Flask's default would say text/html)."""
    response = Response(status=204)
    del response.headers["Content-Type"]
    return response


def validation_error_response(error: ValidationError) -> Response:
    """flask-openapi3's hook for a request that fails its schema: 415 for a body not sent as
    JSON, 400 for one that is not valid JSON, else 422."""
    if request.endpoint in FILE_ENDPOINTS:  # the body is a file: what failed is the query
        data: Any = request.args.to_dict()
    else:
        if (unreadable := unreadable_json_body()) is not None:
            return unreadable
        body = request.get_json(silent=True)
        data = body if body is not None else {}
    problems = problems_from_validation_error(error, data)
    return error_response(422, "the request does not fit its schema", problems)


def unreadable_json_body() -> Response | None:
    """415 for a body not sent as JSON, 400 for one that is not valid JSON; ``None`` for a JSON
    body, or none. (flask-openapi3 reads either as no body: an endpoint whose fields are all
    optional would go on as if none had been sent.)"""
    sent = request.get_data(cache=True)
    if not sent.strip() or request.get_json(silent=True) is not None:
        return None
    if not request.is_json:
        problem = f"{request.mimetype or 'no Content-Type'}, not application/json"
        message = f"the body must be JSON, sent as application/json ({problem})"
        return error_response(415, message, [{"field": "Content-Type", "problem": problem}])
    if not _is_json_null(sent):
        problem = "malformed JSON"
        return error_response(
            400, "the body is not valid JSON", [{"field": "body", "problem": problem}]
        )
    return None


def _is_json_null(body: bytes) -> bool:
    """Whether the body is JSON's ``null`` (``get_json`` answers ``None`` for it, as for a body
    that is no JSON at all)."""
    try:
        return json.loads(body) is None
    except ValueError:  # not JSON, or not text
        return False


def register_error_handlers(app: Flask) -> None:
    """Install the handlers: domain errors, HTTP errors, database outages, and a last resort."""
    app.register_error_handler(ServiceError, _service_error)
    app.register_error_handler(HTTPException, _http_error)
    app.register_error_handler(UpdateFinishedTrialError, _finished_trial)
    for outage in DATABASE_OUTAGES:
        app.register_error_handler(outage, _database_unavailable)
    app.register_error_handler(DataError, _value_out_of_range)
    app.register_error_handler(IntegrityError, _concurrent_write)
    app.register_error_handler(Exception, _unexpected)


def _service_error(error: ServiceError) -> Response:
    status = next(code for kind, code in _STATUS_OF if isinstance(error, kind))
    problems: list[Problem]
    if isinstance(error, InvalidSpec):
        problems = [{"field": field, "problem": problem} for field, problem in error.problems]
    else:
        problems = [{"field": error.field or "request", "problem": error.message}]
    return error_response(status, error.message, problems)


def _http_error(error: HTTPException) -> Response:
    if isinstance(error.response, Response) and error.code in (400, 422):
        return error.response  # already shaped by validation_error_response
    if error.code == 404 and (malformed := _malformed_id()) is not None:
        return malformed
    message = error.description or error.name
    field = "body" if error.code == 413 else "request"  # 413: the body is past its size limit
    response = error_response(error.code or 500, message, [{"field": field, "problem": message}])
    for name, value in error.get_headers():
        if name.lower() != "content-type":
            response.headers[name] = value  # e.g. a 405's Allow
    return response


# The ids in the API's paths: /studies/{study_id}, /trials/{trial_id}, /jobs/{job_id}.
_ID_OF_COLLECTION = {"studies": "study_id", "trials": "trial_id", "jobs": "job_id"}
_COLLECTION_ITEM = re.compile(r"/(studies|trials|jobs)/([^/]+)(?:/|$)")


def _malformed_id() -> Response | None:
    """A 422 naming the id where a path no route took has one that is no whole number above 0
    (``/studies/abc``, ``/trials/-1``), instead of Werkzeug's page about URLs typed by hand."""
    found = _COLLECTION_ITEM.match(request.path)
    segment = found.group(2) if found else ""
    if request.url_rule is not None or found is None or (segment.isascii() and segment.isdigit()):
        return None
    return no_id_answer(_ID_OF_COLLECTION[found.group(1)], segment)


def no_id_answer(name: str, written: str) -> Response:
    """The 422 for an id in the URL that is no whole number above 0 (``abc``, ``-1``, ``0``)."""
    problem = f"must be a whole number above 0, not {written!r}"
    return error_response(422, f"{name} {problem}", [{"field": name, "problem": problem}])


def _finished_trial(error: UpdateFinishedTrialError) -> Response:
    return error_response(409, str(error), [{"field": "trial_id", "problem": str(error)}])


def _database_unavailable(error: Exception) -> Response:
    logger.warning("database unavailable: %s", error)
    return error_response(503, RETRY_LATER, [{"field": "request", "problem": RETRY_LATER}])


def _value_out_of_range(error: DataError) -> Response:
    logger.warning("a value did not fit the database: %s", error)
    message = "a value in the request does not fit the database"
    return error_response(422, message, [{"field": "request", "problem": message}])


def _concurrent_write(error: IntegrityError) -> Response:
    """A row another request wrote meanwhile (a unique key taken: a request sent again while
    the first is served, two creations of one name at once): 503, so that the request is sent
    again and meets the row as it now stands (the repeat is answered as such), not a 500. Any
    other refusal (a foreign key, NOT NULL) is a fault of the service's: a 500, with its
    traceback."""
    if not _unique_key_taken(error):
        return _unexpected(error)
    logger.warning("a concurrent write of the same row: %s", error)
    message = "another request wrote the same record meanwhile; send this one again"
    return error_response(503, message, [{"field": "request", "problem": message}])


def _unique_key_taken(error: IntegrityError) -> bool:
    """PostgreSQL's unique_violation (SQLSTATE 23505), or SQLite's UNIQUE constraint."""
    if getattr(error.orig, "sqlstate", None) == "23505":
        return True
    return "UNIQUE constraint failed" in str(error.orig)


def _unexpected(error: Exception) -> Response:
    logger.exception("unexpected error on %s %s", request.method, request.path)
    return error_response(
        500, "internal error", [{"field": "request", "problem": type(error).__name__}]
    )


def strictly(body: Body, *, strings_as_numbers: bool = True) -> Body:
    """``body``, once its JSON is checked for booleans where numbers go: flask-openapi3's lax
    validation reads ``true`` as 1 there (``"n_trials": true``: one trial). A 422 naming each
    such field otherwise. A number written as a string passes where ``strings_as_numbers``
    (YAML 1.1 reads ``1e-5`` as one: ``hpo submit``'s files); a program's report or completion
    is refused it (``str(loss)`` is a mistake, which Pydantic read as the number)."""
    data = request.get_json(silent=True)
    refused = (bool,) if strings_as_numbers else (bool, str)
    try:
        type(body).model_validate(data, strict=True)
    except ValidationError as error:
        wrong = [
            ErrorDetails(
                **{**item, "msg": f"must be {_NUMBER_OF[item['type']]}, not {_a(item['input'])}"}
            )
            for item in error.errors(include_url=False)
            if item["type"] in _NUMBER_OF and isinstance(item["input"], refused)
        ]
        if wrong:
            booleans = all(isinstance(item["input"], bool) for item in wrong)
            message = "a boolean is no number" if booleans else "a number must be a JSON number"
            abort(error_response(422, message, problems_from_errors(wrong, data)))
    return body


def _a(value: object) -> str:
    return "a boolean" if isinstance(value, bool) else "a string"


_NUMBER_OF = {"int_type": "an integer", "float_type": "a number"}
