"""Turns validation failures into ``{"field", "problem"}`` pairs a client can act on."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any, TypedDict

from pydantic import ValidationError
from pydantic_core import ErrorDetails


class Problem(TypedDict):
    """One thing wrong with a request: where (dotted path) and what."""

    field: str
    problem: str


def problems_from_validation_error(error: ValidationError, data: Any) -> list[Problem]:
    """One problem per pydantic error, with a dotted path into what the client sent."""
    return problems_from_errors(error.errors(include_url=False), data)


def problems_from_errors(items: Iterable[ErrorDetails], data: Any) -> list[Problem]:
    """One problem per item of a ``ValidationError``'s ``errors()``."""
    return [_problem(item, data) for item in items]


def _problem(item: ErrorDetails, data: Any) -> Problem:
    loc = tuple(item["loc"])
    if len(loc) >= 2 and loc[-1] == _KEY_MARK:  # a mapping's key is what is wrong, not a value
        where = field_path(loc[:-2], data) or "body"
        return Problem(field=where, problem=f"the key {loc[-2]!r}: {_message(item)}")
    return Problem(field=field_path(loc, data) or "body", problem=_message(item))


_KEY_MARK = "[key]"  # pydantic's last part of the location of a mapping key's own error


def field_path(loc: tuple[int | str, ...], data: Any) -> str:
    """Dotted path of ``loc``, leaving out the union tags that pydantic adds.

    The client never wrote those tags, so a path that kept them would not lead into its request.
    A tag sits right after the union's own key: it names the member (``"type"`` or ``"name"``,
    or the default member when ``name`` was left out), and the path goes on into that member.
    """
    parts: list[str] = []
    node, tag_skipped = data, False
    for index, key in enumerate(loc):
        rest = loc[index + 1 :]
        if not tag_skipped and isinstance(node, dict) and _is_union_tag(node, key, rest):
            tag_skipped = True  # one tag per union: what follows it is a field
            continue
        node, tag_skipped = _child(node, key), False
        parts.append(str(key))
    return ".".join(parts)


def _is_union_tag(node: dict[str, Any], key: int | str, rest: tuple[int | str, ...]) -> bool:
    if not isinstance(key, str):
        return False
    if key not in node:
        return key in (node.get("type"), node.get("name")) or bool(rest and rest[0] in node)
    if not rest:
        return False
    # A member field named like its tag ({"name": "percentile", "percentile": 200}): the tag
    # comes first, and a field holding a scalar cannot have more path under it.
    named = key in (node.get("type"), node.get("name"))
    return named and not isinstance(node[key], dict | list)


def _child(node: Any, key: int | str) -> Any:
    if isinstance(node, dict):
        return node.get(key)
    if isinstance(node, list) and isinstance(key, int) and 0 <= key < len(node):
        return node[key]
    return None


def _message(item: Any) -> str:
    if item["type"] in ("model_type", "model_attributes_type") and not item["loc"]:
        return f"must be a JSON object, not {_json_kind(item['input'])}"  # not a class's name
    if item["type"] == "json_invalid" and not item["loc"]:  # a JSON string, read as a document
        return "must be a JSON object, not a string"
    if item["type"] in _BOUNDS and isinstance(item["input"], bool):  # true read as 1, then bounded
        return "must be a number, not a boolean"
    message = str(item["msg"])
    return message.removeprefix("Value error, ")


_BOUNDS = {"greater_than", "greater_than_equal", "less_than", "less_than_equal", "multiple_of"}


def _json_kind(value: Any) -> str:
    """What a value sent as JSON is, as JSON names it."""
    if value is None:
        return "null (or nothing)"
    kinds = ((bool, "a boolean"), (int | float, "a number"), (str, "a string"), (list, "an array"))
    return next((name for kind, name in kinds if isinstance(value, kind)), type(value).__name__)
