"""Hyperband whose brackets follow the study's seed, not its name in Optuna's tables.

Optuna's HyperbandPruner puts trial n in a bracket by hashing the study's *name* with n, so two
studies of one definition (names are unique) prune differently and cannot reproduce each other.
Here the key is the sampler's seed when the study has one, the name its tenant gave it otherwise
(as in Optuna for the tenant ``default``, whose studies keep their name in Optuna's tables; not
another tenant's Optuna name, ``tenant/name``: ``service.study_names``). TPE asks the pruner for
the same bracket ids as the report path, so sampling and pruning stay consistent.
"""

from __future__ import annotations

import binascii
from typing import Any

import optuna


class SeededHyperbandPruner(optuna.pruners.HyperbandPruner):
    """:class:`optuna.pruners.HyperbandPruner` with brackets keyed on ``bracket_key``."""

    def __init__(self, *, bracket_key: str, **options: Any) -> None:
        super().__init__(**options)
        self._bracket_key = bracket_key

    def _get_bracket_id(self, study: optuna.Study, trial: optuna.trial.FrozenTrial) -> int:
        if len(self._pruners) == 0:
            return int(super()._get_bracket_id(study, trial))
        return self.bracket_of(trial.number)  # whatever the study is called in Optuna's tables

    def bracket_of(self, number: int) -> int:
        """The bracket of trial ``number`` (the brackets must be set up: ``ready``)."""
        key = f"{self._bracket_key}_{number}".encode()
        n = binascii.crc32(key) % self._total_trial_allocation_budget
        for bracket_id, budget in enumerate(self._trial_allocation_budgets):
            n -= budget
            if n < 0:
                return bracket_id
        raise AssertionError("every trial falls in a bracket")

    def ready(self) -> bool:
        """Set up the brackets where ``max_resource`` is known; whether they are set up."""
        if len(self._pruners) == 0 and isinstance(self._max_resource, int):
            self._try_initialization(None)  # type: ignore[arg-type]  # unused with a fixed max
        return len(self._pruners) > 0

    def rung_step(self, bracket_id: int, rung: int) -> int:
        """The step at which a trial of ``bracket_id`` completes ``rung`` (Optuna's successive
        halving: min_resource * reduction_factor ** (bracket_id + rung))."""
        return int(self._min_resource * self._reduction_factor ** (bracket_id + rung))

    @property
    def reduction_factor(self) -> int:
        """How many trials compete for each promotion."""
        return int(self._reduction_factor)
