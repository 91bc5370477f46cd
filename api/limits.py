"""Limits on what one request may send, so that no client can take the machine with one request.

Past a limit the answer is a 4xx in the usual error shape, never a 5xx:

- a body over ``MAX_BODY_BYTES``: 413, whether it announces its length or not; the endpoints
  that take files (``FILE_ENDPOINTS``) have a larger limit of their own (``HPO_MAX_FILE_BYTES``);
- a JSON body nested deeper than ``MAX_JSON_DEPTH``: 400 (Python's decoder would otherwise
  overflow its stack, a 500);
- a JSON string holding a lone surrogate (``"\\ud800"``): 400 (it could not be stored, a 500);
- an integer in the URL past ``MAX_ID`` (the largest id the id columns hold): 422 naming it;
- a body sent to an endpoint that takes none (an ask, stop, pause, resume, delete, a job's
  start): 422 on ``body``, where it would be ignored without a word (none, ``{}`` or ``null``
  pass: clients send them);
- a body sent compressed (``Content-Encoding: gzip`` and the like): 415 naming the header, with
  ``Accept-Encoding: identity`` (RFC 7694); read as it stands it would be malformed JSON, or a
  data set's file of garbage;
- a JSON endpoint's body that is not JSON: 415 naming ``Content-Type`` (a form) or 400 (malformed
  JSON), before the view runs: read as no body, an endpoint whose fields are all optional went on
  as if none had been sent;
- a file sent as a form (``multipart/form-data``, ``curl -F``) to an endpoint that takes a file:
  415 saying to send the file itself;
- a query field given twice (``?name=a&name=b``) to an endpoint that reads its query: 422 naming
  it (the first was taken, the second dropped without a word).

Limits on the fields of a study live with the study definition (``service/spec``).
"""

from __future__ import annotations

import inspect
import json
import re
import typing
from typing import Any

from flask import Flask, Response, current_app, request
from flask.json.provider import DefaultJSONProvider
from werkzeug.exceptions import (
    BadRequest,
    ClientDisconnected,
    HTTPException,
    RequestEntityTooLarge,
)

from api.errors import error_response, no_id_answer, unreadable_json_body
from api.schemas import FILE_ENDPOINTS, MAX_ID
from service.errors import InvalidSpec
from service.spec.problems import Problem

MAX_BODY_BYTES = 1024 * 1024
MAX_JSON_DEPTH = 32
FILE_LIMIT_CONFIG = "HPO_MAX_FILE_BYTES"


class BoundedJSONProvider(DefaultJSONProvider):
    """Flask's JSON, refusing documents nested deeper than ``MAX_JSON_DEPTH``; answers keep
    their keys in the order the views give them (a trial's steps rising: "2" before "10",
    which Flask's sorted keys put after it)."""

    sort_keys = False

    def loads(self, s: str | bytes, **kwargs: Any) -> Any:
        """Decode ``s``; a 400 naming the body if it is nested too deeply, if an object in it
        names a key twice (which one would count is anyone's guess), or if a string in it is not
        Unicode text (a lone surrogate such as ``"\\ud800"``, which JSON allows and nothing can
        store)."""
        text = s if isinstance(s, str) else _strictly_decoded(s)
        try:
            value = super().loads(text, object_pairs_hook=_with_unique_keys, **kwargs)
        except RecursionError:
            raise _too_deep() from None
        if json_depth(value, MAX_JSON_DEPTH) > MAX_JSON_DEPTH:
            raise _too_deep()
        if _SURROGATE_ESCAPE.search(text):
            _refuse_lone_surrogates(value)
        return value


def apply_request_limits(app: Flask, max_file_bytes: int = MAX_BODY_BYTES) -> None:
    """Install the body size, JSON depth and URL id limits on ``app``."""
    app.config[FILE_LIMIT_CONFIG] = max_file_bytes
    # One byte more than the limit: Werkzeug cuts a body without a length (chunked) there without
    # a word, and the byte past the limit is how _refuse_large_bodies tells it was longer.
    app.config["MAX_CONTENT_LENGTH"] = MAX_BODY_BYTES + 1
    app.json = BoundedJSONProvider(app)
    app.before_request(_refuse_large_bodies)
    app.before_request(_refuse_ids_out_of_range)
    app.before_request(_refuse_encoded_bodies)
    app.before_request(_refuse_bodies_where_none_goes)
    app.before_request(_refuse_bodies_of_another_kind)
    app.before_request(_refuse_repeated_query_fields)


def json_depth(value: Any, stop_after: int | None = None) -> int:
    """How many levels of arrays and objects ``value`` has (0 for a scalar), without recursion.

    Counting stops once it passes ``stop_after``, so a deep document costs no more than a shallow one.
    """
    depth = 0
    level = [value]
    while level and (stop_after is None or depth <= stop_after):
        containers = [node for node in level if isinstance(node, dict | list)]
        if not containers:
            break
        depth += 1
        level = [
            child
            for node in containers
            for child in (node.values() if isinstance(node, dict) else node)
        ]
    return depth


