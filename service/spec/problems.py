"""Turns validation failures into ``{"field", "problem"}`` pairs a client can act on."""

from __future__ import annotations

from typing import Any, TypedDict

from pydantic import ValidationError


class Problem(TypedDict):
    """One thing wrong with a request: where (dotted path) and what."""

    field: str
    problem: str


def problems_from_validation_error(error: ValidationError, data: Any) -> list[Problem]:
    """One problem per pydantic error, with a dotted path into what the client sent."""
    return [
        Problem(field=field_path(tuple(item["loc"]), data) or "body", problem=_message(item))
        for item in error.errors(include_url=False)
    ]


def field_path(loc: tuple[int | str, ...], data: Any) -> str:
    """Dotted path of ``loc``, leaving out the union tags that pydantic adds.

    The client never wrote those tags, so a path that kept them would not lead into its request.
    """
    parts: list[str] = []
    node = data
    for key in loc:
        if isinstance(node, dict) and key not in node and _is_union_tag(node, key):
            continue
        node = _child(node, key)
        parts.append(str(key))
    return ".".join(parts)


def _child(node: Any, key: int | str) -> Any:
    if isinstance(node, dict):
        return node.get(key)
    if isinstance(node, list) and isinstance(key, int) and 0 <= key < len(node):
        return node[key]
    return None


def _is_union_tag(node: dict[str, Any], key: int | str) -> bool:
    return key in (node.get("type"), node.get("name"))


def _message(item: Any) -> str:
    message = str(item["msg"])
    return message.removeprefix("Value error, ")
