"""What the API answers where the database refuses a write that another request made first."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from sqlalchemy.exc import IntegrityError

from api.app import create_app
from api.context import TUNER_EXTENSION
from service.settings import Settings
from tests.support.dispatchers import DoNothingDispatcher


@pytest.mark.parametrize(
    ("refusal", "status"),
    [
        ("UNIQUE constraint failed: trial_intermediate_values.trial_id", 503),  # SQLite's
        ("FOREIGN KEY constraint failed", 500),  # no race: a fault of the service's
    ],
)
def test_a_row_written_meanwhile_by_another_request_is_503_to_send_again(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, refusal: str, status: int
) -> None:
    """A unique violation (a report sent twice at once, on Optuna's general path) was a 500:
    the worker's report pipeline takes a 500 for its trainer's failure, and fails the trial."""
    settings = Settings(
        database_url=f"sqlite:///{tmp_path / 'hpo.db'}", reaper_interval_s=0, require_tokens=False
    )
    app = create_app(settings, dispatcher=DoNothingDispatcher())

    def written_meanwhile(*_: Any, **__: Any) -> None:
        raise IntegrityError("INSERT INTO trial_intermediate_values", {}, Exception(refusal))

    monkeypatch.setattr(app.extensions[TUNER_EXTENSION], "report_answer", written_meanwhile)
    answer = app.test_client().post("/trials/1/report", json={"step": 1, "value": 0.5})
    assert answer.status_code == status
    if status == 503:
        assert answer.headers["Retry-After"]
        assert "send this one again" in answer.get_json()["error"]
