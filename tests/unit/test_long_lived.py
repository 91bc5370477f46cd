"""Start-up objects leave the garbage collector's generations; what comes later stays in them."""

from __future__ import annotations

import gc
import weakref
from collections.abc import Iterator

import pytest

from service.long_lived import freeze_startup_objects


class Node:
    """A container the collector tracks."""

    def __init__(self) -> None:
        self.links: list[Node] = []


@pytest.fixture
def unfrozen_after() -> Iterator[None]:
    """No automatic collection meanwhile (only the call collects); everything unfrozen after."""
    gc.disable()
    yield
    gc.unfreeze()
    gc.enable()


def tracked(thing: object) -> bool:
    """Whether a collection of some generation would walk ``thing`` (frozen objects: none)."""
    return any(candidate is thing for candidate in gc.get_objects())


@pytest.mark.usefixtures("unfrozen_after")
def test_what_lives_at_start_up_is_frozen_and_what_comes_later_is_not() -> None:
    before = Node()
    assert tracked(before)
    frozen = freeze_startup_objects()
    after = Node()
    assert frozen == gc.get_freeze_count() > 0
    assert not tracked(before) and tracked(after)


@pytest.mark.usefixtures("unfrozen_after")
def test_garbage_of_start_up_is_collected_not_frozen() -> None:
    garbage = Node()
    garbage.links.append(garbage)  # a cycle: only the collector frees it
    gone = weakref.ref(garbage)
    del garbage
    freeze_startup_objects()
    assert gone() is None
