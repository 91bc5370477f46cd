"""Which trials the vault and ensembles take: a named trial must be complete and within the
study's constraints (of one objective or several); the top k rank only such trials."""

from __future__ import annotations

import pytest
from optuna.trial import FrozenTrial, TrialState, create_trial

from service.errors import Conflict, InvalidSpec
from service.spec.study_spec import StudySpec
from service.vault import chosen_trial, ranked_trials, top_trials


def trial(
    number: int, value: float, *, violation: float = 0.0, state: TrialState = TrialState.COMPLETE
) -> FrozenTrial:
    made = create_trial(
        state=state,
        value=value if state == TrialState.COMPLETE else None,
        system_attrs={"constraints:n_parameters": violation},
    )
    made.number, made._trial_id = number, number + 100
    return made


def spec(**fields: object) -> StudySpec:
    return StudySpec.model_validate(
        {"name": "s", "space": {"x": {"type": "float", "low": 0, "high": 1}}, **fields}
    )


TRIALS = [
    trial(0, 0.3),
    trial(1, 0.1, violation=5.0),
    trial(2, 0.2),
    trial(3, 0.0, state=TrialState.PRUNED),
]


def test_a_complete_trial_that_breaks_the_constraints_is_named_so() -> None:
    with pytest.raises(
        InvalidSpec, match="trial 101 is complete but breaks the study's constraints"
    ):
        chosen_trial(TRIALS, 101)
    with pytest.raises(InvalidSpec, match="trial 103 is pruned, not complete"):
        chosen_trial(TRIALS, 103)
    assert chosen_trial(TRIALS, 102) is TRIALS[2]


def test_the_top_k_count_only_trials_within_the_constraints_and_say_so() -> None:
    ranked = ranked_trials(spec(), TRIALS)
    assert [t.number for t in ranked] == [2, 0]
    with pytest.raises(
        Conflict, match="2 complete trials within its constraints, fewer than k = 3"
    ):
        top_trials(ranked, 3, "k")


def test_a_study_of_several_objectives_has_no_ranking_but_a_named_trial_is_taken() -> None:
    several = spec(
        objectives=[
            {"metric": "validation_loss", "direction": "minimize"},
            {"metric": "n_parameters", "direction": "minimize"},
        ]
    )
    with pytest.raises(Conflict, match="evaluate with its trial_id"):
        ranked_trials(several, TRIALS)
    assert chosen_trial(TRIALS, 100) is TRIALS[0]
