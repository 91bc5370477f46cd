"""The mirror's reuse of TPE's search space rests on where Optuna 5 keeps it."""

from __future__ import annotations

import optuna
from optuna.search_space import IntersectionSearchSpace


def test_optunas_tpe_keeps_its_search_space_where_the_mirror_sets_it() -> None:
    # service.tpe_split gives each new sampler the study's kept search space through this
    # attribute (SplitOnceTPESampler.keep_study_state); a release that renames it would leave the
    # kept one unused and TPE computing its own.
    sampler = optuna.samplers.TPESampler(seed=0, multivariate=True)
    assert isinstance(sampler._search_space, IntersectionSearchSpace)
