"""Counting the transactions that write, on real engines (SQLAlchemy events, no mocks)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from sqlalchemy import Engine, event


@contextmanager
def writing_transactions(engines: list[Engine]) -> Iterator[list[int]]:
    """Counts the transactions on ``engines`` that wrote something, while the block runs."""
    counted: list[int] = []
    wrote: set[int] = set()

    def on_execute(connection: Any, cursor: Any, statement: str, *args: Any) -> None:
        if statement.lstrip().split(" ", 1)[0].upper() in {"INSERT", "UPDATE", "DELETE"}:
            wrote.add(id(connection.connection))

    def on_commit(connection: Any) -> None:
        if id(connection.connection) in wrote:
            wrote.discard(id(connection.connection))
            counted.append(1)

    for engine in engines:
        event.listen(engine, "before_cursor_execute", on_execute)
        event.listen(engine, "commit", on_commit)
    try:
        yield counted
    finally:
        for engine in engines:
            event.remove(engine, "before_cursor_execute", on_execute)
            event.remove(engine, "commit", on_commit)
