"""The file endpoints' own body limit (``HPO_MAX_FILE_BYTES``) and the reader of data set files.

Through Flask's test client (no server, no worker) and the service's reader directly.
"""

from __future__ import annotations

import io
import zipfile
from pathlib import Path

import numpy as np
import pytest
from flask.testing import FlaskClient

from api.app import create_app
from api.limits import MAX_BODY_BYTES
from service.datasets import parsing, read_dataset
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


@pytest.mark.parametrize(
    ("query", "field"),
    [
        ("name=a&format=xml", "format"),
        ("format=csv", "name"),
        ("name=a&format=csv&label_column=", "label_column"),
        ("name=" + "n" * 200 + "&format=csv", "name"),
    ],
)
def test_a_bad_query_beside_a_file_is_422_naming_the_query_field(
    client: FlaskClient, query: str, field: str
) -> None:
    file = csv_bytes(*blobs(rows=30))
    answer = client.post(f"/datasets?{query}", data=file, content_type="application/octet-stream")
    assert answer.status_code == 422, answer.get_data(as_text=True)
    assert field in [problem["field"] for problem in answer.json["problems"]]
    assert client.get("/datasets").json["datasets"] == []


def test_a_checkpoint_s_bad_lease_is_422_naming_the_lease(client: FlaskClient) -> None:
    answer = client.put("/trials/1/checkpoint?lease=" + "x" * 65, data=b"file")
    assert answer.status_code == 422
    assert [problem["field"] for problem in answer.json["problems"]] == ["lease"]


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


@pytest.mark.filterwarnings("ignore:Duplicate name:UserWarning")  # zipfile's, as it writes
def test_an_npz_holding_an_array_twice_is_refused_naming_it() -> None:
    """NumPy read the last X.npy of the two, without a word (zip allows a name twice)."""
    content = io.BytesIO()
    with zipfile.ZipFile(content, "w") as archive:
        for features in (np.ones((10, 2)), np.ones((10, 3))):
            with archive.open("X.npy", "w") as member:
                np.save(member, features)
        with archive.open("y.npy", "w") as member:
            np.save(member, np.arange(10) % 2)
    with pytest.raises(InvalidSpec) as refused:
        read_dataset(content.getvalue(), "npz", None)
    assert refused.value.field == "file"
    assert "holds X.npy more than once" in refused.value.message


def test_a_csv_of_more_lines_than_rows_allowed_is_refused_before_its_rows_are_read(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A 64 MiB CSV of 2 columns (6.1M rows) was parsed whole, 10.7 s of a request thread,
    before its row count was checked: eight at once stalled the API for 50 s."""
    monkeypatch.setattr(parsing, "MAX_ROWS", 20)
    read: list[int] = []
    monkeypatch.setattr(parsing, "_fill_rows", lambda *args: read.append(1))  # never reached
    with pytest.raises(InvalidSpec) as refused:
        read_dataset(csv_rows("a,label", ["1,x", "2,y"] * 3), "csv", "label")  # 30 rows
    assert "at most 20 rows, and the file has 31 lines" in refused.value.message
    assert read == []


def csv_rows(header: str, rows: list[str]) -> bytes:
    """A .csv file of ``rows`` under ``header``, five copies of each row (the least a class has)."""
    return "\n".join([header] + rows * 5).encode()


@pytest.mark.parametrize(
    ("content", "problem"),
    [
        (csv_rows("a,label,label", ["1,x,2", "2,y,3"]), "names the column 'label' twice"),
        (csv_rows("a,b,label", ["1,2,x", "2,3,"]), "line 3: the label is empty"),
        (csv_rows("a,b,label", ["1,2,x", "1_0,3,y"]), "line 3, column 'a': '1_0' is not a number"),
        (csv_rows("a,label,b", ["1,x,2", "2,y,row0"]), "line 3, column 'b': 'row0' is not a"),
    ],
)
def test_a_malformed_csv_names_its_problem(content: bytes, problem: str) -> None:
    with pytest.raises(InvalidSpec) as refused:
        read_dataset(content, "csv", "label")
    assert refused.value.field == "file"
    assert problem in refused.value.message


def test_a_csv_row_without_underscores_or_empty_labels_reads() -> None:
    read = read_dataset(csv_rows("a,b,label", [" 1.5 ,-2e3,x", "2,3, y"]), "csv", "label")
    assert read.classes == ["x", "y"] and read.features[0].tolist() == [1.5, -2000.0]


def test_an_npz_with_more_values_than_the_limit_is_refused_before_widening_them() -> None:
    # 20,000,100 one-byte values: 20 MB as sent, 160 MB had they been widened to float64.
    features = np.zeros((200_001, 100), dtype=np.uint8)
    with pytest.raises(InvalidSpec) as refused:
        read_dataset(npz_bytes(X=features, y=np.arange(200_001) % 2), "npz", None)
    assert "at most 20000000 values" in refused.value.message


@pytest.mark.parametrize(
    ("scale", "taken"),
    [(1.0, True), (1e100, True), (1e146, True), (1e152, False), (-1e200, False)],
)
def test_a_column_too_large_to_standardise_is_refused_naming_it(scale: float, taken: bool) -> None:
    """Features of 1e200 passed and every trial trained on zeros (its variance overflowed)."""
    features, labels = blobs()
    features[:, 2] *= scale
    content = npz_bytes(X=features, y=labels)
    if taken:
        assert read_dataset(content, "npz", None).features.shape == features.shape
        return
    with pytest.raises(
        InvalidSpec, match=r"feature column 2 \(of X, counting from 0\) .* too large to standardise"
    ):
        read_dataset(content, "npz", None)


def test_a_csv_column_too_large_to_standardise_is_named_by_its_header() -> None:
    rows = [
        f"{label},{index},{1e200 if index == 3 else 1.0}" for index, label in enumerate("abc" * 5)
    ]
    content = "\n".join(["label,x,big", *rows]).encode()
    with pytest.raises(InvalidSpec, match="feature column 'big' holds values up to 1e"):
        read_dataset(content, "csv", "label")


def test_a_query_field_given_twice_is_422_naming_it(client: FlaskClient) -> None:
    """``?name=a&name=b`` registered the data set as ``a``, dropping ``b`` without a word."""
    file = csv_bytes(*blobs(rows=30))
    answer = client.post(
        "/datasets?name=a&name=b&format=csv&label_column=species",
        data=file,
        content_type="application/octet-stream",
    )
    assert answer.status_code == 422, answer.get_data(as_text=True)
    assert answer.json["problems"] == [{"field": "name", "problem": "given 2 times: give it once"}]
    assert client.get("/datasets").json["datasets"] == []
    assert client.get("/studies?x=1&x=2").status_code == 200  # a view that reads no query
    # A name the query does not know, given twice: its model's refusal (the fuzzer's case: an
    # empty name, which this check named as the field "").
    unknown = client.put("/trials/1/checkpoint?=a&=b&lease=x", data=b"file")
    assert unknown.status_code == 422
    assert all(problem["field"] for problem in unknown.json["problems"]), unknown.json
