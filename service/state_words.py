"""A trial's state as a message's words say it ("failed", where Optuna's name is FAIL)."""

from __future__ import annotations

from optuna.trial import TrialState

_WORDS = {TrialState.FAIL: "failed"}


def state_in_words(state: TrialState) -> str:
    """``complete``, ``pruned``, ``failed``, ``running`` or ``waiting``: the state in a sentence
    (the API's fields keep Optuna's names: ``fail``)."""
    return _WORDS.get(state, state.name.lower())


_REASON_SHOWN = 200  # characters of a failed trial's reason a refusal repeats


def ended_in_words(state: TrialState, reason: object = None) -> str:
    """The state in words, and a failed trial's reason after it, its first line (``failed
    (lease expired: ...)``: a program silent past its lease learns why its write is refused)."""
    words = state_in_words(state)
    if state == TrialState.FAIL and isinstance(reason, str) and reason.strip():
        words += f" ({reason.strip().splitlines()[0][:_REASON_SHOWN]})"
    return words
