"""Choosing a union member by its ``name``, with a default when the client leaves it out."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any


def named_or_default(default: str) -> Callable[[Any], str | None]:
    """A pydantic discriminator: the ``name`` given, or ``default`` when there is none."""

    def tag(value: Any) -> str | None:
        if isinstance(value, dict):
            name = value.get("name", default)
            return name if isinstance(name, str) else None
        return getattr(value, "name", None)

    tag.__name__ = "name"  # pydantic names the discriminator in its messages: "found using name()"
    return tag
