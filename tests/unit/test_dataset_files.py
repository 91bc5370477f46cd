"""The file endpoints' own body limit (``HPO_MAX_FILE_BYTES``) and the reader of data set files.

Through Flask's test client (no server, no worker) and the service's reader directly.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from flask.testing import FlaskClient

from api.app import create_app
from api.limits import MAX_BODY_BYTES
from service.datasets import read_dataset
from service.errors import InvalidSpec
from service.settings import Settings
from tests.support.datasets import blobs, csv_bytes, npz_bytes
from tests.support.dispatchers import DoNothingDispatcher

FILE_LIMIT = 2 * MAX_BODY_BYTES


@pytest.fixture
def client(tmp_path: Path) -> FlaskClient:
    settings = Settings(
        database_url=f"sqlite:///{tmp_path / 'hpo.db'}",
        reaper_interval_s=0,
        require_tokens=False,
        max_file_bytes=FILE_LIMIT,
    )
    return create_app(settings, DoNothingDispatcher()).test_client()


def post_file(client: FlaskClient, size: int) -> int:
    query = "/datasets?name=big&format=csv&label_column=label"
    return client.post(query, data=b"x" * size, content_type="application/octet-stream").status_code


def test_a_file_past_the_json_limit_but_within_the_file_limit_is_read(client: FlaskClient) -> None:
    assert post_file(client, MAX_BODY_BYTES + 1000) == 422  # read, and refused as a CSV


def test_a_file_past_the_file_limit_is_413_naming_the_limit(client: FlaskClient) -> None:
    answer = client.post(
        "/datasets?name=big&format=npz",
        data=b"x" * (FILE_LIMIT + 1),
        content_type="application/octet-stream",
    )
    assert answer.status_code == 413
    assert str(FILE_LIMIT) in answer.json["problems"][0]["problem"]


def test_the_other_endpoints_keep_the_json_limit(client: FlaskClient) -> None:
    answer = client.post(
        "/studies", data=b" " * (MAX_BODY_BYTES + 1000), content_type="application/json"
    )
    assert answer.status_code == 413


def test_a_checkpoint_upload_has_the_file_limit(client: FlaskClient) -> None:
    big = client.put("/trials/1/checkpoint", data=b"x" * (FILE_LIMIT + 1))
    within = client.put("/trials/1/checkpoint", data=b"x" * (MAX_BODY_BYTES + 1000))
    assert (big.status_code, within.status_code) == (413, 404)  # within: read, no such trial


def test_csv_and_npz_of_the_same_data_read_alike() -> None:
    features, labels = blobs(rows=30)
    from_npz = read_dataset(npz_bytes(X=features, y=labels), "npz", None)
    from_csv = read_dataset(csv_bytes(features, labels), "csv", "species")
    np.testing.assert_allclose(from_csv.features, from_npz.features, atol=1e-6)
    np.testing.assert_array_equal(from_csv.labels, from_npz.labels)
    assert from_csv.classes == ["setosa", "versicolor", "virginica"]


@pytest.mark.parametrize(
    ("content", "problem"),
    [
        (npz_bytes(X=np.ones((10, 2)), y=np.array([0] * 8 + [1] * 2)), "at least 5 rows"),
        (npz_bytes(X=np.full((10, 2), np.inf), y=np.arange(10) % 2), "infinite"),
        (npz_bytes(X=np.array([["a", "b"]] * 10), y=np.arange(10) % 2), "must be numbers"),
        (npz_bytes(X=np.ones((10, 0)), y=np.arange(10) % 2), "no feature column"),
    ],
)
def test_a_malformed_npz_names_its_problem(content: bytes, problem: str) -> None:
    with pytest.raises(InvalidSpec) as refused:
        read_dataset(content, "npz", None)
    assert refused.value.field == "file"
    assert problem in refused.value.message
