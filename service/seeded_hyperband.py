"""Hyperband whose brackets follow the study's seed, not its name.

Optuna's HyperbandPruner puts trial n in a bracket by hashing the study's *name* with n, so two
studies of one definition (names are unique) prune differently and cannot reproduce each other.
Here the key is the sampler's seed when the study has one (the name otherwise, as in Optuna).
TPE asks the pruner for the same bracket ids, so sampling and pruning stay consistent.
"""

from __future__ import annotations

import binascii
from typing import Any

import optuna


class SeededHyperbandPruner(optuna.pruners.HyperbandPruner):
    """:class:`optuna.pruners.HyperbandPruner` with brackets keyed on ``bracket_key``."""

    def __init__(self, *, bracket_key: str | None, **options: Any) -> None:
        super().__init__(**options)
        self._bracket_key = bracket_key

    def _get_bracket_id(self, study: optuna.Study, trial: optuna.trial.FrozenTrial) -> int:
        if self._bracket_key is None or len(self._pruners) == 0:
            return int(super()._get_bracket_id(study, trial))
        key = f"{self._bracket_key}_{trial.number}".encode()
        n = binascii.crc32(key) % self._total_trial_allocation_budget
        for bracket_id, budget in enumerate(self._trial_allocation_budgets):
            n -= budget
            if n < 0:
                return bracket_id
        raise AssertionError("every trial falls in a bracket")
