"""A trial's state as a message's words say it ("failed", where Optuna's name is FAIL)."""

from __future__ import annotations

from optuna.trial import TrialState

_WORDS = {TrialState.FAIL: "failed"}


def state_in_words(state: TrialState) -> str:
    """``complete``, ``pruned``, ``failed``, ``running`` or ``waiting``: the state in a sentence
    (the API's fields keep Optuna's names: ``fail``)."""
    return _WORDS.get(state, state.name.lower())