# An escape of a UTF-16 surrogate (U+D800 to U+DFFF): the only way a JSON text carries one.
_SURROGATE_ESCAPE = re.compile(r"\\u[dD][89a-fA-F]")


def _with_unique_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    """An object's pairs as a dict; a 400 naming the body where a key comes twice."""
    found = dict(pairs)
    if len(found) == len(pairs):
        return found
    keys = [key for key, _ in pairs]
    twice = next(key for index, key in enumerate(keys) if key in keys[:index])
    raise _body_refused(f"the JSON body names the key {twice!r} twice in one object")


def _strictly_decoded(body: bytes) -> str:
    """The body as text, in the encoding JSON allows that it is in (UTF-8, -16 or -32); a 400 on
    ``body`` where its bytes are not that encoding's (Python's JSON decoder would let UTF-8's
    encoded surrogates through)."""
    try:
        return body.decode(json.detect_encoding(body))
    except UnicodeDecodeError as error:
        raise _body_refused(f"the JSON body is not valid {error.encoding}") from None


def _refuse_lone_surrogates(value: Any) -> None:
    """A 400 where ``value`` holds a string with a surrogate that is not half of a pair."""
    try:
        json.dumps(value, ensure_ascii=False).encode("utf-8")
    except UnicodeEncodeError:
        message = "a string in the JSON body holds a lone surrogate (\\ud800-\\udfff)"
        raise _body_refused(f"{message}: not Unicode text") from None


def whole_file_body(what: str) -> bytes:
    """The request's body, a file (``what`` names it); a 400 on ``body`` where it ended before
    the length its ``Content-Length`` announced (gunicorn hands on what came before the client
    went: a cut upload was stored as the whole file), a 422 where it is empty."""
    content = _body_read_whole(cache=False)
    announced = request.content_length
    if announced is not None and len(content) < announced:
        raise _body_refused(
            f"the body ended after {len(content)} of the {announced} bytes its Content-Length "
            "announced: the upload was cut short, and nothing was kept (send it again)"
        )
    if not content:
        raise InvalidSpec(f"the body must be {what}, and it is empty", field="body")
    return content


def _body_read_whole(*, cache: bool) -> bytes:
    """The request's body; a 400 on ``body`` where it could not be read to its end: a chunked
    body cut short (Werkzeug's ``ClientDisconnected`` said only "the browser (or proxy) sent a
    request that this server could not understand") or a malformed chunk (gunicorn's error)."""
    try:
        return request.get_data(cache=cache)
    except HTTPException as error:
        if not isinstance(error, ClientDisconnected):
            raise
        cause: BaseException = error.__cause__ or error
    except Exception as error:  # gunicorn's InvalidChunkSize and the like
        cause = error
    raise _body_refused(
        f"the body could not be read whole ({type(cause).__name__}): the upload was cut short "
        "or its chunks are malformed, and nothing was kept (send it again)"
    ) from None


def _body_refused(message: str) -> BadRequest:
    """A 400 on ``body`` saying ``message``."""
    return BadRequest(
        response=error_response(400, message, [{"field": "body", "problem": message}])
    )


def _too_deep() -> BadRequest:
    return _body_refused(f"the JSON body is nested more than {MAX_JSON_DEPTH} levels deep")


def _refuse_large_bodies() -> None:
    """413 for a body past the limit: by its announced length, before reading it.

    A body without a length (chunked) is read here, up to one byte past the limit, and kept for
    the view; without this it would be cut at the limit and then answered as malformed.
    """
    limit_bytes = _body_limit()
    request.max_content_length = limit_bytes + 1
    limit = f"more than the limit of {limit_bytes}"
    length = request.content_length
    if length is not None and length > limit_bytes:
        raise RequestEntityTooLarge(f"the request body has {length} bytes, {limit}")
    if length is None and _chunked() and len(_body_read_whole(cache=True)) > limit_bytes:
        raise RequestEntityTooLarge(f"the request body (chunked) has {limit} bytes")


def _body_limit() -> int:
    """The body limit of this request's endpoint."""
    if request.endpoint in FILE_ENDPOINTS:
        return int(current_app.config[FILE_LIMIT_CONFIG])
    return MAX_BODY_BYTES


def _refuse_ids_out_of_range() -> Response | None:
    """422 for an id in the URL that no database column can hold (the database would fail), or
    0, in the words a negative id gets (``api/errors``), not the schema's."""
    for name, value in (request.view_args or {}).items():
        if isinstance(value, int) and value > MAX_ID:
            problem = f"must be at most {MAX_ID}"
            return error_response(422, f"{name} {problem}", [{"field": name, "problem": problem}])
        if isinstance(value, int) and value < 1:
            return no_id_answer(name, str(value))
    return None


