"""What ``hpo submit --wait`` says of a study that ended without one best trial (it printed the
API's 404 'no complete trial yet' for a study its pre-flight checks had stopped)."""

from __future__ import annotations

from typing import Any

from cli.main import no_best_in_words


def ended(**fields: Any) -> dict[str, Any]:
    return {"study_id": 7, "state": "stopped", "counts": {"fail": 0}, **fields}


def test_a_study_its_checks_stopped_names_the_failed_checks() -> None:
    preflight = {
        "state": "failed",
        "refused": True,
        "checks": [
            {"name": "initial_loss", "passed": True},
            {"name": "overfit_tiny_subset", "passed": False},
        ],
    }
    said = no_best_in_words(ended(preflight=preflight))
    assert "stopped by its pre-flight checks (overfit_tiny_subset)" in said


def test_a_study_of_several_objectives_with_an_empty_front_says_why() -> None:
    """Its front is empty where every complete trial breaks the constraints (Optuna's
    best_trials leaves them out): it printed an empty front, exit 0."""
    said = no_best_in_words(ended(state="complete", objectives=[{}, {}], counts={"complete": 2}))
    assert said.endswith("no complete trial within its constraints (2 complete)")


def test_a_study_with_no_complete_trial_says_how_its_trials_ended() -> None:
    said = no_best_in_words(ended(counts={"fail": 3, "pruned": 0}))
    assert said == "study 7 is stopped with no complete trial (3 fail)"


def test_a_study_whose_complete_trials_all_break_its_constraints_says_so() -> None:
    said = no_best_in_words(ended(state="complete", counts={"complete": 4}))
    assert said == "study 7 is complete with no complete trial within its constraints (4 complete)"
