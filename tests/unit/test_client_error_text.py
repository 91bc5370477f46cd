"""What an error answer says as an exception's text: the CLI prints it, and a worker's failed
trial carries it as its reason, so the fields the API named must be in it."""

from __future__ import annotations

from typing import Any

import pytest

from client import HPOError

SCHEMA = "the request does not fit its schema"


@pytest.mark.parametrize(
    ("status", "body", "text"),
    [
        (
            422,
            {"error": SCHEMA, "problems": [{"field": "reports", "problem": "the steps must rise"}]},
            f"422: {SCHEMA}: reports: the steps must rise",
        ),
        (
            409,  # a conflict names its one problem in its message: not twice
            {
                "error": "trial 3 is complete",
                "problems": [{"field": "trial_id", "problem": "trial 3 is complete"}],
            },
            "409: trial 3 is complete",
        ),
        (
            422,  # three problems at most
            {"error": SCHEMA, "problems": [{"field": f"f{i}", "problem": "bad"} for i in range(5)]},
            f"422: {SCHEMA}: f0: bad; f1: bad; f2: bad",
        ),
        (502, "<html>Bad gateway</html>", "502: <html>Bad gateway</html>"),  # not the API's
        (500, {"error": "internal error"}, "500: internal error"),
    ],
)
def test_an_error_s_text_names_the_fields_the_api_named(status: int, body: Any, text: str) -> None:
    assert str(HPOError(status, body)) == text