def _refuse_encoded_bodies() -> Response | None:
    """415 for a body in a content coding (gzip, deflate, br...): bodies are taken as sent."""
    coding = request.headers.get("Content-Encoding", "").strip().lower()
    if coding in ("", "identity") or not _has_body():
        return None
    problem = f"{coding}: the body must be sent uncompressed (identity)"
    response = error_response(
        415,
        f"the body's Content-Encoding is {problem}",
        [{"field": "Content-Encoding", "problem": problem}],
    )
    response.headers["Accept-Encoding"] = "identity"
    return response


def _has_body() -> bool:
    """Whether the request carries a body (a length above 0, or chunked)."""
    return bool(request.content_length) or _chunked()


def _chunked() -> bool:
    return "chunked" in request.headers.get("Transfer-Encoding", "").lower()


def _refuse_bodies_where_none_goes() -> Response | None:
    """422 on ``body`` for a body an endpoint without one would ignore (``{"params": ...}`` sent
    with an ask does not choose the trial's parameters)."""
    if request.method not in _WRITES or request.endpoint is None or _takes_body(request.endpoint):
        return None
    sent = request.get_data(cache=True)
    if not sent.strip() or _is_empty_json(sent):
        return None
    problem = (
        f"{request.method} {request.path} takes no body (send none, or {{}}); it would be ignored"
    )
    return error_response(422, problem, [{"field": "body", "problem": problem}])


def _refuse_bodies_of_another_kind() -> Response | None:
    """Before the view runs: 415 or 400 for a JSON endpoint's body that is not JSON (a form,
    malformed JSON: read as no body, ``{"trial_id": 4}`` sent as a form would score the best
    trial's test split instead of trial 4's); 415 for a file endpoint's file sent as a form."""
    endpoint = request.endpoint
    if request.method not in _WRITES or endpoint is None:
        return None
    if endpoint in FILE_ENDPOINTS:
        return _file_sent_as_form()
    return unreadable_json_body() if _takes_body(endpoint) else None


def _file_sent_as_form() -> Response | None:
    """415 for a file sent as a form (``curl -F file=@x.csv``): read as the file, its boundary
    lines made a CSV whose header was ``--------------------------158c9b…``. (Not a body labelled
    ``application/x-www-form-urlencoded``: curl labels ``--data-binary @FILE`` so, and sends the
    file byte for byte.)"""
    if request.mimetype != "multipart/form-data":
        return None
    problem = (
        "multipart/form-data: send the file itself as the body (curl --data-binary @FILE), "
        "not a form (curl -F)"
    )
    message = f"the body must be the file, not a form ({problem})"
    return error_response(415, message, [{"field": "Content-Type", "problem": problem}])


def _refuse_repeated_query_fields() -> Response | None:
    """422 naming each query field of an endpoint's query sent more than once (a name it does
    not know is its query model's to refuse)."""
    if not request.args or request.endpoint is None:
        return None
    known = _query_fields(request.endpoint)
    problems: list[Problem] = [
        {"field": name, "problem": f"given {len(values)} times: give it once"}
        for name, values in request.args.lists()
        if len(values) > 1 and name in known
    ]
    if not problems:
        return None
    named = ", ".join(problem["field"] for problem in problems)
    return error_response(422, f"a query field given more than once: {named}", problems)


def _query_fields(endpoint: str) -> frozenset[str]:
    """The fields of the query the view of ``endpoint`` reads (its ``query`` argument's model)."""
    known: dict[str, frozenset[str]] = current_app.extensions.setdefault("hpo_query_fields", {})
    if endpoint not in known:
        try:
            model = typing.get_type_hints(current_app.view_functions[endpoint]).get("query")
        except (NameError, TypeError):  # a view outside the API (the document's pages)
            model = None
        fields = getattr(model, "model_fields", {})
        known[endpoint] = frozenset(fields)
    return known[endpoint]


_WRITES = frozenset({"POST", "PUT", "PATCH", "DELETE"})


def _takes_body(endpoint: str) -> bool:
    """Whether the view of ``endpoint`` reads a body: a JSON one (its ``body`` argument) or a
    file (``FILE_ENDPOINTS``)."""
    if endpoint in FILE_ENDPOINTS:
        return True
    known: dict[str, bool] = current_app.extensions.setdefault("hpo_takes_body", {})
    if endpoint not in known:
        view = current_app.view_functions[endpoint]
        known[endpoint] = "body" in inspect.signature(view).parameters
    return known[endpoint]


def _is_empty_json(sent: bytes) -> bool:
    """Whether ``sent`` is JSON's ``{}`` or ``null`` (read as bytes, not parsed: a body nested
    deep would overflow the decoder)."""
    return _EMPTY_JSON.fullmatch(sent) is not None


_EMPTY_JSON = re.compile(rb"\s*(\{\s*\}|null)\s*")
